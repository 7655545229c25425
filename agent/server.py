"""Wires config -> engines -> transports -> call handlers, and owns start/stop."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agent.api.calls import CallsApi
from agent.api.keys import ApiKeys
from agent.api.keystore import KeyStore
from agent.api.outbound import OutboundApi
from agent.api.speech import SpeechApi
from agent.config import Config
from agent.dialog.dialplan import Dialplan
from agent.dialog.dialplans import load_dialplans
from agent.dialog.history import History
from agent.dialog.prompt import Prompt, system_prompt
from agent.dialog.services import Services
from agent.dialog.session import CallSession
from agent.dialog.tools import Transfer
from agent.dialog.warm import WarmTransfer, briefing_text, hold_audio
from agent.engines.factory import Engines, load_engines, load_tts, peak_rss_mb
from agent.errors import StartupError
from agent.http import HttpServer
from agent.httpguard import ConnectionGuard, server_tls
from agent.metrics import Metrics
from agent.outbound import Outbound
from agent.records.callrecord import CallRecord
from agent.records.db import Database
from agent.records.store import CallStore
from agent.records.summary import Summarizer
from agent.records.upkeep import Upkeep
from agent.records.webhooks import Dispatcher
from agent.signaling import Signaling
from agent.telephony.call import CallHandler, CallInfo, CallLeg, CallRefused
from agent.telephony.echo import echo_handler
from agent.telephony.limits import CallLimiter
from agent.telephony.trunks import Trunks
from agent.telephony.webrtc import WebRtcGateway, install_ice_address_hook

if TYPE_CHECKING:  # pjsua2 is imported only when SIP is used
    from agent.records.store import Result
    from agent.telephony.sip import SipEndpoint

log = structlog.get_logger("server")


class Server:
    """The agent process: loads the engines, starts SIP, runs until SIGINT/SIGTERM."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.dialplans = load_dialplans(cfg.dialplans.dir, cfg.sip.trunks.keys())  # bad: no start
        self.trunks = Trunks(cfg.sip.trunks)
        self.engines: Engines | None = None
        self.services: Services | None = None
        self.limiter = CallLimiter(cfg.sip.max_calls)
        self.metrics = Metrics()
        try:
            self.store = CallStore(Database(cfg.store.db_path), cfg.webhooks)
        except (sqlite3.Error, OSError) as exc:
            raise StartupError(
                f"call store {cfg.store.db_path}: {exc} (set store.dir in the config)"
            ) from exc
        self.dispatcher = Dispatcher(self.store.outbox, cfg.webhooks, self.metrics)
        self.store.on_event = self.dispatcher.wake
        retention = {p.name: p.recording.retention_days for p in self.dialplans.plans}
        self.upkeep = Upkeep(self.store, retention, cfg.store.retention_check_s, self.metrics)
        self._background: list[asyncio.Future[None]] = []
        self._summaries: set[asyncio.Future[None]] = set()
        self.sip: SipEndpoint | None = None
        self.http = (
            HttpServer(
                cfg.http.host,
                cfg.http.port,
                self.metrics,
                self.readiness,
                ConnectionGuard(
                    cfg.http.max_connections_per_source,
                    cfg.http.header_timeout_s,
                    lambda reason: self.metrics.http_closed.labels(reason).inc(),
                ),
                cfg.http.keepalive_timeout_s,
                server_tls(str(cfg.http.tls.cert), str(cfg.http.tls.key)) if cfg.http.tls else None,
            )
            if cfg.http.enabled
            else None
        )
        self.outbound = Outbound(
            cfg.outbound, self.dialplans, self.store, self.limiter, self._recordings, self.metrics
        )
        api = cfg.api
        keys = ApiKeys(api.keys, KeyStore(self.store.db), api.requests_per_minute, api.jwt_secret)
        if self.http is not None:
            self.http.add_routes(
                OutboundApi(keys, self.outbound.place, cfg.outbound.calls_per_minute).routes()
            )
            self.http.add_routes(CallsApi(self.store, keys).routes())
            self.http.add_routes(SpeechApi(keys, lambda: self.services).routes())
        self.webrtc: WebRtcGateway | None = None
        if cfg.webrtc.enabled and self.http is not None:
            install_ice_address_hook()
            self.webrtc = WebRtcGateway(cfg.webrtc, self.route, self.limiter, self.metrics)
            self.http.add_routes(Signaling(cfg.webrtc, self.webrtc, keys).routes())
            self.http.serve_widget()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def route(self, info: CallInfo) -> CallHandler | None:
        """Which handler answers a call to this user (its dialplan); None rejects it with 404,
        CallRefused with the dialplan's `access` refusal."""
        plan = self.dialplans.for_user(info.to_user)
        trunks = self.trunks.of(info.remote_addr)
        if plan is None:
            if self.dialplans.trunk_only and not trunks:  # 403 as for a trunk's number: a
                raise CallRefused(403, "Forbidden")  # scanner cannot tell which users exist
            return None
        if refusal := plan.access.refusal(trunks, info.anonymous):
            raise CallRefused(*refusal)
        if plan.kind == "echo":
            return echo_handler(plan.echo_delay_s)

        async def converse(leg: CallLeg) -> None:
            await self._converse(plan, leg)

        return converse

    def _recordings(self, plan: Dialplan) -> Path | None:
        return self.cfg.store.recordings_dir if plan.recording.enabled else None

    async def _converse(self, plan: Dialplan, leg: CallLeg, record: CallRecord | None = None) -> None:
        """A conversation with the dialplan on an answered call; its record (an outgoing call
        brings its own) is kept up to date and finished here."""
        assert self.services is not None  # SIP and WebRTC take calls only once the engines are loaded
        if record is None:
            try:
                record = CallRecord(self.store, leg.info, plan.name, self._recordings(plan), self.metrics)
            except (sqlite3.Error, OSError):  # a full or broken disk must not cost the caller the call
                log.exception("call record not started: the call goes on without one")
            plan = plan.render({})  # an incoming call has only the variables' defaults
        leg.record(record.recorder if record is not None else None)

        joined: list[CallLeg] = []  # the human a warm transfer joined the caller to

        async def transfer(t: Transfer) -> bool:
            tool = session.plan.tools.transfer
            target = tool.targets.get(t.target) if tool is not None else None
            if target is None or target.mode == "blind" or self.sip is None:
                ok = await leg.transfer(t.uri)
                if record is not None:
                    record.transferred(t.target, t.uri, ok)
                return ok
            assert tool is not None and self.services is not None
            said = [turn.user_text for turn in session.turns[-3:]]
            warm = WarmTransfer(
                leg, self.sip.dial, self.services, target,
                briefing_text(target, t.spoken, leg.info.from_uri, said),
                hold_audio(tool.hold_audio), session.plan.voice,
            )  # fmt: skip
            outcome = await warm.run()
            if outcome == "connected" and warm.human is not None:
                joined.append(warm.human)
            if record is not None:
                record.transferred(t.target, t.uri, outcome == "connected", "warm", outcome)
            return outcome == "connected"

        plans = {p.name: p for p in self.dialplans.plans}
        session = CallSession(
            leg,
            plan,
            self.services,
            metrics=self.metrics,
            on_transfer=transfer,
            on_turn=record.turn if record is not None else None,
            on_collect=record.collected if record is not None else None,
            find_plan=plans.get,
        )
        result: Result = "failed"
        try:
            await session.run()  # errors: run_call logs them and hangs up
            result = session.outcome
        finally:
            leg.record(None)  # the agent has left the call: the recording ends here
            if record is not None:
                await record.finish(result, plan.greeting, announce=False)
                self._after_call(record.id, plan)
        for human in joined:  # caller and human talk on; the call slot stays taken meanwhile
            await _either_ends(leg, human)

    def _after_call(self, call_id: str, plan: Dialplan | None) -> None:
        """The post-call summary, as background work; it raises the call's call.ended."""
        assert self.services is not None
        task = asyncio.ensure_future(Summarizer(self.services, self.store).summarize(call_id, plan))
        self._summaries.add(task)
        task.add_done_callback(self._summaries.discard)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready = models loaded, SIP bound (when enabled) and a call slot free."""
        sip_up = self.sip is not None and self.sip.alive and bool(self.sip.addresses)
        details: dict[str, Any] = {
            "models_loaded": self.engines is not None,
            "sip": self.sip.addresses if self.sip else None,
            "calls_active": self.limiter.active,
            "sip_calls_held": self.sip.calls_held if self.sip else 0,
            "max_calls": self.limiter.max_calls,
        }
        if self.sip is not None and self.sip.registered is not None:
            details["registered"] = self.sip.registered
        breakers = self.services.breaker_states() if self.services is not None else {}
        if breakers:
            details["engines"] = breakers
        ready = (
            self.engines is not None
            and "open" not in breakers.values()  # calls would only hear the fallback line
            and (sip_up or not self.cfg.sip.enabled)
            and self.limiter.active < self.limiter.max_calls
        )
        return ready, details

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        if self.http is not None:  # first: /healthz answers while the models load
            await self.http.start()
        self._background = [
            asyncio.ensure_future(self.dispatcher.run()),
            asyncio.ensure_future(self.upkeep.run()),
        ]
        try:
            if not await self._load_engines():
                log.info("stopped while engines were loading")
                return
            if self.cfg.sip.enabled:
                from agent.telephony.sip import SipEndpoint  # pjsua2 is only imported when used

                self.sip = SipEndpoint(self.cfg.sip, self.route, self.limiter, self.metrics)
                await self.sip.start()
                self.outbound.dial, self.outbound.services = self.sip.dial, self.services
                self.outbound.converse = self._converse
            if self.webrtc is not None:
                self.webrtc.accepting = True
            self.metrics.ready.set(1)
            log.info(
                "ready",
                sip=self.sip.addresses if self.sip else [],
                http=f"{self.http.host}:{self.http.port}" if self.http else None,
                peak_rss_mb=round(peak_rss_mb()),
            )
            await self._until_stopped()
        finally:
            await self._shutdown()
        if self.sip is not None and self.sip.died:
            raise StartupError("the SIP endpoint died (see the 'pjsip thread died' log line); exiting")

    async def _until_stopped(self) -> None:
        """Until SIGINT/SIGTERM, or until the SIP endpoint dies under us."""
        waits = [asyncio.ensure_future(self._stop.wait())]
        if self.sip is not None:
            waits.append(asyncio.ensure_future(self.sip.failed.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _shutdown(self) -> None:
        """Calls first (hung up, their sessions ended), then the engines they used, then HTTP."""
        log.info("stopping")
        self.metrics.ready.set(0)
        if self.webrtc is not None:
            await self.webrtc.stop()
        self.outbound.dial = None  # no new outgoing calls
        if self.sip is not None:
            await self.sip.stop()
        if self.outbound.tasks:  # their calls are hung up: they finish their records
            await asyncio.wait(self.outbound.tasks, timeout=5)
        # Unfinished summaries stay in the store (`unannounced`), undelivered events in the
        # outbox, for the next start. Summaries first: with the engines closed they would fail.
        for task in self._summaries:
            task.cancel()
        await asyncio.gather(*self._summaries, return_exceptions=True)
        if self.services is not None:
            self.services.close()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.dispatcher.stop()
        self.store.db.close()
        if self.http is not None:
            await self.http.stop()
        log.info("stopped")

    async def _load_engines(self) -> bool:
        loading = asyncio.ensure_future(
            asyncio.to_thread(load_engines, self.cfg, lambda m: log.info("engines", step=m))
        )
        stop_wait = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({loading, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not loading.done():
            return False
        stop_wait.cancel()
        self.engines = loading.result()  # raises an engine's load error here
        e = self.engines
        voices = {self.cfg.tts.voice: e.tts}
        for voice in sorted(self.dialplans.voices - voices.keys()):  # voices the dialplans ask for
            cfg = self.cfg.model_copy(update={"tts": self.cfg.tts.model_copy(update={"voice": voice})})
            voices[voice] = await asyncio.to_thread(load_tts, cfg)
        self.services = Services(
            e.vad,
            e.stt,
            e.llm,
            voices,
            self.cfg.tts.voice,
            llm_timeout_s=self.cfg.llm.timeout_s,
            metrics=self.metrics,
            guard=self.cfg.engines,
        )
        await self.services.warm()
        for plan in self.dialplans.plans:  # the line callers hear when an engine fails, ready now
            if plan.kind == "agent":
                await self.services.cached_speech(plan.fallback, plan.voice)
        main = self.dialplans.default or next((p for p in self.dialplans.plans if p.kind == "agent"), None)
        if main is not None and main.kind == "agent":  # its first call must not wait for the prompt
            history = History(system_prompt(main), main.llm.history_tokens, e.llm.count_tokens)
            await self.services.prime(Prompt(main, history).answered(main.greeting))
        self.services.inject_faults(self.cfg.faults)  # test-only; after warm-up, so calls count from 1
        plans = {p.name: p for p in self.dialplans.plans}
        for call_id in self.store.unannounced():  # ended while an earlier process was summarizing
            record = self.store.get(call_id, turns=False)
            self._after_call(call_id, plans.get(record["dialplan"]) if record else None)
        log.info(
            "engines loaded",
            vad=e.vad.name,
            stt=e.stt.name,
            llm=e.llm.name,
            voices=sorted(voices),
            dialplans=[p.name for p in self.dialplans.plans],
        )
        return True


async def _either_ends(a: CallLeg, b: CallLeg) -> None:
    """Until one of two joined calls ends; then the other is hung up too."""
    waits = [asyncio.ensure_future(leg.ended.wait()) for leg in (a, b)]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    for leg in (a, b):
        await leg.hangup()
