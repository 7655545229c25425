"""The fakes honour the engine protocols, and the async worker bridges them (cancel, timeout, errors)."""

import asyncio
import time

import numpy as np
import pytest

from agent.engines.base import CancelToken, EngineError, EngineTimeout
from agent.engines.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from agent.engines.llm import LLMEngine
from agent.engines.stt import STTEngine
from agent.engines.tts import TTSEngine
from agent.engines.vad import VADEngine
from agent.engines.worker import EngineWorker


def test_fakes_satisfy_the_protocols():
    vad: VADEngine = FakeVAD()
    stt: STTEngine = FakeSTT()
    llm: LLMEngine = FakeLLM()
    tts: TTSEngine = FakeTTS()
    assert all(e.name == "fake" for e in (vad, stt, llm, tts))


def test_fake_vad_tells_loud_from_quiet_and_resets():
    s = FakeVAD().stream(16000)
    assert s.process(np.zeros(320, dtype=np.int16)) == 0.0
    loud = (8000 * np.sin(np.arange(320) / 3)).astype(np.int16)
    assert s.process(loud) == 1.0
    s.reset()
    assert s.probability == 0.0


def test_fake_stt_scripts_and_records():
    stt = FakeSTT(["one", "two"])
    assert [stt.transcribe(np.zeros(16000), prompt="p").text for _ in range(3)] == ["one", "two", "two"]
    assert stt.calls[0] == {"samples": 16000, "prompt": "p", "hotwords": None}
    with pytest.raises(EngineError):
        FakeSTT(fail=True).transcribe(np.zeros(10))


def test_fake_llm_streams_and_cancels():
    llm = FakeLLM(["a b c d e"])
    assert "".join(llm.stream_chat([])) == "a b c d e"
    token = CancelToken()
    got = []
    for piece in llm.stream_chat([], cancel=token):
        got.append(piece)
        if len(got) == 2:
            token.cancel()
    assert got == ["a", " b"]


def test_fake_llm_times_out():
    with pytest.raises(EngineTimeout):
        list(FakeLLM(first_token_delay_s=1.0).stream_chat([], cancel=CancelToken(timeout_s=0.05)))


def test_fake_tts_speaks_the_text_it_is_given_as_one_chunk():
    (chunk,) = FakeTTS(seconds_per_char=0.01).synthesize(" Hello there. How are you? ")
    assert chunk.text == "Hello there. How are you?" and chunk.sample_rate == 22050
    assert abs(chunk.duration_s - 0.25) < 0.01
    assert list(FakeTTS().synthesize("  ")) == []


def test_worker_streams_items_in_order():
    async def main():
        worker = EngineWorker("llm")
        llm = FakeLLM(["one two three"])
        token = CancelToken()
        async with worker.stream(lambda: llm.stream_chat([], cancel=token), token) as stream:
            items = [x async for x in stream]
        assert items == ["one", " two", " three"]
        await asyncio.sleep(0.05)  # the job's done-callback runs on the loop
        assert worker.queued == 0

    asyncio.run(main())


def test_worker_leaving_early_cancels_the_engine():
    async def main():
        worker = EngineWorker("llm")
        llm = FakeLLM(["w " * 200], token_delay_s=0.01)
        token = CancelToken()
        async with worker.stream(lambda: llm.stream_chat([], cancel=token), token) as stream:
            async for _ in stream:
                break
        assert token.cancelled
        # The worker thread is free again soon (the engine saw the flag between tokens).
        t0 = time.monotonic()
        assert await worker.run(lambda: 42) == 42
        assert time.monotonic() - t0 < 1.0

    asyncio.run(main())


def test_worker_times_out_a_stalled_engine():
    async def main():
        worker = EngineWorker("llm")
        llm = FakeLLM(first_token_delay_s=5.0)
        token = CancelToken()
        with pytest.raises(EngineTimeout):
            async with worker.stream(lambda: llm.stream_chat([], cancel=token), token, timeout_s=0.1) as s:
                async for _ in s:
                    pass
        assert token.cancelled

    asyncio.run(main())


def test_worker_passes_engine_errors_through():
    async def main():
        worker = EngineWorker("stt")
        with pytest.raises(EngineError, match="fake STT failure"):
            await worker.run(FakeSTT(fail=True).transcribe, np.zeros(10))
        with pytest.raises(EngineTimeout):
            await worker.run(time.sleep, 0.5, timeout_s=0.05)

    asyncio.run(main())
