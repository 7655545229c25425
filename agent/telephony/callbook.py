"""The bookkeeping every call goes through, whatever its transport: one path, one meaning.

- `admit`: the call limit first, then routing (a dialplan for the called user). A rejected call
  is counted (`rejected_busy`, `rejected_not_found`) and holds no slot.
- `run`: the call is *answered* when its media can flow and its handler starts: after SIP's
  200 OK, after WebRTC's ICE connection. It is counted as answered and active, the handler runs
  (errors contained, the call always hung up), a failed handler is counted, and the duration
  is observed; the slot is released when the handler is done.
- `abandon`: an admitted call that never got that far (an unusable offer, media that never
  connected) gives its slot back and is counted.
"""

from __future__ import annotations

import time

from agent.metrics import Metrics
from agent.telephony.call import BridgedLeg, CallHandler, CallInfo, Router, run_call
from agent.telephony.limits import CallLimiter


class CallRejected(Exception):
    """`result` is the calls_total label: rejected_busy or rejected_not_found."""

    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result = result


class CallBook:
    """One per transport; transports share the process's CallLimiter. Thread-safe `admit`
    (SIP decides on its own thread); `run` and `abandon` from anywhere."""

    def __init__(self, router: Router, limiter: CallLimiter, metrics: Metrics) -> None:
        self._router = router
        self._limiter = limiter
        self._metrics = metrics

    @property
    def active(self) -> int:
        return self._limiter.active

    def admit(self, info: CallInfo) -> CallHandler:
        """The handler for this call, with a slot held for it; raises CallRejected."""
        if not self._limiter.try_acquire():
            self._count(info, "rejected_busy")
            raise CallRejected("rejected_busy", "all lines are busy")
        try:
            handler = self._router(info)
        except Exception:
            handler = None  # a broken router must not take the call path down
        if handler is None:
            self._limiter.release()
            self._count(info, "rejected_not_found")
            raise CallRejected("rejected_not_found", f"no dialplan answers {info.to_user!r}")
        return handler

    def abandon(self, info: CallInfo, result: str | None = "failed") -> None:
        """Give the slot back; count `result` (None: nothing to count, e.g. the caller left)."""
        self._limiter.release()
        if result is not None:
            self._count(info, result)

    async def run(self, leg: BridgedLeg, handler: CallHandler) -> None:
        info = leg.info
        self._count(info, "answered")
        self._metrics.calls_active.labels(info.transport).inc()
        try:
            if not await run_call(leg, handler):
                self._count(info, "failed")
        finally:
            self._limiter.release()
            self._metrics.calls_active.labels(info.transport).dec()
            self._metrics.call_duration.labels(info.transport).observe(time.time() - info.started_at)

    def _count(self, info: CallInfo, result: str) -> None:
        self._metrics.calls.labels(info.transport, result).inc()
