"""The engines as a call session uses them: async, bounded in time, failures counted.

One `Services` per process, shared by all sessions: one worker thread per engine, so on two
cores STT, LLM and TTS jobs of different calls queue instead of fighting for the CPU. Each
engine has a circuit breaker: an engine that keeps failing is not called (the caller hears the
fallback at once instead of after a timeout) until a probe call succeeds.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Generic, TypeVar

import numpy as np
import structlog

from agent.config import EngineGuardConfig, FaultConfig
from agent.engines.base import CancelToken, EngineError, EngineTimeout, Preempted
from agent.engines.breaker import CircuitBreaker
from agent.engines.faults import with_faults
from agent.engines.llm import LLMEngine, Message
from agent.engines.stt import STTEngine, Transcript
from agent.engines.tts import SpeechChunk, TTSEngine
from agent.engines.vad import VADEngine
from agent.engines.worker import BACKGROUND, FOREGROUND, EngineStream, EngineWorker
from agent.metrics import Metrics

log = structlog.get_logger("services")
T = TypeVar("T")
GUARDED = ("stt", "llm", "tts")
PRIME_TIMEOUT_S = 60.0  # evaluating a system prompt the cache does not hold yet
BACKGROUND_TIMEOUT_S = 120.0  # background LLM work: waiting for a gap in live work, or for one token


@dataclass
class Services:
    vad: VADEngine
    stt: STTEngine
    llm: LLMEngine
    voices: dict[str, TTSEngine]  # by voice name; `default_voice` is the config's tts.voice
    default_voice: str
    llm_timeout_s: float = 8.0
    metrics: Metrics | None = None
    guard: EngineGuardConfig = field(default_factory=EngineGuardConfig)
    _cached: dict[tuple[str, str | None], SpeechChunk] = field(init=False, default_factory=dict)
    breakers: dict[str, CircuitBreaker] = field(init=False)
    stt_worker: EngineWorker = field(init=False)
    llm_worker: EngineWorker = field(init=False)
    tts_worker: EngineWorker = field(init=False)

    def __post_init__(self) -> None:
        self.stt_worker = EngineWorker("stt")
        self.llm_worker = EngineWorker("llm")
        self.tts_worker = EngineWorker("tts")
        g = self.guard
        self.breakers = {e: CircuitBreaker(g.failures, g.window_s, g.cooldown_s) for e in GUARDED}
        if self.metrics is not None:
            for w in (self.stt_worker, self.llm_worker, self.tts_worker):
                self.metrics.watch_queue(w.name, functools.partial(_queued, w))
            for name, breaker in self.breakers.items():
                self.metrics.watch_breaker(name, functools.partial(_state, breaker))

    def breaker_states(self) -> dict[str, str]:
        return {name: b.state.name.lower() for name, b in self.breakers.items()}

    def inject_faults(self, faults: list[FaultConfig]) -> None:
        """Test-only: wrap the engines that have faults configured (see agent/engines/faults.py)."""
        if not faults:
            return
        log.warning(
            "FAULT INJECTION ACTIVE: engines fail on purpose", faults=[f.model_dump() for f in faults]
        )
        wrapped = with_faults({"vad": self.vad, "stt": self.stt, "llm": self.llm}, faults)
        self.vad, self.stt, self.llm = wrapped["vad"], wrapped["stt"], wrapped["llm"]
        for voice, engine in self.voices.items():
            self.voices[voice] = with_faults({"tts": engine}, faults)["tts"]

    def _allow(self, engine: str) -> None:
        """Raise at once when the engine's breaker is open."""
        if not self.breakers[engine].allow(time.monotonic()):
            raise EngineError(f"{engine} is failing (circuit open): not called")

    def _outcome(self, engine: str, ok: bool) -> None:
        """Feed a call's outcome to the engine's breaker (a cancelled call is neither)."""
        if ok:
            self.breakers[engine].succeeded()
        else:
            self.breakers[engine].failed(time.monotonic())

    def tts(self, voice: str | None) -> TTSEngine:
        return self.voices.get(voice or self.default_voice) or self.voices[self.default_voice]

    def failed(self, engine: str, exc: BaseException) -> None:
        """Count and log an engine failure (the session decides what the caller hears)."""
        kind = "timeout" if isinstance(exc, EngineTimeout) else "error"
        log.warning("engine failed", engine=engine, kind=kind, error=str(exc))
        if self.metrics is not None:
            self.metrics.engine_errors.labels(engine, kind).inc()

    async def transcribe(
        self, pcm: np.ndarray, prompt: str = "", hotwords: str = "", background: bool = False
    ) -> Transcript:
        """`background`: no caller waits (an HTTP upload): it starts only when no live call's
        transcription is queued, and gets a longer deadline (it may wait behind them)."""
        self._allow("stt")
        try:
            transcript = await self.stt_worker.run(
                self.stt.transcribe,
                pcm,
                prompt=prompt or None,
                hotwords=hotwords or None,
                timeout_s=self.guard.stt_timeout_s * (4 if background else 1),
                priority=BACKGROUND if background else FOREGROUND,
            )
        except Exception:  # any error or crash of the engine counts against it
            self._outcome("stt", False)
            raise
        self._outcome("stt", True)
        return transcript

    def chat(
        self,
        messages: Sequence[Message],
        cancel: CancelToken,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout_s: float | None = None,
    ) -> _Watched[str]:
        def make() -> Iterator[str]:
            return self.llm.stream_chat(
                messages, cancel=cancel, max_tokens=max_tokens, temperature=temperature
            )

        return _Watched(self, "llm", self.llm_worker.stream(make, cancel, timeout_s or self.llm_timeout_s))

    async def background_chat(
        self, messages: Sequence[Message], max_tokens: int, temperature: float = 0.0, tries: int = 30
    ) -> str:
        """The text of a reply no caller waits on (a post-call summary). It runs only while no
        live work is queued for the LLM and gives way as soon as some is (between slices of
        its prompt and between tokens); then it waits a little and starts again."""
        wait = 0.5
        for _ in range(tries):
            self._allow("llm")

            def make() -> Iterator[str]:
                return self.llm.background_chat(
                    messages,
                    give_way=self._live_work,
                    max_tokens=max_tokens,
                    temperature=temperature,
                )

            pieces: list[str] = []
            try:
                # The first piece may wait behind live work for long: a generous deadline.
                stream = self.llm_worker.stream(
                    make, CancelToken(), BACKGROUND_TIMEOUT_S, priority=BACKGROUND
                )
                async with stream as items:
                    async for piece in items:
                        pieces.append(piece)
                return "".join(pieces)
            except Preempted:
                await asyncio.sleep(wait)
                wait = min(wait * 2, 8.0)
        raise EngineError(f"background LLM work gave way to live calls {tries} times in a row")

    async def live_idle(self) -> None:
        """Until no live call has engine work queued or running: background work (an HTTP
        upload's next piece) goes into the gaps between callers' turns. Polled every 20 ms:
        the workers have no cross-engine idle event, and a poll costs nothing next to a piece."""
        while self._live_work():
            await asyncio.sleep(0.02)

    def _live_work(self) -> bool:
        """A live call has engine work queued or running (STT, LLM or TTS): they share the cores."""
        return any(w.give_way() for w in (self.stt_worker, self.llm_worker, self.tts_worker))

    def speak(
        self, text: str, voice: str | None, cancel: CancelToken, background: bool = False
    ) -> _Watched[SpeechChunk]:
        engine = self.tts(voice)
        stream = self.tts_worker.stream(
            lambda: engine.synthesize(text, cancel=cancel),
            cancel,
            self.guard.tts_timeout_s * (4 if background else 1),
            priority=BACKGROUND if background else FOREGROUND,
        )
        return _Watched(self, "tts", stream)

    async def speech(self, text: str, voice: str | None) -> SpeechChunk | None:
        """`text` synthesised whole (a briefing, a voicemail message); None if TTS fails."""
        try:
            async with self.speak(text, voice, CancelToken()) as chunks:
                pcm = [c.pcm async for c in chunks]
        except EngineError as exc:
            self.failed("tts", exc)
            return None
        return SpeechChunk(text, np.concatenate(pcm), self.tts(voice).sample_rate) if pcm else None

    async def cached_speech(self, text: str, voice: str | None) -> SpeechChunk | None:
        """A short line synthesised once and kept (acknowledgements); None if TTS fails."""
        key = (text, voice)
        if key not in self._cached:
            chunk = await self.speech(text, voice)
            if chunk is None:
                return None
            self._cached[key] = chunk
        return self._cached[key]

    async def prime(self, messages: Sequence[Message]) -> None:
        """Warm the LLM's prompt cache with a session's system prompt (failures only logged)."""
        started = time.monotonic()
        try:
            # A prime evaluates a whole prompt before its one token (seconds for a new system
            # prompt on 2 cores): the per-token deadline would abandon healthy work.
            timeout = max(self.llm_timeout_s, PRIME_TIMEOUT_S)
            await self.llm_worker.run(self.llm.prime, messages, timeout_s=timeout)
        except EngineError as exc:
            self.failed("llm", exc)
        else:
            log.debug("llm primed", seconds=round(time.monotonic() - started, 3))

    async def warm(self) -> None:
        """Run each engine once, so the first caller does not pay for first-use set-up
        (Whisper's first two transcriptions take about twice as long)."""
        noise = (np.random.default_rng(0).standard_normal(16000) * 300).astype(np.int16)
        started = time.monotonic()
        try:
            for _ in range(2):
                await self.transcribe(noise)
            for voice in self.voices:
                async with self.speak("Hello.", voice, CancelToken()) as chunks:
                    async for _ in chunks:
                        pass
        except EngineError as exc:
            self.failed("warm-up", exc)
        log.info("engines warmed", seconds=round(time.monotonic() - started, 2))

    def close(self) -> None:
        for w in (self.stt_worker, self.llm_worker, self.tts_worker):
            w.close()


def _queued(worker: EngineWorker) -> int:
    return worker.queued


def _state(breaker: CircuitBreaker) -> float:
    return float(breaker.state)


class _Watched(Generic[T]):
    """An engine stream whose outcome feeds the engine's breaker; refused while it is open."""

    def __init__(self, services: Services, engine: str, stream: EngineStream[T]) -> None:
        self._services, self._engine, self._stream = services, engine, stream

    async def __aenter__(self) -> EngineStream[T]:
        self._services._allow(self._engine)
        return await self._stream.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stream.__aexit__(kind, exc, tb)
        if exc is None or isinstance(exc, Exception):  # an error or crash of the engine counts
            self._services._outcome(self._engine, exc is None)
