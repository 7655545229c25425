"""Barge-in decisions with the real VAD (Silero) and the agent's real voice (Piper).

What must not interrupt the agent: its own voice coming back at -20 dB (a phone's echo),
a 100 ms click, steady background noise. What must: the caller talking over it.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.dialog.dialplan import Dialplan
from agent.dialog.services import Services
from agent.dialog.session import CallSession
from agent.engines.fakes import FakeLLM, FakeSTT
from tests.fakeleg import RATE, FakeLeg
from tests.voices import espeak, silence

pytestmark = pytest.mark.models
LONG = (
    "Our shop is open from nine in the morning until six in the evening. "
    "On Saturdays we open at ten and close at four. "
    "We are closed on Sundays and on public holidays."
)
REPLY_AT = 4.0  # about when the reply starts playing (question ends at 2.5 s)


def click(ms: int = 100) -> np.ndarray:
    """A sharp knock: a decaying 2 kHz burst at -6 dBFS."""
    t = np.arange(int(ms * RATE / 1000)) / RATE
    return (0.5 * 32767 * np.sin(2 * np.pi * 2000 * t) * np.exp(-t * 30)).astype(np.int16)


def noise(seconds: float, dbfs: float) -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rng.standard_normal(int(seconds * RATE)) * 32768 * 10 ** (dbfs / 20)).astype(np.int16)


def converse(
    silero, tts, caller: np.ndarray, echo_db: float | None, heard_second: str = "stop"
) -> CallSession:
    """`heard_second`: what Whisper makes of the second sound ("" for a click or noise)."""
    services = Services(
        silero, FakeSTT(["what are your hours", heard_second]), FakeLLM([LONG, "Okay."]), {"joe": tts}, "joe"
    )
    # No prefill: each scripted transcript must go to the turn it is written for.
    plan = Dialplan.model_validate({"default": True, "turn": {"prefill_ms": 0}})
    leg = FakeLeg(caller, tail_s=1.0, echo_db=echo_db, echo_delay_ms=80)
    session = CallSession(leg, plan, services)
    asyncio.run(asyncio.wait_for(session.run(), 60))
    services.close()
    return session


def caller_with(extra: np.ndarray, at_s: float, background_dbfs: float | None = None) -> np.ndarray:
    question = espeak("What are your opening hours?")
    x = np.concatenate([silence(0.5), question, silence(14.0)]).astype(np.int32)
    i = int(at_s * RATE)
    x[i : i + len(extra)] += extra
    if background_dbfs is not None:
        x += noise(len(x) / RATE, background_dbfs)[: len(x)]
    return np.clip(x, -32768, 32767).astype(np.int16)


def reply_turn(session: CallSession):
    turns = [t for t in session.turns if t.user_text]
    assert turns, "the question must have been heard"
    return turns[0]


def test_own_echo_at_minus_20_db_a_click_and_background_noise_do_not_barge_in(silero, tts):
    caller = caller_with(click(100), REPLY_AT + 1.0, background_dbfs=-50)
    session = converse(silero, tts, caller, echo_db=-20, heard_second="")  # may pause, goes on
    turn = reply_turn(session)
    assert turn.first_audio is not None
    assert not turn.interrupted and turn.barge_in is None, turn
    assert turn.reply_text == LONG


def test_the_caller_talking_over_the_agent_does_barge_in(silero, tts):
    """The control: same call, same echo, but the caller speaks 1 s into the reply."""
    caller = caller_with(espeak("Wait, wait, stop please."), REPLY_AT + 1.0)
    session = converse(silero, tts, caller, echo_db=-20)
    turn = reply_turn(session)
    assert turn.interrupted and turn.barge_in is not None
    assert turn.intervals()["barge_in_stop"] < 0.4
    assert 0 < len(turn.reply_text) < len(LONG)
