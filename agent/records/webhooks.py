"""Webhook delivery: signed POSTs of the outbox's events, retried until delivered or given up.

Each request carries the event's JSON body exactly as written at enqueue, and headers:

    Content-Type: application/json
    X-Voice-Agent-Event: call.ended
    X-Voice-Agent-Event-Id: <uuid4 hex>              (the same on every retry: dedupe on it)
    X-Voice-Agent-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>

A 2xx delivers the event. 408, 429, 5xx, other statuses, timeouts and connection errors are
retried with exponential backoff and full jitter (never sooner than a `Retry-After`) until
`retry_for_h` after the event was written; then it expires. Any other 4xx rejects it at once.
Per (endpoint, call) events go one at a time, in the order written (the outbox gives out only
the oldest pending one), so a receiver sees a call's events in order, each at least once.

The dispatcher sleeps until the outbox's next due row or until `wake()` (an event was written):
it does not poll. Each attempt claims its row for `timeout_s` + `lease_margin_s`, so
dispatchers of several processes sharing the store never send the same row at once. An attempt
abandoned by `stop()` is due again at once; one in flight when the process was killed stays
pending and is sent again when its claim runs out (by the next process, or another one that
looks: a dispatcher is woken by its own process's events only).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
import structlog

from agent.config import WebhookConfig
from agent.metrics import Metrics
from agent.records.outbox import Outbox, Pending

log = structlog.get_logger("webhooks")

SIGNATURE_HEADER = "X-Voice-Agent-Signature"
EVENT_ID_HEADER = "X-Voice-Agent-Event-Id"
EVENT_HEADER = "X-Voice-Agent-Event"
RESULTS = ("delivered", "retry", "rejected", "expired")
MAX_BACKOFF_S = 3600.0  # also the most a Retry-After can hold an event back
_DB_ERROR_PAUSE_S = 5.0  # the store failed (disk full, locked): wait before touching it again

Result = Literal["delivered", "retry", "rejected", "expired"]


def sign(secret: str, body: bytes, t: int) -> str:
    """The X-Voice-Agent-Signature value for `body` sent at unix time `t`."""
    mac = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver does: the signature is ours and no older (or newer) than `tolerance_s`.
    Several `v1=` are accepted (any one matching), for a receiver rotating its secret."""
    t: int | None = None
    macs: list[bytes] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            t = int(value)
        elif key == "v1":
            macs.append(value.encode())
    if t is None or not macs or abs(now - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).rpartition("v1=")[2].encode()
    ok = False
    for mac in macs:  # look at every one: the time taken does not say which matched
        ok |= hmac.compare_digest(expected, mac)
    return ok


def backoff(attempt: int, rng: random.Random, *, base_s: float = 1.0, cap_s: float = MAX_BACKOFF_S) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): `base_s` doubling per
    attempt, capped at `cap_s`, times a random factor in [0.5, 1] (full jitter, so receivers
    that come back are not hit by every sender at once)."""
    delay = min(cap_s, base_s * 2.0 ** min(max(attempt - 1, 0), 62))
    return delay * rng.uniform(0.5, 1.0)


def retry_after(value: str | None, now: float) -> float:
    """Seconds a Retry-After header asks for (delta seconds or an HTTP date); 0 if none/invalid."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return 0.0


