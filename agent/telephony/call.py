"""The transport-neutral call leg: what a call session sees of a SIP or WebRTC call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import structlog

from agent.telephony.media import FrameBridge, MediaTap


@dataclass
class CallInfo:
    """Who called whom, over what. `codec` and `remote_media` are known once media is up."""

    call_id: str
    transport: str  # "sip" | "webrtc"
    from_uri: str
    to_uri: str
    to_user: str  # the called user/number: what routing looks at
    remote_addr: str = ""  # the caller's address (as a trusted proxy in front reports it)
    anonymous: bool = False  # the caller withholds its identity (SIP From/Privacy)
    codec: str = ""
    remote_media: str = ""
    started_at: float = field(default_factory=time.time)


class CallLeg(Protocol):
    """One answered call, from the agent's side."""

    info: CallInfo
    sample_rate: int  # of frames(): always 16000
    dtmf: asyncio.Queue[str]
    ended: asyncio.Event

    def frames(self) -> AsyncIterator[np.ndarray]:
        """Caller audio: 20 ms int16 frames at 16 kHz, until the call ends."""
        ...

    def play(
        self,
        pcm: np.ndarray,
        rate: int,
        on_start: Callable[[], None] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> int:
        """Queue agent audio (any rate, int16 mono); it goes out paced at 20 ms. `on_start` /
        `on_end` run on the loop when its first / last frame has gone out (not if flushed).

        Returns the samples queued, at `sample_rate` (whole frames)."""
        ...

    def flush(self) -> int:
        """Drop all queued agent audio now (barge-in), ending any hold; returns the samples
        dropped."""
        ...

    def hold(self, on: bool) -> None:
        """Pause the agent's audio where it is (the caller may only be saying "uh-huh"), or
        resume it from there."""
        ...

    def record(self, tap: MediaTap | None) -> None:
        """Hand every frame heard and sent from now on to `tap` (None: stop)."""
        ...

    @property
    def samples_sent(self) -> int:
        """Agent samples (at 16 kHz) handed to the transport so far."""
        ...

    @property
    def samples_queued(self) -> int:
        """Agent samples (at 16 kHz) waiting to be sent."""
        ...

    async def hangup(self) -> None:
        """End the call (BYE); returns when the transport has taken the request."""
        ...

    async def transfer(self, uri: str) -> bool:
        """Hand the caller to `uri` (SIP: blind transfer by REFER). False if it cannot."""
        ...

    async def send_dtmf(self, digits: str) -> bool:
        """Press keys on the far end (SIP: RFC 4733 events). False if the transport cannot."""
        ...

    async def connect(self, other: CallLeg) -> bool:
        """Join this call's audio to `other`'s, both ways, and take the agent out of both (a
        warm transfer's bridge). The two stay joined until either ends; then the other is hung
        up. False if the transport cannot join these two."""
        ...

    def notify(self, event: dict[str, Any]) -> None:
        """Show the caller's side an event (call state, captions) if the transport has a channel
        for it (WebRTC's data channel); the others ignore it."""
        ...


CallHandler = Callable[[CallLeg], Awaitable[None]]
Router = Callable[[CallInfo], CallHandler | None]  # None: no one answers this user (404)


class CallRefused(Exception):
    """A router's refusal of a call to a user it knows: the SIP status to answer with (403 for
    a caller outside the dialplan's trunks, 433 for an anonymous one where those are refused)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class Dialed:
    """How an outgoing call went: `leg` once answered, else the final SIP status (486 busy,
    603 declined, 408 no answer in time, 503 no line free) and its reason."""

    leg: CallLeg | None
    code: int
    reason: str = ""
    ringing_at: float | None = None  # time.monotonic() of its first 18x, if any came


class Dialer(Protocol):
    """Places a call to a URI, giving up (CANCEL) after `ring_timeout_s`; `on_ringing` when
    the far end starts ringing (its first 18x)."""

    def __call__(
        self, uri: str, ring_timeout_s: float, on_ringing: Callable[[], None] | None = None
    ) -> Awaitable[Dialed]: ...


class BridgedLeg:
    """CallLeg plumbing shared by transports: a FrameBridge, DTMF queue and end event.

    A transport subclasses it and implements `_request_hangup`.
    """

    sample_rate = 16000

    def __init__(self, info: CallInfo, bridge: FrameBridge) -> None:
        self.info = info
        self.bridge = bridge
        self.dtmf: asyncio.Queue[str] = asyncio.Queue()
        self.ended = asyncio.Event()

    def frames(self) -> AsyncIterator[np.ndarray]:
        return self.bridge.frames()

    def play(
        self,
        pcm: np.ndarray,
        rate: int,
        on_start: Callable[[], None] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> int:
        return self.bridge.play(pcm, rate, on_start, on_end)

    def flush(self) -> int:
        return self.bridge.flush()

    def hold(self, on: bool) -> None:
        self.bridge.hold(on)

    def record(self, tap: MediaTap | None) -> None:
        self.bridge.tap = tap

    @property
    def samples_sent(self) -> int:
        return self.bridge.samples_sent

    @property
    def samples_queued(self) -> int:
        return self.bridge.samples_queued

    def on_ended(self) -> None:
        """Loop side: the transport says the call is over."""
        self.bridge.close()
        self.ended.set()

    async def hangup(self) -> None:
        if not self.ended.is_set():
            await self._request_hangup()

    async def _request_hangup(self) -> None:
        raise NotImplementedError

    async def transfer(self, uri: str) -> bool:
        return False  # transports that can transfer override this

    async def send_dtmf(self, digits: str) -> bool:
        return False  # transports with keys override this

    async def connect(self, other: CallLeg) -> bool:
        return False  # transports that can bridge two calls override this

    def notify(self, event: dict[str, Any]) -> None:
        pass  # transports with a side channel override this


async def run_call(leg: BridgedLeg, handler: CallHandler) -> bool:
    """Run a call's handler in its own task: log context, errors contained, always hung up.

    Returns False when the handler failed.
    """
    structlog.contextvars.bind_contextvars(call_id=leg.info.call_id)
    log = structlog.get_logger("call")
    log.info("call started", transport=leg.info.transport, to=leg.info.to_user, caller=leg.info.from_uri)
    try:
        await handler(leg)
        return True
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("call handler failed; hanging up")
        return False
    finally:
        if not leg.ended.is_set():
            await leg.hangup()
