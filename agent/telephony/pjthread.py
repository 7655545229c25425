"""The one thread that owns pjsua2.

pjsua2 wants every calling thread registered, and Python objects that wrap pjsua2 objects
must be gone before `libDestroy()`. Both are easy when one thread does everything: it creates
the library, polls its events, runs the commands the asyncio side submits, and destroys it.
pjsua2 callbacks (incoming call, call state, DTMF) fire on this thread too, because the
library is configured with no worker threads of its own. Only the media clock runs elsewhere,
and it touches nothing but the frame bridges.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger("pjsip")

POLL_MS = 5  # how long one libHandleEvents waits: bounds command latency


class PjsipThread:
    """Runs `setup()` then polls pjsip and executes submitted commands until stopped."""

    def __init__(self, name: str = "pjsip", on_death: Callable[[BaseException], None] | None = None) -> None:
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._stopping = threading.Event()
        self._ready: Future[None] = Future()
        self._setup: Callable[[], None] | None = None
        self._poll: Callable[[int], None] | None = None
        self._teardown: Callable[[], None] | None = None
        self._on_death = on_death  # called on this thread if polling raises (the thread then ends)
        self.died: BaseException | None = None

    def start(
        self, setup: Callable[[], None], poll: Callable[[int], None], teardown: Callable[[], None]
    ) -> Future[None]:
        """Start the thread; the future resolves when `setup` has run (or raised)."""
        self._setup, self._poll, self._teardown = setup, poll, teardown
        self._thread.start()
        return self._ready

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.died is None

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run fn on the pjsip thread (from any thread); its result arrives in the future."""
        future: Future[T] = Future()
        if self._stopping.is_set() and threading.current_thread() is not self._thread:
            future.set_exception(RuntimeError("SIP endpoint is stopped"))
            return future
        self._commands.put((fn, future))
        return future

    async def call(self, fn: Callable[[], T]) -> T:
        """Await fn run on the pjsip thread."""
        return await asyncio.wrap_future(self.submit(fn))

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to tear down and exit; wait for it."""
        self._stopping.set()
        self._thread.join(timeout)

    def _main(self) -> None:
        assert self._setup and self._poll and self._teardown
        try:
            self._setup()
        except BaseException as exc:  # handed to start()'s caller
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            while not self._stopping.is_set():
                self._poll(POLL_MS)
                self._run_commands()
        except BaseException as exc:
            # pjsip can no longer be driven: nothing will answer SIP. Say so loudly; the owner
            # decides (the server stops with an error so that systemd restarts it).
            self.died = exc
            self._stopping.set()
            log.critical("pjsip thread died", error=repr(exc), exc_info=exc)
            if self._on_death is not None:
                self._on_death(exc)
        finally:
            self._run_commands()
            try:
                self._teardown()
            except Exception:
                log.exception("pjsip teardown failed")

    def _run_commands(self) -> None:
        while True:
            try:
                fn, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the submitter
                future.set_exception(exc)
