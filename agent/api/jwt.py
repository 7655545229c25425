"""HS256 JSON Web Tokens, the small part we need: sign claims, and check a token's signature,
algorithm and times (`exp` required). No other algorithm is accepted (no "none")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


def encode(claims: dict[str, Any], secret: bytes) -> str:
    head = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{head}.{_b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())}"


def decode(token: str, secret: bytes, now: float, leeway_s: float = 30.0) -> dict[str, Any] | None:
    """The claims of a valid, current token signed with `secret`; None for anything else."""
    try:
        head, body, sig = token.split(".")
        header, claims = json.loads(_unb64(head)), json.loads(_unb64(body))
        expected = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        if header.get("alg") != "HS256" or not hmac.compare_digest(expected, _unb64(sig)):
            return None
        if (
            not isinstance(claims, dict)
            or not isinstance(claims.get("exp"), int | float)
            or claims["exp"] <= now
        ):
            return None
        if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now + leeway_s:
            return None
        return claims
    except (ValueError, TypeError, AttributeError):
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
