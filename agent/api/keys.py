"""API keys: `Authorization: Bearer KEY` (or `X-API-Key: KEY`), checked against SHA-256 hashes
in the config, with scopes.

A key is 32 random bytes, so a plain SHA-256 is enough (no password stretching needed: it
cannot be guessed from its hash). Every configured hash is compared, in constant time, so the
answer's timing says nothing about which keys exist. No key: 401; a key without the scope: 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from collections.abc import Sequence

from aiohttp import web

from agent.config import SCOPES, ApiKeyConfig

API_KEY = web.RequestKey("api_key", str)  # the name of the key a request was let in with
PREFIX = "va_"  # makes a leaked key easy to recognise (secret scanners, logs)


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key") or None


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class ApiKeys:
    """The configured keys; `check` says whether a request may use a scope."""

    def __init__(self, keys: Sequence[ApiKeyConfig]) -> None:
        self._keys = [(bytes.fromhex(k.sha256), k) for k in keys]

    def find(self, key: str) -> ApiKeyConfig | None:
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for stored, cfg in self._keys:  # all of them, whatever matches: constant time
            if hmac.compare_digest(stored, digest):
                found = cfg
        return found

    def check(self, request: web.Request, scope: str) -> web.Response | None:
        """None if the request may go on; else the 401/403 answer to give."""
        key = presented_key(request)
        found = self.find(key) if key is not None else None
        if found is None:
            return error(
                401, "a valid API key is required", **{"WWW-Authenticate": 'Bearer realm="voice-agent"'}
            )
        if scope not in found.scopes:
            return error(403, f"this key lacks the {scope!r} scope")
        request[API_KEY] = found.name
        return None


def create_command(name: str, scopes: str) -> int:
    """`voice-agent keys create`: the key goes to the terminal once; only its hash is kept."""
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    if not wanted or any(s not in SCOPES for s in wanted):
        print(f"voice-agent: scopes are {', '.join(SCOPES)}", file=sys.stderr)
        return 2
    try:
        ApiKeyConfig(name=name, sha256="0" * 64, scopes=wanted)
    except ValueError:
        print("voice-agent: a key name is 1-64 letters, digits, _ . -", file=sys.stderr)
        return 2
    key = new_key()
    print(f"API key (shown once, keep it secret): {key}\n")
    print("Add to the config's api.keys, then restart:\n")
    print(f"  - name: {name}\n    sha256: {hash_key(key)}\n    scopes: [{', '.join(wanted)}]")
    return 0
