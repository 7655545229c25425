"""Pure tones in a frame: an answering machine's beep (a sustained tone, typically 400-2000 Hz)."""

from __future__ import annotations

import numpy as np

from agent.audio.levels import dbfs


def tone_hz(
    frame: np.ndarray, rate: int, low_hz: float = 300.0, high_hz: float = 2500.0, min_dbfs: float = -40.0
) -> float | None:
    """The frequency of the tone `frame` is made of, if it is one: audible, and nearly all its
    energy in one narrow peak within [low_hz, high_hz] (speech spreads over many). None if not."""
    if len(frame) < 64 or dbfs(frame) < min_dbfs:
        return None
    x = frame.astype(np.float64) * np.hanning(len(frame))
    n = 4 * len(x)  # zero-padded: 12.5 Hz bins for a 20 ms frame at 16 kHz
    power = np.abs(np.fft.rfft(x, n)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / rate)
    peak = int(np.argmax(power))
    if not low_hz <= freqs[peak] <= high_hz:
        return None
    near = power[max(peak - 8, 0) : peak + 9].sum()  # the Hann main lobe at this padding
    return float(freqs[peak]) if near > 0.9 * power.sum() else None


class BeepTracker:
    """Consecutive frames of one tone: a beep once it has lasted `min_s` (a DTMF pair or a
    sung vowel does not: two peaks, or a wandering one)."""

    def __init__(self, frame_s: float = 0.02, min_s: float = 0.16, drift_hz: float = 40.0) -> None:
        self._need = max(round(min_s / frame_s), 1)
        self._drift = drift_hz
        self._hz: float | None = None
        self._run = 0

    def feed(self, hz: float | None) -> bool:
        """One frame's tone (from `tone_hz`); True on the frame a beep becomes long enough."""
        if hz is None or (self._hz is not None and abs(hz - self._hz) > self._drift):
            self._hz, self._run = hz, (1 if hz is not None else 0)
            return False
        self._hz = hz if self._hz is None else self._hz
        self._run += 1
        return self._run == self._need
