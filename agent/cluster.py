"""`voice-agent serve` beyond one process's call limit: Kamailio in front of agent workers.

pjsua answers at most 4 calls per process (see agent/telephony/kamailio.py). When
`sip.max_calls` is above `sip.calls_per_process`, the serving process becomes a supervisor:
it starts N workers (each a full `voice-agent serve --worker PORT:CALLS` on 127.0.0.1), waits
until each answers SIP OPTIONS, then starts Kamailio on the public SIP address. A worker that
dies is restarted; SIGTERM stops the workers first (so they can send BYEs through the front),
then Kamailio. With HTTP on, the supervisor serves the API on `http.port` and passes each
request to a worker (agent/clusterhttp.py); workers' own calls go out through Kamailio.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import structlog

from agent.clusterhttp import HttpFront
from agent.config import Config
from agent.errors import StartupError
from agent.telephony import kamailio
from agent.telephony.sipping import sip_ping

log = structlog.get_logger("cluster")


def die_with_parent() -> None:
    """In a child, before exec: get SIGTERM when the supervisor dies, however it dies."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def split_calls(total: int, per_process: int) -> list[int]:
    """Spread `total` calls over as few processes as possible, as evenly as possible."""
    n = math.ceil(total / per_process)
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


class Cluster:
    """Supervises the agent workers and their Kamailio front; restarts whichever dies."""

    def __init__(self, cfg: Config, argv: list[str]) -> None:
        self.cfg = cfg
        self._argv = argv  # --config/--log-* flags, passed on to the workers
        self.shares = split_calls(cfg.sip.max_calls, cfg.sip.calls_per_process)
        first = cfg.sip.worker_port or cfg.sip.port + 1
        self.ports = [first + i for i in range(len(self.shares))]
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._front: subprocess.Popen[bytes] | None = None
        http = cfg.http
        self.http = (
            HttpFront(http.host, http.port, [http.port + 1 + i for i in range(len(self.shares))])
            if http.enabled and http.port
            else None
        )  # with port 0 each worker picks its own and there is no front to find them
        self._stopping = asyncio.Event()

    def _worker_cmd(self, port: int, calls: int) -> list[str]:
        return [sys.executable, "-m", "agent.cli", "serve", *self._argv, "--worker", f"{port}:{calls}"]

    async def _spawn(self, port: int, calls: int) -> None:
        self._procs[port] = await asyncio.create_subprocess_exec(
            *self._worker_cmd(port, calls), stdin=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        log.info("worker started", port=port, max_calls=calls, pid=self._procs[port].pid)

    async def _watch(self, port: int, calls: int) -> None:
        while not self._stopping.is_set():
            code = await self._procs[port].wait()
            if self._stopping.is_set():
                return
            log.error("worker died; restarting", port=port, exit_code=code)
            await asyncio.sleep(1.0)
            await self._spawn(port, calls)

    async def _watch_front(self, config: Path) -> None:
        while not self._stopping.is_set():
            assert self._front is not None
            code = await asyncio.to_thread(self._front.wait)
            if self._stopping.is_set():
                return
            log.error("kamailio died; restarting", exit_code=code)
            await asyncio.sleep(1.0)
            self._front = kamailio.start(config, die_with_parent)

    async def _wait_ready(self, port: int, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stopping.is_set():
            if self._procs[port].returncode is not None:
                raise StartupError(f"agent worker on port {port} exited with {self._procs[port].returncode}")
            if await sip_ping("127.0.0.1", port, 0.5):
                return
            await asyncio.sleep(0.5)
        if not self._stopping.is_set():
            raise StartupError(f"agent worker on port {port} did not answer SIP OPTIONS in {timeout_s:.0f} s")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        log.info("cluster", workers=len(self.shares), calls=self.shares, ports=self.ports)
        watchers = []
        runtime = Path(tempfile.mkdtemp(prefix="voice-agent-kamailio-"))
        try:
            for port, calls in zip(self.ports, self.shares, strict=True):
                await self._spawn(port, calls)
            await asyncio.gather(*(self._wait_ready(p) for p in self.ports))
            if self._stopping.is_set():
                return
            config = kamailio.render_config(self.cfg.sip, self.ports, runtime)
            self._front = kamailio.start(config, die_with_parent)
            watchers = [
                asyncio.ensure_future(self._watch(p, c)) for p, c in zip(self.ports, self.shares, strict=True)
            ]
            watchers.append(asyncio.ensure_future(self._watch_front(config)))
            if self.http is not None:
                await self.http.start()
            log.info(
                "ready",
                sip=f"{self.cfg.sip.host}:{self.cfg.sip.port}",
                http=f"{self.http.host}:{self.http.port}" if self.http else None,
                front="kamailio",
                front_pid=self._front.pid,
                workers=self.ports,
            )
            await self._stopping.wait()
        finally:
            self._stopping.set()
            log.info("stopping")
            if self.http is not None:
                await self.http.stop()
            for proc in self._procs.values():
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            await asyncio.gather(*(_wait(p, 30) for p in self._procs.values()))
            for w in watchers:
                w.cancel()
            if self._front is not None:
                self._front.terminate()
                await asyncio.to_thread(self._front.wait, 10)
            shutil.rmtree(runtime, ignore_errors=True)
            log.info("stopped")


async def _wait(proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
