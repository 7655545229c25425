"""Answering-machine detection, local and fast: human or machine from the first seconds of an
answered outgoing call, from the audio alone (plus Whisper's words where they help).

What tells them apart (the classic rules of Asterisk's AMD, tuned on our synthetic callees in
`benchmarks/amd.py`):
- a person says something short ("Hello?", "Maria speaking") and then waits for us;
- a greeting runs on ("Hi, you've reached Maria, I can't take your call right now...");
- a beep (a sustained pure tone) is a machine's, and says its greeting is over;
- the first words, when Whisper has them early: "leave a message", "not available", "after the
  tone", "you've reached" are a machine's.
Nobody saying anything is "unknown": the agent goes on as with a person (who may be waiting).

`AmdState` is pure (frames' speech probability and tone in, a decision out); `Detector` runs it
on a leg with the VAD, the beep tracker and the STT.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import structlog

from agent.audio.tones import BeepTracker, tone_hz
from agent.dialog.dialplan import AmdParams
from agent.dialog.services import Services
from agent.engines.base import EngineError
from agent.telephony.call import CallLeg

log = structlog.get_logger("amd")

FRAME_S = 0.02
RATE = 16000
Verdict = Literal["human", "machine", "unknown"]
MACHINE_WORDS = re.compile(
    r"\b(leave (?:a|your) (?:message|name)|not available|unavailable|after the (?:tone|beep)|"
    r"you(?:'ve| have) reached|can't (?:take|come to)|voice ?mail|mailbox|away from|record your)",
    re.I,
)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str  # "short answer", "long greeting", "beep", "words: ...", "silence"
    at_s: float  # since the answer


class AmdState:
    """Frame by frame: speech probability and whether a beep just completed; a decision once
    the audio says enough."""

    def __init__(self, params: AmdParams) -> None:
        self.p = params
        self.onset: float | None = None  # of the first utterance
        self.voiced_s = 0.0  # its speech so far
        self.last_voice: float | None = None

    def feed(self, t: float, speech: bool, beep: bool) -> Decision | None:
        if beep:
            return Decision("machine", "beep", t)
        if speech:
            self.onset = t if self.onset is None else self.onset
            self.voiced_s += FRAME_S
            self.last_voice = t
            if self.voiced_s > self.p.human_speech_s:
                return Decision("machine", "long greeting", t)
            return None
        if self.last_voice is not None and t - self.last_voice >= self.p.end_silence_s:
            return Decision("human", "short answer", t)
        if self.onset is None and t >= self.p.silent_s:
            return Decision("unknown", "silence", t)
        return None

    def heard(self, text: str, t: float) -> Decision | None:
        """Whisper's reading of the first words: a machine's phrases decide at once."""
        found = MACHINE_WORDS.search(text)
        return Decision("machine", f"words: {found.group(0).lower()}", t) if found else None


class Detector:
    """Runs AMD on an answered leg: `classify()`, then for a machine `greeting_over()` (its
    beep, or the quiet after its greeting), reading the same frames."""

    def __init__(self, leg: CallLeg, services: Services, params: AmdParams) -> None:
        self.leg, self.services, self.p = leg, services, params
        self._vad = services.vad.stream(RATE)
        self._frames: AsyncIterator[np.ndarray] = aiter(leg.frames())
        self._t = 0.0  # seconds of audio seen since the answer
        self._beeps = BeepTracker()
        self.beep_at: float | None = None

    async def _next(self) -> tuple[np.ndarray, bool, bool] | None:
        frame = await anext(self._frames, None)
        if frame is None:
            return None
        self._t += FRAME_S
        beep = self._beeps.feed(tone_hz(frame, RATE))
        if beep:
            self.beep_at = self._t
        speech = self._vad.process(frame) >= 0.5 and not beep
        return frame, speech, beep

    async def classify(self) -> Decision:
        state = AmdState(self.p)
        voiced: list[np.ndarray] = []
        words: asyncio.Future[str] | None = None
        started = time.monotonic()
        try:
            while (step := await self._next()) is not None:
                frame, speech, beep = step
                if state.onset is not None:
                    voiced.append(frame)
                decision = state.feed(self._t, speech, beep)
                if decision is None and words is None and state.voiced_s >= self.p.words_after_s:
                    words = asyncio.ensure_future(self._transcribe(np.concatenate(voiced)))
                if decision is None and words is not None and words.done():
                    decision = state.heard(words.result(), self._t)
                if decision is not None:
                    break
            else:
                decision = Decision("unknown", "call ended", self._t)
        finally:
            if words is not None:
                words.cancel()
        log.info("amd", verdict=decision.verdict, reason=decision.reason, at_s=round(decision.at_s, 2),
                 took_s=round(time.monotonic() - started, 2))  # fmt: skip
        return decision

    async def _transcribe(self, pcm: np.ndarray) -> str:
        try:
            return (await self.services.transcribe(pcm)).text
        except EngineError as exc:
            self.services.failed("stt", exc)
            return ""

    async def greeting_over(self) -> bool:
        """Until a machine's greeting is over: its beep, or `greeting_end_s` of quiet after
        speech (some machines have no beep). False if the call ended or it never stopped."""
        if self.beep_at is not None:
            return True
        quiet, deadline = 0.0, self._t + self.p.greeting_max_s
        while self._t < deadline and (step := await self._next()) is not None:
            _, speech, beep = step
            if beep:
                return True
            quiet = 0.0 if speech else quiet + FRAME_S
            if quiet >= self.p.greeting_end_s:
                return True
        return False
