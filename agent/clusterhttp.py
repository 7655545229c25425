"""The cluster supervisor's HTTP front: the agent's HTTP API on `http.port`, carried by the
workers (each serves its own on `http.port + 1 + i`).

Requests go to the workers in turn. An outgoing call (POST /v1/calls) that a worker cannot
take (503: its lines are busy) goes on to the next one, so calls spread over the cluster; all
workers share the store, so any of them answers the rest. A worker that does not answer is
skipped the same way.
"""

from __future__ import annotations

import itertools

import aiohttp
import structlog
from aiohttp import web

log = structlog.get_logger("cluster")

MAX_BODY = 21 * 1024 * 1024  # a speech upload's limit, and a little
HOP_HEADERS = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


class HttpFront:
    def __init__(self, host: str, port: int, worker_ports: list[int]) -> None:
        self.host, self.port, self.workers = host, port, worker_ports
        self._turn = itertools.count()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("http front listening", address=f"{self.host}:{self.port}", workers=self.workers)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        spread = request.method == "POST" and request.path == "/v1/calls"
        first = next(self._turn) % len(self.workers)
        order = self.workers[first:] + self.workers[:first]
        last: web.Response | None = None
        for port in order:
            url = f"http://127.0.0.1:{port}{request.path_qs}"
            try:
                async with self._http.request(request.method, url, headers=headers, data=body) as r:
                    out = {k: v for k, v in r.headers.items() if k.lower() not in HOP_HEADERS}
                    last = web.Response(status=r.status, body=await r.read(), headers=out)
            except aiohttp.ClientError as exc:
                log.warning("worker http not answering", port=port, error=str(exc))
                continue
            if not (spread and last.status == 503):
                return last
        return last or web.json_response({"error": "no agent worker answers"}, status=503,
                                         headers={"Retry-After": "5"})  # fmt: skip
