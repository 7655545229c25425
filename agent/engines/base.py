"""What every engine shares: errors with a fix in them, and cooperative cancellation."""

from __future__ import annotations

import threading
import time


class EngineError(RuntimeError):
    """An engine failed; the message says what, and `hint` says how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message}. {hint}" if hint else message)
        self.hint = hint


class ModelError(EngineError):
    """A model file is missing, corrupt or unloadable."""


class EngineTimeout(EngineError):
    """An engine did not answer in time."""


class Preempted(Exception):
    """Background work stopped to let live-call work run; try it again later. Not a failure."""


class CancelToken:
    """Set from any thread; the engine checks it between tokens or chunks and stops.

    An optional deadline turns into `EngineTimeout` at the next check.
    """

    def __init__(self, timeout_s: float | None = None) -> None:
        self._event = threading.Event()
        self._deadline = time.monotonic() + timeout_s if timeout_s else None

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> bool:
        """True when the work should stop; raises EngineTimeout past the deadline."""
        if self._event.is_set():
            return True
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise EngineTimeout("engine timed out")
        return False
