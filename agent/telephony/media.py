"""Moving 20 ms audio frames between a transport's media thread and the asyncio loop.

Inbound: the media thread calls `push_inbound` (never blocks: one `call_soon_threadsafe`),
frames land in a bounded queue on the loop; when the consumer falls behind the oldest frame
is dropped and counted, so latency cannot grow without bound.
Outbound: `play` (loop) resamples and cuts audio into frames in a deque; the media thread's clock
pulls one frame per tick with `pull_outbound` (silence when empty). deque append/popleft/clear
are atomic in CPython, so neither side takes a lock and `flush` takes effect at the next tick.
A piece of audio may carry callbacks for its first and last frame: when the clock pulls that
frame, the callback is scheduled on the loop, so the output side raises events ("this chunk
started playing", "it has all gone out") instead of being polled.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextvars import Context, copy_context
from typing import Protocol

import numpy as np

from agent.audio.resample import resample


class IntervalStats:
    """Running statistics of the time between ticks of a 20 ms clock (its jitter)."""

    __slots__ = ("_last", "count", "max_s", "total_s", "total_sq")

    def __init__(self) -> None:
        self._last = 0.0
        self.count = 0  # intervals seen
        self.total_s = 0.0
        self.total_sq = 0.0
        self.max_s = 0.0

    def tick(self) -> None:
        now = time.perf_counter()
        if self._last:
            dt = now - self._last
            self.count += 1
            self.total_s += dt
            self.total_sq += dt * dt
            self.max_s = max(self.max_s, dt)
        self._last = now

    @property
    def mean_s(self) -> float:
        return self.total_s / self.count if self.count else 0.0

    @property
    def std_s(self) -> float:
        if self.count < 2:
            return 0.0
        return math.sqrt(max(self.total_sq / self.count - self.mean_s**2, 0.0))


class MediaTap(Protocol):
    """Sees every frame of a call as the transport's media clock moves it (a recording).
    Called on the media thread: must return at once and never raise."""

    def caller(self, frame: bytes) -> None:
        """A caller frame, as received (before the loop could drop it)."""

    def agent(self, frame: bytes | None) -> None:
        """An agent frame, as sent; None when silence went out."""


class FrameBridge:
    """Both directions of one call's audio at one rate (16 kHz for our transports)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        rate: int = 16000,
        frame_ms: int = 20,
        max_inbound_frames: int = 50,
    ) -> None:
        self.rate = rate
        self.frame_samples = rate * frame_ms // 1000
        self._loop = loop
        self._inbound: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._max_inbound = max_inbound_frames
        self._outbound: deque[tuple[bytes, tuple[Callable[[], None], ...], Context | None]] = deque()
        self._closed = False
        self._held = False  # output paused: the clock sends silence, the queue waits
        self.inbound_dropped = 0  # frames lost because the consumer was too slow
        self.samples_sent = 0
        self.send_clock = IntervalStats()  # transport pulls (its media clock)
        self.receive_clock = IntervalStats()  # caller frames reaching the loop
        self.tap: MediaTap | None = None

    # --- media thread side -------------------------------------------------------------
    def push_inbound(self, frame: bytes) -> None:
        """A caller frame arrived (any thread). Never blocks."""
        if self._closed:
            return
        if (tap := self.tap) is not None:
            tap.caller(frame)
        try:
            self._loop.call_soon_threadsafe(self._deliver, frame)
        except RuntimeError:  # loop already closed during shutdown
            self._closed = True

    def pull_outbound(self) -> bytes | None:
        """The next agent frame for the wire, or None for silence (any thread)."""
        self.send_clock.tick()
        frame = self._next_outbound()
        if (tap := self.tap) is not None:
            tap.agent(frame)
        return frame

    def _next_outbound(self) -> bytes | None:
        if self._held:
            return None
        try:
            frame, marks, context = self._outbound.popleft()
        except IndexError:
            return None
        self.samples_sent += len(frame) // 2
        for mark in marks:
            self._call_on_loop(mark, context)
        return frame

    def _call_on_loop(self, fn: Callable[[], None], context: Context | None) -> None:
        try:
            # In the context play() was called in (the call's log context), not this thread's.
            self._loop.call_soon_threadsafe(fn, context=context)
        except RuntimeError:  # loop already closed during shutdown
            self._closed = True

    # --- loop side -----------------------------------------------------------------------
    def _deliver(self, frame: bytes | None) -> None:
        if frame is not None and self._inbound.qsize() >= self._max_inbound:
            self._inbound.get_nowait()
            self.inbound_dropped += 1
        self._inbound.put_nowait(frame)

    async def frames(self) -> AsyncIterator[np.ndarray]:
        """Caller frames as int16 arrays, until the call ends."""
        while True:
            frame = await self._inbound.get()
            if frame is None:
                self._inbound.put_nowait(None)  # a second reader ends too
                return
            self.receive_clock.tick()
            yield np.frombuffer(frame, dtype=np.int16)

    def play(
        self,
        pcm: np.ndarray,
        rate: int,
        on_start: Callable[[], None] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> int:
        """Queue one piece of int16 mono audio at any rate (a frame, a sentence).

        The piece is resampled as a whole and zero-padded to whole frames, so nothing of it
        lingers in a filter or a partial frame when the agent stops talking. `on_start` and
        `on_end` run on the loop once its first / last frame has been handed to the transport
        (never, if it is flushed first). Returns the samples queued (at the bridge's rate).
        """
        if self._closed or not len(pcm):
            return 0
        if rate != self.rate:
            pcm = resample(np.asarray(pcm, dtype=np.int16), rate, self.rate)
        n = self.frame_samples
        tail = -len(pcm) % n
        if tail:
            pcm = np.concatenate([pcm, np.zeros(tail, dtype=np.int16)])
        data = np.ascontiguousarray(pcm, dtype=np.int16).tobytes()
        step = 2 * n
        frames = [data[i : i + step] for i in range(0, len(data), step)]
        marks: list[list[Callable[[], None]]] = [[] for _ in frames]
        if on_start is not None:
            marks[0].append(on_start)
        if on_end is not None:
            marks[-1].append(on_end)
        context = copy_context() if on_start or on_end else None
        self._outbound.extend((f, tuple(m), context) for f, m in zip(frames, marks, strict=True))
        return len(pcm)

    def flush(self) -> int:
        """Drop everything not yet sent (and end a hold); returns the samples dropped."""
        dropped = self.samples_queued
        self._outbound.clear()
        self._held = False
        return dropped

    def hold(self, on: bool) -> None:
        """Pause the output where it is (silence goes out, nothing is dropped), or go on."""
        self._held = on

    @property
    def samples_queued(self) -> int:
        return len(self._outbound) * self.frame_samples

    def close(self) -> None:
        """The call ended: frames() finishes, play() is ignored."""
        if not self._closed:
            self._closed = True
            self._outbound.clear()
            self._inbound.put_nowait(None)
