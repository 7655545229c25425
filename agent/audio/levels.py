"""Signal levels of int16 audio: the one place level and energy are computed."""

from __future__ import annotations

import numpy as np

FULL_SCALE = 32768.0


def block_db(pcm: np.ndarray, block: int) -> np.ndarray:
    """Energy of each whole block of `block` samples, in dB over 1 LSB² (silence ≈ 0 dB)."""
    n = len(pcm) // block
    x = np.asarray(pcm[: n * block], dtype=np.float32).reshape(n, block)
    db: np.ndarray = 10 * np.log10(np.mean(x**2, axis=1) + 1.0)
    return db


def dbfs(pcm: np.ndarray) -> float:
    """RMS level in dBFS (-120 for silence or no samples)."""
    if not len(pcm):
        return -120.0
    x = np.asarray(pcm, dtype=np.float32) / FULL_SCALE
    return max(10 * float(np.log10(float(np.mean(x * x)) + 1e-12)), -120.0)


def active_level_db(pcm: np.ndarray, frame: int = 320) -> float:
    """RMS level (dBFS) of the frames of `pcm` louder than -50 dBFS: its speech level."""
    x = np.asarray(pcm, dtype=np.float32) / FULL_SCALE
    n = len(x) // frame * frame
    if n == 0:
        return -120.0
    power = np.mean(x[:n].reshape(-1, frame) ** 2, axis=1)
    active = power[power > 1e-5]
    return 10 * float(np.log10(np.mean(active) + 1e-12)) if len(active) else -120.0
