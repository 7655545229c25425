"""Voice activity detection: a shared engine hands out one stateful stream per call.

`VADStream.process(frame)` takes frames of any length at the stream's rate and returns the
current speech probability (0..1). Silero needs 32 ms windows (512 samples at 16 kHz, 256
at 8 kHz), so it buffers and answers with its newest window's probability; webrtcvad
answers 0 or 1 per 10/20/30 ms frame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.audio.frames import to_float32
from agent.engines.onnx import cpu_session


class VADStream(Protocol):
    """Per-call VAD state."""

    sample_rate: int

    def process(self, frame: np.ndarray) -> float:
        """Feed int16/float32 samples; return the latest speech probability."""
        ...

    def reset(self) -> None:
        """Forget all state (new call, or after the agent's own speech)."""
        ...


class VADEngine(Protocol):
    """Loaded once; creates independent streams."""

    name: str

    def stream(self, sample_rate: int = 16000) -> VADStream: ...


class SileroVAD:
    """Silero VAD (ONNX via onnxruntime; no torch). One session shared by all streams."""

    name = "silero"

    def __init__(self, model_path: Path, threads: int = 1) -> None:
        self._session = cpu_session(model_path, "Silero VAD", "silero-vad==6.2.3", threads)

    def stream(self, sample_rate: int = 16000) -> SileroStream:
        return SileroStream(self._session, sample_rate)


class SileroStream:
    """Silero state for one call: RNN state, the 64/32-sample context, and unfed samples."""

    def __init__(self, session: Any, sample_rate: int) -> None:  # an onnxruntime.InferenceSession
        if sample_rate not in (8000, 16000):
            raise ValueError(f"Silero VAD runs at 8000 or 16000 Hz, not {sample_rate}")
        self._session = session
        self.sample_rate = sample_rate
        self.window = 512 if sample_rate == 16000 else 256
        self._context_size = 64 if sample_rate == 16000 else 32
        self._sr = np.array(sample_rate, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, self._context_size), dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.probability = 0.0

    def process(self, frame: np.ndarray) -> float:
        self._pending = np.concatenate([self._pending, to_float32(frame)])
        while len(self._pending) >= self.window:
            chunk = self._pending[: self.window].reshape(1, -1)
            self._pending = self._pending[self.window :]
            x = np.concatenate([self._context, chunk], axis=1)
            out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
            self._context = x[:, -self._context_size :]
            self.probability = float(out[0][0])
        return self.probability


class WebRtcVAD:
    """Google's WebRTC VAD (GMM): very cheap, answers 0/1; aggressiveness 0..3."""

    name = "webrtc"

    def __init__(self, aggressiveness: int = 2) -> None:
        import webrtcvad

        if aggressiveness not in range(4):
            raise ValueError(f"webrtcvad aggressiveness is 0..3, not {aggressiveness}")
        self._make = lambda: webrtcvad.Vad(aggressiveness)

    def stream(self, sample_rate: int = 16000) -> WebRtcStream:
        return WebRtcStream(self._make, sample_rate)


class WebRtcStream:
    """webrtcvad for one call; buffers into 20 ms frames (it accepts only 10/20/30 ms)."""

    def __init__(self, make: Callable[[], Any], sample_rate: int) -> None:
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"webrtcvad runs at 8/16/32/48 kHz, not {sample_rate}")
        self._make = make
        self.sample_rate = sample_rate
        self._frame = sample_rate // 50
        self.reset()

    def reset(self) -> None:
        self._vad = self._make()
        self._pending = np.zeros(0, dtype=np.int16)
        self.probability = 0.0

    def process(self, frame: np.ndarray) -> float:
        if frame.dtype != np.int16:
            frame = (np.clip(frame, -1, 1) * 32767).astype(np.int16)
        self._pending = np.concatenate([self._pending, frame])
        while len(self._pending) >= self._frame:
            chunk, self._pending = self._pending[: self._frame], self._pending[self._frame :]
            self.probability = 1.0 if self._vad.is_speech(chunk.tobytes(), self.sample_rate) else 0.0
        return self.probability
