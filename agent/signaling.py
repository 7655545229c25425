"""WebRTC signaling over plain HTTP: POST /v1/webrtc/offer with the browser's SDP offer, get the
answer back. Bad requests get a status and a message the widget can show; nothing reaches
aiortc unchecked. Cross-origin pages are refused unless their origin is configured."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from agent.config import WebRtcConfig
from agent.telephony.webrtc import OfferError, WebRtcGateway

log = structlog.get_logger("signaling")
OFFER_PATH = "/v1/webrtc/offer"
_USER = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")


class Signaling:
    def __init__(self, cfg: WebRtcConfig, gateway: WebRtcGateway) -> None:
        self.cfg = cfg
        self.gateway = gateway

    def routes(self) -> list[web.RouteDef]:
        return [web.post(OFFER_PATH, self.offer), web.options(OFFER_PATH, self.preflight)]

    def _cors(self, request: web.Request) -> dict[str, str] | None:
        """Headers for an allowed request; None when its origin is not allowed."""
        origin = request.headers.get("Origin")
        # Same origin by host: behind a TLS proxy the page is https while we see http.
        if origin is None or urlsplit(origin).netloc == request.host:
            return {}  # same origin (or not a browser): no CORS needed
        if "*" in self.cfg.cors_origins or origin in self.cfg.cors_origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return None

    async def preflight(self, request: web.Request) -> web.Response:
        headers = self._cors(request)
        if headers is None:
            return _error(403, "this origin may not call the agent (webrtc.cors_origins)")
        headers |= {"Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": "Content-Type",
                    "Access-Control-Max-Age": "600"}  # fmt: skip
        return web.Response(status=204, headers=headers)

    async def offer(self, request: web.Request) -> web.Response:
        headers = self._cors(request)
        if headers is None:
            return _error(403, "this origin may not call the agent (webrtc.cors_origins)")
        limit = self.cfg.max_offer_bytes
        if (request.content_length or 0) > limit:
            return _error(413, f"the offer is larger than {limit} bytes", headers)
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return _error(413, f"the offer is larger than {limit} bytes", headers)
        try:
            sdp, to_user = _parse(body, self.cfg.to_user)
        except ValueError as exc:
            return _error(400, str(exc), headers)
        remote = request.remote or ""
        try:
            answer = await self.gateway.answer(sdp, to_user, remote)
        except OfferError as exc:
            log.info("webrtc offer refused", status=exc.status, reason=str(exc), remote=remote)
            return _error(exc.status, str(exc), headers)
        reply = {"type": "answer", "sdp": answer.sdp, "call_id": answer.call_id}
        return web.json_response(reply, headers=headers)


def _parse(body: bytes, default_user: str) -> tuple[str, str]:
    """The offer's SDP and called user from the JSON body; ValueError says what is wrong."""
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("type") != "offer" or not isinstance(data.get("sdp"), str):
        raise ValueError('expected {"type": "offer", "sdp": "..."}')
    sdp: str = data["sdp"]
    if not sdp.startswith("v=0") or "\nm=audio " not in sdp.replace("\r\n", "\n"):
        raise ValueError("the SDP offer must start with v=0 and have an audio m= line")
    to_user = data.get("to") or default_user
    if not isinstance(to_user, str) or not _USER.match(to_user):
        raise ValueError("'to' must be 1-64 letters, digits or _.+-")
    return sdp, to_user


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or {})
