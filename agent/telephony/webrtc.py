"""WebRTC calls (aiortc): a browser's offer becomes a call leg like any SIP call.

Audio: the browser's Opus (48 kHz) is decoded by aiortc, mixed to mono and resampled to 16 kHz
for the session; the agent's 16 kHz frames are resampled to 48 kHz and paced at 20 ms by the
outgoing track's own clock. A data channel ("events") carries call state and captions to the
page, and the page's "hangup". Everything runs on the asyncio loop: no media threads here.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import secrets
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import structlog
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from agent.audio.frames import Framer
from agent.audio.pacing import Pacer
from agent.audio.resample import StreamResampler
from agent.config import WebRtcConfig
from agent.metrics import Metrics
from agent.telephony.call import BridgedLeg, CallHandler, CallInfo, Router
from agent.telephony.callbook import CallBook, CallRejected
from agent.telephony.limits import CallLimiter
from agent.telephony.media import FrameBridge

log = structlog.get_logger("webrtc")
OUT_RATE = 48000
OUT_FRAME = OUT_RATE // 50


class OfferError(Exception):
    """An offer we refuse; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Answer:
    call_id: str
    sdp: str


_ICE_ADDRESSES: ContextVar[tuple[str, ...] | None] = ContextVar("ice_addresses", default=None)


