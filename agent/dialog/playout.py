"""What the caller has heard of the agent's speech, from the leg's count of samples sent.

Each chunk of a reply is queued on the leg with its text; its place in the outbound stream is
known, so when the agent is cut off, the text heard is every chunk sent in full plus the
word-proportional share of the chunk that was playing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent.telephony.call import CallLeg


@dataclass
class _Placed:
    text: str
    start: int  # leg samples (at leg.sample_rate) from the reply's base
    end: int


@dataclass
class Playout:
    """One reply's audio on one leg."""

    leg: CallLeg
    base: int = -1
    placed: list[_Placed] = field(default_factory=list)
    level_db: float | None = None  # loudest chunk's active speech level (echo gate)
    filler: tuple[int, int] | None = None  # an acknowledgement: leg samples (start, end), no text
    shown: int = 0  # chunks already reported by `newly_playing`

    def play_filler(self, pcm: np.ndarray, rate: int) -> None:
        """Queue a short acknowledgement ("Okay.") before the answer: heard, but not part of it."""
        start = self.leg.samples_sent + self.leg.samples_queued
        self.filler = (start, start + self.leg.play(pcm, rate))
        self._level(pcm)

    @property
    def filler_started(self) -> bool:
        return self.filler is not None and self.leg.samples_sent > self.filler[0]

    def play(self, text: str, pcm: np.ndarray, rate: int) -> None:
        if self.base < 0:
            self.base = self.leg.samples_sent + self.leg.samples_queued
        # samples_sent counts agent audio only (not the silence between chunks), so chunks
        # sit end to end in it.
        start = self.placed[-1].end if self.placed else 0
        n = self.leg.play(pcm, rate)
        self.placed.append(_Placed(text, start, start + n))
        self._level(pcm)

    def _level(self, pcm: np.ndarray) -> None:
        level = active_level_db(pcm)
        if self.level_db is None or level > self.level_db:
            self.level_db = level

    @property
    def sent(self) -> int:
        return 0 if self.base < 0 else self.leg.samples_sent - self.base

    @property
    def started(self) -> bool:
        return self.sent > 0

    @property
    def done(self) -> bool:
        """All queued audio has gone out."""
        if self.filler is not None and self.leg.samples_sent < self.filler[1]:
            return False
        return not self.placed or self.sent >= self.placed[-1].end

    def newly_playing(self) -> list[str]:
        """Texts of chunks whose audio has started going out since the last call (captions)."""
        sent = self.sent
        new = [p.text for p in self.placed[self.shown :] if p.start < sent]
        self.shown += len(new)
        return new

    def heard_text(self) -> str:
        sent = self.sent
        parts = []
        for p in self.placed:
            if sent >= p.end:
                parts.append(p.text)
            elif sent > p.start:
                words = p.text.split()
                share = (sent - p.start) / (p.end - p.start)
                parts.append(" ".join(words[: int(len(words) * share)]))
                break
            else:
                break
        return " ".join(x for x in parts if x)

    def text(self) -> str:
        return " ".join(p.text for p in self.placed)


def active_level_db(pcm: np.ndarray, frame: int = 320) -> float:
    """RMS level (dBFS) of the frames of `pcm` louder than -50 dBFS: its speech level."""
    x = np.asarray(pcm, dtype=np.float32) / 32768.0
    n = len(x) // frame * frame
    if n == 0:
        return -120.0
    power = np.mean(x[:n].reshape(-1, frame) ** 2, axis=1)
    active = power[power > 1e-5]
    return 10 * float(np.log10(np.mean(active) + 1e-12)) if len(active) else -120.0
