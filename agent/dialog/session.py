"""The call session: one per call, transport-neutral. Carries out what the controller decides.

`CallSession` is the thin runner around `TurnController`: it turns caller frames into speech
events (TurnDetector), engine progress and playback into events (Reply, Playout), timers and
DTMF into events, hands each to the controller, and carries out the commands it gets back
against the CallLeg and the engines. Events are handled one at a time, in order: one raised
while commands are being carried out waits in the queue.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Literal

import numpy as np
import structlog

from agent.dialog import events as ev
from agent.dialog.controller import TurnController
from agent.dialog.dialplan import Dialplan
from agent.dialog.history import History
from agent.dialog.prompt import Prompt, system_prompt
from agent.dialog.replies import State
from agent.dialog.reply import Reply
from agent.dialog.services import Services
from agent.dialog.timing import TurnTiming
from agent.dialog.tools import Transfer
from agent.dialog.turns import TurnDetector
from agent.engines.base import EngineError
from agent.engines.tts import SpeechChunk
from agent.metrics import TURN_INTERVALS, Metrics
from agent.telephony.call import CallLeg

log = structlog.get_logger("session")

HANGUP_GRACE_S = 0.3  # let the last frames reach the caller before BYE

TransferHandler = Callable[[Transfer], Awaitable[bool]]
TurnHandler = Callable[[TurnTiming], None]
CollectHandler = Callable[[str, str | None], None]  # a field's name and value (keypad digits)
PlanFinder = Callable[[str], Dialplan | None]
# How a call ended, as far as the session can tell (an error in it is the server's to see).
Outcome = Literal["completed", "caller hung up", "agent hung up", "transferred", "abandoned"]


class CallSession:
    """Runs one call with one dialplan; `turns` keeps each caller turn's timing record."""

    def __init__(
        self,
        leg: CallLeg,
        plan: Dialplan,
        services: Services,
        *,
        metrics: Metrics | None = None,
        on_transfer: TransferHandler | None = None,
        on_turn: TurnHandler | None = None,
        on_collect: CollectHandler | None = None,
        find_plan: PlanFinder | None = None,
    ) -> None:
        self.leg = leg
        self.plan = plan
        self.services = services
        self.metrics = metrics
        self.on_transfer = on_transfer
        self.on_turn = on_turn  # each caller turn's record, as soon as the turn is over
        self.on_collect = on_collect
        self.find_plan = find_plan  # for a menu key that hands the call to another dialplan
        self._lines: asyncio.Future[None] | None = None
        self._ended_by: Literal["caller", "agent", "transfer"] | None = None
        self._handed_over = asyncio.Event()  # a transfer worked: the agent is out of the call
        self._keys_pressed = 0
        self.detector = TurnDetector(services.vad.stream(leg.sample_rate), plan.turn)
        self.prompt, self.controller = self._conversation(plan)
        self._replies: dict[int, Reply] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._queue: deque[ev.Event] = deque()
        self._handling = False
        self._over = False
        self._acks: list[SpeechChunk] = []  # acknowledgements, synthesised once per call
        self._acks_used = 0
        self._fallback: SpeechChunk | None = None  # the fallback line, ready before it is needed
        self._prefill: asyncio.Future[None] | None = None  # preparing the reply while the caller talks
        self._started = time.monotonic()

    # what tests and the server read
    @property
    def state(self) -> State:
        return self.controller.state

    @property
    def turns(self) -> list[TurnTiming]:
        return self.controller.turns

    @property
    def history(self) -> History:
        return self.controller.history

    @property
    def transfers(self) -> list[Transfer]:
        return self.controller.transfers

    @property
    def outcome(self) -> Outcome:
        """How the call ended: who ended it, and whether the conversation had got anywhere."""
        if self._ended_by == "transfer":
            return "transferred"
        if self._ended_by == "agent":  # a goodbye the conversation led to, or a time/silence limit
            last = self.turns[-1].action if self.turns else ""
            return "completed" if "hangup" in last.split(",") else "agent hung up"
        said = any(t.user_text for t in self.turns) or self._keys_pressed
        return "caller hung up" if said else "abandoned"

    # --- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        # Bound in the call's context, so the reply tasks created below log it too.
        structlog.contextvars.bind_contextvars(dialplan=self.plan.name)
        background = [  # warm the LLM's prompt cache with what turns start with
            asyncio.ensure_future(self.services.prime(self.prompt.answered(self.plan.greeting))),
            asyncio.ensure_future(self._synthesize_lines()),
            asyncio.ensure_future(self._read_dtmf()),
        ]
        self.post(ev.Started(time.monotonic()))
        listening = asyncio.ensure_future(self._listen())
        handed_over = asyncio.ensure_future(self._handed_over.wait())
        try:
            # A transfer that joined the caller to a human may leave no frame to wake the loop.
            await asyncio.wait({listening, handed_over}, return_when=asyncio.FIRST_COMPLETED)
            if listening.done():
                listening.result()  # its error, if any, is the call's
        finally:
            listening.cancel()
            handed_over.cancel()
            if not self.controller.ended:
                self._ended_by = self._ended_by or "caller"
                self.post(ev.CallerLeft(time.monotonic()))
            for task in (*background, *(t for t in (self._prefill, self._lines) if t is not None)):
                task.cancel()
            for handle in self._timers.values():
                handle.cancel()
            for reply in self._replies.values():
                reply.cancel()
            if self._tasks:  # a hangup or transfer in progress
                await asyncio.wait(self._tasks, timeout=HANGUP_GRACE_S + 10)
            self._over = True  # late news (a frame mark in flight) changes nothing now
            log.info(
                "session ended", turns=len(self.turns), seconds=round(time.monotonic() - self._started, 1)
            )

    async def _listen(self) -> None:
        async for frame in self.leg.frames():
            for event in self.detector.feed(frame, time.monotonic()):
                self.post(event)
            if self.controller.ended:
                break

    def post(self, event: ev.Event) -> None:
        """Hand an event to the controller and carry out its commands (any loop callback)."""
        if self._over:
            return
        self._queue.append(event)
        if isinstance(event, ev.ReplyDone):
            self._replies.pop(event.reply, None)
        if self._handling:  # raised while carrying out commands: handled right after
            return
        self._handling = True
        try:
            while self._queue:
                for command in self.controller.handle(self._queue.popleft()):
                    self._carry_out(command)
        finally:
            self._handling = False

    def _conversation(
        self, plan: Dialplan, ids: Iterator[int] | None = None
    ) -> tuple[Prompt, TurnController]:
        history = History(system_prompt(plan), plan.llm.history_tokens, self.services.llm.count_tokens)
        return Prompt(plan, history), TurnController(plan, history, ids)

    def _switch(self, name: str) -> None:
        """A menu key handed the call to another dialplan: a new conversation, same call."""
        plan = self.find_plan(name) if self.find_plan is not None else None
        if plan is None:  # checked at start-up: cannot happen with a valid set of dialplans
            log.error("no such dialplan to switch to", dialplan=name)
            return
        log.info("switching dialplan", to=name)
        for reply in self._replies.values():
            reply.cancel()
        self._replies.clear()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self.leg.flush()
        old = self.controller
        self.plan = plan
        # Reply ids go on from the old conversation's: a late event of a cancelled reply
        # must not pass for one of the new conversation's.
        self.prompt, self.controller = self._conversation(plan, old._ids)
        self.controller.turns = old.turns  # one call, one list of turns
        # (The turn detector keeps the first dialplan's turn-taking: it is mid-stream.)
        structlog.contextvars.bind_contextvars(dialplan=plan.name)
        self._acks, self._acks_used = [], 0
        self._lines = asyncio.ensure_future(self._synthesize_lines())
        self.post(ev.Started(time.monotonic()))

    # --- commands ------------------------------------------------------------------------------
    def _carry_out(self, c: ev.Command) -> None:
        match c:
            case ev.Prefill(audio=audio):
                if self._prefill is None or self._prefill.done():  # else it would only queue
                    self._prefill = asyncio.ensure_future(self._prepare(audio))
            case ev.StartReply():
                if self._prefill is not None:  # the reply's own STT must not wait behind it
                    self._prefill.cancel()
                with structlog.contextvars.bound_contextvars(turn=c.turn):  # its tasks log `turn`
                    self._replies[c.reply] = self._answer(c)
            case ev.Say():
                self._replies[c.reply] = Reply(
                    c.reply, self.services, self.plan, self.prompt, self.leg, self.post,
                    script=(c.text, c.actions),
                )  # fmt: skip
            case ev.Commit():
                self._replies[c.reply].commit()
            case ev.Cancel():
                if (reply := self._replies.pop(c.reply, None)) is not None:
                    reply.cancel()
            case ev.Flush():
                self._flush(c)
            case ev.HoldOutput(on=on):
                self.leg.hold(on)
            case ev.SetEndSilence(ms=ms):
                self.detector.set_end_silence(ms)
            case ev.SetEchoGate(db=db):
                self.detector.set_echo_gate(db)
            case ev.Notify(event=event):
                self.leg.notify(event)
            case ev.SetTimer():
                self._set_timer(c.name, c.at)
            case ev.HangUp():
                self._ended_by = "agent"
                self._spawn(self._hang_up())
            case ev.StartTransfer():
                self._spawn(self._transfer(c.transfer))
            case ev.RecordTurn():
                self._record(c.timing)
            case ev.Collected(name=name, value=value):
                if self.on_collect is not None:
                    self.on_collect(name, value)
            case ev.SwitchDialplan(name=name):
                self._switch(name)

    def _answer(self, c: ev.StartReply) -> Reply:
        ack = None
        if self._acks:  # a caller's turn may be acknowledged, in turn with each line
            ack = self._acks[self._acks_used % len(self._acks)]
            self._acks_used += 1
        return Reply(
            c.reply, self.services, self.plan, self.prompt, self.leg, self.post,
            audio=c.audio, committed=c.committed, ack=ack, fallback=self._fallback, message=c.message,
        )  # fmt: skip

    async def _prepare(self, audio: np.ndarray) -> None:
        """Transcribe the caller's words so far and have the LLM read the prompt for them:
        the reply's prompt will share all of it but the last words (llama.cpp reuses it)."""
        try:
            heard = await self.services.transcribe(audio, self.prompt.stt_prompt, self.plan.stt.hotwords)
            if heard.text:
                await self.services.prime(self.prompt.for_turn(heard.text))
        except EngineError as exc:  # best effort: the reply does the work again anyway
            log.debug("prefill failed", error=str(exc))

    def _flush(self, c: ev.Flush) -> None:
        dropped = self.leg.flush()
        reply = self._replies.get(c.reply)
        heard = reply.playout.heard_text() if reply is not None else ""
        if c.barge_in:
            log.info("barge-in: audio flushed", dropped_ms=dropped * 1000 // self.leg.sample_rate)
            if self.metrics is not None:
                self.metrics.barge_ins.inc()
        self.post(ev.PlaybackStopped(c.reply, time.monotonic(), heard))

    def _set_timer(self, name: str, at: float) -> None:
        if (old := self._timers.pop(name, None)) is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        delay = max(at - time.monotonic(), 0.0)
        self._timers[name] = loop.call_later(delay, lambda: self.post(ev.TimerFired(name, time.monotonic())))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hang_up(self) -> None:
        await asyncio.sleep(HANGUP_GRACE_S)
        await self.leg.hangup()

    async def _transfer(self, t: Transfer) -> None:
        ok = False
        if self.on_transfer is not None:
            try:
                ok = await self.on_transfer(t)
            except Exception:
                log.exception("transfer failed", target=t.target)
        if ok:
            self._ended_by = "transfer"
        if ok and self.metrics is not None:
            self.metrics.calls.labels(self.leg.info.transport, "transferred").inc()
        self.post(ev.TransferResult(ok, time.monotonic()))
        if ok:
            self._handed_over.set()

    def _record(self, timing: TurnTiming) -> None:
        log.info("turn record", **timing.as_log())
        if self.on_turn is not None:
            self.on_turn(timing)
        if self.metrics is not None:
            for name, seconds in timing.intervals().items():
                if name in TURN_INTERVALS:
                    self.metrics.turn_interval.labels(name).observe(seconds)

    # --- background ------------------------------------------------------------------------
    async def _synthesize_lines(self) -> None:
        """The fallback line (the server synthesised it at start-up: this takes it from the
        cache), then the acknowledgements."""
        self._fallback = await self.services.cached_speech(self.plan.fallback, self.plan.voice)
        for text in self.plan.acknowledgements:
            chunk = await self.services.cached_speech(text, self.plan.voice)
            if chunk is not None:
                self._acks.append(chunk)

    async def _read_dtmf(self) -> None:
        while True:
            digit = await self.leg.dtmf.get()
            self._keys_pressed += 1
            self.post(ev.DtmfReceived(digit, time.monotonic()))
