"""Call recordings: stereo layout, crash safety (header synced while the call runs, repair), lag
padding, write errors. Real files, read back with the `wave` module and the real sox/soxi."""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from agent.records.recording import Recorder, StereoWav, repair

RATE = 16000
FRAME = 320  # samples in 20 ms
FRAME_S = 0.02

needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")


def tone(freq: float, n: int, start: int = 0, amp: int = 8000) -> np.ndarray:
    t = (np.arange(start, start + n)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def frame_of(freq: float, k: int) -> bytes:
    return tone(freq, FRAME, k * FRAME).tobytes()


def soxi(path: Path, flag: str) -> str:
    return subprocess.run(
        ["soxi", flag, str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


def sox_duration(path: Path) -> float:
    return float(
        subprocess.run(["sox", "--i", "-D", str(path)], capture_output=True, text=True, check=True).stdout
    )


def sox_decoded_seconds(path: Path) -> float:
    """Decode the whole file with sox (not just its header) and return the length it found."""
    out = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True, check=True)
    line = next(x for x in out.stderr.splitlines() if x.startswith("Length (seconds)"))
    return float(line.split(":")[1])


def read_stereo(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)


def header_sizes(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:44]
    return struct.unpack_from("<I", head, 4)[0], struct.unpack_from("<I", head, 40)[0]


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64)))
    return float(np.fft.rfftfreq(len(x), 1 / RATE)[int(np.argmax(spectrum))])


@needs_sox
def test_recorder_puts_caller_left_agent_right_and_silence_where_the_agent_sent_none(tmp_path: Path) -> None:
    path = tmp_path / "calls" / "c1.wav"  # the parent is created

    async def main() -> None:
        rec = Recorder(path, sync_every_s=0.05)
        task = asyncio.create_task(rec.run())
        for k in range(50):  # 1 s; agent frames 20..29 are silence (None)
            rec.caller(frame_of(440, k))
            rec.agent(None if 20 <= k < 30 else frame_of(1000, k))
            if k % 10 == 9:
                await asyncio.sleep(0.03)  # run() writes some while the call goes on
        info = await rec.close()
        assert await rec.close() == info  # idempotent
        await asyncio.wait_for(task, 1)  # run() returns once close() was requested
        assert info.path == path and info.seconds == 1.0 and info.bytes == 44 + 4 * RATE
        assert path.stat().st_size == info.bytes

    asyncio.run(main())
    assert (soxi(path, "-c"), soxi(path, "-r"), soxi(path, "-s")) == ("2", "16000", "16000")
    assert sox_duration(path) == pytest.approx(1.0)
    pcm = read_stereo(path)
    left, right = pcm[:, 0], pcm[:, 1]
    assert np.array_equal(left, tone(440, RATE))
    assert peak_hz(left) == pytest.approx(440, abs=2) and peak_hz(right) == pytest.approx(1000, abs=2)
    assert not right[20 * FRAME : 30 * FRAME].any()
    assert np.array_equal(right[: 20 * FRAME], tone(1000, 20 * FRAME))
    assert np.array_equal(right[30 * FRAME :], tone(1000, 20 * FRAME, 30 * FRAME))


def test_frames_of_a_wrong_size_are_cut_or_padded(tmp_path: Path) -> None:
    async def main() -> None:
        rec = Recorder(tmp_path / "r.wav")
        rec.caller(b"\x01\x00" * 100)  # short
        rec.agent(b"\x02\x00" * 1000)  # long
        rec.caller(b"\x03")  # odd length
        rec.agent(None)
        info = await rec.close()
        assert info.seconds == 2 * FRAME_S

    asyncio.run(main())
    pcm = read_stereo(tmp_path / "r.wav")
    assert pcm.shape == (2 * FRAME, 2)
    assert (pcm[:100, 0] == 1).all() and not pcm[100:FRAME, 0].any()
    assert pcm[FRAME, 0] == 3 and not pcm[FRAME + 1 :, 0].any()  # b"\x03" padded: one sample, 3
    assert (pcm[:FRAME, 1] == 2).all() and not pcm[FRAME:, 1].any()


