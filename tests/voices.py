"""Caller voices for call tests: espeak-ng (a different synthesiser from the agent's Piper)."""

from __future__ import annotations

import numpy as np

from callsim.voice import at_phone_level  # speech scaled to about -20 dBFS (RMS 3277)
from callsim.voice import espeak as voice_of

__all__ = ["at_phone_level", "espeak", "onset_s", "quiet_from_s", "silence"]


def espeak(text: str, rate: int = 16000, voice: str = "en-us", wpm: int = 160) -> np.ndarray:
    """`text` spoken by espeak-ng, int16 mono at `rate`, at a telephone-like level (about -20 dBFS),
    untrimmed (tests place it by its full length)."""
    return voice_of(text, rate, voice, wpm, trimmed=False)


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.int16)


def onset_s(pcm: np.ndarray, rate: int, after_s: float = 0.0, threshold: int = 1000) -> float | None:
    """First time at or after `after_s` the signal is louder than `threshold`."""
    start = int(after_s * rate)
    idx = np.flatnonzero(np.abs(pcm[start:]) > threshold)
    return (start + int(idx[0])) / rate if len(idx) else None


def quiet_from_s(
    pcm: np.ndarray, rate: int, after_s: float, gap_s: float = 0.3, threshold: int = 1000
) -> float | None:
    """Start of the first stretch of `gap_s` or more without audio above `threshold`, from `after_s`."""
    loud = np.abs(pcm[int(after_s * rate) :]) > threshold
    n = int(gap_s * rate)
    run = 0
    for i, flag in enumerate(loud):
        run = 0 if flag else run + 1
        if run >= n:
            return after_s + (i - n + 1) / rate
    return None
