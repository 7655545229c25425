"""The warm transfer's logic (agent/dialog/warm.py) on fake engines and ticking legs: hold audio
to the caller only, the briefing to the human only, accept/decline by key or voice, busy, no
answer, silence, and a caller who hangs up while on hold. The real calls are in
tests/test_warm_transfer_real.py."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.dialog.dialplan import TransferTarget
from agent.dialog.warm import RATE, WarmTransfer, answer_of, briefing_text, hold_audio
from agent.engines.fakes import FakeSTT
from agent.telephony.call import CallInfo, Dialed
from agent.telephony.media import FrameBridge
from tests.test_session import burst, services

FRAME = 320


class TickLeg:
    """A leg whose media clock runs 20 ms frames (sped up): it sends what the agent queued
    (kept in `sent`) and delivers `voice` (silence after it) as the far end's audio."""

    sample_rate = RATE

    def __init__(self, name: str, voice: np.ndarray | None = None, speed: float = 4.0) -> None:
        self.info = CallInfo(name, "fake", f"sip:{name}@test", "sip:agent@test", name)
        self.dtmf: asyncio.Queue[str] = asyncio.Queue()
        self.ended = asyncio.Event()
        self.bridge = FrameBridge(asyncio.get_running_loop())
        self.sent: list[np.ndarray] = []
        self.voice = np.zeros(0, np.int16) if voice is None else voice
        self.joined: TickLeg | None = None
        self.hung_up = False
        self._clock = asyncio.ensure_future(self._run(speed))

    async def _run(self, speed: float) -> None:
        i = 0
        while not self.ended.is_set():
            await asyncio.sleep(0.02 / speed)
            out = self.bridge.pull_outbound()
            self.sent.append(np.frombuffer(out, np.int16) if out else np.zeros(FRAME, np.int16))
            chunk = self.voice[i * FRAME : (i + 1) * FRAME]
            frame = np.zeros(FRAME, np.int16)
            frame[: len(chunk)] = chunk
            self.bridge.push_inbound(frame.tobytes())
            i += 1

    def frames(self):  # type: ignore[no-untyped-def]
        return self.bridge.frames()

    def play(self, pcm, rate, on_start=None, on_end=None) -> int:  # type: ignore[no-untyped-def]
        return self.bridge.play(pcm, rate, on_start, on_end)

    def flush(self) -> int:
        return self.bridge.flush()

    def record(self, tap: object) -> None:
        self.bridge.tap = tap  # type: ignore[assignment]

    @property
    def samples_queued(self) -> int:
        return self.bridge.samples_queued

    async def hangup(self) -> None:
        self.hung_up = True
        self.end()

    def end(self) -> None:
        self.ended.set()
        self.bridge.close()

    async def connect(self, other: object) -> bool:
        assert isinstance(other, TickLeg)
        self.joined = other
        return True

    def level_at(self, hz: float) -> float:
        """How much of the audio sent on this leg is at `hz` (its share of the energy)."""
        x = np.concatenate(self.sent).astype(float) if self.sent else np.zeros(FRAME)
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / RATE)
        band = (freqs > hz - 15) & (freqs < hz + 15)
        return float(spectrum[band].sum() / (spectrum.sum() + 1e-9))


TARGET = TransferTarget(uri="sip:desk@127.0.0.1", mode="warm", decide_timeout_s=2.0, ring_timeout_s=5)


async def transfer(
    human_voice: np.ndarray | None = None,
    code: int = 200,
    keys: str = "",
    stt: FakeSTT | None = None,
    caller_leaves_after_s: float | None = None,
) -> tuple[str, WarmTransfer, TickLeg, TickLeg | None]:
    caller = TickLeg("caller")
    human = TickLeg("human", human_voice) if code == 200 else None
    dialled: list[str] = []

    async def dial(uri: str, ring_timeout_s: float) -> Dialed:
        dialled.append(uri)
        await asyncio.sleep(0.2)  # it rings
        if human is None:
            return Dialed(None, code, "busy" if code == 486 else "no answer")
        for k in keys:  # pressed while the briefing plays
            asyncio.get_running_loop().call_later(0.5, human.dtmf.put_nowait, k)
        return Dialed(human, 200)  # type: ignore[arg-type]

    if caller_leaves_after_s is not None:
        asyncio.get_running_loop().call_later(caller_leaves_after_s, caller.end)
    warm = WarmTransfer(
        caller, dial, services(stt=stt), TARGET, "Caller said their chain broke.",  # type: ignore[arg-type]
        hold_audio("tone"),
    )  # fmt: skip
    outcome = await asyncio.wait_for(warm.run(), 30)
    assert dialled == [TARGET.uri]
    return outcome, warm, caller, human


