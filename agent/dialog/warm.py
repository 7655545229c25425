"""A warm transfer: the caller on hold, a new call to a human, a briefing only they hear, and
the two calls joined once the human accepts.

    caller: "...transferring you"  ─► hold audio ─────────────────────────► (joined) ◄─┐
    agent:  dial target ─► ringing ─► answered ─► briefing ─► 1 / "yes" ─► connect ─────┘
                                                         └─► 2 / "no" / silence / busy / no answer
                                                             ─► the caller is back with the agent

The caller never hears the briefing (it goes out on the human's leg only) and the human never
hears the hold audio (it goes out on the caller's leg only). Joining happens in the
transport's conference bridge (`CallLeg.connect`), not by REFER with Replaces: PSTN trunks and
many caller phones do not support Replaces, and the agent stays in control when it fails.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np
import structlog

from agent.audio.resample import resample
from agent.audio.wav import read_wav
from agent.dialog.dialplan import TransferTarget
from agent.dialog.services import Services
from agent.engines.base import EngineError
from agent.telephony.call import CallLeg, Dialer
from agent.telephony.siptext import uri_user

log = structlog.get_logger("transfer")
T = TypeVar("T")

Outcome = Literal["connected", "busy", "no_answer", "declined", "failed", "caller_left"]
RATE = 16000
SAID_WORDS = 40  # of the caller's last words, in the briefing

_YES = re.compile(
    r"\b(yes|yeah|yep|yup|sure|okay|ok|accept|connect|go ahead|put (?:them|him|her) through|i'll take it)\b"
)
_NO = re.compile(r"\b(no|nope|decline|busy|can't|cannot|not now|later|reject)\b")


def answer_of(text: str) -> bool | None:
    """The human's spoken answer to the briefing: True (take the call), False, or None (neither)."""
    t = text.lower().replace("’", "'")
    yes, no = _YES.search(t), _NO.search(t)
    if yes and no:  # the first one said counts ("no, wait, yes" is rare; "yes, no problem" not)
        return yes.start() < no.start()
    return True if yes else False if no else None


def briefing_text(target: TransferTarget, spoken: str, caller_uri: str, said: Sequence[str]) -> str:
    """The briefing for the human, from the target's template and the caller's last words."""
    words = " ".join(s.strip() for s in said if s.strip()).split()
    recent = " ".join(words[-SAID_WORDS:]).rstrip(".!?,") or "nothing yet"
    who = uri_user(caller_uri) or "unknown"
    if who.isdigit():  # a number is read digit by digit
        who = " ".join(who)
    return target.briefing.format(caller=who, said=recent, target=spoken)


def hold_audio(source: str) -> np.ndarray:
    """One loop of hold audio at 16 kHz: the built-in chime, or a WAV file (checked at load)."""
    if source != "tone":
        pcm, rate = read_wav(source)
        return resample(pcm, rate, RATE) if rate != RATE else pcm
    # Two soft notes (C5, E5; -26 dBFS, faded in and out), then silence: 3 s in all.
    out = np.zeros(3 * RATE)
    for i, hz in enumerate((523.25, 659.25)):
        n = int(0.35 * RATE)
        t = np.arange(n) / RATE
        note = np.sin(2 * np.pi * hz * t) * np.hanning(n) * 32768 * 10 ** (-26 / 20)
        start = int(i * 0.4 * RATE)
        out[start : start + n] += note
    return out.astype(np.int16)


class HoldLoop:
    """Keeps hold audio going on a leg: each copy, as its last frame goes out, queues the next
    (one copy always waiting, so there is no gap). `stop` flushes it."""

    def __init__(self, leg: CallLeg, pcm: np.ndarray) -> None:
        self._leg, self._pcm, self._on = leg, pcm, False

    def start(self) -> None:
        self._on = True
        self._leg.play(self._pcm, RATE)
        self._leg.play(self._pcm, RATE, on_end=self._again)

    def _again(self) -> None:
        if self._on:
            self._leg.play(self._pcm, RATE, on_end=self._again)

    def stop(self) -> None:
        if self._on:
            self._on = False
            self._leg.flush()


