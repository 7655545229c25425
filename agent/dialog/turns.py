"""Turn detection: VAD probabilities of 20 ms caller frames → caller speech events.

Pure logic on frames. Decisions run on the caller's media clock (frames × 20 ms), so the same
audio always gives the same events, on a live call as in a test; each event's `t` is turned
into the caller's wall clock by the time passed to `feed` with the frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from agent.audio.levels import dbfs
from agent.dialog.dialplan import TurnParams
from agent.engines.vad import VADStream

FRAME_MS = 20


@dataclass(frozen=True)
class SpeechStarted:
    t: float  # onset


@dataclass(frozen=True)
class SpeechSustained:
    """The caller has now been voiced for `barge_in_min_ms` without a break: enough to
    interrupt the agent. Raised once per voiced stretch."""

    t: float
    onset: float


@dataclass(frozen=True)
class SpeechProgress:
    """The caller has talked `prefill_ms` (once a turn): the audio so far, to prepare the reply."""

    t: float
    audio: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class SpeechPaused:
    """Silence reached `speculative_ms`: the audio so far may be the whole turn."""

    t: float  # when speech stopped
    audio: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class SpeechResumed:
    t: float


@dataclass(frozen=True)
class TurnEnded:
    t: float  # when the end of turn was decided
    speech_end: float  # when the caller stopped talking
    audio: np.ndarray = field(repr=False)  # the utterance, 16 kHz int16, with pre-roll


SpeechEvent = SpeechStarted | SpeechSustained | SpeechProgress | SpeechPaused | SpeechResumed | TurnEnded


class TurnDetector:
    """One per call. Feed every caller frame to `feed`; it returns the events it caused."""

    def __init__(self, vad: VADStream, params: TurnParams) -> None:
        self._vad = vad
        self._params = params
        self._preroll: deque[np.ndarray] = deque(maxlen=max(params.preroll_ms // FRAME_MS, 1))
        self._audio: list[np.ndarray] = []
        self._frames = 0  # media clock
        self._voiced_run = 0  # consecutive voiced frames before onset is confirmed
        self._unvoiced_in_onset = 0
        self._silence_run = 0  # frames of silence since speech last stopped
        self._paused = False  # SpeechPaused sent for this silence
        self._sustained = False  # SpeechSustained sent for this voiced stretch
        self._onset = 0.0  # media time
        self._progressed = 0  # SpeechProgress events sent for this turn
        self._gate_db: float | None = None
        self._end_silence_ms = params.end_silence_ms  # this turn's (set_end_silence)
        self._offset = 0.0  # wall time - media time, for the events
        self.in_speech = False  # between SpeechStarted and TurnEnded
        self.vad_errors = 0  # frames the VAD failed on (counted as silence)

    @property
    def now(self) -> float:
        """Media time (s) at the end of the last frame."""
        return self._frames * FRAME_MS / 1000

    def set_echo_gate(self, db: float | None) -> None:
        """Frames quieter than `db` dBFS count as silence whatever the VAD says (the agent's
        own voice coming back while it talks); None turns the gate off."""
        self._gate_db = db

    def set_end_silence(self, ms: int) -> None:
        """The silence that ends the current pause's turn (the caller sounds unfinished: wait
        longer); back to the dialplan's `end_silence_ms` when they go on or the turn ends."""
        self._end_silence_ms = ms

    def feed(self, frame: np.ndarray, t: float | None = None) -> list[SpeechEvent]:
        """One 20 ms frame that ended at wall time `t` (default: the media clock)."""
        self._frames += 1
        self._offset = 0.0 if t is None else t - self.now
        is_voiced = self._voiced(frame)
        if not self.in_speech:
            return self._idle(frame, is_voiced)
        self._audio.append(frame)
        return self._speaking(is_voiced)

    def _wall(self, media_t: float) -> float:
        return media_t + self._offset

    def _voiced(self, frame: np.ndarray) -> bool:
        try:
            prob = self._vad.process(frame)
        except Exception:  # a failing VAD must not end the call: the frame counts as silence
            self.vad_errors += 1
            return False
        if self._gate_db is not None and dbfs(frame) < self._gate_db:
            return False
        p = self._params
        threshold = p.end_threshold if self.in_speech and self._silence_run == 0 else p.start_threshold
        return prob >= threshold

    def _idle(self, frame: np.ndarray, is_voiced: bool) -> list[SpeechEvent]:
        self._preroll.append(frame)
        if is_voiced:
            self._voiced_run += 1
            self._unvoiced_in_onset = 0
        elif self._voiced_run:
            self._unvoiced_in_onset += 1
            if self._unvoiced_in_onset > 2:  # a gap longer than 40 ms: not one sound
                self._voiced_run = 0
        if self._voiced_run * FRAME_MS < self._params.min_speech_ms:
            return []
        self.in_speech = True
        self._onset = self.now - (self._voiced_run + self._unvoiced_in_onset) * FRAME_MS / 1000
        self._audio = list(self._preroll)
        self._preroll.clear()
        self._voiced_run = self._unvoiced_in_onset = self._silence_run = 0
        self._paused = self._sustained = False
        self._progressed = 0
        events: list[SpeechEvent] = [SpeechStarted(self._wall(self._onset))]
        return events + self._check_sustained()

    def _check_sustained(self) -> list[SpeechEvent]:
        voiced_ms = (self.now - self._onset) * 1000
        if self._sustained or voiced_ms < self._params.barge_in_min_ms - 1e-6:
            return []
        self._sustained = True
        return [SpeechSustained(self._wall(self.now), self._wall(self._onset))]

    def _speaking(self, is_voiced: bool) -> list[SpeechEvent]:
        p = self._params
        events: list[SpeechEvent] = []
        if is_voiced:
            if self._paused:
                events.append(SpeechResumed(self._wall(self.now)))
                self._end_silence_ms = p.end_silence_ms  # a longer wait was for that pause only
            self._silence_run = 0
            self._paused = False
            events += self._check_sustained()
            events += self._check_progress()
        else:
            self._silence_run += 1
            self._sustained = False  # the next voiced stretch may interrupt again
        silence_ms = self._silence_run * FRAME_MS
        speech_end = self.now - silence_ms / 1000
        too_long = self.now - self._onset >= p.max_utterance_s
        if silence_ms >= self._end_silence_ms or too_long:
            events.append(TurnEnded(self._wall(self.now), self._wall(speech_end), self._utterance()))
            self._end_silence_ms = p.end_silence_ms
            self.in_speech = False
            self._audio = []
            self._silence_run = 0
        elif p.speculative_ms and not self._paused and silence_ms >= p.speculative_ms:
            # `>=`, not `==`: any speculative_ms works, not only multiples of the frame
            self._paused = True
            events.append(SpeechPaused(self._wall(speech_end), self._utterance()))
        return events

    def _check_progress(self) -> list[SpeechEvent]:
        # Once a turn: a later prefill would still be transcribing when the caller stops, and
        # the reply's own STT would wait behind it.
        at = self._params.prefill_ms
        if not at or self._progressed or (self.now - self._onset) * 1000 < at - 1e-6:
            return []
        self._progressed += 1
        return [SpeechProgress(self._wall(self.now), self._utterance())]

    def _utterance(self) -> np.ndarray:
        # Trailing silence beyond 200 ms only costs STT time.
        keep = len(self._audio) - max(self._silence_run - 10, 0)
        return np.concatenate(self._audio[:keep]) if keep > 0 else np.zeros(0, np.int16)
