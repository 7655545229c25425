"""Text to speech: one piece of text in, its PCM out.

The engine does not split text: the dialog's chunker (agent/dialog/chunker.py) is the one
place that decides where speech is cut, and hands the engine one chunk at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from agent.engines.base import CancelToken, ModelError


@dataclass(frozen=True)
class SpeechChunk:
    """Synthesised audio for one piece of text (the pipeline keeps both, to know what was heard)."""

    text: str
    pcm: np.ndarray  # int16 mono
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.sample_rate


class TTSEngine(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str, *, cancel: CancelToken | None = None) -> Iterator[SpeechChunk]:
        """Yield the speech of `text` (one chunk; none for blank text or when cancelled first).
        Blocking: use a worker."""
        ...


class PiperTTS:
    """Piper (VITS, ONNX) with our own session options so it does not take both cores."""

    def __init__(
        self,
        model_path: Path,
        *,
        name: str = "piper",
        threads: int = 1,
        length_scale: float | None = None,
        volume: float = 0.8,
    ) -> None:
        import onnxruntime as ort
        from piper import PiperVoice, SynthesisConfig
        from piper.config import PiperConfig

        self.name = name
        config_path = Path(f"{model_path}.json")
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            session = ort.InferenceSession(
                str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(
                f"cannot load Piper voice {model_path} (config {config_path}): {exc}",
                hint="a Piper voice is an .onnx file with its .onnx.json beside it",
            ) from exc
        except Exception as exc:  # onnxruntime's own errors
            raise ModelError(f"cannot load Piper voice {model_path}: {exc}") from exc
        self._voice = PiperVoice(config=config, session=session)
        self.sample_rate: int = config.sample_rate
        # normalize_audio scales each sentence to full range; volume < 1 keeps headroom for
        # resampler overshoot and G.711.
        self._syn = SynthesisConfig(length_scale=length_scale, normalize_audio=True, volume=volume)

    def synthesize(self, text: str, *, cancel: CancelToken | None = None) -> Iterator[SpeechChunk]:
        text = text.strip()
        if not text or (cancel is not None and cancel.check()):
            return
        pieces = [c.audio_int16_array for c in self._voice.synthesize(text, self._syn)]
        if pieces:
            yield SpeechChunk(text, np.concatenate(pieces), self.sample_rate)
