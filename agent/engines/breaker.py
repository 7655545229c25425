"""A circuit breaker per engine: stop calling an engine that keeps failing, probe it later.

closed: calls go through; `failures` failures or timeouts within `window_s` open it.
open: calls fail at once (the caller hears the fallback line without waiting for a timeout);
after `cooldown_s` the next call is let through as a probe (half-open).
half-open: the probe's success closes it, its failure opens it again for another cooldown.

Pure logic with the clock passed in; `agent.dialog.services` owns one per engine.
"""

from __future__ import annotations

import enum
from collections import deque


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(self, failures: int = 3, window_s: float = 30.0, cooldown_s: float = 10.0) -> None:
        self.failures = failures
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.state = BreakerState.CLOSED
        self._recent: deque[float] = deque()  # failure times within the window
        self._opened_at = 0.0
        self._probing = False

    def allow(self, now: float) -> bool:
        """May a call go to the engine now? (In half-open, only one probe at a time.)"""
        if self.state is BreakerState.OPEN and now - self._opened_at >= self.cooldown_s:
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        if self.state is BreakerState.OPEN:
            return False
        if self.state is BreakerState.HALF_OPEN:
            if self._probing:
                return False
            self._probing = True
        return True

    def succeeded(self) -> None:
        self.state = BreakerState.CLOSED
        self._recent.clear()
        self._probing = False

    def failed(self, now: float) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self._open(now)
            return
        self._recent.append(now)
        while self._recent and now - self._recent[0] > self.window_s:
            self._recent.popleft()
        if len(self._recent) >= self.failures:
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = now
        self._probing = False
        self._recent.clear()
