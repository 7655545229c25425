"""A CallLeg without a network, for session tests: scripted caller audio in, agent audio recorded.

Both directions tick on one 20 ms clock like a transport's: each tick takes one agent frame
off the queue (what the caller hears) and delivers one caller frame. Optionally the agent's
own audio comes back into the caller's microphone (echo) after `echo_delay_ms`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

import numpy as np

from agent.telephony.call import CallInfo
from agent.telephony.media import FrameBridge, MediaTap

RATE = 16000
FRAME = 320


class FakeLeg:
    sample_rate = RATE

    def __init__(
        self,
        caller: np.ndarray,
        *,
        tail_s: float = 3.0,
        echo_db: float | None = None,
        echo_delay_ms: int = 60,
        speed: float = 1.0,
    ) -> None:
        self.info = CallInfo("fake-1", "fake", "sip:caller@test", "sip:agent@test", "agent")
        self.dtmf: asyncio.Queue[str] = asyncio.Queue()
        self.ended = asyncio.Event()
        pad = -len(caller) % FRAME + int(tail_s * RATE)
        self.caller = np.concatenate([caller.astype(np.int16), np.zeros(pad, np.int16)])
        self.heard = np.zeros(len(self.caller), np.int16)  # agent audio as the caller got it
        self._echo_gain = None if echo_db is None else 10 ** (echo_db / 20)
        self._echo: deque[np.ndarray] = deque([np.zeros(FRAME, np.int16)] * max(echo_delay_ms // 20, 1))
        self._speed = speed
        self._bridge: FrameBridge | None = None
        self.hung_up_at: float | None = None  # media time (s) of the agent's BYE
        self.tick = 0
        self.events: list[dict] = []  # what a WebRTC caller's page would have been shown

    def _b(self) -> FrameBridge:
        if self._bridge is None:
            self._bridge = FrameBridge(asyncio.get_running_loop(), RATE)
        return self._bridge

    async def frames(self) -> AsyncIterator[np.ndarray]:
        b = self._b()
        for tick in range(len(self.caller) // FRAME):
            self.tick = tick
            if self.ended.is_set():
                return
            await asyncio.sleep(0.02 / self._speed)
            out = b.pull_outbound()
            sent = np.frombuffer(out, np.int16) if out else np.zeros(FRAME, np.int16)
            i = self.tick * FRAME
            self.heard[i : i + FRAME] = sent
            frame = self.caller[i : i + FRAME].astype(np.int32)
            self._echo.append(sent)
            if self._echo_gain is not None:
                frame = frame + (self._echo.popleft() * self._echo_gain).astype(np.int32)
            else:
                self._echo.popleft()
            heard = np.clip(frame, -32768, 32767).astype(np.int16)
            if b.tap is not None:  # as a transport's media thread would
                b.tap.caller(heard.tobytes())
            yield heard
        self.ended.set()

    def play(
        self,
        pcm: np.ndarray,
        rate: int,
        on_start: Callable[[], None] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> int:
        return self._b().play(pcm, rate, on_start, on_end)

    def flush(self) -> int:
        return self._b().flush()

    def hold(self, on: bool) -> None:
        self._b().hold(on)

    def record(self, tap: MediaTap | None) -> None:
        self._b().tap = tap

    def notify(self, event: dict) -> None:
        self.events.append(event)

    @property
    def samples_sent(self) -> int:
        return self._b().samples_sent

    @property
    def samples_queued(self) -> int:
        return self._b().samples_queued

    async def hangup(self) -> None:
        self.hung_up_at = self.tick * 0.02
        self.ended.set()
