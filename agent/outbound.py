"""Outgoing calls: a request (POST /v1/calls, `voice-agent call`) becomes a call record, a SIP
call, answering-machine detection, then the dialplan's conversation with the call's variables
filled in, or, for a machine, its voicemail message after the beep.

The call record follows the call: call.started when placed, call.ringing, call.answered (with
`answered_by`: human, machine or unknown), call.ended with the result (completed, ..., busy,
no answer, voicemail, failed).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from agent.api.outbound import CallRequest, NoCapacity, RequestRejected
from agent.config import OutboundConfig
from agent.dialog.amd import Detector
from agent.dialog.dialplan import Dialplan
from agent.dialog.dialplans import Dialplans
from agent.dialog.services import Services
from agent.metrics import Metrics
from agent.records.callrecord import CallRecord
from agent.records.store import CallStore
from agent.telephony.call import CallInfo, CallLeg, Dialer
from agent.telephony.limits import CallLimiter
from agent.telephony.siptext import uri_user

if TYPE_CHECKING:
    from agent.records.store import Result

log = structlog.get_logger("outbound")

# Runs the dialplan's conversation on an answered leg, keeping (and finishing) the record.
Converse = Callable[[Dialplan, CallLeg, CallRecord], Awaitable[None]]
FAILURES: dict[int, Result] = {
    486: "busy", 600: "busy", 603: "busy", 408: "no answer", 480: "no answer", 487: "no answer",
}  # fmt: skip


class Outbound:
    """Places calls for the API; `dial`, `services` and `converse` are set once SIP and the
    engines are up (until then a request gets 503)."""

    def __init__(
        self,
        cfg: OutboundConfig,
        dialplans: Dialplans,
        store: CallStore,
        limiter: CallLimiter,
        recordings: Callable[[Dialplan], Path | None],
        metrics: Metrics,
    ) -> None:
        self.cfg, self.dialplans, self.store, self.limiter = cfg, dialplans, store, limiter
        self.recordings, self.metrics = recordings, metrics
        self.dial: Dialer | None = None
        self.services: Services | None = None
        self.converse: Converse | None = None
        self.tasks: set[asyncio.Future[None]] = set()

    def place(self, req: CallRequest) -> str:
        """Check the request, start the call; its record's id. Raises RequestRejected, NoCapacity."""
        plan = next((p for p in self.dialplans.plans if p.name == req.dialplan and p.kind == "agent"), None)
        if plan is None:
            raise RequestRejected(f"no agent dialplan named {req.dialplan!r}")
        if unknown := sorted(req.variables.keys() - plan.variables.keys()):
            raise RequestRejected(f"dialplan {plan.name} has no variable {unknown[0]!r}")
        if missing := sorted(k for k, v in plan.variables.items() if v is None and k not in req.variables):
            raise RequestRejected(f"dialplan {plan.name} needs the variable {missing[0]!r}")
        if self.dial is None or self.services is None or self.converse is None:
            raise NoCapacity("the agent is not ready for calls yet")
        if len(self.tasks) >= self.cfg.max_concurrent or not self.limiter.try_acquire():
            raise NoCapacity("all lines are busy")
        info = CallInfo("", "sip", "", req.to, uri_user(req.to))
        try:
            record = CallRecord(self.store, info, plan.name, self.recordings(plan), self.metrics, "outbound")
        except (sqlite3.Error, OSError) as exc:
            self.limiter.release()
            raise NoCapacity(f"the call store failed: {exc}") from exc
        task = asyncio.ensure_future(self._run(req, plan.render(req.variables), record))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        log.info("outgoing call placed", call=record.id, to=req.to, dialplan=plan.name, amd=req.amd)
        return record.id

    async def _run(self, req: CallRequest, plan: Dialplan, record: CallRecord) -> None:
        assert self.dial is not None and self.services is not None and self.converse is not None
        leg: CallLeg | None = None
        result: Result = "failed"
        try:
            dialed = await self.dial(req.to, self.cfg.ring_timeout_s, record.ringing)
            if dialed.leg is None:
                result = FAILURES.get(dialed.code, "failed")
                return
            leg = dialed.leg
            leg.record(record.recorder)
            detector = Detector(leg, self.services, plan.amd) if req.amd else None
            verdict = (await detector.classify()).verdict if detector is not None else "unknown"
            record.answered(verdict, leg.info)
            if detector is not None and verdict == "machine":
                result = await self._voicemail(leg, plan, detector)
                return
            await self.converse(plan, leg, record)  # finishes the record itself
        except Exception:
            log.exception("outgoing call failed", call=record.id)
        finally:
            self.limiter.release()
            if leg is not None:
                leg.record(None)
                await leg.hangup()
            await record.finish(result, plan.greeting)  # no-op if the conversation finished it

    async def _voicemail(self, leg: CallLeg, plan: Dialplan, detector: Detector) -> Result:
        """After the machine's beep (or its greeting's end): the dialplan's message, then bye."""
        assert self.services is not None
        await detector.greeting_over()
        speech = await self.services.speech(plan.voicemail, plan.voice) if plan.voicemail else None
        if speech is not None and not leg.ended.is_set():
            played = asyncio.Event()
            leg.play(speech.pcm, speech.sample_rate, on_end=played.set)
            waits = [asyncio.ensure_future(leg.ended.wait()), asyncio.ensure_future(played.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            await asyncio.sleep(0.3)  # the last frames reach the machine before BYE
        log.info("voicemail left", message=bool(speech), beep=detector.beep_at is not None)
        return "voicemail"
