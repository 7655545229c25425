"""A WebRTC caller in Python (aiortc), for tests and the benchmark: sends a WAV's worth of
audio, records what it hears with arrival times, and collects the data channel's events."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from dataclasses import dataclass, field

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from agent.audio.resample import resample
from agent.telephony.webrtc import ice_addresses, install_ice_address_hook

RATE = 48000
FRAME = RATE // 50


class CallerTrack(MediaStreamTrack):
    """The caller's microphone: `pcm` (16 kHz) paced at 20 ms, then silence."""

    kind = "audio"

    def __init__(self, pcm16k: np.ndarray) -> None:
        super().__init__()
        self.pcm = resample(pcm16k, 16000, RATE)
        self.start: float | None = None
        self.pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.pts / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        chunk = np.zeros(FRAME, np.int16)
        part = self.pcm[self.pts : self.pts + FRAME]
        chunk[: len(part)] = part
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.pts, fractions.Fraction(1, RATE)
        self.pts += FRAME
        return frame


@dataclass
class WebRtcCall:
    status: int = 0
    error: str = ""
    events: list[tuple[float, dict]] = field(default_factory=list)  # (monotonic, event)
    heard: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival, 48 kHz mono)
    mic_start: float | None = None  # monotonic time the caller's first sample went out

    def heard_pcm(self) -> np.ndarray:
        return np.concatenate([p for _, p in self.heard]) if self.heard else np.zeros(0, np.int16)


async def webrtc_call(
    base_url: str, caller16k: np.ndarray, seconds: float, to: str | None = None, token: str | None = None
) -> WebRtcCall:
    install_ice_address_hook()
    result = WebRtcCall()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    mic = CallerTrack(caller16k)
    pc.addTrack(mic)
    channel = pc.createDataChannel("events")
    channel.on("message", lambda m: result.events.append((time.monotonic(), json.loads(m))))
    tasks = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def record() -> None:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1).astype(np.int16)
                result.heard.append((time.monotonic(), pcm))

        tasks.append(asyncio.ensure_future(record()))

    with ice_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    body = {"type": "offer", "sdp": pc.localDescription.sdp, **({"to": to} if to else {})}
    if token:
        body["token"] = token
    async with aiohttp.ClientSession() as http, http.post(f"{base_url}/v1/webrtc/offer", json=body) as r:
        result.status = r.status
        data = await r.json()
    if r.status != 200:
        result.error = data.get("error", "")
        await pc.close()
        return result
    await pc.setRemoteDescription(RTCSessionDescription(data["sdp"], "answer"))
    await asyncio.sleep(seconds)
    result.mic_start = mic.start
    if channel.readyState == "open":
        channel.send(json.dumps({"type": "hangup"}))
        await asyncio.sleep(0.3)
    await pc.close()
    for t in tasks:
        t.cancel()
    return result
