"""A fixed-period schedule for sending audio frames (20 ms), on the asyncio loop's clock."""

from __future__ import annotations

import asyncio


class Pacer:
    """Tick n is due at `origin + n * period_s`. `wait()` sleeps until the next tick is due;
    a late tick does not sleep (the sender catches up) and its lateness is recorded, so the
    schedule never drifts with the loop's delays."""

    def __init__(self, period_s: float = 0.02, origin: float | None = None) -> None:
        self.period_s = period_s
        self.origin = origin  # None: the first wait() starts the schedule
        self.tick = 0  # ticks handed out so far
        self.late_max_s = 0.0  # how far behind its schedule the sender fell at worst

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        if self.origin is None:
            self.origin = loop.time()
        delay = self.origin + self.tick * self.period_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            self.late_max_s = max(self.late_max_s, -delay)
        self.tick += 1
