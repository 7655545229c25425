"""Per-call stereo recordings (caller left, agent right), 16-bit PCM WAV, written while the call runs.

Crash safety. A WAV file states its length twice in its 44-byte header (RIFF size, data size);
a header that still says 0 (what a writer leaves until it closes) makes players see nothing.
`StereoWav` therefore writes a normal header at once and rewrites both sizes after every
flush (`Recorder` flushes every `sync_every_s`, 0.5 s): the data goes to the OS first, the
header after it, so the header never counts bytes that are not in the file. A `kill -9` (or a
crash) loses no byte the OS already has, so the file left behind is a valid WAV up to the last
flush, i.e. within `sync_every_s` (plus a frame) of the kill; anything after the header's data
size is ignored by players. No fsync: only a power cut could lose more, and a call recording
is not worth a disk flush twice a second. `repair(path)` makes the header match the data
actually in the file (the tail written after the last flush, minus a partial sample frame);
it is meant for the next start, over recordings of calls that never ended. Why not WAV's
alternatives: RF64/W64 or a raw file plus a sidecar header are not "a .wav that anything
plays", and rewriting 44 bytes twice a second costs nothing.

Threads. The transport's media thread hands `Recorder` every caller frame and every agent
frame it sends (None for silence); `caller`/`agent` only append to a deque (atomic in CPython,
no lock, never blocks). A loop task (`Recorder.run`) takes what is pending every
`sync_every_s`, pairs frame k of the caller with frame k of the agent (for SIP one 20 ms clock
ticks both), and writes the block in a worker thread (`asyncio.to_thread`). A side that is up
to `max_lag_frames` ahead waits for its partners (jitter); one that gets further ahead (a
WebRTC caller whose packets stop, a transport that stops pulling) is written at once, the
other side padded with silence up to now: the recording stays in time, and what waits in
memory stays bounded. No audio is ever dropped except when the loop stalls for longer than
`MAX_PENDING_S`. A write error (disk full) is logged once and ends the recording; it never
raises into the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

log = structlog.get_logger("recording")

HEADER_BYTES = 44
CHANNELS = 2
SAMPLE_BYTES = 2
BLOCK = CHANNELS * SAMPLE_BYTES  # one sample frame: caller sample, agent sample
MAX_DATA = (0xFFFFFFFF - (HEADER_BYTES - 8)) // BLOCK * BLOCK  # WAV sizes are 32-bit (~18 h at 16 kHz)
MAX_PENDING_S = 30.0  # frames kept per side while the loop does not take them (then the oldest go)
_PCM = np.dtype("<i2")


def _header(rate: int, data_bytes: int) -> bytes:
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        HEADER_BYTES - 8 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        CHANNELS,
        rate,
        rate * BLOCK,
        BLOCK,
        8 * SAMPLE_BYTES,
        b"data",
        data_bytes,
    )


class StereoWav:
    """A stereo 16-bit WAV file being appended to."""

    def __init__(self, path: Path, rate: int = 16000) -> None:
        self.path = path
        self.rate = rate
        path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: every write is a syscall (blocks are ~0.5 s, 32 kB), and the byte count
        # is exact even when a write fails half-way.
        self._f = open(path, "w+b", buffering=0)  # noqa: SIM115 (closed by close())
        self._data = 0  # bytes of sample data in the file
        self._closed = False
        try:
            self._write_all(_header(rate, 0))
        except BaseException:
            self._f.close()
            raise

    def _write_all(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        done = 0
        while done < len(view):
            n = self._f.write(view[done:])
            if not n:
                raise OSError(f"{self.path}: short write")
            done += n
        return done

    def write(self, caller: bytes, agent: bytes) -> None:
        """Append equal-length int16 mono blocks, interleaved (caller left, agent right)."""
        if len(caller) != len(agent) or len(caller) % SAMPLE_BYTES:
            raise ValueError(f"blocks of {len(caller)} and {len(agent)} bytes: need equal, whole samples")
        if self._closed:
            raise ValueError(f"{self.path}: closed")
        if self._data + 2 * len(caller) > MAX_DATA:
            raise OSError(f"{self.path}: a WAV file cannot hold more than {MAX_DATA} bytes")
        out = np.empty(len(caller), dtype=_PCM)  # 2 * samples
        out[0::2] = np.frombuffer(caller, dtype=_PCM)
        out[1::2] = np.frombuffer(agent, dtype=_PCM)
        view = memoryview(out.tobytes())
        done = 0
        try:
            while done < len(view):
                n = self._f.write(view[done:])
                if not n:
                    raise OSError(f"{self.path}: short write")
                done += n
        finally:
            # Count whole sample frames only; a partly written one is overwritten by the next write.
            self._data += done - done % BLOCK
            if done % BLOCK:
                with contextlib.suppress(OSError):
                    self._f.seek(HEADER_BYTES + self._data)

    def sync(self) -> None:
        """Rewrite the header's RIFF and data sizes from the bytes written; flush to the OS (no fsync)."""
        if self._closed:
            return
        self._f.flush()  # a no-op (unbuffered): the data is already the OS's, before the header
        self._f.seek(0)
        self._write_all(_header(self.rate, self._data))
        self._f.seek(HEADER_BYTES + self._data)

    def close(self) -> None:
        """Sync and close; idempotent."""
        if self._closed:
            return
        try:
            self.sync()
        finally:
            self._closed = True
            self._f.close()

    @property
    def seconds(self) -> float:
        return self._data / (BLOCK * self.rate)

    @property
    def bytes_written(self) -> int:
        """The whole file's size (header included)."""
        return HEADER_BYTES + self._data


