"""A reference target with a known latency, to calibrate callsim (`callsim reference`).

A SIP UAS that parrots: it answers any INVITE, and each time the caller stops talking it plays
the caller's utterance back, starting exactly `delay_s` after the caller's last sound. Its
voice-to-voice latency is `delay_s` by construction, so what callsim measures against it is
callsim's own error. "Sound" is sample energy, not a VAD: the parrot needs a clean line.
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import structlog

from agent.audio.levels import block_db
from agent.audio.pacing import Pacer
from agent.telephony import siptext
from callsim import sdp
from callsim.codecs import make_codec
from callsim.rtp import RtpEndpoint
from callsim.voice import speech_bounds

log = structlog.get_logger("callsim.reference")
SOUND = 300.0  # RMS over 2.5 ms: about -40 dBFS
HOLD_S = 0.25  # silence that ends an utterance (must be shorter than the delay)


class Parrot:
    """One call's media: a 20 ms sender with an outgoing sample timeline, and the listener."""

    def __init__(self, codec_name: str, delay_s: float) -> None:
        self.codec = make_codec(codec_name)
        self.rate = self.codec.rate
        self.delay_s = max(delay_s, HOLD_S + 0.05)
        self.rtp = RtpEndpoint(self.codec, sdp.CODECS[codec_name][0], self._heard)
        self.out = np.zeros(self.rate * 600, np.int16)  # 10 minutes of outgoing audio
        self.t0 = 0.0
        self.heard: list[tuple[float, np.ndarray]] = []  # (arrival, pcm) of the current utterance
        self.last_sound = -1.0  # loop time of the caller's last loud sample
        self.replies: list[float] = []  # loop times the replies start
        self._task: asyncio.Task | None = None

    async def start(self, host: str, remote: sdp.Media) -> int:
        port = await self.rtp.bind(host)
        self.rtp.connect(remote.host, remote.port)
        self.rtp.pt = remote.payload_type
        self.t0 = asyncio.get_running_loop().time()
        self._task = asyncio.create_task(self._send())
        return port

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.rtp.close()

    async def _send(self) -> None:
        loop, n, k = asyncio.get_running_loop(), self.rate // 50, 0
        pacer = Pacer(0.02, self.t0)
        while (k + 1) * n <= len(self.out):
            await pacer.wait()
            self.rtp.send_audio(self.out[k * n : (k + 1) * n])
            k += 1
            if self.heard and self.last_sound > 0 and loop.time() - self.last_sound >= HOLD_S:
                self._reply()

    def _heard(self, pcm: np.ndarray, ts: int, arrival: float) -> None:
        block = max(1, self.rate // 400)
        loud = np.flatnonzero(block_db(pcm, block) > 20 * np.log10(SOUND))
        if loud.size:
            self.last_sound = arrival + (loud[-1] + 1) * block / self.rate
        if loud.size or self.heard:
            self.heard.append((arrival, pcm))

    def _reply(self) -> None:
        """Schedule the utterance, cut to its sound exactly as callsim cuts its own turns, to
        start `delay_s` after its last sound (its time: the first packet's arrival + offset)."""
        first_arrival = self.heard[0][0]
        audio = np.concatenate([pcm for _, pcm in self.heard])
        self.heard = []
        s, e = speech_bounds(audio, self.rate)
        utterance = audio[s:e]
        start = first_arrival + e / self.rate + self.delay_s
        pos = round((start - self.t0) * self.rate)
        end = min(pos + len(utterance), len(self.out))
        if pos < len(self.out):
            self.out[pos:end] = utterance[: end - pos]
        self.replies.append(start)


class ReferenceTarget(asyncio.DatagramProtocol):
    """The SIP side: answers INVITEs (first offered codec we have), BYE, OPTIONS."""

    def __init__(self, host: str = "127.0.0.1", delay_s: float = 0.5) -> None:
        self.host = host
        self.delay_s = delay_s
        self.calls: dict[str, tuple[Parrot, siptext.SipMessage]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    async def serve(self, port: int) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, port))
        self.transport = transport  # type: ignore[assignment]
        return transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        for parrot, _ in self.calls.values():
            parrot.stop()
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(siptext.SipParseError):
            msg = siptext.parse(data)
            if msg.is_request:
                task = asyncio.ensure_future(self._on_request(msg, addr))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _on_request(self, req: siptext.SipMessage, addr: tuple[str, int]) -> None:
        call_id, method = req.get("call-id"), req.method
        if method == "INVITE" and call_id in self.calls:  # a retransmission: same answer again
            self._send(self.calls[call_id][1], addr)
        elif method == "INVITE":
            try:
                media = sdp.answer_media(req.body, list(sdp.CODECS))
            except sdp.SdpError as exc:
                self._send(
                    siptext.response(
                        req, 488, "Not Acceptable Here", extra=[("warning", f'399 callsim "{exc}"')]
                    ),
                    addr,
                )
                return
            parrot = Parrot(media.codec, self.delay_s)
            port = await parrot.start(self.host, media)
            ok = siptext.response(
                req,
                200,
                "OK",
                siptext.new_token(),
                [
                    ("contact", f"<sip:parrot@{self.host}:{self.transport.get_extra_info('sockname')[1]}>"),
                    ("content-type", "application/sdp"),
                ],
                sdp.offer(self.host, port, [media.codec]),
            )
            self.calls[call_id] = (parrot, ok)
            log.info("call answered", codec=media.codec, delay_s=parrot.delay_s)
            self._send(ok, addr)
        elif method == "BYE":
            entry = self.calls.pop(call_id, None)
            if entry:
                entry[0].stop()
            self._send(siptext.response(req, 200 if entry else 481, "OK" if entry else "No Such Call"), addr)
        elif method != "ACK":
            self._send(siptext.response(req, 200, "OK"), addr)

    def _send(self, msg: siptext.SipMessage, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(msg.encode(), addr)
