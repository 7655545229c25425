"""Run blocking engine work off the event loop: one thread per engine, jobs queue in order.

With 2 cores, STT and LLM each get one worker so they never run two jobs of their own kind
at once; a stalled engine is abandoned at its deadline (its cancel token is set, so it stops
at its next check) and the caller gets `EngineTimeout` instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar, cast

from agent.engines.base import CancelToken, EngineTimeout

T = TypeVar("T")
_ITEM, _ERROR, _END = range(3)


class EngineWorker:
    """A single worker thread with an async front."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{name}")
        self.queued = 0  # jobs submitted and not finished (for metrics)

    async def run(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None, **kwargs: Any) -> T:
        """Run fn(*args, **kwargs) in the worker; EngineTimeout after timeout_s."""
        future = self._submit(functools.partial(fn, *args, **kwargs))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise EngineTimeout(f"{self.name} did not answer within {timeout_s:.1f} s") from None

    def stream(
        self, make: Callable[[], Iterator[T]], cancel: CancelToken, timeout_s: float | None = None
    ) -> EngineStream[T]:
        """Iterate `make()` in the worker; use as `async with worker.stream(...) as items:`.

        Leaving the block (normally, by break, error or task cancellation) sets `cancel`, so
        the engine stops at its next check. `timeout_s` bounds the wait for each item (the
        first one includes queueing): a stalled engine times out, a long healthy one does not.
        """
        return EngineStream(self, make, cancel, timeout_s)

    def _submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        self.queued += 1
        future = asyncio.get_running_loop().run_in_executor(self._pool, fn)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: object) -> None:
        self.queued -= 1

    def close(self) -> None:
        """Stop accepting jobs; does not wait for a running one."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class EngineStream(Generic[T]):
    """Items of a blocking iterator, produced in a worker thread, consumed on the loop."""

    def __init__(
        self,
        worker: EngineWorker,
        make: Callable[[], Iterator[T]],
        cancel: CancelToken,
        timeout_s: float | None,
    ) -> None:
        self._worker = worker
        self._make = make
        self.cancel = cancel
        self._timeout_s = timeout_s
        self._queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self._deadline: float | None = None
        self._finished = False

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
        self._worker._submit(pump)
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
            raise EngineTimeout(f"{self._worker.name} produced nothing for {self._timeout_s:.1f} s") from None
        if kind == _ITEM:
            if self._timeout_s:
                self._deadline = time.monotonic() + self._timeout_s
            return cast(T, value)
        self._finished = True
        if kind == _ERROR:
            raise value
        raise StopAsyncIteration
