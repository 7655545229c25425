"""API keys: `Authorization: Bearer KEY` (or `X-API-Key: KEY`), checked against SHA-256 hashes
in the config, with scopes.

A key is 32 random bytes, so a plain SHA-256 is enough (no password stretching needed: it
cannot be guessed from its hash). Every configured hash is compared, in constant time, so the
answer's timing says nothing about which keys exist. No key: 401; a key without the scope: 403.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from aiohttp import web

from agent.api import jwt
from agent.api.keystore import KeyStore, hash_key, new_key
from agent.config import SCOPES, ApiKeyConfig
from agent.telephony.admission import TokenBucket

__all__ = ["API_KEY", "ApiKeys", "error", "hash_key", "new_key", "presented_key", "verify_jwt"]
API_KEY = web.RequestKey("api_key", str)  # the name of the key a request was let in with


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key") or None


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class ApiKeys:
    """The keys of the config and of the store (`voice-agent keys`), and optionally JWTs;
    `check` says whether a request may use a scope, and keeps each key to its rate."""

    def __init__(
        self,
        keys: Sequence[ApiKeyConfig],
        store: KeyStore | None = None,
        requests_per_minute: float = 600.0,
        jwt_secret: str | None = None,
    ) -> None:
        self._keys = [(bytes.fromhex(k.sha256), k) for k in keys]
        self._store = store
        self._rate = requests_per_minute / 60
        self._buckets: dict[str, TokenBucket] = {}
        self._jwt_secret = jwt_secret.encode() if jwt_secret else None

    def find(self, key: str) -> ApiKeyConfig | None:
        digest = hashlib.sha256(key.encode()).digest()
        stored = [(bytes.fromhex(k.sha256), k) for k in self._store.active()] if self._store else []
        found = None
        for known, cfg in [*self._keys, *stored]:  # all of them, whatever matches: constant time
            if hmac.compare_digest(known, digest):
                found = cfg
        return found

    def check(self, request: web.Request, scope: str) -> web.Response | None:
        """None if the request may go on; else the 401/403/429 answer to give."""
        key = presented_key(request)
        found: ApiKeyConfig | None = None
        if key is not None:
            found = verify_jwt(key, self._jwt_secret, time.time()) if key.count(".") == 2 else self.find(key)
        if found is None:
            return error(
                401, "a valid API key is required", **{"WWW-Authenticate": 'Bearer realm="voice-agent"'}
            )
        if scope not in found.scopes:
            return error(403, f"this key lacks the {scope!r} scope")
        bucket = self._buckets.setdefault(found.name, TokenBucket(self._rate, max(10.0, self._rate * 10)))
        if not bucket.take(time.monotonic()):
            return error(
                429, "too many requests for this key", **{"Retry-After": str(int(bucket.wait_s()) + 1)}
            )
        request[API_KEY] = found.name
        return None


def verify_jwt(token: str, secret: bytes | None, now: float) -> ApiKeyConfig | None:
    """An HS256 JWT signed with `secret`, unexpired (`exp` is required), as a key named
    `jwt:<sub>` with the scopes of its `scope` claim (space-separated). None if not valid."""
    claims = jwt.decode(token, secret, now) if secret is not None else None
    if claims is None:
        return None
    scopes = [s for s in str(claims.get("scope", "")).split() if s in SCOPES]
    name = f"jwt:{str(claims.get('sub', 'anonymous'))[:40]}"
    return ApiKeyConfig.model_construct(name=name, sha256="", scopes=scopes) if scopes else None  # type: ignore[arg-type]
