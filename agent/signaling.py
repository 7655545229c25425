"""WebRTC signaling over plain HTTP: POST /v1/webrtc/offer with the browser's SDP offer, get the
answer back. Bad requests get a status and a message the widget can show; nothing reaches
aiortc unchecked. Cross-origin pages are refused unless their origin is configured.

With `webrtc.require_token`, an offer must carry a short-lived token: the site's backend mints
one per visitor with POST /v1/webrtc/token (a calls:write key), or signs the same HS256 JWT
itself with `token_secret` (aud "webrtc", exp, optionally `to`). Each token is taken once."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from agent.api import jwt
from agent.api.keys import ApiKeys
from agent.config import WebRtcConfig
from agent.telephony.webrtc import OfferError, WebRtcGateway

log = structlog.get_logger("signaling")
OFFER_PATH = "/v1/webrtc/offer"
TOKEN_PATH = "/v1/webrtc/token"
_USER = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")


class Signaling:
    def __init__(self, cfg: WebRtcConfig, gateway: WebRtcGateway, keys: ApiKeys | None = None) -> None:
        self.cfg = cfg
        self.gateway = gateway
        self.keys = keys
        self._secret = cfg.token_secret.encode() if cfg.token_secret else None
        self._used: dict[str, float] = {}  # token id -> its expiry: each token is taken once

    def routes(self) -> list[web.RouteDef]:
        routes = [web.post(OFFER_PATH, self.offer), web.options(OFFER_PATH, self.preflight)]
        if self._secret is not None and self.keys is not None:
            routes.append(web.post(TOKEN_PATH, self.token))
        return routes

    async def token(self, request: web.Request) -> web.Response:
        """A token for one web call (to the user in `?to=`, if given), for the site's backend."""
        assert self.keys is not None and self._secret is not None
        if (denied := self.keys.check(request, "calls:write")) is not None:
            return denied
        to = request.query.get("to", "")
        if to and not _USER.match(to):
            return _error(400, "'to' must be 1-64 letters, digits or _.+-")
        exp = int(time.time() + self.cfg.token_ttl_s)
        claims = {"aud": "webrtc", "exp": exp, "jti": secrets.token_urlsafe(12), **({"to": to} if to else {})}
        return web.json_response(
            {"token": jwt.encode(claims, self._secret), "expires_in": self.cfg.token_ttl_s}
        )

    def _token_ok(self, token: object, to_user: str) -> bool:
        if self._secret is None or not isinstance(token, str):
            return False
        now = time.time()
        claims = jwt.decode(token, self._secret, now)
        if claims is None or claims.get("aud") != "webrtc" or claims.get("to", to_user) != to_user:
            return False
        self._used = {k: v for k, v in self._used.items() if v > now}  # forget expired ones
        jti = str(claims.get("jti") or token)
        if jti in self._used:
            return False
        self._used[jti] = float(claims["exp"])
        return True

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
            sdp, to_user, token = _parse(body, self.cfg.to_user)
        except ValueError as exc:
            return _error(400, str(exc), headers)
        if self.cfg.require_token and not self._token_ok(token, to_user):
            return _error(401, "a valid call token is required (webrtc.require_token)", headers)
        remote = request.remote or ""
        try:
            answer = await self.gateway.answer(sdp, to_user, remote)
        except OfferError as exc:
            log.info("webrtc offer refused", status=exc.status, reason=str(exc), remote=remote)
            return _error(exc.status, str(exc), headers)
        reply = {"type": "answer", "sdp": answer.sdp, "call_id": answer.call_id}
        return web.json_response(reply, headers=headers)


def _parse(body: bytes, default_user: str) -> tuple[str, str, object]:
    """The offer's SDP, called user and token from the JSON body; ValueError says what is wrong."""
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
    return sdp, to_user, data.get("token")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or {})
