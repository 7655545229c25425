"""Concurrent-call limit shared by every transport (SIP and WebRTC count together)."""

from __future__ import annotations

import threading


class CallLimiter:
    """A counter of active calls; thread-safe, since SIP decides on its own thread."""

    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self._active = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._active >= self.max_calls:
                return False
            self._active += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._active = max(self._active - 1, 0)

    @property
    def active(self) -> int:
        return self._active
