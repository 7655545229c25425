"""GET /v1/calls, /v1/calls/{id}, /v1/calls/{id}/recording, /v1/calls/{id}/transcript
(scope calls:read): the call store, paged newest first."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from agent.api.keys import ApiKeys, error
from agent.records.callrecord import transcript_of
from agent.records.listing import parse_time
from agent.records.store import RESULTS, CallStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_PAGE = 500


class CallsApi:
    def __init__(self, store: CallStore, keys: ApiKeys) -> None:
        self.store = store
        self.keys = keys

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/calls", self._guard(self._list)),
            web.get("/v1/calls/{id}", self._guard(self._get)),
            web.get("/v1/calls/{id}/recording", self._guard(self._recording)),
            web.get("/v1/calls/{id}/transcript", self._guard(self._transcript)),
        ]

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            denied = self.keys.check(request, "calls:read")
            return denied if denied is not None else await handler(request)

        return guarded

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            since = parse_time(q["since"]) if "since" in q else None
            until = parse_time(q["until"]) if "until" in q else None
            limit = int(q.get("limit", "50"))
            before = decode_cursor(q["cursor"]) if "cursor" in q else None
        except ValueError as exc:
            return error(400, str(exc))
        if not 1 <= limit <= MAX_PAGE:
            return error(400, f"limit must be 1..{MAX_PAGE}")
        result = q.get("result")
        if result is not None and result not in RESULTS:
            return error(400, f"result must be one of {', '.join(RESULTS)}")
        calls = self.store.list(
            since=since,
            until=until,
            dialplan=q.get("dialplan"),
            result=result,
            before=before,
            limit=limit + 1,
        )
        more = len(calls) > limit
        calls = calls[:limit]
        cursor = encode_cursor(calls[-1]["offered"], calls[-1]["id"]) if more else None
        return web.json_response({"calls": calls, "next_cursor": cursor}, dumps=_dumps)

    async def _get(self, request: web.Request) -> web.Response:
        record = self.store.get(request.match_info["id"])
        if record is None:
            return error(404, "no such call")
        return web.json_response(record, dumps=_dumps)

    async def _recording(self, request: web.Request) -> web.StreamResponse:
        record = self.store.get(request.match_info["id"], turns=False)
        if record is None:
            return error(404, "no such call")
        path = Path(record["recording"]) if record["recording"] else None
        if path is None or not path.exists():
            return error(404, "this call has no recording (not recorded, or expired)")
        return web.FileResponse(path, headers={"Content-Type": "audio/wav"})

    async def _transcript(self, request: web.Request) -> web.Response:
        record = self.store.get(request.match_info["id"])
        if record is None:
            return error(404, "no such call")
        # From the store, which the file beside the recording was written from (and which a
        # call still in progress has too).
        return web.json_response(transcript_of(record), dumps=_dumps)


def _dumps(obj: object) -> str:
    return json.dumps(obj, allow_nan=False)


def encode_cursor(offered: float, call_id: str) -> str:
    return base64.urlsafe_b64encode(f"{offered!r}|{call_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        offered, _, call_id = raw.partition("|")
        return float(offered), call_id
    except (ValueError, UnicodeDecodeError):
        raise ValueError("cursor is not one this API gave out") from None
