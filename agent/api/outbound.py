"""POST /v1/calls (scope calls:write): place an outgoing call. 202 with its id at once; its
progress comes as webhooks (call.started, call.ringing, call.answered with `answered_by`,
call.ended with the result) and from GET /v1/calls/{id}.

Body: {"to": "sip:...", "dialplan": "NAME", "variables": {"first_name": "Maria"}, "amd": true}
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from agent.api.keys import API_KEY, ApiKeys, error
from agent.telephony.admission import TokenBucket

MAX_BODY = 16 * 1024
URI = re.compile(r"^(sips?|tel):[^\s<>\"]{1,250}$")
VALUE = re.compile(r"^[^\x00-\x1f{}]{0,200}$")  # a variable's value: one line, no placeholders


@dataclass(frozen=True)
class CallRequest:
    to: str
    dialplan: str
    variables: dict[str, str] = field(default_factory=dict)
    amd: bool = True


class RequestRejected(ValueError):
    """The request names something that does not fit (an unknown dialplan, a missing variable)."""


class NoCapacity(Exception):
    """No line for another outgoing call right now (try again later: 503)."""


Placer = Callable[[CallRequest], str]  # validates, starts the call, returns the call's id


def parse_request(body: object) -> CallRequest:
    """The request's fields, checked for type and form (what they name is the placer's to check)."""
    if not isinstance(body, dict):
        raise RequestRejected("the body must be a JSON object")
    if unknown := sorted(set(body) - {"to", "dialplan", "variables", "amd"}):
        raise RequestRejected(f"unknown field {unknown[0]!r}")
    to, plan, variables, amd = (
        body.get("to"),
        body.get("dialplan"),
        body.get("variables", {}),
        body.get("amd", True),
    )
    if not isinstance(to, str) or not URI.match(to):
        raise RequestRejected("`to` must be a sip:, sips: or tel: URI")
    if not isinstance(plan, str) or not plan:
        raise RequestRejected("`dialplan` must name a dialplan")
    if not isinstance(variables, dict):
        raise RequestRejected("`variables` must be an object of names to values")
    values: dict[str, str] = {}
    for name, value in variables.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float) or not VALUE.match(str(value)):
            raise RequestRejected(f"variable {name!r}: a short one-line text or number")
        values[str(name)] = str(value)
    if not isinstance(amd, bool):
        raise RequestRejected("`amd` must be true or false")
    return CallRequest(to, plan, values, amd)


class OutboundApi:
    """The route; each key may place `calls_per_minute` calls (429 with Retry-After past it)."""

    def __init__(self, keys: ApiKeys, place: Placer, calls_per_minute: float) -> None:
        self.keys = keys
        self.place = place
        self.rate = calls_per_minute / 60
        self._buckets: dict[str, TokenBucket] = {}  # by key name (the configured keys: bounded)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/calls", self._post)]

    async def _post(self, request: web.Request) -> web.Response:
        if (denied := self.keys.check(request, "calls:write")) is not None:
            return denied
        if request.content_length is not None and request.content_length > MAX_BODY:
            return error(413, f"the body is limited to {MAX_BODY} bytes")
        bucket = self._buckets.setdefault(request[API_KEY], TokenBucket(self.rate, max(1.0, self.rate * 60)))
        if not bucket.take(time.monotonic()):
            return error(429, "too many calls for this key", **{"Retry-After": str(int(bucket.wait_s()) + 1)})
        try:
            raw = await request.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                return error(413, f"the body is limited to {MAX_BODY} bytes")
            call_id = self.place(parse_request(json.loads(raw or b"null")))
        except (ValueError, UnicodeDecodeError) as exc:  # RequestRejected, or not JSON
            return error(400, str(exc) if isinstance(exc, RequestRejected) else "the body is not JSON")
        except NoCapacity as exc:
            return error(503, str(exc), **{"Retry-After": "10"})
        return web.json_response(
            {"id": call_id, "status": "queued"}, status=202, headers={"Location": f"/v1/calls/{call_id}"}
        )
