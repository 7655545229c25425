"""TurnDetector on scripted VAD probabilities, and Playout's heard text: deterministic, instant."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.dialog.backchannel import is_backchannel
from agent.dialog.dialplan import TurnParams
from agent.dialog.endofturn import sounds_unfinished
from agent.dialog.playout import Playout
from agent.dialog.turns import (
    SpeechPaused,
    SpeechProgress,
    SpeechResumed,
    SpeechStarted,
    SpeechSustained,
    TurnDetector,
    TurnEnded,
)
from tests.fakeleg import FakeLeg

LOUD = np.full(320, 3000, np.int16)  # -20.8 dBFS
QUIET = np.full(320, 300, np.int16)  # -40.8 dBFS


class ScriptedVAD:
    """Speech probability 0.9 for frames marked 1, 0.0 for 0."""

    def __init__(self, pattern: str) -> None:
        self._probs = [0.9 if c == "1" else 0.0 for c in pattern]
        self._i = 0

    def process(self, frame: np.ndarray) -> float:
        p = self._probs[self._i]
        self._i += 1
        return p

    def reset(self) -> None:
        self._i = 0


def run(pattern: str, frames: list[np.ndarray] | None = None, **params: int) -> list[tuple[int, object]]:
    """Feed one frame per character; returns (frame number, event) pairs, frames from 1."""
    d = TurnDetector(ScriptedVAD(pattern), TurnParams(**params))
    out = []
    for i in range(len(pattern)):
        frame = frames[i] if frames else LOUD
        out += [(i + 1, e) for e in d.feed(frame)]
    return out


def test_progress_once_a_turn_after_prefill_ms_of_speech_with_the_audio_so_far():
    # 10 voiced frames, 15 silent (a pause), 40 voiced, then the end; then a second turn
    pattern = "1" * 10 + "0" * 15 + "1" * 40 + "0" * 45 + "1" * 40 + "0" * 45
    events = run(pattern, prefill_ms=400, speculative_ms=200)
    progress = [(n, e) for n, e in events if isinstance(e, SpeechProgress)]
    # onset at frame 1 (pre-roll); 400 ms into the turn falls in the pause: the next voiced frame
    assert [n for n, _ in progress] == [26, 130]
    assert [len(e.audio) // 320 for _, e in progress] == [26, 25]  # 15 frames of pre-roll
    assert not any(isinstance(e, SpeechProgress) for _, e in run("1" * 100 + "0" * 45, prefill_ms=0))


def test_a_turn_start_sustain_pause_and_end_on_the_media_clock():
    # 10 voiced frames (200 ms), then 45 silent ones (900 ms)
    events = run("1" * 10 + "0" * 45, min_speech_ms=100, barge_in_min_ms=120, speculative_ms=200,
                 end_silence_ms=800)  # fmt: skip
    kinds = [(n, type(e).__name__) for n, e in events]
    assert kinds == [(5, "SpeechStarted"), (6, "SpeechSustained"), (20, "SpeechPaused"), (50, "TurnEnded")]
    started, sustained, paused, ended = (e for _, e in events)
    assert isinstance(started, SpeechStarted) and started.t == pytest.approx(0.0)
    assert isinstance(sustained, SpeechSustained) and sustained.onset == pytest.approx(0.0)
    assert isinstance(paused, SpeechPaused) and paused.t == pytest.approx(0.2)
    assert isinstance(ended, TurnEnded) and ended.speech_end == pytest.approx(0.2) and ended.t == 1.0
    # the utterance keeps 200 ms of the trailing silence
    assert len(ended.audio) == (10 + 10) * 320


@pytest.mark.parametrize("speculative_ms", [150, 210, 390])
def test_speculation_starts_at_any_speculative_ms_not_only_multiples_of_a_frame(speculative_ms):
    events = run("1" * 10 + "0" * 45, speculative_ms=speculative_ms, end_silence_ms=800)
    (paused,) = [(n, e) for n, e in events if isinstance(e, SpeechPaused)]
    assert paused[0] == 10 + -(-speculative_ms // 20)  # the first frame at or past it


def test_resumed_speech_after_a_pause_sustains_again_and_the_turn_goes_on():
    events = run("1" * 10 + "0" * 12 + "1" * 5 + "0" * 45, speculative_ms=200, end_silence_ms=800)
    kinds = [type(e).__name__ for _, e in events]
    assert kinds == ["SpeechStarted", "SpeechSustained", "SpeechPaused", "SpeechResumed",
                     "SpeechSustained", "SpeechPaused", "TurnEnded"]  # fmt: skip
    assert isinstance(events[3][1], SpeechResumed) and events[3][0] == 23


def test_a_click_shorter_than_min_speech_starts_nothing():
    assert run("111" + "0" * 50, min_speech_ms=100) == []


def test_the_echo_gate_makes_quiet_frames_silence_whatever_the_vad_says():
    d = TurnDetector(ScriptedVAD("1" * 20), TurnParams(min_speech_ms=100))
    d.set_echo_gate(-30.0)
    assert [e for _ in range(10) for e in d.feed(QUIET)] == []
    d.set_echo_gate(None)
    assert any(isinstance(e, SpeechStarted) for _ in range(10) for e in d.feed(QUIET))


def test_event_times_follow_the_wall_clock_given_with_each_frame():
    d = TurnDetector(ScriptedVAD("1" * 10), TurnParams(min_speech_ms=100))
    events = [e for i in range(10) for e in d.feed(LOUD, 1000.0 + 0.02 * (i + 1))]
    assert isinstance(events[0], SpeechStarted) and events[0].t == pytest.approx(1000.0)


def test_heard_text_is_the_chunks_sent_plus_a_share_of_the_one_playing():
    async def main() -> None:
        leg = FakeLeg(np.zeros(320, np.int16))
        posted: list[object] = []
        p = Playout(leg, 1, posted.append)
        p.play("", np.ones(3200, np.int16), 16000, ack=True)  # an acknowledgement first: not text
        p.play("one two three four", np.ones(6400, np.int16), 16000)
        p.play("five six", np.ones(3200, np.int16), 16000)
        bridge = leg._b()
        for _ in range(10 + 10):  # the acknowledgement and half of the first chunk
            bridge.pull_outbound()
        await asyncio.sleep(0)
        assert p.heard_text() == "one two"
        for _ in range(20):
            bridge.pull_outbound()
        await asyncio.sleep(0)
        assert p.heard_text() == "one two three four five six" == p.text()
        assert [getattr(e, "ack", None) for e in posted] == [True, False, False]
        p.close()
        await asyncio.wait_for(p.drained(), 1)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("words", "unfinished"),
    [
        ("I'd like to book an appointment for", True),
        ("My number is", True),
        ("Um, I was wondering if, um...", True),
        ("so it's four one seven", False),
        ("so it's 4 1 7", True),
        ("My number is 4 1 7 9 2.", False),
        ("What time do you open on Saturday?", False),
        ("Thanks, that's all.", False),
        ("", False),
    ],
)
def test_words_that_end_mid_phrase_sound_unfinished(words, unfinished):
    assert sounds_unfinished(words) is unfinished


def test_a_caller_who_sounds_unfinished_gets_the_longer_silence_for_this_turn_only():
    d = TurnDetector(ScriptedVAD("1" * 20 + "0" * 60 + "1" * 20 + "0" * 45), TurnParams())
    events = []
    for i in range(145):
        if i == 30:  # the controller heard "... for" at the pause
            d.set_end_silence(1500)
        events += [(i + 1, type(e).__name__) for e in d.feed(LOUD)]
    ends = [n for n, k in events if k == "TurnEnded"]
    assert ends == [140]  # the 1.2 s pause did not end the turn; then 800 ms ended the next


@pytest.mark.parametrize(
    ("heard", "backchannel"),
    [
        ("", True),
        ("Uh-huh.", True),
        ("Yeah, okay, I see.", True),
        ("That's right.", True),
        ("I'm...", True),  # how tiny.en hears a synthetic "mm-hm"
        ("Sorry, wait.", False),
        ("No.", False),
        ("Hello?", False),
        ("Hold on, what are your hours?", False),
        ("Do you repair e-bikes", False),
        ("okay okay okay okay okay", False),
    ],
)
def test_backchannels_are_short_and_ask_nothing(heard, backchannel):
    assert is_backchannel(heard) is backchannel
