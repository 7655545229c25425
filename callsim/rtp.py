"""The caller's RTP stream: 20 ms packets out (with line impairments), packets in, stamped.

Impairments apply to what the caller sends (what the agent hears): packet loss and jitter
(each packet delayed by a random 0..jitter ms, so late packets may also arrive out of order).
The RNG is seeded per call, so a scenario's impairments repeat exactly.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from callsim.codecs import Codec

DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
DTMF_KEYS = {v: k for k, v in DTMF_EVENTS.items()}
Receiver = Callable[[np.ndarray, int, float], None]  # pcm, rtp timestamp (audio samples), arrival


@dataclass
class RtpStats:
    sent: int = 0
    dropped: int = 0  # by the loss impairment
    received: int = 0
    lost: int = 0  # gaps in the peer's sequence numbers
    other: int = 0  # packets of other payload types (telephone-event, comfort noise)
    bad: int = 0  # not RTP


class RtpEndpoint(asyncio.DatagramProtocol):
    """One call's RTP socket. `send_audio` / `send_dtmf` are called on the 20 ms tick."""

    def __init__(
        self,
        codec: Codec,
        payload_type: int,
        on_audio: Receiver,
        *,
        loss_pct: float = 0.0,
        jitter_ms: float = 0.0,
        seed: int = 0,
        dtmf_pt: int | None = None,
    ) -> None:
        self.codec = codec
        self.pt = payload_type
        self.dtmf_pt = dtmf_pt
        self.on_audio = on_audio
        self.loss = loss_pct / 100
        self.jitter_s = jitter_ms / 1000
        self.stats = RtpStats()
        self.keys: list[str] = []  # keys the peer pressed (RFC 4733), in order
        self._key_ts: int | None = None
        self._rng = random.Random(seed)
        self._seq = self._rng.randrange(65536)
        self._ts = self._rng.randrange(2**32)
        self._ssrc = self._rng.randrange(2**32)
        self._clock_ratio = 2 if codec.name == "G722" else 1  # G.722: RTP clock 8 kHz, audio 16 kHz
        self._transport: asyncio.DatagramTransport | None = None
        self._remote: tuple[str, int] | None = None
        self._peer_seq: int | None = None
        self._loop = asyncio.get_running_loop()

    # --- set-up -------------------------------------------------------------------------
    async def bind(self, host: str) -> int:
        transport, _ = await self._loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        self._transport = transport  # type: ignore[assignment]
        return transport.get_extra_info("sockname")[1]

    def connect(self, host: str, port: int) -> None:
        self._remote = (host, port)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- sending ------------------------------------------------------------------------
    def send_audio(self, pcm: np.ndarray, marker: bool = False) -> None:
        """One frame of caller audio (int16 at the codec's rate)."""
        self._send(self.pt, marker, self._ts, self.codec.encode(pcm))
        self._ts = (self._ts + len(pcm) // self._clock_ratio) & 0xFFFFFFFF

    def send_dtmf(self, digit: str, elapsed_ms: int, end: bool, start_ts: int) -> None:
        """One RFC 4733 event packet; all packets of one digit carry the digit's start timestamp."""
        if self.dtmf_pt is None:
            return
        duration = elapsed_ms * 8  # in 8 kHz RTP clock units
        flags = 0x80 if end else 0
        payload = struct.pack("!BBH", DTMF_EVENTS[digit], flags | 10, duration)  # volume -10 dBm0
        for _ in range(3 if end else 1):  # the end packet is sent three times (RFC 4733 2.5.1.4)
            self._send(self.dtmf_pt, elapsed_ms == 20, start_ts, payload)

    def skip(self, samples: int) -> None:
        """Advance the RTP clock for audio time that went out as DTMF events."""
        self._ts = (self._ts + samples // self._clock_ratio) & 0xFFFFFFFF

    @property
    def timestamp(self) -> int:
        return self._ts

    def _send(self, pt: int, marker: bool, ts: int, payload: bytes) -> None:
        if self._transport is None or self._remote is None:
            return
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, self._seq, ts, self._ssrc)
        self._seq = (self._seq + 1) & 0xFFFF
        self.stats.sent += 1
        if self.loss and self._rng.random() < self.loss:
            self.stats.dropped += 1
            return
        packet, remote, transport = header + payload, self._remote, self._transport
        if self.jitter_s:
            self._loop.call_later(self._rng.uniform(0, self.jitter_s), transport.sendto, packet, remote)
        else:
            transport.sendto(packet, remote)

    # --- receiving ----------------------------------------------------------------------
    def _key_event(self, event: int, ts: int) -> None:
        """A key the agent pressed (RFC 4733): one key per event timestamp (its packets repeat)."""
        if ts != self._key_ts:
            self._key_ts = ts
            self.keys.append(DTMF_KEYS.get(event, "?"))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        arrival = self._loop.time()
        if len(data) < 12 or data[0] >> 6 != 2:
            self.stats.bad += 1
            return
        cc = data[0] & 0x0F
        offset = 12 + 4 * cc
        if data[0] & 0x10 and len(data) >= offset + 4:  # header extension
            offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)  # padding
        pt = data[1] & 0x7F
        seq, ts = struct.unpack_from("!HI", data, 2)
        if pt == self.dtmf_pt and end - offset >= 4:
            self._key_event(data[offset], ts)
        if pt != self.pt or offset >= end:
            self.stats.other += 1
            return
        if self._peer_seq is not None:
            gap = (seq - self._peer_seq) & 0xFFFF
            if 1 < gap < 1000:
                self.stats.lost += gap - 1
        self._peer_seq = seq
        self.stats.received += 1
        pcm = self.codec.decode(data[offset:end])
        self.on_audio(pcm, ts * self._clock_ratio, arrival)
