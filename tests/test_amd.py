"""Answering-machine detection: the rules (pure, on instants), the beep finder, and a set of
synthetic callees through the real VAD and STT over a G.711 line (benchmarks/amd.py runs all
24 and reports accuracy and decision times; SIP calls are in tests/test_outbound_real.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.audio.tones import BeepTracker, tone_hz
from agent.dialog.amd import AmdState
from agent.dialog.dialplan import AmdParams
from benchmarks.amd import phone_line, run_callee
from benchmarks.amd_callees import callees
from tests.test_session import burst

P = AmdParams()


def run_state(
    pattern: list[tuple[float, bool]], beep_at: float | None = None
) -> tuple[str, str, float] | None:
    """Feed (seconds, speaking) stretches in 20 ms frames; the first decision."""
    state, t = AmdState(P), 0.0
    for seconds, speaking in pattern:
        for _ in range(round(seconds / 0.02)):
            t += 0.02
            d = state.feed(t, speaking, beep_at is not None and abs(t - beep_at) < 0.01)
            if d is not None:
                return d.verdict, d.reason, round(d.at_s, 2)
    return None


def test_a_short_hello_then_quiet_is_a_person():
    assert run_state([(0.5, False), (0.6, True), (1.0, False)]) == ("human", "short answer", 1.8)


def test_a_greeting_that_runs_on_is_a_machine_within_the_limit():
    # speech with short pauses, as a recorded greeting: machine once 1.6 s of it is heard
    verdict = run_state([(0.4, False)] + [(0.5, True), (0.2, False)] * 6)
    assert verdict is not None and verdict[:2] == ("machine", "long greeting") and verdict[2] < 3.0


def test_a_beep_is_a_machine_and_silence_is_unknown():
    assert run_state([(2.0, False)], beep_at=1.0) == ("machine", "beep", 1.0)
    assert run_state([(5.0, False)]) == ("unknown", "silence", 3.5)


def test_machine_words_decide_at_once():
    state = AmdState(P)
    assert state.heard("Hi, you've reached Maria", 1.2) is not None
    assert state.heard("The person you are calling is not available", 1.4).reason.startswith("words")  # type: ignore[union-attr]
    assert state.heard("Hello, this is Maria speaking", 1.2) is None


def test_a_beep_is_a_sustained_tone_and_speech_is_not():
    rate = 16000
    t = np.arange(rate) / rate
    beep = (0.3 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    assert abs((tone_hz(beep[:320], rate) or 0) - 1000) < 15
    assert tone_hz(burst(0.02), rate) is None  # noise: no single peak
    tracker = BeepTracker()
    assert [tracker.feed(tone_hz(beep[i : i + 320], rate)) for i in range(0, 3200, 320)].count(True) == 1
    two = beep[:320] // 2 + (0.3 * 16000 * np.sin(2 * np.pi * 1477 * t[:320])).astype(np.int16)
    assert tone_hz(two, rate) is None  # a DTMF-like pair is not a beep


@pytest.mark.models
@pytest.mark.parametrize(
    "name",
    ["hello-us", "whos-this-gb", "late-hello-kal", "greeting-beep-us", "short-beep-us", "carrier-beep-slt"],
)
def test_synthetic_callees_through_the_real_engines(name, silero, stt):
    from agent.dialog.services import Services
    from agent.engines.fakes import FakeLLM, FakeTTS

    callee = next(c for c in callees() if c.name == name)
    svc = Services(silero, stt, FakeLLM(), {"joe": FakeTTS()}, "joe", llm_timeout_s=5)
    try:
        row = asyncio.run(run_callee(callee, svc, P))
    finally:
        svc.close()
    assert row["correct"], row
    assert row["decided_s"] <= 4.0, row
    if callee.kind == "machine" and any(k == "beep" for k, _ in callee.parts):
        assert row["beep_heard_s"] is not None and row["message_starts_s"] is not None, row


def test_the_phone_line_keeps_a_beep_a_beep():
    rate = 16000
    t = np.arange(rate // 2) / rate
    beep = phone_line((0.3 * 32767 * np.sin(2 * np.pi * 1400 * t)).astype(np.int16))
    assert abs((tone_hz(beep[1600:1920], rate) or 0) - 1400) < 15
