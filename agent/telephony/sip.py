"""The SIP endpoint: pjsua2 on its own thread, answering INVITEs and handing legs to asyncio.

Routing, the call limit and the answer (180/200, 404, 486) are decided on the pjsip thread at
INVITE time; everything after the answer happens in the call's asyncio task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pjsua2 as pj
import structlog

from agent.errors import StartupError
from agent.metrics import Metrics
from agent.sipconfig import SipConfig
from agent.telephony.admission import Admission, Rejection
from agent.telephony.call import CallHandler, CallInfo, Dialed, Router
from agent.telephony.callbook import CallBook, CallRejected
from agent.telephony.limits import CallLimiter
from agent.telephony.media import FrameBridge
from agent.telephony.pjlib import LogWriter, start_library
from agent.telephony.pjthread import PjsipThread
from agent.telephony.sipcall import FramePort, SipCall, SipLeg, place_call
from agent.telephony.sipreg import SipAccount, account_config
from agent.telephony.siptext import read, request_uri, uri_user, withheld

log = structlog.get_logger("sip")
_REASONS = {403: "Forbidden", 404: "Not Found", 433: "Anonymity Disallowed", 486: "Busy Here"}
T = TypeVar("T")

# pjsua2-python is compiled with PJSUA_MAX_CALLS = 4 (a larger maxCalls is clamped): pjsua itself
# answers 486 to a fifth concurrent call, before our limiter sees it. See agent/cluster.py.
PJSUA_MAX_CALLS = 4


class SipError(StartupError):
    """The SIP endpoint could not start (e.g. its port is taken)."""


class SipEndpoint:
    """Owns pjsua2: transports, the account, every call; start/stop from asyncio."""

    def __init__(
        self, cfg: SipConfig, router: Router, limiter: CallLimiter, metrics: Metrics | None = None
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self._book = CallBook(router, limiter, self.metrics)
        self._max_calls = limiter.max_calls
        self._thread = PjsipThread(on_death=lambda exc: self.post(self.failed.set))
        self.failed = asyncio.Event()  # set if the pjsip thread died: SIP is gone
        self._loop: asyncio.AbstractEventLoop | None = None
        # pjsip-thread state: every pjsua2 object we hold a reference to is in here.
        self._ep: pj.Endpoint | None = None
        self._writer: LogWriter | None = None
        self._account: SipAccount | None = None
        self._calls: dict[int, SipCall] = {}
        self._reap: list[int] = []
        self._ports: list[FramePort] = []  # every port ever made (see FramePort)
        self._free_ports: list[FramePort] = []
        lim, access = cfg.limits, cfg.access
        self._admission = Admission(
            lim.calls_per_s, lim.burst, lim.per_source_calls_per_s, lim.per_source_burst, lim.trusted,
            allow=access.allow, scanners=access.scanner_agents, calls_per_source=lim.calls_per_source,
        )  # fmt: skip
        self._held: list[tuple[float, int, Rejection]] = []  # rejections answered later (see admission)
        # loop-side state
        self.legs: dict[str, SipLeg] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.addresses: list[str] = []  # "udp:127.0.0.1:5060", ...

    # --- asyncio side ---------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.wrap_future(self._thread.start(self._setup, self._poll, self._teardown))
        log.info("sip listening", addresses=self.addresses, max_calls=self._max_calls)

    async def stop(self, grace_s: float = 3.0) -> None:
        """Hang up every call with BYE, wait for them to end, destroy pjsua2."""
        legs = list(self.legs.values())
        if legs:
            log.info("hanging up active calls", calls=len(legs))
            with contextlib.suppress(RuntimeError):
                await self._thread.call(lambda: self._ep and self._ep.hangupAllCalls())
            await asyncio.wait([asyncio.ensure_future(leg.ended.wait()) for leg in legs], timeout=grace_s)
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=grace_s)
        await asyncio.to_thread(self._thread.stop)
        log.info("sip stopped")

    async def hangup(self, pj_call_id: int, code: int = 0) -> None:
        def do() -> None:
            call = self._calls.get(pj_call_id)
            if call is not None:
                call.end(code)

        with contextlib.suppress(RuntimeError, pj.Error):
            await self._thread.call(do)

    async def send_dtmf(self, pj_call_id: int, digits: str) -> bool:
        """Send keys on a call as RFC 4733 events (navigating a PBX's menu); False if it has ended."""

        def do() -> None:
            call = self._calls.get(pj_call_id)
            if call is None:
                raise RuntimeError("the call has ended")
            call.dialDtmf(digits)

        try:
            await self._thread.call(do)
        except (RuntimeError, pj.Error) as exc:
            log.warning("dtmf not sent", digits=digits, error=str(exc))
            return False
        return True

    async def transfer(self, pj_call_id: int, uri: str, timeout_s: float = 10.0) -> int:
        """Blind transfer (REFER): the SIP status the transferee reported (0 if none came in time)."""
        assert self._loop is not None
        result: asyncio.Future[int] = self._loop.create_future()

        def do() -> None:
            call = self._calls.get(pj_call_id)
            if call is None:
                raise RuntimeError("the call has ended")
            call.on_transfer_status = lambda code: self.post(_settle, result, code)
            call.xfer(uri, pj.CallOpParam(True))

        try:
            await self._thread.call(do)
            return await asyncio.wait_for(result, timeout_s)
        except (RuntimeError, pj.Error, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, pj.Error) else str(exc) or "no final NOTIFY in time"
            log.warning("transfer failed", uri=uri, error=reason)
            return 0

    async def dial(
        self, uri: str, ring_timeout_s: float = 30.0, on_ringing: Callable[[], None] | None = None
    ) -> Dialed:
        """Place a call to `uri` (directly, or via the registrar's account); after `ring_timeout_s`
        unanswered it is cancelled (408). The answered leg is the caller's to hang up."""
        assert self._loop is not None
        loop = self._loop
        outcome: asyncio.Future[Dialed] = loop.create_future()
        rang: list[float | None] = [None]  # when it started ringing (loop side)

        def rung() -> None:
            rang[0] = time.monotonic()
            if on_ringing is not None:
                on_ringing()

        def do() -> SipLeg:
            if self._account is None:
                raise RuntimeError("SIP is not running")
            call, leg = place_call(self, self._account, uri, FrameBridge(loop))
            call.on_answered = lambda: self.post(_settle, outcome, Dialed(leg, 200, ringing_at=rang[0]))
            call.on_ringing = lambda: self.post(rung)
            leg.failed = lambda code, why: _settle(outcome, Dialed(None, code, why, rang[0]))
            self._calls[call.getId()] = call
            return leg

        started = time.monotonic()
        try:
            leg = await self._thread.call(do)
        except (RuntimeError, pj.Error) as exc:  # no free call slot, a bad URI
            reason = exc.reason if isinstance(exc, pj.Error) else str(exc)
            log.warning("call not placed", uri=uri, error=reason)
            return Dialed(None, 503, reason)
        if not leg.ended.is_set():
            self.legs[leg.info.call_id] = leg
        try:
            dialed = await asyncio.wait_for(asyncio.shield(outcome), ring_timeout_s)
        except TimeoutError:
            await leg.hangup()  # CANCEL
            dialed = Dialed(None, 408, "no answer", rang[0])
        except asyncio.CancelledError:
            await leg.hangup()
            raise
        log.info("outgoing call", uri=uri, code=dialed.code, reason=dialed.reason,
                 seconds=round(time.monotonic() - started, 2))  # fmt: skip
        return dialed

    async def connect(self, a: int, b: int) -> bool:
        """Join two calls' audio in the conference bridge (see `SipCall.join`)."""

        def do() -> None:
            first, second = self._calls.get(a), self._calls.get(b)
            if first is None or second is None:
                raise RuntimeError("a call has ended")
            first.join(second)

        try:
            await self._thread.call(do)
        except (RuntimeError, pj.Error) as exc:
            log.warning("calls not bridged", error=exc.reason if isinstance(exc, pj.Error) else str(exc))
            return False
        return True

    @property
    def alive(self) -> bool:
        """The pjsip thread runs (a dead one answers nothing)."""
        return self._thread.alive

    @property
    def died(self) -> bool:
        """The pjsip thread ended on an error (not by stop())."""
        return self._thread.died is not None

    @property
    def calls_held(self) -> int:
        """pjsua2 Call objects still held (0 when idle, or they leak); len() is atomic."""
        return len(self._calls)

    @property
    def registered(self) -> bool | None:
        """None without registration; else whether the registrar accepted us."""
        return None if self._account is None or not self.cfg.registration else self._account.registered

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """From the pjsip thread: run fn(*args) on the loop. Drops it if the loop is gone."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_leg(self, leg: SipLeg, handler: CallHandler) -> None:
        self.legs[leg.info.call_id] = leg
        task = asyncio.ensure_future(self._book.run(leg, handler))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _on_leg_ended(self, leg: SipLeg, code: int, reason: str) -> None:
        self.legs.pop(leg.info.call_id, None)
        if leg.failed is not None:  # an outgoing call that ended unanswered (or its answer came late)
            leg.failed(code, reason)
        duration = time.time() - leg.info.started_at
        log.info(
            "call ended", call_id=leg.info.call_id, code=code, reason=reason, duration_s=round(duration, 2)
        )
        m, b = self.metrics, leg.bridge
        m.inbound_frames_dropped.labels("sip").inc(b.inbound_dropped)
        if b.send_clock.count > 1:
            m.frame_jitter.labels("send").observe(b.send_clock.std_s)
        if b.receive_clock.count > 1:
            m.frame_jitter.labels("receive").observe(b.receive_clock.std_s)
        leg.on_ended()

    def _count(self, result: str) -> None:
        self.metrics.calls.labels("sip", result).inc()

    # --- pjsip thread -----------------------------------------------------------------------
    def _setup(self) -> None:
        try:
            self._start_pjsua()
        except pj.Error as exc:
            where = f"{self.cfg.host}:{self.cfg.port}"
            self._teardown()
            raise SipError(f"SIP endpoint on {where} failed to start: {exc.info(True).strip()}") from None

    def _start_pjsua(self) -> None:
        self._writer = LogWriter()
        self._ep, self.addresses = start_library(self.cfg, self._writer, PJSUA_MAX_CALLS)
        self._account = SipAccount(self)
        self._account.create(account_config(self.cfg, self.addresses))

    def _poll(self, ms: int) -> None:
        assert self._ep is not None
        self._ep.libHandleEvents(ms)
        if self._held:
            self._answer_held(time.monotonic())
        while self._reap:  # outside pjsua2 callbacks: safe to drop the Python objects
            call = self._calls.pop(self._reap.pop(), None)
            if call is not None and call.port is not None:
                self._release_port(call.port)
                call.port = None
            del call

    def acquire_port(self, bridge: FrameBridge) -> FramePort:
        """A bridge port for a call: a free one from the pool, or a new one."""
        port = self._free_ports.pop() if self._free_ports else None
        if port is None:
            port = FramePort(16000, f"agent-port-{len(self._ports)}")
            self._ports.append(port)
        port.bridge = bridge
        return port

    def _release_port(self, port: FramePort) -> None:
        port.bridge = None  # its call's media left the bridge with the call
        self._free_ports.append(port)

    def _teardown(self) -> None:
        ep = self._ep
        if ep is None:
            return
        ep.hangupAllCalls()
        deadline = time.monotonic() + 2.0
        while self._calls and time.monotonic() < deadline:
            self._poll(10)
        while self._calls:  # no loop variable may outlive this: it would keep a Call alive
            self._calls.popitem()[1].port = None
        # Ports are handed to C++ instead of deleted (see FramePort): they, and the Python
        # objects they call, stay until the process exits, so the bridge never calls freed memory.
        while self._ports:
            port = self._ports.pop()
            port.bridge = None
            port.__disown__()
            del port
        self._free_ports.clear()
        if self._account is not None:
            self._account.shutdown()
        self._account = None
        ep.libDestroy()  # every pjsua2 wrapper we held is gone by now
        self._ep = None
        self._writer = None

    def on_incoming(self, account: pj.Account, prm: pj.OnIncomingCallParam) -> None:
        """INVITE received: route, limit, answer. Runs on the pjsip thread."""
        call = SipCall(self, account, prm.callId)
        self._calls[prm.callId] = call
        ci = call.getInfo()
        request = prm.rdata.wholeMsg
        message = read(request)
        source = call.source = prm.rdata.srcAddress  # the packet's: what rate limits count
        info = CallInfo(
            call_id=ci.callIdString,
            transport="sip",
            from_uri=ci.remoteUri,
            to_uri=ci.localUri,
            to_user=uri_user(request_uri(request)) or uri_user(ci.localUri),
            remote_addr=self._admission.caller_address(source, message.get(self.cfg.caller_header or "")),
            anonymous=withheld(message),
        )
        bound = log.bind(call_id=info.call_id, to=info.to_user, caller=info.from_uri, source=info.remote_addr)
        rejection = self._admission.check(source, time.monotonic(), message.get("user-agent"))
        if rejection is not None:
            bound.warning("call rejected", code=rejection.code, reason=rejection.reason)
            result = {403: "rejected_forbidden", 486: "rejected_busy"}.get(rejection.code, "rejected_rate")
            self._count(result)
            self._hold(call, rejection)
            return
        try:
            handler = self._book.admit(info)
        except CallRejected as exc:
            bound.warning("call rejected", code=exc.code, reason=str(exc), active=self._book.active)
            self._hold(call, Rejection(exc.code, _REASONS.get(exc.code, "Forbidden")))
            return
        assert self._loop is not None
        leg = SipLeg(info, FrameBridge(self._loop), self, prm.callId)
        try:
            call.respond(180)
            call.respond(200)
        except pj.Error as exc:  # the caller is gone already
            bound.warning("call not answered", error=exc.reason)
            self._book.abandon(info)
            return
        call.leg = leg
        self._admission.call_started(source)
        bound.info("call answered", on=self.addresses[0] if self.addresses else None)  # which worker
        self.post(self._on_leg, leg, handler)

    def _hold(self, call: SipCall, rejection: Rejection) -> None:
        """Answer a rejected INVITE after `reject_hold_ms`: its call slot (and media transport)
        stays taken meanwhile, so a flood cannot make pjsua open sockets faster than pjlib
        recycles them (see agent/telephony/admission.py)."""
        due = time.monotonic() + self.cfg.limits.reject_hold_ms / 1000
        self._held.append((due, call.getId(), rejection))

    def _answer_held(self, now: float) -> None:
        while self._held and self._held[0][0] <= now:
            _, pj_call_id, rejection = self._held.pop(0)
            call = self._calls.get(pj_call_id)
            if call is None:  # the caller gave up (CANCEL) meanwhile
                continue
            try:
                call.respond(rejection.code, rejection.reason, rejection.retry_after_s)
            except pj.Error as exc:
                log.info("held rejection not sent", code=rejection.code, error=exc.reason)

    def on_disconnected(self, call: SipCall, code: int, reason: str) -> None:
        if call.leg is not None and not call.outbound:
            self._admission.call_ended(call.source)
        if call.leg is not None:
            self.post(self._on_leg_ended, call.leg, code, reason)
        peer, call.peer = call.peer, None
        if peer is not None:  # a bridge ends with either of its calls
            peer.peer = None
            with contextlib.suppress(pj.Error):
                peer.end()
        self._reap.append(call.getId())


def _settle(fut: asyncio.Future[T], value: T) -> None:
    if not fut.done():
        fut.set_result(value)