@dataclass
class WarmTiming:
    """Seconds from the start of the transfer (the transfer line said) to each step."""

    ringing_s: float | None = None
    answered_s: float | None = None
    briefing_s: float | None = None  # its first audio went out
    decided_s: float | None = None
    connected_s: float | None = None
    how: str = ""  # "key 1", "voice: yes, put them through", "timeout", ...

    def as_log(self) -> dict[str, object]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class WarmTransfer:
    """One warm transfer of `caller` to `target`; `run()` says how it went. When it returns
    "connected", `human` is the other leg, joined to the caller's; else the human (if any)
    has been hung up and the caller hears the agent again."""

    caller: CallLeg
    dial: Dialer
    services: Services
    target: TransferTarget
    briefing: str
    hold: np.ndarray
    voice: str | None = None
    human: CallLeg | None = None
    timing: WarmTiming = field(default_factory=WarmTiming)

    async def run(self) -> Outcome:
        started = time.monotonic()
        self._started = started
        hold = HoldLoop(self.caller, self.hold)
        hold.start()
        speech = asyncio.ensure_future(self._synthesize())  # while it rings
        try:
            outcome = await self._transfer(speech)
        finally:
            speech.cancel()
            if self.human is not None and self.timing.connected_s is None:
                await self.human.hangup()  # declined, or the caller left: the human goes
            hold.stop()
        log.info("warm transfer", uri=self.target.uri, outcome=outcome, **self.timing.as_log())
        return outcome

    def _since(self) -> float:
        return time.monotonic() - self._started

    async def _transfer(self, speech: asyncio.Future[np.ndarray | None]) -> Outcome:
        dialed = await self._unless_caller_leaves(self.dial(self.target.uri, self.target.ring_timeout_s))
        if dialed is None:
            return "caller_left"
        if dialed.ringing_at is not None:
            self.timing.ringing_s = dialed.ringing_at - self._started
        if dialed.leg is None:
            return _failure(dialed.code)
        self.human = human = dialed.leg
        self.timing.answered_s = self._since()
        briefing = await self._unless_caller_leaves(speech)
        if briefing is None:
            return "caller_left" if self.caller.ended.is_set() else "failed"
        human.play(briefing, RATE, on_start=self._briefed)
        limit = len(briefing) / RATE + self.target.decide_timeout_s
        decision = await self._unless_caller_leaves(self._decision(human, limit))
        self.timing.decided_s = self._since()
        if self.caller.ended.is_set():
            return "caller_left"
        if decision is None:
            self.timing.how = self.timing.how or "timeout"
            return "no_answer"
        if not decision:
            return "declined"
        human.flush()  # the rest of the briefing, if they accepted while it played
        if not await self.caller.connect(human):
            return "failed"
        self.timing.connected_s = self._since()
        return "connected"

    def _briefed(self) -> None:
        self.timing.briefing_s = self._since()

    async def _synthesize(self) -> np.ndarray | None:
        chunk = await self.services.speech(self.briefing, self.voice)
        if chunk is None or chunk.sample_rate == RATE:
            return chunk.pcm if chunk is not None else None
        return resample(chunk.pcm, chunk.sample_rate, RATE)

    async def _unless_caller_leaves(self, work: Awaitable[T]) -> T | None:
        """`work`'s result, or None (work cancelled) if the caller hangs up first."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(self.caller.ended.wait())
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return task.result() if task.done() and not task.cancelled() else None

    async def _decision(self, human: CallLeg, limit_s: float) -> bool | None:
        """1 or "yes": True; 2 or "no": False; nothing clear within `limit_s`, or the human
        hung up: None. Keys and words count from the moment they answered (a "yes" while the
        briefing plays stops it)."""
        keys = asyncio.ensure_future(self._key(human))
        words = asyncio.ensure_future(self._words(human))
        hung_up = asyncio.ensure_future(human.ended.wait())
        try:
            done, _ = await asyncio.wait(
                {keys, words, hung_up}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for t in (keys, words, hung_up):
                t.cancel()
        if keys in done:
            return keys.result()
        if words in done and words.result() is not None:
            return words.result()
        if done:
            self.timing.how = "hung up"
        return None

    async def _key(self, human: CallLeg) -> bool:
        while True:
            key = await human.dtmf.get()
            if key in "12":
                self.timing.how = f"key {key}"
                return key == "1"

    async def _words(self, human: CallLeg) -> bool | None:
        """Utterances (VAD) transcribed until one says yes or no; None if the call ends first."""
        vad = self.services.vad.stream(RATE)
        voiced: list[np.ndarray] = []
        quiet = 0
        async for frame in human.frames():
            speaking = vad.process(frame) > 0.5
            if speaking or voiced:
                voiced.append(frame)
            quiet = 0 if speaking else quiet + 1
            if voiced and (quiet >= 25 or len(voiced) >= 250):  # 0.5 s of silence, or 5 s
                utterance, voiced = np.concatenate(voiced), []
                if len(utterance) < 0.25 * RATE + 25 * 320:  # a click or a breath
                    continue
                try:
                    heard = await self.services.transcribe(utterance)
                except EngineError as exc:
                    self.services.failed("stt", exc)
                    continue
                answer = answer_of(heard.text)
                log.info("human answered", text=heard.text, accepts=answer)
                if answer is not None:
                    self.timing.how = f"voice: {heard.text.strip()}"
                    return answer
        return None


def _failure(code: int) -> Outcome:
    if code in (486, 600):
        return "busy"
    if code == 603:
        return "declined"
    if code in (408, 480, 487):
        return "no_answer"
    return "failed"
