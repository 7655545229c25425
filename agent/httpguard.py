"""What keeps the HTTP server standing on an open network: a cap on each source's open
connections, a deadline for a connection's first request headers (slowloris), security headers
on every response, and a plain JSON 500 (logged here) instead of a stack trace."""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from agent.errors import StartupError

log = structlog.get_logger("http")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "no-referrer",
    # The widget needs the microphone on its own page; nothing else here does.
    "Permissions-Policy": "camera=(), geolocation=(), microphone=(self)",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def hardened(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every answer; an unexpected error is a JSON 500, never a trace."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # 404, 405, 413, ...: aiohttp's own, with our headers
        exc.headers.update(SECURITY_HEADERS)
        raise
    except Exception:
        log.exception("http handler failed", method=request.method, path=request.path)
        response = web.json_response({"error": "internal error"}, status=500)
    if not response.prepared:  # a stream or WebSocket has sent its headers already
        response.headers.update(SECURITY_HEADERS)
        if request.secure:  # served over HTTPS: browsers keep to it
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        if request.path.startswith("/v1/"):
            response.headers.setdefault("Cache-Control", "no-store")
    return response


def server_tls(cert: str, key: str) -> ssl.SSLContext:
    """A server's TLS context: TLS 1.2 or newer, the certificate chain and key from PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise StartupError(f"http.tls: cannot use {cert} with {key}: {exc}") from exc
    return context


@dataclass
class ConnectionGuard:
    """Counts open connections per source address and wraps each connection's protocol."""

    max_per_source: int = 64
    header_timeout_s: float = 10.0
    on_close: Callable[[str], None] | None = None  # told "too_many" or "slow_headers"

    def __post_init__(self) -> None:
        self._open: Counter[str] = Counter()

    def closed(self, reason: str, source: str) -> None:
        log.warning("http connection closed by the guard", reason=reason, source=source)
        if self.on_close is not None:
            self.on_close(reason)

    def protocol(self, inner: asyncio.Protocol) -> asyncio.Protocol:
        return _Guarded(inner, self)

    def admit(self, source: str) -> bool:
        if self._open[source] >= self.max_per_source:
            self.closed("too_many", source)
            return False
        self._open[source] += 1
        return True

    def release(self, source: str) -> None:
        self._open[source] -= 1
        if self._open[source] <= 0:
            del self._open[source]


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the guard's admission and header deadline.
    Only the first request's headers are timed: a keep-alive connection has shown it is a
    client by then, and the per-source cap bounds what any source can hold."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._source: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen, to find the headers' end across reads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if peer else "?"
        if not self._guard.admit(source):
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return
        self._source = source
        self._deadline = asyncio.get_running_loop().call_later(
            self._guard.header_timeout_s, self._too_slow, transport
        )
        self._inner.connection_made(transport)

    def _too_slow(self, transport: asyncio.BaseTransport) -> None:
        self._guard.closed("slow_headers", str(self._source))
        assert isinstance(transport, asyncio.Transport)
        transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            self._tail = (self._tail + data)[-(len(data) + 3) :]
            if b"\r\n\r\n" in self._tail:
                self._deadline.cancel()
                self._deadline, self._tail = None, b""
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._source is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._source is None:  # refused at the door: aiohttp never saw it
            return
        if self._deadline is not None:
            self._deadline.cancel()
        self._guard.release(self._source)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
