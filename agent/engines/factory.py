"""Build the real engines from config, each timed, with one clear error if a model is bad."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import Config
from agent.engines.llm import LlamaLLM, LLMEngine
from agent.engines.models import resolve
from agent.engines.stt import STTEngine, WhisperSTT
from agent.engines.tts import PiperTTS, TTSEngine
from agent.engines.vad import SileroVAD, VADEngine, WebRtcVAD

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LoadStats:
    seconds: float
    rss_mb: float  # resident memory added while loading


@dataclass
class Engines:
    """The four engines one process shares between all its calls."""

    vad: VADEngine
    stt: STTEngine
    llm: LLMEngine
    tts: TTSEngine
    stats: dict[str, LoadStats] = field(default_factory=dict)


def rss_mb() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_vad(cfg: Config, progress: Progress | None = None) -> VADEngine:
    if cfg.vad.engine == "webrtc":
        return WebRtcVAD(cfg.vad.webrtc_aggressiveness)
    return SileroVAD(resolve(cfg.vad.model, "vad", cfg.models.cache_dir, progress), threads=cfg.vad.threads)


def load_stt(cfg: Config, progress: Progress | None = None) -> STTEngine:
    s = cfg.stt
    return WhisperSTT(
        resolve(s.model, "stt", cfg.models.cache_dir, progress),
        name=f"whisper-{s.model}" if "/" not in s.model else "whisper",
        cpu_threads=s.cpu_threads,
        beam_size=s.beam_size,
        language=s.language,
        compression_ratio_threshold=s.compression_ratio_threshold,
        no_speech_threshold=s.no_speech_threshold,
        log_prob_threshold=s.log_prob_threshold,
    )


def load_llm(cfg: Config, progress: Progress | None = None) -> LLMEngine:
    c = cfg.llm
    return LlamaLLM(
        resolve(c.model, "llm", cfg.models.cache_dir, progress),
        name=c.model if "/" not in c.model else "llama",
        n_ctx=c.n_ctx,
        n_threads=c.n_threads,
        n_batch=c.n_batch,
        max_tokens=c.max_tokens,
        temperature=c.temperature,
        prefix_cache_mb=c.prefix_cache_mb,
    )


def load_tts(cfg: Config, progress: Progress | None = None) -> TTSEngine:
    t = cfg.tts
    return PiperTTS(
        resolve(t.voice, "tts", cfg.models.cache_dir, progress),
        name=f"piper-{t.voice}" if "/" not in t.voice else "piper",
        threads=t.threads,
        length_scale=t.length_scale,
        volume=t.volume,
    )


LOADERS: dict[str, Callable[[Config, Progress | None], object]] = {
    "vad": load_vad,
    "stt": load_stt,
    "llm": load_llm,
    "tts": load_tts,
}


def load_one(kind: str, cfg: Config, progress: Progress | None = None) -> tuple[object, LoadStats]:
    """Load one engine ("vad", "stt", "llm" or "tts"), timing it and measuring its memory."""
    if progress:
        progress(f"loading {kind} …")
    before, started = rss_mb(), time.perf_counter()
    engine = LOADERS[kind](cfg, progress)
    stats = LoadStats(time.perf_counter() - started, rss_mb() - before)
    if progress:
        progress(f"{kind} loaded in {stats.seconds:.2f} s")
    return engine, stats


def load_engines(cfg: Config, progress: Progress | None = None) -> Engines:
    """Load all four engines in order, recording time and memory of each."""
    stats: dict[str, LoadStats] = {}

    def one(kind: str) -> Any:  # the engine LOADERS[kind] makes (its type is the loader's)
        engine, stats[kind] = load_one(kind, cfg, progress)
        return engine

    return Engines(vad=one("vad"), stt=one("stt"), llm=one("llm"), tts=one("tts"), stats=stats)