HOLD_HZ, BRIEFING_HZ = 523.25, 440.0  # the chime's first note; FakeTTS speaks a 440 Hz tone


def test_a_human_who_presses_1_is_joined_to_the_caller_who_heard_only_hold_audio():
    async def go() -> None:
        outcome, warm, caller, human = await transfer(keys="1")
        assert outcome == "connected" and human is not None
        assert caller.joined is human and not human.hung_up and not caller.hung_up
        # The human heard the briefing, never the hold audio; the caller the reverse.
        assert caller.level_at(HOLD_HZ) > 0.1 and caller.level_at(BRIEFING_HZ) < 0.001
        assert human.level_at(BRIEFING_HZ) > 0.1 and human.level_at(HOLD_HZ) < 0.001
        assert caller.samples_queued == 0  # hold audio stopped
        assert warm.timing.how == "key 1" and warm.timing.connected_s is not None
        caller.end()
        human.end()

    asyncio.run(go())


def test_a_human_who_presses_2_is_hung_up_and_the_caller_is_back():
    async def go() -> None:
        outcome, _warm, caller, human = await transfer(keys="2")
        assert outcome == "declined" and human is not None and human.hung_up
        assert caller.joined is None and caller.samples_queued == 0
        caller.end()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("code", "outcome"), [(486, "busy"), (408, "no_answer"), (603, "declined"), (503, "failed")]
)
def test_a_target_that_does_not_answer(code, outcome):
    async def go() -> None:
        got, warm, caller, _ = await transfer(code=code)
        assert got == outcome and caller.joined is None and caller.samples_queued == 0
        assert warm.human is None
        caller.end()

    asyncio.run(go())


def test_a_human_who_says_nothing_is_hung_up_after_the_briefing_and_the_wait():
    async def go() -> None:
        outcome, warm, caller, human = await transfer()
        assert outcome == "no_answer" and warm.timing.how == "timeout"
        assert human is not None and human.hung_up and caller.joined is None
        caller.end()

    asyncio.run(go())


def test_a_human_who_says_yes_is_joined_and_one_who_says_no_is_not():
    async def go(text: str) -> str:
        # "Hello?" as they pick up (neither yes nor no), then the answer.
        voice = np.concatenate([burst(0.6), np.zeros(RATE, np.int16), burst(0.8, seed=1)])
        stt = FakeSTT(["Hello?", text])
        outcome, _warm, caller, human = await transfer(human_voice=voice, stt=stt)
        assert len(stt.calls) == 2, stt.calls
        caller.end()
        if human is not None:
            human.end()
        return outcome

    assert asyncio.run(go("Yes, put them through.")) == "connected"
    assert asyncio.run(go("No, I'm busy right now.")) == "declined"


def test_a_caller_who_hangs_up_on_hold_ends_the_transfer_and_the_human_call():
    async def go() -> None:
        outcome, _warm, _caller, human = await transfer(caller_leaves_after_s=0.6)
        assert outcome == "caller_left"
        assert human is not None and human.hung_up

    asyncio.run(go())


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Yes.", True),
        ("Sure, put them through", True),
        ("OK", True),
        ("No, not now.", False),
        ("I can't, I'm busy", False),
        ("Yes, no problem.", True),
        ("Hello? Who is this?", None),
        ("", None),
    ],
)
def test_what_a_spoken_answer_means(text, answer):
    assert answer_of(text) is answer


def test_the_briefing_names_the_caller_and_their_last_words():
    text = briefing_text(
        TARGET, "the workshop", "sip:4155550123@pbx", ["My chain broke.", "A person please."]
    )
    assert "4 1 5 5 5 5 0 1 2 3" in text and "My chain broke. A person please" in text
    assert briefing_text(TARGET, "x", "<sip:maria@10.0.0.1>", []).count("nothing yet") == 1