def _safe_url(url: str) -> str:
    """The URL as logged: no user:password, no query (either may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


class Dispatcher:
    """Delivers the outbox's events to their endpoints; one per process (processes sharing the
    store may each run one: claims keep them from sending the same row)."""

    def __init__(
        self,
        outbox: Outbox,
        endpoints: Sequence[WebhookConfig],
        metrics: Metrics | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        concurrency: int = 4,
        base_delay_s: float = 1.0,
        lease_margin_s: float = 30.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.outbox = outbox
        self._endpoints: dict[str, WebhookConfig] = {}
        for endpoint in endpoints:  # the outbox knows an endpoint by its URL
            self._endpoints.setdefault(endpoint.url, endpoint)
        self.metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._concurrency = concurrency
        self._base_delay_s = base_delay_s
        self._lease_margin_s = lease_margin_s
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[int, tuple[asyncio.Task[None], float]] = {}  # row id -> attempt, claimed until
        self._session: aiohttp.ClientSession | None = None
        self._stop_early = False  # stop() came before run() began
        if metrics is not None:
            for result in RESULTS:  # every series exists from the start, at 0
                metrics.webhook_deliveries.labels(result)
            metrics.watch_outbox(outbox.depth, lambda: outbox.oldest_age(self._clock()))

    def wake(self) -> None:
        """An event was written (after its commit): look for due rows now. Any thread."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            self._wakeup.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self) -> None:
        """Deliver until cancelled (see `stop`)."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("the dispatcher is already running")
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        if self._stop_early:
            self._stop_early = False
            return
        connector = aiohttp.TCPConnector(limit=self._concurrency)
        async with aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": "voice-agent-webhooks/1"}
        ) as session:
            self._session = session
            try:
                while True:
                    self._wakeup.clear()
                    try:
                        self._start_due()
                        await self._sleep()
                    except sqlite3.Error:
                        log.exception("webhook outbox unavailable", pause_s=_DB_ERROR_PAUSE_S)
                        await asyncio.sleep(_DB_ERROR_PAUSE_S)
            finally:
                abandoned = dict(self._inflight)
                for task, _ in abandoned.values():
                    task.cancel()
                await asyncio.gather(*(task for task, _ in abandoned.values()), return_exceptions=True)
                self._inflight.clear()
                self._session = None
                self._release(abandoned)

    async def stop(self) -> None:
        """Cancel `run()`. Attempts in flight are abandoned: their rows stay pending, due at once."""
        task = self._task
        if task is None:
            self._stop_early = True  # a run() created but not yet started returns at once
            return
        if task.done() or task is asyncio.current_task():
            return
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook dispatcher failed", error=repr(task.exception()))

    # --- inside ------------------------------------------------------------------------------
    def _start_due(self) -> None:
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            return
        now = self._clock()
        # Rows in flight are claimed (not due), but one whose claim ran out (the loop stalled)
        # would be: asking for that many more still leaves `free` others if there are any.
        for row in self.outbox.due(now, limit=len(self._inflight) + free):
            if row.id in self._inflight:
                continue
            endpoint = self._endpoints.get(row.endpoint)
            if endpoint is None:
                error = "endpoint no longer configured"
                self.outbox.finish(row.id, "rejected", error, now, attempted=False)
                self._count("rejected")
                log.warning(
                    "webhook rejected", event_id=row.event_id, endpoint=_safe_url(row.endpoint), error=error
                )
                self._wakeup.set()  # the next row of that call is now the head of its queue
                continue
            until = now + endpoint.timeout_s + self._lease_margin_s
            if not self.outbox.claim(row.id, now, until):
                continue  # another dispatcher (process) took it
            self._inflight[row.id] = (asyncio.create_task(self._deliver(row, endpoint)), until)
            free -= 1
            if free == 0:
                break

    async def _sleep(self) -> None:
        """Until a row may be due: the earliest next_at of a queue not in flight, or a wake
        (an event written, an attempt finished)."""
        delay: float | None = None
        if len(self._inflight) < self._concurrency:
            next_at = self.outbox.next_due(exclude=self._inflight.keys())
            if next_at is not None:
                delay = next_at - self._clock()
                if delay <= 0:
                    return
        try:
            async with asyncio.timeout(delay):
                await self._wakeup.wait()
        except TimeoutError:
            pass

    def _release(self, abandoned: dict[int, tuple[asyncio.Task[None], float]]) -> None:
        """Rows whose attempts stop() cut short: due again at once (for the next run or process)."""
        now = self._clock()
        for id, (_, until) in abandoned.items():
            try:
                self.outbox.release(id, until, now)  # no-op for a row its attempt settled
            except sqlite3.Error:
                log.exception("webhook outbox write failed")
                return

    async def _deliver(self, row: Pending, endpoint: WebhookConfig) -> None:
        try:
            status, error, wait_s = await self._attempt(row, endpoint)
            try:
                self._record(row, endpoint, status, error, wait_s)
            except Exception:  # the store failed (disk full, locked): the outcome is not written;
                # the row keeps its claim and is sent again when the claim runs out.
                log.exception("webhook outbox write failed", event_id=row.event_id)
        finally:
            self._inflight.pop(row.id, None)
            self._wakeup.set()

    async def _attempt(self, row: Pending, endpoint: WebhookConfig) -> tuple[int | None, str, float]:
        """One POST: (status or None, error text, Retry-After seconds)."""
        assert self._session is not None
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: row.event,
            EVENT_ID_HEADER: row.event_id,
            SIGNATURE_HEADER: sign(endpoint.secret, row.body, int(self._clock())),
        }
        try:
            async with self._session.post(
                row.endpoint,
                data=row.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=endpoint.timeout_s),
                allow_redirects=False,
            ) as resp:
                wait_s = 0.0
                if resp.status in (429, 503):
                    wait_s = min(retry_after(resp.headers.get("Retry-After"), self._clock()), MAX_BACKOFF_S)
                return resp.status, f"HTTP {resp.status}", wait_s
        except TimeoutError:
            return None, f"timeout after {endpoint.timeout_s:g} s", 0.0
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}: {exc}", 0.0
        except (OSError, ValueError) as exc:  # anything else the transport raises: try again later
            return None, f"{type(exc).__name__}: {exc}", 0.0

    def _record(
        self, row: Pending, endpoint: WebhookConfig, status: int | None, error: str, wait_s: float
    ) -> None:
        """Classify an attempt's outcome and write it to the outbox."""
        now = self._clock()
        attempt = row.attempts + 1
        fields = {"event_id": row.event_id, "type": row.event, "endpoint": _safe_url(row.endpoint)}
        if status is not None and 200 <= status < 300:
            self.outbox.delivered(row.id, now)
            self._count("delivered")
            if self.metrics is not None:
                self.metrics.webhook_latency.observe(max(0.0, now - row.created))
            log.debug("webhook delivered", attempt=attempt, **fields)
            return
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            self.outbox.finish(row.id, "rejected", error, now)
            self._count("rejected")
            log.warning("webhook rejected", attempt=attempt, error=error, **fields)
            return
        deadline = row.created + endpoint.retry_for_h * 3600.0
        if now >= deadline:
            self.outbox.finish(row.id, "expired", error, now)
            self._count("expired")
            log.warning("webhook expired", attempt=attempt, error=error, **fields)
            return
        next_at = now + max(backoff(attempt, self._rng, base_s=self._base_delay_s), wait_s)
        if next_at > deadline:  # one last attempt at the deadline (or when Retry-After allows)
            next_at = max(deadline, now + wait_s)
        self.outbox.retry(row.id, next_at, error)
        self._count("retry")
        log.warning(
            "webhook failed", attempt=attempt, error=error, retry_in_s=round(next_at - now, 3), **fields
        )

    def _count(self, result: Result) -> None:
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(result).inc()