@needs_sox
def test_a_file_copied_while_open_plays_up_to_the_last_sync(tmp_path: Path) -> None:
    path, copy = tmp_path / "open.wav", tmp_path / "copy.wav"
    wav = StereoWav(path)
    block = tone(440, RATE // 10).tobytes()
    for _ in range(10):
        wav.write(block, block)
    wav.sync()
    for _ in range(3):  # written, not synced: as a kill would leave it
        wav.write(block, block)
    shutil.copyfile(path, copy)
    assert sox_duration(copy) == pytest.approx(1.0)
    assert sox_decoded_seconds(copy) == pytest.approx(1.0)
    assert wav.seconds == pytest.approx(1.3) and wav.bytes_written == copy.stat().st_size
    wav.close()
    wav.close()  # idempotent
    assert sox_duration(path) == pytest.approx(1.3)


@needs_sox
def test_recorder_fed_by_a_media_thread_leaves_a_playable_file_while_the_call_runs(tmp_path: Path) -> None:
    path, copy = tmp_path / "live.wav", tmp_path / "copy.wav"
    sync_every_s = 0.2
    lock = threading.Lock()
    pushed = 0
    stop = threading.Event()

    async def main() -> None:
        nonlocal pushed
        rec = Recorder(path, sync_every_s=sync_every_s)

        def media_clock() -> None:  # the transport's 20 ms clock: both sides each tick
            nonlocal pushed
            t0 = time.monotonic()
            while not stop.is_set():
                due = int((time.monotonic() - t0) / FRAME_S)
                with lock:
                    while pushed < due:
                        rec.caller(frame_of(440, pushed))
                        rec.agent(frame_of(1000, pushed))
                        pushed += 1
                time.sleep(0.005)

        task = asyncio.create_task(rec.run())
        thread = threading.Thread(target=media_clock)
        thread.start()
        try:
            await asyncio.sleep(0.5)  # between two syncs (0.4 and 0.6)
            with lock:  # "kill -9" now: what is on disk is all a kill would leave
                shutil.copyfile(path, copy)
                at_kill = pushed * FRAME_S
        finally:
            stop.set()
            thread.join()
        info = await rec.close()
        await asyncio.wait_for(task, 1)
        assert info.seconds == pytest.approx(pushed * FRAME_S)

        duration = sox_duration(copy)
        assert at_kill - (sync_every_s + FRAME_S) <= duration <= at_kill + 1e-9
        assert sox_decoded_seconds(copy) == pytest.approx(duration)

    asyncio.run(main())
    pcm = read_stereo(path)
    assert np.array_equal(pcm[:, 0], tone(440, pushed * FRAME))
    assert np.array_equal(pcm[:, 1], tone(1000, pushed * FRAME))


@needs_sox
def test_repair_fixes_a_header_older_than_the_data(tmp_path: Path) -> None:
    path = tmp_path / "crashed.wav"
    wav = StereoWav(path)
    block = tone(440, RATE // 2).tobytes()
    wav.write(block, block)
    wav.sync()
    with path.open("ab") as f:  # data after the last sync, ending in a partial sample frame
        f.write(bytes(4 * RATE // 4) + b"\x01\x02\x03")
    assert header_sizes(path) == (36 + 2 * RATE, 2 * RATE)  # 0.5 s

    assert repair(path) is True
    data = 4 * RATE * 3 // 4  # 0.75 s
    assert header_sizes(path) == (36 + data, data)
    assert path.stat().st_size == 44 + data  # the partial frame is gone
    assert sox_duration(path) == pytest.approx(0.75)
    assert sox_decoded_seconds(path) == pytest.approx(0.75)
    assert repair(path) is False  # nothing left to fix
    wav.close()


def test_repair_leaves_a_good_file_alone_and_refuses_what_is_not_ours(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    wav = StereoWav(good)
    wav.write(b"\x01\x00" * 10, b"\x02\x00" * 10)
    wav.close()
    before = good.read_bytes()
    assert repair(good) is False and good.read_bytes() == before

    empty = StereoWav(tmp_path / "empty.wav")
    empty.close()
    assert repair(tmp_path / "empty.wav") is False

    text = tmp_path / "notes.wav"
    text.write_text("not a wav file at all, but long enough to hold a header of 44 bytes\n")
    mono = tmp_path / "mono.wav"
    with wave.open(str(mono), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"\x00\x00" * 100)
    short = tmp_path / "short.wav"
    short.write_bytes(b"RIFF")
    for bad in (text, mono, short):
        with pytest.raises(ValueError):
            repair(bad)


@pytest.mark.parametrize("side", ["caller", "agent"])
def test_a_side_running_ahead_is_padded_and_pending_frames_stay_bounded(tmp_path: Path, side: str) -> None:
    path = tmp_path / "lag.wav"
    max_lag = 10

    async def main() -> None:
        rec = Recorder(path, sync_every_s=0.05, max_lag_frames=max_lag)
        task = asyncio.create_task(rec.run())
        push = rec.caller if side == "caller" else rec.agent
        for burst in range(4):  # 2 s from one side only, 0.5 s at a time
            for k in range(25 * burst, 25 * burst + 25):
                push(frame_of(440, k))
            assert rec.pending_frames <= max_lag + 25
            await asyncio.sleep(0.12)
            assert rec.pending_frames <= max_lag  # written, padded, except what lag allows
        info = await rec.close()
        await asyncio.wait_for(task, 1)
        assert info.seconds == pytest.approx(2.0)

    asyncio.run(main())
    pcm = read_stereo(path)
    talking, silent = (0, 1) if side == "caller" else (1, 0)
    assert np.array_equal(pcm[:, talking], tone(440, 2 * RATE))
    assert not pcm[:, silent].any()


def test_a_caller_that_stops_sending_is_padded_and_stays_in_time(tmp_path: Path) -> None:
    path = tmp_path / "gap.wav"

    async def main() -> None:
        rec = Recorder(path, sync_every_s=0.03, max_lag_frames=5)
        task = asyncio.create_task(rec.run())
        for k in range(10):
            rec.caller(frame_of(440, k))
            rec.agent(frame_of(1000, k))
        await asyncio.sleep(0.05)
        for k in range(10, 30):  # the caller's packets stop for 20 frames
            rec.agent(frame_of(1000, k))
        await asyncio.sleep(0.08)
        for k in range(30, 40):  # and come back
            rec.caller(frame_of(440, k))
            rec.agent(frame_of(1000, k))
        await rec.close()
        await asyncio.wait_for(task, 1)

    asyncio.run(main())
    pcm = read_stereo(path)
    assert pcm.shape == (40 * FRAME, 2)
    assert np.array_equal(pcm[:, 1], tone(1000, 40 * FRAME))
    assert np.array_equal(pcm[: 10 * FRAME, 0], tone(440, 10 * FRAME))
    assert not pcm[10 * FRAME : 30 * FRAME, 0].any()
    assert np.array_equal(pcm[30 * FRAME :, 0], tone(440, 10 * FRAME, 30 * FRAME))


@needs_sox
def test_a_write_error_is_logged_once_and_never_reaches_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "full.wav"

    async def main() -> None:
        rec = Recorder(path, sync_every_s=0.03)
        task = asyncio.create_task(rec.run())
        for k in range(10):
            rec.caller(frame_of(440, k))
            rec.agent(None)
        await asyncio.sleep(0.1)
        assert path.exists() and rec.pending_frames == 0  # written, nothing failed yet

        def disk_full(self: StereoWav, caller: bytes, agent: bytes) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(StereoWav, "write", disk_full)
        with capture_logs() as logs:
            for k in range(10, 40):
                rec.caller(frame_of(440, k))
                rec.agent(None)
                await asyncio.sleep(0.003)
            await asyncio.wait_for(task, 1)  # run() ends quietly: the recording stopped
            info = await rec.close()
            rec.caller(frame_of(440, 99))  # the media thread goes on: ignored
        assert rec.failed and rec.pending_frames == 0
        assert [e["event"] for e in logs if e["log_level"] == "error"] == ["recording failed; it stops here"]
        assert info.seconds == pytest.approx(10 * FRAME_S)

    asyncio.run(main())
    assert sox_duration(path) == pytest.approx(10 * FRAME_S)  # what was written before stays playable


def test_a_recording_that_cannot_even_be_created_does_not_raise(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")

    async def main() -> None:
        rec = Recorder(blocker / "r.wav", sync_every_s=0.02)
        task = asyncio.create_task(rec.run())
        rec.caller(frame_of(440, 0))
        rec.agent(None)
        with capture_logs() as logs:
            await asyncio.sleep(0.05)
            info = await rec.close()
            await asyncio.wait_for(task, 1)
        assert rec.failed and info.seconds == 0.0 and info.bytes == 0
        assert len([e for e in logs if e["log_level"] == "error"]) == 1

    asyncio.run(main())


def test_closing_a_recorder_that_never_ran_writes_everything(tmp_path: Path) -> None:
    async def main() -> None:
        rec = Recorder(tmp_path / "r.wav")
        for k in range(5):
            rec.caller(frame_of(440, k))
        for k in range(3):
            rec.agent(frame_of(1000, k))
        info = await rec.close()
        assert info.seconds == pytest.approx(5 * FRAME_S)
        await asyncio.wait_for(rec.run(), 1)  # after close(): returns at once

    asyncio.run(main())
    pcm = read_stereo(tmp_path / "r.wav")
    assert np.array_equal(pcm[: 3 * FRAME, 1], tone(1000, 3 * FRAME)) and not pcm[3 * FRAME :, 1].any()