def repair(path: Path) -> bool:
    """Make the header's sizes match the data actually in the file (dropping a trailing partial
    sample frame). True if it changed anything. Raises ValueError for a file that is not our WAV."""
    with open(path, "r+b") as f:
        head = f.read(HEADER_BYTES)
        if len(head) < HEADER_BYTES:
            raise ValueError(f"{path}: {len(head)} bytes, shorter than a WAV header")
        riff, riff_size, wave, fmt, fmt_size, kind, channels, rate, byte_rate, block, bits, data, size = (
            struct.unpack("<4sI4s4sIHHIIHH4sI", head)
        )
        if (riff, wave, fmt, fmt_size, kind, data) != (b"RIFF", b"WAVE", b"fmt ", 16, 1, b"data") or (
            channels,
            block,
            bits,
            byte_rate,
        ) != (CHANNELS, BLOCK, 8 * SAMPLE_BYTES, rate * BLOCK):
            raise ValueError(f"{path}: not a 16-bit stereo PCM WAV with a 44-byte header")
        file_size = f.seek(0, 2)
        actual = min((file_size - HEADER_BYTES) // BLOCK * BLOCK, MAX_DATA)
        if (riff_size, size, file_size) == (HEADER_BYTES - 8 + actual, actual, HEADER_BYTES + actual):
            return False
        f.seek(0)
        f.write(_header(rate, actual))
        f.truncate(HEADER_BYTES + actual)
    return True


@dataclass(frozen=True)
class RecordingInfo:
    path: Path
    seconds: float
    bytes: int


class Recorder:
    """One call's recording. The transport's media thread hands it every caller frame and every
    agent frame it sends (silence as None); a loop task writes them out in a worker thread."""

    def __init__(
        self,
        path: Path,
        rate: int = 16000,
        frame_ms: int = 20,
        sync_every_s: float = 0.5,
        max_lag_frames: int = 10,
    ) -> None:
        self.path = path
        self.rate = rate
        self.frame_bytes = rate * frame_ms // 1000 * SAMPLE_BYTES
        self.sync_every_s = sync_every_s
        self.max_lag_frames = max_lag_frames
        cap = max(int(MAX_PENDING_S * 1000 / frame_ms), 2 * max_lag_frames)
        self._caller: deque[bytes] = deque(maxlen=cap)
        self._agent: deque[bytes | None] = deque(maxlen=cap)
        self._silence = bytes(self.frame_bytes)
        self._wav: StereoWav | None = None  # opened by the first write, in the worker thread
        self._stop = False  # close() requested: frames are no longer taken
        self._failed = False
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one block at a time goes to the worker thread
        self._finish: asyncio.Future[RecordingInfo] | None = None

    # --- media thread side (any thread) ---------------------------------------------------
    def caller(self, frame: bytes) -> None:
        """A caller frame (any thread). Never blocks, never raises."""
        if not (self._stop or self._failed):
            self._caller.append(frame)

    def agent(self, frame: bytes | None) -> None:
        """An agent frame as sent, None for a silent one (any thread). Never blocks, never raises."""
        if not (self._stop or self._failed):
            self._agent.append(frame)

    @property
    def pending_frames(self) -> int:
        """Frames (both sides) waiting to be written."""
        return len(self._caller) + len(self._agent)

    @property
    def failed(self) -> bool:
        """A write failed; the recording stopped there."""
        return self._failed

    # --- loop side ------------------------------------------------------------------------
    async def run(self) -> None:
        """Every sync_every_s write what is pending and sync; returns once close() is requested
        and everything has been written."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while not self._stop and not self._failed:
            deadline = max(deadline + self.sync_every_s, loop.time())  # a fixed grid: no drift
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), deadline - loop.time())
            if self._wake.is_set():  # close() was requested: it writes the rest
                break
            # Shielded: if run() is cancelled, the block being written still lands, in order.
            await asyncio.shield(self._write_pending(final=False))
        if self._finish is not None:
            await asyncio.shield(self._finish)

    async def close(self) -> RecordingInfo:
        """Stop run(), write the rest (the shorter side padded with silence), close the file.
        Idempotent."""
        if self._finish is None:
            self._stop = True
            self._wake.set()
            self._finish = asyncio.ensure_future(self._close())
        return await asyncio.shield(self._finish)

    async def _close(self) -> RecordingInfo:
        await self._write_pending(final=True)
        async with self._lock:
            await asyncio.to_thread(self._close_file)
        self._caller.clear()
        self._agent.clear()
        wav = self._wav
        if wav is None:
            return RecordingInfo(self.path, 0.0, 0)
        return RecordingInfo(self.path, wav.seconds, wav.bytes_written)

    def _take(self, final: bool) -> tuple[list[bytes], list[bytes | None]] | None:
        """The frames to write now: the pairs; or, when one side is more than max_lag_frames
        ahead (and at the end), all frames, the other side getting silence for its missing ones."""
        n_caller, n_agent = len(self._caller), len(self._agent)
        if final or abs(n_caller - n_agent) > self.max_lag_frames:
            take_caller, take_agent = n_caller, n_agent  # the lagging side is padded up to now
        else:
            take_caller = take_agent = min(n_caller, n_agent)  # the lead waits for its partners
        if not (take_caller or take_agent):
            return None
        caller = [self._caller.popleft() for _ in range(take_caller)]
        agent = [self._agent.popleft() for _ in range(take_agent)]
        return caller, agent

    async def _write_pending(self, final: bool) -> None:
        async with self._lock:
            if self._failed:
                return
            frames = self._take(final)
            if frames is None and not final:
                return
            caller, agent = frames or ([], [])
            try:
                await asyncio.to_thread(self._write_block, caller, agent)
            except Exception as exc:
                self._fail(exc)

    # --- worker thread side ---------------------------------------------------------------
    def _fit(self, frame: bytes | None) -> bytes:
        if frame is None:
            return self._silence
        n = len(frame)
        if n == self.frame_bytes:
            return frame
        return frame[: self.frame_bytes] if n > self.frame_bytes else frame + self._silence[n:]

    def _write_block(self, caller: list[bytes], agent: list[bytes | None]) -> None:
        if self._wav is None:
            self._wav = StereoWav(self.path, self.rate)
        n = max(len(caller), len(agent))
        left = b"".join(self._fit(f) for f in caller) + self._silence * (n - len(caller))
        right = b"".join(self._fit(f) for f in agent) + self._silence * (n - len(agent))
        if n:
            self._wav.write(left, right)
        self._wav.sync()

    def _close_file(self) -> None:
        if self._wav is None:
            return
        try:
            self._wav.close()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self._failed:
            return
        self._failed = True
        self._caller.clear()
        self._agent.clear()
        log.error("recording failed; it stops here", path=str(self.path), error=repr(exc))
        if self._wav is not None:
            with contextlib.suppress(Exception):
                self._wav.close()
