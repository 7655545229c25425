"""One reply's audio on the leg: queued chunk by chunk, reported as it plays, and what was heard.

Each chunk is queued on the leg with callbacks on its first and last frame, so the output side
raises events: a chunk started playing (captions, first-audio time, the echo gate), and all of
the reply's audio has gone out. When the agent is cut off, the text heard is every chunk sent in
full plus the word-proportional share of the chunk that was playing, from the leg's count of
samples sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agent.audio.levels import active_level_db
from agent.dialog.events import ChunkStarted
from agent.telephony.call import CallLeg


@dataclass
class _Placed:
    text: str
    start: int  # leg samples from the reply's base (agent audio only)
    end: int


class Playout:
    """What one reply has queued on one leg."""

    def __init__(self, leg: CallLeg, reply: int, post: Callable[[ChunkStarted], None]) -> None:
        self._leg = leg
        self._reply = reply
        self._post = post
        self._base = -1
        self._chunks: list[_Placed] = []
        self._queued = 0  # pieces queued (chunks and acknowledgement)
        self._ended = 0  # pieces whose last frame has gone out
        self._closed = False
        self._drained = asyncio.Event()
        self._level = -120.0  # loudest active speech level queued (dBFS)

    @property
    def placed(self) -> bool:
        """Some of the answer (not an acknowledgement) has been queued."""
        return bool(self._chunks)

    def play(self, text: str, pcm: np.ndarray, rate: int, *, ack: bool = False) -> None:
        """Queue a chunk of the answer, or (`ack`) an acknowledgement: heard, not part of it."""
        self._level = max(self._level, active_level_db(pcm))

        def started() -> None:
            # The loudest piece queued so far sets the echo gate: what comes back may be any of it.
            self._post(ChunkStarted(self._reply, time.monotonic(), "" if ack else text, self._level, ack))

        if not ack and self._base < 0:  # an acknowledgement only ever comes before the answer
            self._base = self._leg.samples_sent + self._leg.samples_queued
        self._queued += 1
        n = self._leg.play(pcm, rate, started, self._one_ended)
        if n == 0:  # nothing queued (the call is over): no callback will come
            self._ended += 1
        if not ack:
            # samples_sent counts agent audio only (not the silence between chunks), so the
            # chunks sit end to end in it.
            start = self._chunks[-1].end if self._chunks else 0
            self._chunks.append(_Placed(text, start, start + n))

    def close(self) -> None:
        """Nothing more will be queued."""
        self._closed = True
        self._check_drained()

    async def drained(self) -> None:
        """Wait until the reply is closed and all its audio has gone out."""
        await self._drained.wait()

    def _one_ended(self) -> None:
        self._ended += 1
        self._check_drained()

    def _check_drained(self) -> None:
        if self._closed and self._ended >= self._queued:
            self._drained.set()

    def heard_text(self) -> str:
        """The answer's words the caller has heard so far."""
        sent = 0 if self._base < 0 else self._leg.samples_sent - self._base
        parts = []
        for p in self._chunks:
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
        return " ".join(p.text for p in self._chunks)
