"""Engine faults: circuit breakers, a hung worker replaced, injected faults, giving up."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from agent.config import EngineGuardConfig, FaultConfig
from agent.dialog import events as ev
from agent.dialog.services import Services
from agent.engines.base import CancelToken, EngineError, EngineTimeout
from agent.engines.breaker import BreakerState, CircuitBreaker
from agent.engines.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from agent.engines.worker import EngineWorker
from tests.test_controller import DESK, Call


def test_breaker_opens_after_failures_in_its_window_then_probes_once_and_closes():
    b = CircuitBreaker(failures=3, window_s=10, cooldown_s=5)
    b.failed(0.0)
    b.failed(1.0)
    b.failed(12.0)  # the first two are out of the window by now
    assert b.state is BreakerState.CLOSED and b.allow(12.0)
    b.failed(13.0)
    b.failed(14.0)
    assert b.state is BreakerState.OPEN and not b.allow(18.9)
    assert b.allow(19.0) and b.state is BreakerState.HALF_OPEN  # the probe
    assert not b.allow(19.1), "one probe at a time"
    b.failed(20.0)
    assert b.state is BreakerState.OPEN and not b.allow(24.0) and b.allow(25.0)
    b.succeeded()
    assert b.state is BreakerState.CLOSED and b.allow(25.1) and b.allow(25.2)


def test_a_hung_job_is_abandoned_and_the_next_one_runs_on_a_fresh_thread():
    release = threading.Event()

    def hang() -> str:
        release.wait(10)  # never checks a cancel token: a stuck native call
        return "late"

    async def main() -> tuple[float, str]:
        worker = EngineWorker("llm")
        with pytest.raises(EngineTimeout):
            await worker.run(hang, timeout_s=0.2)
        t = time.monotonic()
        answer = await worker.run(lambda: "next", timeout_s=2)
        assert worker.restarts == 1
        release.set()
        worker.close()
        return time.monotonic() - t, answer

    took, answer = asyncio.run(main())
    assert answer == "next" and took < 0.5


def services(**kw: object) -> Services:
    base: dict[str, object] = {
        "vad": FakeVAD(), "stt": FakeSTT(["hi"]), "llm": FakeLLM(["Hello."]), "voices": {"joe": FakeTTS()},
        "default_voice": "joe", "guard": EngineGuardConfig(failures=2, window_s=60, cooldown_s=60),
    }  # fmt: skip
    return Services(**{**base, **kw})  # type: ignore[arg-type]


def test_an_open_breaker_fails_at_once_without_calling_the_engine():
    stt = FakeSTT(fail=True)
    s = services(stt=stt)

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(EngineError, match="fake STT failure"):
                await s.transcribe(np.zeros(1600, np.int16))
        with pytest.raises(EngineError, match="circuit open"):
            await s.transcribe(np.zeros(1600, np.int16))

    asyncio.run(main())
    s.close()
    assert len(stt.calls) == 2 and s.breaker_states()["stt"] == "open"


def test_an_llm_stream_that_crashes_counts_against_its_breaker():
    s = services(llm=FakeLLM(fail=True))

    async def chat() -> None:
        async with s.chat([{"role": "user", "content": "hi"}], CancelToken(), timeout_s=1) as tokens:
            async for _ in tokens:
                pass

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(EngineError):
                await chat()
        with pytest.raises(EngineError, match="circuit open"):
            await chat()

    asyncio.run(main())
    s.close()


def test_injected_faults_hit_only_the_calls_named_after_warm_up():
    s = services(stt=FakeSTT(["one", "two", "three"]))
    s.inject_faults(
        [
            FaultConfig(engine="stt", mode="fail", calls=[2]),
            FaultConfig(engine="tts", mode="slow", seconds=0.05, calls=[1]),
        ]
    )

    async def main() -> list[str]:
        heard = []
        for _ in range(3):
            try:
                heard.append((await s.transcribe(np.zeros(1600, np.int16))).text)
            except EngineError as exc:
                heard.append(str(exc))
        return heard

    heard = asyncio.run(main())
    s.close()
    assert heard[0] == "one" and "injected stt failure (call 2)" in heard[1] and heard[2] == "two"


def test_fallbacks_in_a_row_hand_the_caller_to_a_person_or_end_the_call():
    call = Call()
    call.greet()
    for i in range(2):
        rid = call.turn(2.0 + 3 * i, 3.0 + 3 * i)
        out = call(ev.ReplyDone(rid, 4.0 + 3 * i, "Sorry, could you say that again?", failed=True))
    (say,) = call.only(ev.Say, out)
    assert say.actions == (DESK,) and "the desk" in say.text
    call(ev.ReplyDone(say.reply, 10.0, say.text, actions=say.actions))
    assert call.c.transfers == [DESK]

    call = Call(tools={}, fallback_limit=2)
    call.greet()
    rid = call.turn(2.0, 3.0)
    call(ev.ReplyDone(rid, 4.0, "Sorry.", failed=True))
    rid = call.turn(5.0, 6.0)
    call(ev.ReplyDone(rid, 7.0, "Fine.", failed=False))  # a good turn resets the count
    rid = call.turn(8.0, 9.0)
    assert call.only(ev.Say, call(ev.ReplyDone(rid, 10.0, "Sorry.", failed=True))) == []
    rid = call.turn(11.0, 12.0)
    (bye,) = call.only(ev.Say, call(ev.ReplyDone(rid, 13.0, "Sorry.", failed=True)))
    assert "call again later" in bye.text
    assert call.only(ev.HangUp, call(ev.ReplyDone(bye.reply, 15.0, bye.text))) == [ev.HangUp()]


def test_a_cancelled_job_that_has_not_started_never_runs():
    """Stale work is dropped, not queued behind: a prefill cancelled while it waits for the
    worker must not cost the reply behind it any time."""
    asyncio.run(_cancelled_job_never_runs())


async def _cancelled_job_never_runs() -> None:
    import threading

    from agent.engines.worker import EngineWorker

    worker = EngineWorker("test")
    gate = threading.Event()
    ran: list[str] = []
    busy = asyncio.ensure_future(worker.run(gate.wait, 5))
    await asyncio.sleep(0.05)
    stale = asyncio.ensure_future(worker.run(ran.append, "stale"))
    await asyncio.sleep(0.05)
    stale.cancel()
    await asyncio.gather(stale, return_exceptions=True)
    fresh = asyncio.ensure_future(worker.run(ran.append, "fresh"))
    gate.set()
    await busy
    await fresh
    assert ran == ["fresh"]
    worker.close()