def install_ice_address_hook() -> None:
    """Let each gateway choose its ICE host candidates (e.g. 127.0.0.1 in tests).

    aioice has no per-connection setting for them (its `Connection` calls a module-level
    `get_host_addresses`, which also skips 127.0.0.1), so that lookup is wrapped once per
    process at start-up: inside `ice_addresses(...)` it returns those addresses, everywhere
    else it does what aioice does. Calling it again changes nothing.
    """
    import aioice.ice

    original = aioice.ice.get_host_addresses
    if getattr(original, "voice_agent_hook", False):
        return

    def lookup(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        chosen = _ICE_ADDRESSES.get()
        if chosen is None:
            return original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    setattr(lookup, "voice_agent_hook", True)  # noqa: B010  # marks the wrapper as ours
    aioice.ice.get_host_addresses = lookup


@contextlib.contextmanager
def ice_addresses(addresses: list[str]) -> Iterator[None]:
    """Candidates gathered in this context (this task) use only `addresses` ([]: all)."""
    token = _ICE_ADDRESSES.set(tuple(addresses) or None)
    try:
        yield
    finally:
        _ICE_ADDRESSES.reset(token)


class AgentTrack(MediaStreamTrack):
    """The agent's voice to the browser: one 48 kHz frame per 20 ms from the leg's bridge."""

    kind = "audio"

    def __init__(self, bridge: FrameBridge) -> None:
        super().__init__()
        self._bridge = bridge
        self._up = StreamResampler(bridge.rate, OUT_RATE)
        self._framer = Framer(OUT_RATE)
        self._pending: list[np.ndarray] = []
        self._pacer = Pacer(OUT_FRAME / OUT_RATE)  # on our own clock: a late loop catches up
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._pacer.wait()
        while not self._pending:
            data = self._bridge.pull_outbound()
            pcm = np.frombuffer(data, np.int16) if data else np.zeros(self._bridge.frame_samples, np.int16)
            self._pending += self._framer.push(self._up.process(pcm))
        frame = av.AudioFrame.from_ndarray(self._pending.pop(0).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = OUT_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, OUT_RATE)
        self._pts += OUT_FRAME
        return frame


class WebRtcLeg(BridgedLeg):
    """The asyncio side of one browser call."""

    def __init__(self, info: CallInfo, bridge: FrameBridge, pc: RTCPeerConnection) -> None:
        super().__init__(info, bridge)
        self.pc = pc
        self.channel: Any = None  # the page's "events" data channel, once it opens
        self.connected = asyncio.Event()  # ICE and DTLS are up: media flows
        self._unsent: list[str] = []

    def notify(self, event: dict[str, Any]) -> None:
        text = json.dumps(event)
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(text)
        else:
            self._unsent.append(text)  # e.g. the greeting's caption before the channel opens

    def on_channel(self, channel: Any) -> None:
        self.channel = channel

        def flush() -> None:
            for text in self._unsent:
                channel.send(text)
            self._unsent.clear()

        if channel.readyState == "open":
            flush()
        else:
            channel.on("open", flush)

    async def _request_hangup(self) -> None:
        self.notify({"type": "state", "state": "ended"})
        await asyncio.sleep(0.1)  # let the last events reach the page
        await self.pc.close()


async def pump_inbound(track: MediaStreamTrack, bridge: FrameBridge) -> None:
    """Browser audio -> 16 kHz mono 20 ms frames on the bridge, until the track ends."""
    down: StreamResampler | None = None
    rate = 0
    framer = Framer(bridge.rate)
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if not isinstance(frame, av.AudioFrame):  # an audio track only yields audio frames
            continue
        pcm = frame.to_ndarray()  # packed: (1, samples * channels); planar: (channels, samples)
        channels = len(frame.layout.channels)
        if channels > 1:
            pcm = pcm.mean(axis=0) if frame.format.is_planar else pcm.reshape(-1, channels).mean(axis=1)
        mono = pcm.reshape(-1).astype(np.int16)
        if frame.sample_rate != rate:
            rate = frame.sample_rate
            down = StreamResampler(rate, bridge.rate)
        assert down is not None
        for f in framer.push(down.process(mono)):
            bridge.push_inbound(f.tobytes())


class WebRtcGateway:
    """Turns offers into calls: routing, the shared call limit, one peer connection per call."""

    def __init__(self, cfg: WebRtcConfig, router: Router, limiter: CallLimiter, metrics: Metrics) -> None:
        self.cfg = cfg
        self._book = CallBook(router, limiter, metrics)
        self.legs: dict[str, WebRtcLeg] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self.accepting = False  # set once the engines are loaded; before that offers get 503

    async def answer(self, sdp: str, to_user: str, remote: str) -> Answer:
        """Accept an offer: returns our answer, or raises OfferError (404, 400, 503)."""
        if not self.accepting:
            raise OfferError(503, "the agent is starting: try again in a moment")
        call_id = f"web-{secrets.token_hex(6)}"
        info = CallInfo(call_id, "webrtc", f"web:{remote}", f"web:{to_user}", to_user, remote_addr=remote)
        try:
            handler = self._book.admit(info)
        except CallRejected as exc:
            if exc.result == "rejected_busy":
                raise OfferError(503, "all lines are busy: try again in a moment") from None
            raise OfferError(403 if exc.result == "rejected_forbidden" else 404, str(exc)) from None
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never a public STUN server
        leg = WebRtcLeg(info, FrameBridge(asyncio.get_running_loop()), pc)
        try:
            self._wire(pc, leg)
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            if not any(t.kind == "audio" for t in pc.getTransceivers()):
                raise ValueError("the offer has no audio")
            with ice_addresses(self.cfg.ice_addresses):  # candidates are gathered in here
                await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError and friends for SDP it cannot use
            await pc.close()
            self._book.abandon(info, None)  # a 400: the page was told, no call to count
            raise OfferError(400, f"unusable SDP offer: {exc}") from exc
        self.legs[call_id] = leg
        self._spawn(self._lifetime(leg, handler))
        log.info("webrtc offer answered", call_id=call_id, to=to_user, remote=remote)
        return Answer(call_id, pc.localDescription.sdp)

    def _wire(self, pc: RTCPeerConnection, leg: WebRtcLeg) -> None:
        pc.addTrack(AgentTrack(leg.bridge))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(pump_inbound(track, leg.bridge))

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            leg.on_channel(channel)

            def on_message(message: Any) -> None:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    if json.loads(message).get("type") == "hangup":
                        log.info("caller hung up", call_id=leg.info.call_id)
                        self._spawn(pc.close())

            channel.on("message", on_message)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("webrtc connection", call_id=leg.info.call_id, state=pc.connectionState)
            if pc.connectionState == "connected":
                leg.connected.set()
            elif pc.connectionState in ("failed", "closed"):
                await pc.close()
                if not leg.ended.is_set():
                    leg.on_ended()

    async def _lifetime(self, leg: WebRtcLeg, handler: CallHandler) -> None:
        """Wait for media, run the call, then release everything it held."""
        pc = leg.pc
        try:
            up = asyncio.ensure_future(leg.connected.wait())
            gone = asyncio.ensure_future(leg.ended.wait())
            await asyncio.wait(
                {up, gone}, timeout=self.cfg.connect_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            up.cancel()
            gone.cancel()
            if not leg.connected.is_set() or leg.ended.is_set():
                if not leg.ended.is_set():
                    log.warning("webrtc media never connected", call_id=leg.info.call_id)
                # counted as failed unless the page hung up first
                self._book.abandon(leg.info, None if leg.ended.is_set() else "failed")
                return
            leg.notify({"type": "state", "state": "connected"})
            await self._book.run(leg, handler)
        finally:
            await pc.close()
            if not leg.ended.is_set():
                leg.on_ended()
            self.legs.pop(leg.info.call_id, None)
            log.info("webrtc call ended", call_id=leg.info.call_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, grace_s: float = 3.0) -> None:
        """Hang up every browser call and wait for them to end."""
        for leg in list(self.legs.values()):
            await leg.hangup()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace_s)
