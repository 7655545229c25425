"""The call session: one per call, transport-neutral. Greets, then listens → thinks → speaks.

Everything happens on the caller's frame clock: each 20 ms frame goes through the turn
detector, its events move the state machine, then `_tick` looks after playout, barge-in,
the echo gate and the timers. Replies (agent.dialog.reply) do the engine work in tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Awaitable, Callable

import structlog

from agent.dialog.dialplan import Dialplan
from agent.dialog.history import History, rough_tokens
from agent.dialog.reply import Reply, Script
from agent.dialog.services import Services
from agent.dialog.timing import TurnTiming
from agent.dialog.tools import Action, Hangup, Transfer, tool_instructions
from agent.dialog.turns import SpeechPaused, SpeechResumed, SpeechStarted, TurnDetector, TurnEnded, TurnEvent
from agent.engines.tts import SpeechChunk
from agent.metrics import TURN_INTERVALS, Metrics
from agent.telephony.call import CallLeg

log = structlog.get_logger("session")

STYLE = (
    "You are talking on the phone: answer in one or two short, plain sentences that sound natural "
    "when spoken. No lists, no markdown, no emoji. If you don't know something, say so briefly."
)
ECHO_TAIL_S = 0.5  # the agent's audio may come back this long after it was sent
HANGUP_GRACE_S = 0.3  # let the last frames reach the caller before BYE

TransferHandler = Callable[[Transfer], Awaitable[bool]]


class State(enum.StrEnum):
    GREETING = "greeting"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    TRANSFERRING = "transferring"
    ENDED = "ended"


def system_prompt(plan: Dialplan) -> str:
    return " ".join(p for p in (plan.system_prompt.strip(), STYLE, tool_instructions(plan.tools)) if p)


class CallSession:
    """Runs one call with one dialplan. `turns` keeps each turn's timing record."""

    def __init__(
        self,
        leg: CallLeg,
        plan: Dialplan,
        services: Services,
        *,
        metrics: Metrics | None = None,
        on_transfer: TransferHandler | None = None,
    ) -> None:
        self.leg = leg
        self.plan = plan
        self.s = services
        self.metrics = metrics
        self.on_transfer = on_transfer
        self.detector = TurnDetector(services.vad.stream(leg.sample_rate), plan.turn)
        count = getattr(services.llm, "count_tokens", rough_tokens)
        self.history = History(system_prompt(plan), plan.llm.history_tokens, count)
        self.turns: list[TurnTiming] = []
        self.transfers: list[Transfer] = []
        self._captioned: Reply | None = None  # the reply whose caller words were last shown
        self.state = State.GREETING
        self.reply: Reply | None = None
        self._turn: TurnTiming | None = None  # the caller's turn in progress
        self._closing = False  # saying goodbye: not interruptible, then hang up
        self._started = self._last_caller = self._last_agent = time.monotonic()
        self._echo_until = 0.0
        self._fillers: list[SpeechChunk] = []  # acknowledgements, synthesised once per call
        self._filler_turn = 0
        self._turns_started = 0

    # --- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        # Bound in the call's context, so the reply tasks created below log it too.
        structlog.contextvars.bind_contextvars(dialplan=self.plan.name)
        self.leg.notify({"type": "state", "state": str(self.state)})
        # Warm the LLM's prompt cache with what the first turn's prompt will start with.
        opening = self.history.messages()
        if self.plan.greeting:
            opening.append({"role": "assistant", "content": self.plan.greeting})
            self._say(self.plan.greeting)
        else:
            self._set(State.LISTENING)
        primer = asyncio.ensure_future(self.s.prime(opening))
        fillers = asyncio.ensure_future(self._synthesize_fillers())
        try:
            async for frame in self.leg.frames():
                for event in self.detector.feed(frame):
                    self._on_event(event)
                await self._tick()
                if self.state is State.ENDED:
                    break
        finally:
            primer.cancel()
            fillers.cancel()
            self._stop_reply(caller_left=self.state is not State.ENDED)
            self._set(State.ENDED)
            log.info(
                "session ended", turns=len(self.turns), seconds=round(time.monotonic() - self._started, 1)
            )

    def _set(self, state: State) -> None:
        if state is not self.state:
            log.info("state", state=str(state), was=str(self.state))
            self.state = state
            self.leg.notify({"type": "state", "state": str(state)})

    def _wall(self, t_media: float) -> float:
        """Monotonic time of a media-clock instant (frames arrive in real time)."""
        return time.monotonic() - (self.detector.now - t_media)

    # --- turn events -------------------------------------------------------------------------
    def _on_event(self, ev: TurnEvent) -> None:
        if isinstance(ev, SpeechStarted):
            self._turn = TurnTiming(speech_start=self._wall(ev.t))
            log.info("speech started", t=round(ev.t, 2))
        elif self._closing or self.state is State.TRANSFERRING:
            return
        elif isinstance(ev, SpeechPaused):
            if self.reply is None and self._turn is not None:
                timing = TurnTiming(speech_start=self._turn.speech_start, speculative=True)
                self.reply = self._reply(timing, audio=ev.audio, committed=False)
        elif isinstance(ev, SpeechResumed):
            if self.reply is not None and not self.reply.committed:
                self.reply.cancel()
                self.reply = None
                log.info("speculation dropped: caller went on")
        elif isinstance(ev, TurnEnded):
            self._on_turn_end(ev)

    def _on_turn_end(self, ev: TurnEnded) -> None:
        now = time.monotonic()
        self._last_caller = now
        log.info("speech stopped", t=round(ev.t_speech_end, 2), seconds=round(len(ev.audio) / 16000, 2))
        if self.reply is not None and self.reply.committed:
            # Too short to barge in (a cough, an "mm-hm") while the agent was busy: ignored.
            log.info("short sound ignored while the agent talks")
            return
        if self.reply is None:
            self.reply = self._reply(TurnTiming(), audio=ev.audio)
        timing = self.reply.timing
        assert timing is not None
        if self._turn is not None:
            timing.speech_start = self._turn.speech_start
        timing.speech_end, timing.turn_end = self._wall(ev.t_speech_end), now
        self.reply.commit()
        self._turn = None
        self._set(State.THINKING)

    def _reply(self, timing: TurnTiming | None, **kw: object) -> Reply:
        if timing is None:  # a fixed line: no caller turn
            return Reply(self.s, self.plan, self.history, self.leg, None, **kw)  # type: ignore[arg-type]
        # A caller's turn: numbered once (a dropped speculation and its successor share it).
        caller = self._turn or timing
        if caller.index < 0:
            caller.index = self._turns_started
            self._turns_started += 1
        timing.index = caller.index
        if self._fillers:  # it may be acknowledged
            kw["filler"] = self._fillers[self._filler_turn % len(self._fillers)]
            self._filler_turn += 1
        # The reply's tasks copy this context: every log line of the turn carries `turn`.
        with structlog.contextvars.bound_contextvars(turn=timing.index):
            return Reply(self.s, self.plan, self.history, self.leg, timing, **kw)  # type: ignore[arg-type]

    async def _synthesize_fillers(self) -> None:
        for text in self.plan.acknowledgements:
            chunk = await self.s.filler(text, self.plan.voice)
            if chunk is not None:
                self._fillers.append(chunk)

    def _say(self, text: str, actions: tuple[Action, ...] = ()) -> None:
        """Speak a fixed line now (greeting, reprompt, goodbye)."""
        self._stop_reply()
        self.reply = self._reply(None, script=Script(text, actions))
        if self.state is State.LISTENING:
            self._set(State.SPEAKING)

    # --- every frame -------------------------------------------------------------------------
    async def _tick(self) -> None:
        now = time.monotonic()
        while not self.leg.dtmf.empty():  # no DTMF menus yet: logged, so nothing goes unseen
            log.info("dtmf", digit=self.leg.dtmf.get_nowait())
        r = self.reply
        if r is not None and r.committed:
            self._caption(r)
            if (r.playout.started or r.playout.filler_started) and self.state is State.THINKING:
                self._set(State.SPEAKING)
            if r.timing is not None:
                if r.timing.first_audio is None and r.playout.started:
                    r.timing.first_audio = now
                if r.timing.ack_audio is None and r.playout.filler_started:
                    r.timing.ack_audio = now
            if r.playout.level_db is not None and not r.playout.done:
                self._echo_until = now + ECHO_TAIL_S
                self.detector.gate_db = r.playout.level_db - self.plan.turn.echo_margin_db
            if self._wants_barge_in():
                self._barge_in()
            elif r.finished:
                self._finish_reply(r, interrupted=False)
                await self._carry_out(r.actions)
                return
        if now >= self._echo_until:
            self.detector.gate_db = None
        await self._timers(now)

    def _caption(self, r: Reply) -> None:
        """Live captions for transports that show them: the caller's words once the turn is
        committed, the agent's sentences as their audio starts."""
        if r.user_text and self._captioned is not r:
            self._captioned = r
            self.leg.notify({"type": "caption", "who": "caller", "text": r.user_text})
        for text in r.playout.newly_playing():
            self.leg.notify({"type": "caption", "who": "agent", "text": text})

    def _wants_barge_in(self) -> bool:
        d = self.detector
        return not self._closing and d.in_speech and d.voiced_ms >= self.plan.turn.barge_in_min_ms

    def _barge_in(self) -> None:
        r = self.reply
        assert r is not None
        dropped = self.leg.flush()
        stopped = time.monotonic()
        r.cancel()
        if r.timing is not None:
            r.timing.barge_in = self._wall(self.detector.onset_t)
            r.timing.audio_stopped = stopped
        turn = r.timing.index if r.timing is not None else None
        log.info("barge-in", turn=turn, dropped_ms=dropped * 1000 // self.leg.sample_rate)
        self.leg.notify({"type": "barge_in"})
        if self.metrics is not None:
            self.metrics.barge_ins.inc()
        self._finish_reply(r, interrupted=True)
        self._set(State.LISTENING)

    def _finish_reply(self, r: Reply, interrupted: bool) -> None:
        """Record what the caller heard of a reply: in the history and in its timing record."""
        heard = r.playout.heard_text() if interrupted else r.playout.text()
        if r.user_text:
            self.history.add_user(r.user_text)
        self.history.add_agent(heard)
        if r.playout.started:
            self._last_agent = time.monotonic()
        self.reply = None
        t = r.timing
        if t is not None:
            # The caller's silence is counted from the end of the answer to them (a long answer
            # must not use up their time), but not from a reprompt.
            self._last_caller = time.monotonic()
            t.reply_text, t.interrupted = heard, interrupted
            t.action = ",".join(_name(a) for a in r.actions) or ("fallback" if r.failed else "")
            if not r.user_text and not r.failed:
                t.action = "ignored"  # noise, or nothing Whisper could make words of
            self.turns.append(t)
            log.info("turn record", **t.as_log())
            if self.metrics is not None:
                for name, seconds in t.intervals().items():
                    if name in TURN_INTERVALS:
                        self.metrics.turn_interval.labels(name).observe(seconds)
        if self.state is not State.ENDED and not self._closing:
            self._set(State.LISTENING)

    def _stop_reply(self, caller_left: bool = False) -> None:
        if self.reply is not None:
            if self.reply.committed and self.reply.playout.placed:
                self.leg.flush()
            self.reply.cancel()
            if self.reply.committed:
                self._finish_reply(self.reply, interrupted=caller_left or not self.reply.playout.done)
            self.reply = None

    async def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Hangup):
                await self._hangup()
                return
            if isinstance(action, Transfer):
                await self._transfer(action)
                return
        if self._closing:  # a goodbye without a hangup action (time limit, silence)
            await self._hangup()

    async def _hangup(self) -> None:
        self._set(State.ENDED)
        await asyncio.sleep(HANGUP_GRACE_S)
        await self.leg.hangup()

    async def _transfer(self, t: Transfer) -> None:
        self._set(State.TRANSFERRING)
        self.transfers.append(t)
        log.info("transfer requested", target=t.target, uri=t.uri)
        done = False
        if self.on_transfer is not None:
            try:
                done = await self.on_transfer(t)
            except Exception:
                log.exception("transfer failed", target=t.target)
        if done:
            if self.metrics is not None:
                self.metrics.calls.labels(self.leg.info.transport, "transferred").inc()
            self._set(State.ENDED)
            return
        self._set(State.LISTENING)
        assert self.plan.tools.transfer is not None
        self._say(self.plan.tools.transfer.unavailable)

    async def _timers(self, now: float) -> None:
        if self._closing or self.state is State.ENDED:
            return
        if now - self._started >= self.plan.max_duration_s:
            log.info("time limit reached", seconds=self.plan.max_duration_s)
            self._close(self.plan.time_limit)
            return
        if self.reply is not None or self.detector.in_speech or self.state is not State.LISTENING:
            return
        silence = self.plan.silence
        if now - self._last_caller >= silence.hangup_after_s:
            log.info("caller silent: hanging up", seconds=silence.hangup_after_s)
            self._close(silence.goodbye)
        elif now - max(self._last_caller, self._last_agent) >= silence.reprompt_after_s:
            log.info("caller silent: reprompt")
            self._say(silence.reprompt)

    def _close(self, line: str) -> None:
        self._say(line)
        self._closing = True


def _name(a: Action) -> str:
    return "hangup" if isinstance(a, Hangup) else f"transfer:{a.target}"


async def run_session(session: CallSession) -> None:
    """Run a session; an unexpected error is logged and the call hung up (the process goes on)."""
    try:
        await session.run()
    except Exception:
        log.exception("session failed")
        with contextlib.suppress(Exception):
            await session.leg.hangup()
