"""Fault injection, for tests only: make an engine fail, hang or slow down on chosen calls.

Active only when the config has a `faults:` list (it is empty by default, and the server logs a
warning when it is not). Each fault names an engine, a mode and which calls of that engine
(1-based, counted from the first call after start-up warm-up; [] = every call):
- fail: the call raises EngineError;
- hang: the call blocks for `seconds` without ever checking for cancellation (a stuck native
  library), so only the worker's deadline and restart get the call going again;
- slow: the call waits `seconds`, then works.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import structlog

from agent.config import FaultConfig
from agent.engines.base import CancelToken, EngineError
from agent.engines.llm import LLMEngine, Message
from agent.engines.stt import STTEngine, Transcript
from agent.engines.tts import SpeechChunk, TTSEngine
from agent.engines.vad import VADEngine, VADStream

log = structlog.get_logger("faults")


class _Trigger:
    """Counts one engine's calls and acts out the faults configured for it."""

    def __init__(self, faults: list[FaultConfig]) -> None:
        self._faults = faults
        self._calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self._calls += 1
            n = self._calls
        for f in self._faults:
            if f.calls and n not in f.calls:
                continue
            log.warning("injected fault", engine=f.engine, mode=f.mode, call=n)
            if f.mode == "fail":
                raise EngineError(f"injected {f.engine} failure (call {n})")
            time.sleep(f.seconds)  # hang or slow: no cancellation check on purpose


class FaultySTT:
    def __init__(self, inner: STTEngine, trigger: _Trigger) -> None:
        self._inner, self._trigger, self.name = inner, trigger, inner.name

    def transcribe(
        self, pcm: np.ndarray, *, prompt: str | None = None, hotwords: str | None = None
    ) -> Transcript:
        self._trigger()
        return self._inner.transcribe(pcm, prompt=prompt, hotwords=hotwords)


class FaultyLLM:
    def __init__(self, inner: LLMEngine, trigger: _Trigger) -> None:
        self._inner, self._trigger, self.name = inner, trigger, inner.name

    def stream_chat(
        self,
        messages: Sequence[Message],
        *,
        cancel: CancelToken | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str]:
        self._trigger()
        yield from self._inner.stream_chat(
            messages, cancel=cancel, max_tokens=max_tokens, temperature=temperature
        )

    def prime(self, messages: Sequence[Message]) -> None:
        self._inner.prime(messages)

    def background_chat(
        self,
        messages: Sequence[Message],
        *,
        give_way: Callable[[], bool],
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str]:
        self._trigger()
        yield from self._inner.background_chat(
            messages, give_way=give_way, max_tokens=max_tokens, temperature=temperature
        )

    def count_tokens(self, text: str) -> int:
        return self._inner.count_tokens(text)


class FaultyTTS:
    def __init__(self, inner: TTSEngine, trigger: _Trigger) -> None:
        self._inner, self._trigger = inner, trigger
        self.name, self.sample_rate = inner.name, inner.sample_rate

    def synthesize(self, text: str, *, cancel: CancelToken | None = None) -> Iterator[SpeechChunk]:
        self._trigger()
        yield from self._inner.synthesize(text, cancel=cancel)


class FaultyVAD:
    """VAD runs on the call's own loop, frame by frame: only `fail` is meaningful here (a VAD
    that raises makes the frame count as silence); calls are frames."""

    def __init__(self, inner: VADEngine, trigger: _Trigger) -> None:
        self._inner, self._trigger, self.name = inner, trigger, inner.name

    def stream(self, sample_rate: int = 16000) -> VADStream:
        return _FaultyVADStream(self._inner.stream(sample_rate), self._trigger)


class _FaultyVADStream:
    def __init__(self, inner: VADStream, trigger: _Trigger) -> None:
        self._inner, self._trigger = inner, trigger
        self.sample_rate = inner.sample_rate

    def process(self, frame: np.ndarray) -> float:
        self._trigger()
        return self._inner.process(frame)

    def reset(self) -> None:
        self._inner.reset()


def with_faults(engines: dict[str, Any], faults: list[FaultConfig]) -> dict[str, Any]:
    """The engines, those with faults configured wrapped (keys: vad, stt, llm, tts; each voice
    is wrapped on its own, so a TTS fault's calls count per voice)."""
    wrappers: dict[str, Any] = {"stt": FaultySTT, "llm": FaultyLLM, "tts": FaultyTTS, "vad": FaultyVAD}
    out = dict(engines)
    for kind, wrap in wrappers.items():
        mine = [f for f in faults if f.engine == kind]
        if mine and engines.get(kind) is not None:
            out[kind] = wrap(engines[kind], _Trigger(mine))
    return out
