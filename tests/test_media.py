"""FrameBridge logic without a transport: framing, flush, bounds, clock statistics."""

import asyncio

import numpy as np
import pytest

from agent.telephony.media import FrameBridge, IntervalStats


def run(coro):
    return asyncio.run(coro)


def test_play_cuts_pads_and_resamples():
    async def main():
        bridge = FrameBridge(asyncio.get_running_loop())
        bridge.play(np.ones(700, dtype=np.int16), 16000)  # 2 frames + 60 samples -> 3 frames
        assert bridge.samples_queued == 960
        frames = [bridge.pull_outbound() for _ in range(4)]
        assert [len(f) for f in frames[:3]] == [640, 640, 640] and frames[3] is None
        assert np.frombuffer(frames[2], np.int16)[60:].sum() == 0, "the tail is zero-padded"
        bridge.play(np.ones(8000, dtype=np.int16), 8000)  # 1 s at 8 kHz -> 50 frames at 16 kHz
        assert bridge.samples_queued == 16000
        assert bridge.samples_sent == 960

    run(main())


def test_flush_drops_everything_queued_at_once():
    async def main():
        bridge = FrameBridge(asyncio.get_running_loop())
        bridge.play(np.ones(16000, dtype=np.int16), 16000)
        bridge.pull_outbound()
        assert bridge.flush() == 16000 - 320
        assert bridge.pull_outbound() is None and bridge.samples_queued == 0

    run(main())


def test_hold_sends_silence_and_resumes_where_it_paused_and_flush_ends_it():
    async def go() -> None:
        bridge = FrameBridge(asyncio.get_running_loop())
        pcm = (np.arange(1600) % 100).astype(np.int16)  # 5 frames, each different
        bridge.play(pcm, 16000)
        first = bridge.pull_outbound()
        bridge.hold(True)
        assert [bridge.pull_outbound() for _ in range(3)] == [None] * 3
        assert bridge.samples_queued == 4 * 320  # nothing dropped while held
        bridge.hold(False)
        assert bridge.pull_outbound() == pcm[320:640].tobytes() and first == pcm[:320].tobytes()
        bridge.hold(True)
        bridge.flush()
        bridge.play(pcm, 16000)
        assert bridge.pull_outbound() == pcm[:320].tobytes()  # a flush ends the hold

    asyncio.run(go())


def test_inbound_is_bounded_and_ends_on_close():
    async def main():
        bridge = FrameBridge(asyncio.get_running_loop(), max_inbound_frames=5)
        for i in range(8):
            bridge.push_inbound(np.full(320, i, dtype=np.int16).tobytes())
        await asyncio.sleep(0)  # let the thread-safe callbacks run
        bridge.close()
        got = [int(f[0]) async for f in bridge.frames()]
        assert got == [3, 4, 5, 6, 7], "the oldest frames are dropped when the reader lags"
        assert bridge.inbound_dropped == 3
        bridge.play(np.ones(320, dtype=np.int16), 16000)
        assert bridge.samples_queued == 0, "play after the end is ignored"

    run(main())


def test_push_from_another_thread():
    async def main():
        loop = asyncio.get_running_loop()
        bridge = FrameBridge(loop)
        await loop.run_in_executor(None, lambda: [bridge.push_inbound(bytes(640)) for _ in range(3)])
        await asyncio.sleep(0.01)
        bridge.close()
        assert len([f async for f in bridge.frames()]) == 3

    run(main())


def test_interval_stats(monkeypatch):
    ticks = iter([10.0, 10.02, 10.05, 10.06])
    monkeypatch.setattr("agent.telephony.media.time.perf_counter", lambda: next(ticks))
    s = IntervalStats()
    for _ in range(4):
        s.tick()
    # intervals 20, 30 and 10 ms
    assert s.count == 3 and s.mean_s == pytest.approx(0.02) and s.max_s == pytest.approx(0.03)
    assert s.std_s == pytest.approx((2e-4 / 3) ** 0.5)


def test_a_played_piece_reports_its_first_and_last_frame_and_a_flush_silences_its_marks():
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        bridge = FrameBridge(loop)
        seen: list[str] = []
        bridge.play(
            np.ones(700, np.int16), 16000, lambda: seen.append("a start"), lambda: seen.append("a end")
        )
        bridge.play(
            np.ones(320, np.int16), 16000, lambda: seen.append("b start"), lambda: seen.append("b end")
        )
        bridge.play(np.ones(320, np.int16), 16000, lambda: seen.append("c start"))
        for _ in range(3):  # piece a: 3 frames
            bridge.pull_outbound()
            await asyncio.sleep(0)
        assert seen == ["a start", "a end"]
        bridge.pull_outbound()  # piece b: one frame, both marks
        await asyncio.sleep(0)
        bridge.flush()
        assert bridge.pull_outbound() is None
        await asyncio.sleep(0)
        return seen

    assert run(main()) == ["a start", "a end", "b start", "b end"]
