"""Deterministic stand-ins for the four engines, for fast unit tests of the logic around them.

They honour the same protocols, cancellation and timeouts as the real ones, and can be told
to fail or stall, so error paths can be tested without a model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from agent.audio.levels import dbfs
from agent.engines.base import CancelToken, EngineError, Preempted
from agent.engines.llm import Message
from agent.engines.stt import SAMPLE_RATE, Transcript
from agent.engines.tts import SpeechChunk


class FakeVAD:
    """Energy detector: probability rises with RMS level above `floor_dbfs`."""

    name = "fake"

    def __init__(self, floor_dbfs: float = -45.0) -> None:
        self.floor_dbfs = floor_dbfs

    def stream(self, sample_rate: int = 16000) -> FakeVADStream:
        return FakeVADStream(sample_rate, self.floor_dbfs)


class FakeVADStream:
    def __init__(self, sample_rate: int, floor_dbfs: float) -> None:
        self.sample_rate = sample_rate
        self._floor = floor_dbfs
        self.probability = 0.0

    def process(self, frame: np.ndarray) -> float:
        # 0 at the floor, 1 at 10 dB above it.
        self.probability = float(np.clip((dbfs(frame) - self._floor) / 10.0, 0.0, 1.0))
        return self.probability

    def reset(self) -> None:
        self.probability = 0.0


class FakeSTT:
    """Returns scripted texts in turn (the last one repeats); optionally fails or stalls."""

    name = "fake"

    def __init__(self, texts: Sequence[str] = ("hello",), delay_s: float = 0.0, fail: bool = False) -> None:
        self._texts = list(texts)
        self._delay = delay_s
        self._fail = fail
        self.calls: list[dict[str, object]] = []

    def transcribe(
        self, pcm: np.ndarray, *, prompt: str | None = None, hotwords: str | None = None
    ) -> Transcript:
        self.calls.append({"samples": len(pcm), "prompt": prompt, "hotwords": hotwords})
        if self._fail:
            raise EngineError("fake STT failure")
        time.sleep(self._delay)
        text = self._texts[min(len(self.calls) - 1, len(self._texts) - 1)]
        return Transcript(text, 0.9, 0.01, len(pcm) / SAMPLE_RATE, self._delay)


class FakeLLM:
    """Streams scripted replies word by word, `token_delay_s` apart."""

    name = "fake"

    def __init__(
        self,
        replies: Sequence[str] = ("Hello! How can I help you today?",),
        token_delay_s: float = 0.0,
        first_token_delay_s: float = 0.0,
        fail: bool = False,
    ) -> None:
        self._replies = list(replies)
        self._token_delay = token_delay_s
        self._first_delay = first_token_delay_s
        self._fail = fail
        self.requests: list[list[Message]] = []
        self.primed: list[list[Message]] = []

    def stream_chat(
        self,
        messages: Sequence[Message],
        *,
        cancel: CancelToken | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str]:
        cancel = cancel or CancelToken()
        self.requests.append(list(messages))
        if self._fail:
            raise EngineError("fake LLM failure")
        reply = self._replies[min(len(self.requests) - 1, len(self._replies) - 1)]
        words = reply.split(" ")[: max_tokens or None]
        if not _sleep(self._first_delay, cancel):
            return
        for i, word in enumerate(words):
            if i and not _sleep(self._token_delay, cancel):
                return
            if cancel.check():
                return
            yield word if i == 0 else " " + word

    def prime(self, messages: Sequence[Message]) -> None:
        self.primed.append(list(messages))

    def background_chat(
        self,
        messages: Sequence[Message],
        *,
        give_way: Callable[[], bool],
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str]:
        for piece in self.stream_chat(messages, max_tokens=max_tokens):
            if give_way():
                raise Preempted()
            yield piece

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1  # about 4 characters a token


class FakeTTS:
    """A 440 Hz tone, `seconds_per_char` long per character of the text."""

    name = "fake"

    def __init__(
        self, sample_rate: int = 22050, seconds_per_char: float = 0.06, delay_s: float = 0.0
    ) -> None:
        self.sample_rate = sample_rate
        self._spc = seconds_per_char
        self._delay = delay_s

    def synthesize(self, text: str, *, cancel: CancelToken | None = None) -> Iterator[SpeechChunk]:
        cancel = cancel or CancelToken()
        text = text.strip()
        if not text or not _sleep(self._delay, cancel):
            return
        n = int(len(text) * self._spc * self.sample_rate)
        t = np.arange(n) / self.sample_rate
        pcm = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        yield SpeechChunk(text, pcm, self.sample_rate)


def _sleep(seconds: float, cancel: CancelToken) -> bool:
    """Sleep in small steps; False if cancelled meanwhile (raises on timeout)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if cancel.check():
            return False
        time.sleep(min(left, 0.01))
    return not cancel.check()
