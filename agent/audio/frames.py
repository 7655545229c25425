"""Fixed-size framing (10/20/30 ms) and int16/float32 conversion."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

FRAME_MS = (10, 20, 30)


def frame_samples(rate: int, frame_ms: int) -> int:
    """Samples in one frame, e.g. 320 for 20 ms at 16 kHz."""
    if frame_ms not in FRAME_MS:
        raise ValueError(f"frame_ms must be one of {FRAME_MS}, not {frame_ms}")
    return rate * frame_ms // 1000


def to_float32(pcm: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1); float input is returned as float32."""
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    return pcm.astype(np.float32, copy=False)


def to_int16(pcm: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> int16 (clipped); int16 input is returned as is."""
    if pcm.dtype == np.int16:
        return pcm
    return np.asarray((np.clip(pcm, -1.0, 32767 / 32768) * 32768.0).astype(np.int16))


def split_frames(pcm: np.ndarray, rate: int, frame_ms: int = 20, pad: bool = True) -> Iterator[np.ndarray]:
    """Cut a signal into frames; the last partial one is zero-padded (or dropped)."""
    n = frame_samples(rate, frame_ms)
    for start in range(0, len(pcm), n):
        frame = pcm[start : start + n]
        if len(frame) < n:
            if not pad:
                return
            frame = np.concatenate([frame, np.zeros(n - len(frame), dtype=pcm.dtype)])
        yield frame


class Framer:
    """Re-chunk a stream of arbitrary-length pieces into exact frames."""

    def __init__(self, rate: int, frame_ms: int = 20, dtype: type = np.int16) -> None:
        self.rate = rate
        self.size = frame_samples(rate, frame_ms)
        self._buf: np.ndarray = np.zeros(0, dtype=dtype)

    def push(self, pcm: np.ndarray) -> list[np.ndarray]:
        """Add samples; return the complete frames now available."""
        self._buf = np.concatenate([self._buf, pcm.astype(self._buf.dtype, copy=False)])
        whole = len(self._buf) // self.size * self.size
        frames = [self._buf[i : i + self.size] for i in range(0, whole, self.size)]
        self._buf = self._buf[whole:]
        return frames

    @property
    def pending(self) -> int:
        """Samples waiting for a frame to fill."""
        return len(self._buf)

    def clear(self) -> None:
        self._buf = self._buf[:0]
