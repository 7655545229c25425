"""The echo target: the caller hears their own audio back after a fixed delay (no models)."""

from __future__ import annotations

import numpy as np

from agent.telephony.call import CallHandler, CallLeg


def echo_handler(delay_s: float = 0.5) -> CallHandler:
    """A call handler that plays every caller frame back `delay_s` later.

    The delay is a block of silence queued once: both directions run on the transport's clock,
    so the outbound queue stays that long for the whole call.
    """

    async def echo(leg: CallLeg) -> None:
        if delay_s > 0:
            leg.play(np.zeros(int(delay_s * leg.sample_rate), dtype=np.int16), leg.sample_rate)
        async for frame in leg.frames():
            leg.play(frame, leg.sample_rate)

    return echo
