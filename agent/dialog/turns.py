"""Turn detection: VAD probabilities of 20 ms caller frames → speech start/pause/end events.

Pure logic on frames; time is the caller's media clock (frames × 20 ms), so the same audio
always gives the same events, on a live call as in a test.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from agent.dialog.dialplan import TurnParams
from agent.engines.vad import VADStream

FRAME_MS = 20


@dataclass(frozen=True)
class SpeechStarted:
    t: float  # media time of onset (s)


@dataclass(frozen=True)
class SpeechPaused:
    """Silence reached `speculative_ms`: the audio so far may be the whole turn."""

    t: float  # media time speech stopped
    audio: np.ndarray


@dataclass(frozen=True)
class SpeechResumed:
    t: float


@dataclass(frozen=True)
class TurnEnded:
    t_speech_end: float  # media time the caller stopped talking
    t: float  # media time the end of turn was decided
    audio: np.ndarray  # the utterance, 16 kHz int16, with pre-roll


TurnEvent = SpeechStarted | SpeechPaused | SpeechResumed | TurnEnded


def level_db(frame: np.ndarray) -> float:
    """RMS level of int16 audio in dBFS."""
    x = frame.astype(np.float32) / 32768.0
    return 10 * float(np.log10(float(np.mean(x * x)) + 1e-12))


class TurnDetector:
    """One per call. Feed every caller frame to `feed`; it returns the events it caused.

    `gate_db`, when set (the session sets it while the agent's audio may echo back), makes
    frames quieter than it count as silence whatever the VAD says.
    """

    def __init__(self, vad: VADStream, params: TurnParams, rate: int = 16000) -> None:
        self._vad = vad
        self.p = params
        self._rate = rate
        self._preroll: deque[np.ndarray] = deque(maxlen=max(params.preroll_ms // FRAME_MS, 1))
        self._audio: list[np.ndarray] = []
        self._frames = 0  # media clock
        self._voiced_run = 0  # consecutive voiced frames before onset is confirmed
        self._unvoiced_in_onset = 0
        self._silence_run = 0  # frames of silence since speech last stopped
        self._paused = False
        self.in_speech = False  # confirmed speech (SpeechStarted sent, TurnEnded not yet)
        self.onset_t = 0.0
        self.gate_db: float | None = None

    @property
    def now(self) -> float:
        return self._frames * FRAME_MS / 1000

    @property
    def voiced_ms(self) -> int:
        """How long the current candidate/confirmed speech has been voiced (for barge-in)."""
        if self.in_speech:
            return int((self.now - self.onset_t) * 1000) if self._silence_run == 0 else 0
        return self._voiced_run * FRAME_MS

    def voiced(self, frame: np.ndarray) -> bool:
        prob = self._vad.process(frame)
        if self.gate_db is not None and level_db(frame) < self.gate_db:
            return False
        threshold = (
            self.p.end_threshold if self.in_speech and self._silence_run == 0 else self.p.start_threshold
        )
        return prob >= threshold

    def feed(self, frame: np.ndarray) -> list[TurnEvent]:
        self._frames += 1
        is_voiced = self.voiced(frame)
        if not self.in_speech:
            return self._idle(frame, is_voiced)
        self._audio.append(frame)
        return self._speaking(is_voiced)

    def _idle(self, frame: np.ndarray, is_voiced: bool) -> list[TurnEvent]:
        self._preroll.append(frame)
        if is_voiced:
            self._voiced_run += 1
            self._unvoiced_in_onset = 0
        elif self._voiced_run:
            self._unvoiced_in_onset += 1
            if self._unvoiced_in_onset > 2:  # a gap longer than 40 ms: not one sound
                self._voiced_run = 0
        if self._voiced_run * FRAME_MS < self.p.min_speech_ms:
            return []
        self.in_speech = True
        self.onset_t = self.now - (self._voiced_run + self._unvoiced_in_onset) * FRAME_MS / 1000
        self._audio = list(self._preroll)
        self._preroll.clear()
        self._voiced_run = self._unvoiced_in_onset = self._silence_run = 0
        self._paused = False
        return [SpeechStarted(self.onset_t)]

    def _speaking(self, is_voiced: bool) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        if is_voiced:
            if self._paused:
                events.append(SpeechResumed(self.now))
            self._silence_run = 0
            self._paused = False
        else:
            self._silence_run += 1
        silence_ms = self._silence_run * FRAME_MS
        speech_end = self.now - silence_ms / 1000
        too_long = self.now - self.onset_t >= self.p.max_utterance_s
        if silence_ms >= self.p.end_silence_ms or too_long:
            events.append(TurnEnded(speech_end, self.now, self._utterance()))
            self.in_speech = False
            self._audio = []
            self._silence_run = 0
        elif self.p.speculative_ms and silence_ms == self.p.speculative_ms:
            self._paused = True
            events.append(SpeechPaused(speech_end, self._utterance()))
        return events

    def _utterance(self) -> np.ndarray:
        # Trailing silence beyond 200 ms only costs STT time.
        keep = len(self._audio) - max(self._silence_run - 10, 0)
        return np.concatenate(self._audio[:keep]) if keep > 0 else np.zeros(0, np.int16)

    def reset(self) -> None:
        """Forget the utterance in progress (e.g. the call is ending)."""
        self.in_speech = False
        self._audio = []
        self._voiced_run = self._silence_run = 0
