"""Wires config -> engines -> (transports, sessions: later issues) and owns start/stop."""

from __future__ import annotations

import asyncio
import signal

import structlog

from agent.config import Config
from agent.engines.factory import Engines, load_engines, peak_rss_mb

log = structlog.get_logger("server")


class Server:
    """The agent process: loads the engines once, runs until SIGINT/SIGTERM."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.engines: Engines | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        loading = asyncio.ensure_future(
            asyncio.to_thread(load_engines, self.cfg, lambda m: log.info("engines", step=m))
        )
        stop_wait = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({loading, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if loading.done():
            self.engines = loading.result()  # raises an engine's load error here
            log.info(
                "ready",
                vad=self.engines.vad.name,
                stt=self.engines.stt.name,
                llm=self.engines.llm.name,
                tts=self.engines.tts.name,
                peak_rss_mb=round(peak_rss_mb()),
            )
            await stop_wait
        else:
            log.info("stopping while engines load")
        log.info("stopped")
