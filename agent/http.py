"""The agent's HTTP side: health, readiness, Prometheus metrics, the web widget's files, and
whatever routes other parts add (WebRTC signaling)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from agent.api import openapi
from agent.httpguard import ConnectionGuard, hardened
from agent.metrics import Metrics

log = structlog.get_logger("http")
Readiness = Callable[[], tuple[bool, dict[str, Any]]]
WEB = Path(__file__).parent / "web"  # the widget and its demo page


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        readiness: Readiness,
        guard: ConnectionGuard | None = None,
        keepalive_timeout_s: float = 15.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._tls = tls
        self._metrics = metrics
        self._readiness = readiness
        self.guard = guard or ConnectionGuard()
        self._keepalive_s = keepalive_timeout_s
        self.app = web.Application(client_max_size=64 * 1024, middlewares=[hardened])
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics_handler)
        self.app.router.add_get("/openapi.json", self._openapi)
        self.app.router.add_get("/docs", self._docs)
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None

    def add_routes(self, routes: list[web.RouteDef]) -> None:
        """More endpoints; before start()."""
        self.app.router.add_routes(routes)

    def serve_widget(self) -> None:
        """The demo page at / and the widget's files beside it."""
        self.app.router.add_get("/", self._index)
        self.app.router.add_static("/widget/", WEB)

    async def _index(self, _: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB / "index.html")

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=self._keepalive_s)
        await self._runner.setup()
        # Our own listener rather than aiohttp's TCPSite: each connection goes through the guard.
        server = self._runner.server
        assert server is not None
        self._listener = await asyncio.get_running_loop().create_server(
            lambda: self.guard.protocol(server()), self.host, self.port, ssl=self._tls
        )
        if self.port == 0:  # report the port the OS chose
            self.port = self._listener.sockets[0].getsockname()[1]
        log.info(
            "http listening",
            address=f"{'https' if self._tls else 'http'}://{self.host}:{self.port}",
            endpoints=sorted({r.resource.canonical for r in self.app.router.routes() if r.resource}),
        )

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _openapi(self, _: web.Request) -> web.Response:
        return web.json_response(openapi.document())

    async def _docs(self, _: web.Request) -> web.Response:
        return web.Response(text=openapi.html(openapi.document()), content_type="text/html")

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _: web.Request) -> web.Response:
        ready, details = self._readiness()
        return web.json_response({"ready": ready, **details}, status=200 if ready else 503)

    async def _metrics_handler(self, _: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": self._metrics.content_type})
