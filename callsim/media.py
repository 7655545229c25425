"""The caller's media: the two recorded tracks, the 20 ms transmitter and the live listener.

Times are seconds on the call's clock: 0 is the moment the 200 OK arrived. A caller sample's
time is when its packet went on the wire; an agent sample's time is when its packet arrived
(RTP timestamps smooth the network's jitter away, anchored on the earliest arrival).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from agent.audio.pacing import Pacer
from agent.engines.vad import VADStream
from callsim.rtp import RtpEndpoint
from callsim.voice import add_noise

FRAME_S = 0.02
DTMF_TONE_S, DTMF_GAP_S = 0.16, 0.1
_DTMF_HZ = {
    "1": (697, 1209),
    "2": (697, 1336),
    "3": (697, 1477),
    "A": (697, 1633),
    "4": (770, 1209),
    "5": (770, 1336),
    "6": (770, 1477),
    "B": (770, 1633),
    "7": (852, 1209),
    "8": (852, 1336),
    "9": (852, 1477),
    "C": (852, 1633),
    "*": (941, 1209),
    "0": (941, 1336),
    "#": (941, 1477),
    "D": (941, 1633),
}


class Track:
    """One direction's audio on the call clock; writes may land anywhere (they overwrite)."""

    def __init__(self, rate: int, max_s: float) -> None:
        self.rate = rate
        self.pcm = np.zeros(int((max_s + 5) * rate), np.int16)

    def write(self, pos: int, pcm: np.ndarray) -> None:
        if pos < 0 or pos + len(pcm) > len(self.pcm):
            return  # before the answer (early media) or past the call's time limit
        self.pcm[pos : pos + len(pcm)] = pcm

    def audio(self, length: int) -> np.ndarray:
        return self.pcm[:length].copy()


class AgentListener:
    """Places the agent's packets on its track and follows, live, whether the agent is talking."""

    def __init__(self, track: Track, vad: VADStream, origin: float) -> None:
        self.track = track
        self.vad = vad
        self.origin = origin
        self.last_voice: float = -1.0  # call time of the latest voiced VAD window
        self._anchor: int | None = None  # track position minus RTP timestamp, in samples
        self._voice_changed = asyncio.Event()

    def on_audio(self, pcm: np.ndarray, ts: int, arrival: float) -> None:
        rate = self.track.rate
        at = round((arrival - self.origin) * rate)
        d = at - ts
        if self._anchor is None or abs(d - self._anchor) > rate // 10:
            self._anchor = d  # first packet, a new stream, or a timestamp jump: re-anchor
        else:
            self._anchor = min(self._anchor, d)  # the earliest arrival is the network's own delay
        pos = ts + self._anchor
        self.track.write(pos, pcm)
        if self.vad.process(pcm) >= 0.5:
            self.last_voice = (pos + len(pcm)) / rate
            self._voice_changed.set()

    async def wait_voice_after(self, t: float, timeout_s: float) -> bool:
        """Until the agent talks after call time `t`; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.last_voice <= t:
            self._voice_changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._voice_changed.wait(), left)
            except TimeoutError:
                return False
        return True


@dataclass
class _Job:
    pcm: np.ndarray | None  # audio to send, or None for DTMF
    digits: str = ""
    done: asyncio.Future[tuple[float, float]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    start: float = -1.0


class Transmitter:
    """Sends one frame every 20 ms from the call's start: queued speech or DTMF, else silence
    (plus the line's noise). The caller track records exactly what went out, where."""

    def __init__(self, rtp: RtpEndpoint, track: Track, noise_rms: float = 0.0, seed: int = 0) -> None:
        self.rtp = rtp
        self.track = track
        self.n = track.rate // 50
        self.noise_rms = noise_rms
        self._rng = np.random.default_rng(seed)
        self._jobs: deque[_Job] = deque()
        self._pos = 0  # into the current job
        self.tick = 0
        self._dtmf_ts = 0  # RTP timestamp of the digit being sent
        self.late_max_s = 0.0  # how far behind its schedule the sender fell (measurement quality)

    def say(self, pcm: np.ndarray) -> asyncio.Future[tuple[float, float]]:
        """Queue speech; the future gives its (start, end) on the call clock once it is sent."""
        job = _Job(pcm)
        self._jobs.append(job)
        return job.done

    def dtmf(self, digits: str) -> asyncio.Future[tuple[float, float]]:
        job = _Job(None, digits)
        self._jobs.append(job)
        return job.done

    async def run(self, origin: float) -> None:
        pacer = Pacer(FRAME_S, origin)
        while True:
            await pacer.wait()
            self.late_max_s = pacer.late_max_s
            self._send_one()
            self.tick += 1

    def _send_one(self) -> None:
        now = self.tick * FRAME_S
        frame = np.zeros(self.n, np.int16)
        job = self._jobs[0] if self._jobs else None
        if job is not None and job.start < 0:
            job.start = now
        if job is not None and job.pcm is not None:
            chunk = job.pcm[self._pos : self._pos + self.n]
            frame[: len(chunk)] = chunk
            self._pos += self.n
            if self._pos >= len(job.pcm):
                self._finish(job, job.start + len(job.pcm) / self.track.rate)
        elif job is not None:
            if self._send_dtmf(job):
                self._finish(job, now + FRAME_S)
            return
        if self.noise_rms:
            frame = add_noise(frame, self.noise_rms, self._rng)
        self.rtp.send_audio(frame, marker=self.tick == 0)
        self.track.write(self.tick * self.n, frame)

    def _send_dtmf(self, job: _Job) -> bool:
        """One 20 ms step of a digit string: events then gaps. True when the string is done."""
        per_digit = round((DTMF_TONE_S + DTMF_GAP_S) / FRAME_S)
        tone_ticks = round(DTMF_TONE_S / FRAME_S)
        digit, step = divmod(self._pos, per_digit)
        self._pos += 1
        ch = job.digits[digit]
        if step < tone_ticks:
            if step == 0:
                self._dtmf_ts = self.rtp.timestamp
            self.rtp.send_dtmf(ch, (step + 1) * 20, step == tone_ticks - 1, self._dtmf_ts)
            self.rtp.skip(self.n)
            self.track.write(self.tick * self.n, _tone(ch, self.tick * self.n, self.n, self.track.rate))
        else:
            self.rtp.send_audio(np.zeros(self.n, np.int16))
        return self._pos >= per_digit * len(job.digits)

    def _finish(self, job: _Job, end: float) -> None:
        self._jobs.popleft()
        self._pos = 0
        if not job.done.done():
            job.done.set_result((job.start, end))


def _tone(digit: str, start: int, n: int, rate: int) -> np.ndarray:
    """The digit's DTMF tone, for the caller track only (the wire carries RFC 4733 events)."""
    t = (start + np.arange(n)) / rate
    lo, hi = _DTMF_HZ[digit]
    return (3000 * (np.sin(2 * np.pi * lo * t) + np.sin(2 * np.pi * hi * t))).astype(np.int16)
