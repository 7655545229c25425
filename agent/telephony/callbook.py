"""The bookkeeping every call goes through, whatever its transport: one path, one meaning.

- `admit`: the call limit first, then routing (a dialplan for the called user, which may refuse
  this caller). A rejected call is counted (`rejected_busy`, `rejected_not_found`,
  `rejected_forbidden`) and holds no slot.
- `run`: the call is *answered* when its media can flow and its handler starts: after SIP's
  200 OK, after WebRTC's ICE connection. It is counted as answered and active, the handler runs
  (errors contained, the call always hung up), a failed handler is counted. The slot is
  released, and the duration observed, as soon as the call is over (its leg has ended) or the
  handler is done, whichever comes first: a handler still tidying up after the caller's BYE
  must not turn the caller's next call away with 486.
- `abandon`: an admitted call that never got that far (an unusable offer, media that never
  connected) gives its slot back and is counted.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.metrics import Metrics
from agent.telephony.call import BridgedLeg, CallHandler, CallInfo, CallRefused, Router, run_call
from agent.telephony.limits import CallLimiter


class CallRejected(Exception):
    """`result` is the calls_total label (rejected_busy, rejected_not_found or
    rejected_forbidden); `code` the SIP status that says so."""

    def __init__(self, result: str, reason: str, code: int) -> None:
        super().__init__(reason)
        self.result = result
        self.code = code


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
            raise CallRejected("rejected_busy", "all lines are busy", 486)
        try:
            handler = self._router(info)
        except CallRefused as exc:
            self._limiter.release()
            self._count(info, "rejected_forbidden")
            raise CallRejected("rejected_forbidden", exc.reason, exc.code) from None
        except Exception:
            handler = None  # a broken router must not take the call path down
        if handler is None:
            self._limiter.release()
            self._count(info, "rejected_not_found")
            raise CallRejected("rejected_not_found", f"no dialplan answers {info.to_user!r}", 404)
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
        released = False

        def free() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._limiter.release()
            self._metrics.calls_active.labels(info.transport).dec()
            self._metrics.call_duration.labels(info.transport).observe(time.time() - info.started_at)

        def ended(f: asyncio.Future[Any]) -> None:
            if not f.cancelled():
                free()

        over = asyncio.ensure_future(leg.ended.wait())
        over.add_done_callback(ended)
        try:
            if not await run_call(leg, handler):
                self._count(info, "failed")
        finally:
            over.cancel()
            free()

    def _count(self, info: CallInfo, result: str) -> None:
        self._metrics.calls.labels(info.transport, result).inc()
