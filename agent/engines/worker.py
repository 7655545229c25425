"""Run blocking engine work off the event loop: one thread per engine, jobs queue in order.

With 2 cores, STT and LLM each get one worker so they never run two jobs of their own kind
at once; a stalled engine is abandoned at its deadline (its cancel token is set, so it stops
at its next check) and the caller gets `EngineTimeout` instead of waiting forever. If the job
is still running when its deadline passes (an engine hung where it never checks), the worker
is restarted: a fresh thread takes the queued jobs and the stuck one is left behind (a daemon
thread: it cannot keep the process from exiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, cast

import structlog

from agent.engines.base import CancelToken, EngineTimeout

T = TypeVar("T")
_ITEM, _ERROR, _END = range(3)
log = structlog.get_logger("engines")


FOREGROUND, BACKGROUND = 0, 1  # a caller waits on foreground work; background work only fills gaps


class _Job:
    __slots__ = ("fn", "future", "loop", "priority", "started")

    def __init__(
        self,
        fn: Callable[[], Any],
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
        priority: int,
    ):
        self.fn, self.future, self.loop, self.priority = fn, future, loop, priority
        self.started = False


_Item = tuple[int, int, _Job | None]  # (priority, order, job); None stops the thread


class EngineWorker:
    """A single worker thread with an async front; restarted when a job hangs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queued = 0  # jobs submitted and not finished (for metrics)
        self.restarts = 0
        self._jobs: queue.PriorityQueue[_Item] = queue.PriorityQueue()
        self._order = itertools.count()
        self._foreground_open = 0  # foreground jobs queued or running (changed on the loop only)
        self._closed = False
        self._spawn()

    def give_way(self) -> bool:
        """True while foreground work is queued or running: background work should stop now
        (read from any thread)."""
        return self._foreground_open > 0

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        timeout_s: float | None = None,
        priority: int = FOREGROUND,
        **kwargs: Any,
    ) -> T:
        """Run fn(*args, **kwargs) in the worker; EngineTimeout after timeout_s. Cancelling the
        caller drops the job if it has not started (stale work never runs). A BACKGROUND job
        starts only when no foreground job is queued."""
        job = self._submit(functools.partial(fn, *args, **kwargs), priority)
        try:
            return cast(T, await asyncio.wait_for(asyncio.shield(job.future), timeout_s))
        except asyncio.CancelledError:
            if not job.started:
                job.future.cancel()
            raise
        except TimeoutError:
            if job.started and not job.future.done():
                self.restart(f"a job ran past its {timeout_s:.1f} s deadline")
            raise EngineTimeout(f"{self.name} did not answer within {timeout_s:.1f} s") from None

    def stream(
        self,
        make: Callable[[], Iterator[T]],
        cancel: CancelToken,
        timeout_s: float | None = None,
        priority: int = FOREGROUND,
    ) -> EngineStream[T]:
        """Iterate `make()` in the worker; use as `async with worker.stream(...) as items:`.

        Leaving the block (normally, by break, error or task cancellation) sets `cancel`, so
        the engine stops at its next check. `timeout_s` bounds the wait for each item (the
        first one includes queueing): a stalled engine times out, a long healthy one does not.
        """
        return EngineStream(self, make, cancel, timeout_s, priority)

    def restart(self, why: str) -> None:
        """Leave the current thread to its stuck job; a new one takes the queued jobs."""
        old = self._jobs
        self._jobs = queue.PriorityQueue()
        while True:
            try:
                item = old.get_nowait()
            except queue.Empty:
                break
            if item[2] is not None:
                self._jobs.put(item)
        old.put((-1, 0, None))  # if the stuck thread ever comes back, it exits
        self.restarts += 1
        log.error("engine worker restarted", engine=self.name, why=why, restarts=self.restarts)
        self._spawn()

    def _spawn(self) -> None:
        name = f"engine-{self.name}-{self.restarts}"
        threading.Thread(target=self._main, args=(self._jobs,), name=name, daemon=True).start()

    @staticmethod
    def _main(jobs: queue.PriorityQueue[_Item]) -> None:
        while (job := jobs.get()[2]) is not None:
            if job.future.cancelled():
                continue
            job.started = True
            try:
                result = job.fn()
            except BaseException as exc:  # handed to the awaiting side
                _settle(job, None, exc)
            else:
                _settle(job, result, None)

    def _submit(self, fn: Callable[[], Any], priority: int = FOREGROUND) -> _Job:
        if self._closed:
            raise RuntimeError(f"the {self.name} worker is closed")
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop.create_future(), loop, priority)
        self.queued += 1
        if priority == FOREGROUND:
            self._foreground_open += 1
        job.future.add_done_callback(functools.partial(self._done, priority))
        self._jobs.put((priority, next(self._order), job))
        return job

    def _done(self, priority: int, _: object) -> None:
        self.queued -= 1
        if priority == FOREGROUND:
            self._foreground_open -= 1

    def close(self) -> None:
        """Stop accepting jobs; does not wait for a running one."""
        self._closed = True
        self._jobs.put((FOREGROUND, next(self._order), None))


def _settle(job: _Job, result: Any, exc: BaseException | None) -> None:
    """From the worker thread: complete the job's future on its loop."""

    def done() -> None:
        if job.future.done():
            return
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        job.loop.call_soon_threadsafe(done)


class EngineStream(Generic[T]):
    """Items of a blocking iterator, produced in a worker thread, consumed on the loop."""

    def __init__(
        self,
        worker: EngineWorker,
        make: Callable[[], Iterator[T]],
        cancel: CancelToken,
        timeout_s: float | None,
        priority: int = FOREGROUND,
    ) -> None:
        self._worker = worker
        self._priority = priority
        self._make = make
        self.cancel = cancel
        self._timeout_s = timeout_s
        self._queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self._deadline: float | None = None
        self._finished = False
        self._job: _Job | None = None

    async def __aenter__(self) -> EngineStream[T]:
        loop = asyncio.get_running_loop()

        def put(kind: int, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
            except RuntimeError:  # loop closed: nobody is listening any more
                self.cancel.cancel()

        def pump() -> None:
            try:
                for item in self._make():
                    put(_ITEM, item)
                    if self.cancel.cancelled:
                        break
            except BaseException as exc:  # handed to the awaiting side
                put(_ERROR, exc)
            finally:
                put(_END, None)

        if self._timeout_s:
            self._deadline = time.monotonic() + self._timeout_s
        self._job = self._worker._submit(pump, self._priority)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel.cancel()

    def __aiter__(self) -> EngineStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._finished:
            raise StopAsyncIteration
        left = None if self._deadline is None else max(self._deadline - time.monotonic(), 0.0)
        try:
            kind, value = await asyncio.wait_for(self._queue.get(), left)
        except TimeoutError:
            self.cancel.cancel()
            if self._job is not None and self._job.started and not self._job.future.done():
                self._worker.restart(f"a stream gave nothing for {self._timeout_s:.1f} s")
            raise EngineTimeout(f"{self._worker.name} produced nothing for {self._timeout_s:.1f} s") from None
        if kind == _ITEM:
            if self._timeout_s:
                self._deadline = time.monotonic() + self._timeout_s
            return cast(T, value)
        self._finished = True
        if kind == _ERROR:
            raise value
        raise StopAsyncIteration
