"""Webhooks end to end: the SQLite outbox, the dispatcher and a real aiohttp receiver on 127.0.0.1.

No mocks: every attempt is a real HTTP POST (or a real refused/dropped connection), every row a
real row in a WAL file under tmp_path. Backoff runs from 10 ms so retries take milliseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import socket
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from agent.config import WebhookConfig
from agent.metrics import Metrics
from agent.records.db import Database
from agent.records.outbox import Outbox
from agent.records.webhooks import (
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    Dispatcher,
    backoff,
    sign,
    verify,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET_A = "a-secret-0123456789abcdef"
SECRET_B = "b-secret-fedcba9876543210"

# What the receiver does with one attempt: a status, (status, headers), "drop" (close the
# connection without answering) or "hang" (answer only when the receiver closes).
Action = int | tuple[int, dict[str, str]] | str
Plan = Callable[[str, int], Action]  # (event id, attempt number of that id) -> action


@dataclass
class Arrival:
    path: str
    event_id: str
    event: str
    call_id: str
    attempt: int
    status: int | str
    valid: bool
    at: float  # monotonic


class Receiver:
    """A webhook endpoint: verifies each request's signature with its path's secret, records it
    and answers as `plan` says."""

    def __init__(self, secrets: dict[str, str], plan: Plan = lambda _id, _n: 200, port: int = 0) -> None:
        self.secrets = secrets
        self.plan = plan
        self.port = port
        self.arrivals: list[Arrival] = []
        self.attempts: Counter[str] = Counter()
        self.busy: Counter[tuple[str, str]] = Counter()  # requests in progress per (path, call)
        self.max_busy_per_call = 0
        self.max_busy = 0
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{path}", self._handle)
        self._runner = web.AppRunner(app)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def start(self) -> Receiver:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self.release.set()
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        body = await request.read()
        valid = verify(self.secrets[path], body, request.headers[SIGNATURE_HEADER], time.time())
        payload = json.loads(body)
        event_id = request.headers[EVENT_ID_HEADER]
        assert request.headers["Content-Type"] == "application/json"
        assert payload["id"] == event_id and payload["type"] == request.headers[EVENT_HEADER]
        self.attempts[event_id] += 1
        n = self.attempts[event_id]
        action = self.plan(event_id, n)
        status = action[0] if isinstance(action, tuple) else action
        key = (path, payload["call_id"])
        arrival = Arrival(
            path, event_id, payload["type"], payload["call_id"], n, status, valid, time.monotonic()
        )
        self.arrivals.append(arrival)
        self.busy[key] += 1
        self.max_busy_per_call = max(self.max_busy_per_call, self.busy[key])
        self.max_busy = max(self.max_busy, sum(self.busy.values()))
        try:
            await asyncio.sleep(0.02)  # long enough for overlapping requests to show
            if action == "hang":
                await self.release.wait()
                return web.Response(status=200)
            if action == "drop":
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=200)  # never reaches the client
            if isinstance(action, tuple):
                return web.Response(status=action[0], headers=action[1])
            assert isinstance(action, int)
            return web.Response(status=action)
        finally:
            self.busy[key] -= 1

    def delivered(self, path: str | None = None) -> list[Arrival]:
        return [a for a in self.arrivals if a.status == 200 and path in (None, a.path)]


def endpoint(url: str, secret: str = SECRET_A, **kw: Any) -> WebhookConfig:
    return WebhookConfig(url=url, secret=secret, **kw)


def enqueue(
    db: Database, endpoints: list[WebhookConfig], event: str, call_id: str, now: float | None = None
) -> list[str]:
    with db.transaction() as tx:
        return Outbox.enqueue(tx, endpoints, event, call_id, {"n": 1}, time.time() if now is None else now)


def dispatcher(outbox: Outbox, endpoints: list[WebhookConfig], **kw: Any) -> Dispatcher:
    kw.setdefault("rng", random.Random(7))
    kw.setdefault("base_delay_s", 0.01)
    return Dispatcher(outbox, endpoints, **kw)


async def until(cond: Callable[[], bool], timeout: float = 4.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def rows(db: Database) -> list[dict[str, Any]]:
    return [dict(r) for r in db.query("SELECT * FROM outbox ORDER BY id")]


def count(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value("voice_agent_webhook_deliveries_total", {"result": result})
    return value or 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def assert_in_order_once(receiver: Receiver, path: str, sent: dict[str, list[str]]) -> None:
    """Per call: attempts arrive in the order the events were written, event n+1 only after n
    got its 2xx, and each event gets exactly one 2xx (its last attempt)."""
    for call_id, ids in sent.items():
        seen = [a for a in receiver.arrivals if a.path == path and a.call_id == call_id]
        positions = [ids.index(a.event_id) for a in seen]
        assert positions == sorted(positions), f"{call_id}: out of order"
        assert [a.event_id for a in seen if a.status == 200] == ids, f"{call_id}: not once each"
        last = {a.event_id: a.status for a in seen}
        assert set(last.values()) == {200}


# --- signatures and backoff ---------------------------------------------------------------
def test_sign_verify_round_trip_wrong_secret_tampered_body_and_stale_time() -> None:
    body = b'{"id":"e1","type":"call.ended"}'
    now = time.time()
    header = sign(SECRET_A, body, int(now))
    assert header.startswith(f"t={int(now)},v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET_A, body, header, now)
    assert not verify(SECRET_B, body, header, now)  # wrong secret
    assert not verify(SECRET_A, body + b" ", header, now)  # tampered body
    assert not verify(SECRET_A, body.replace(b"ended", b"ENDED"), header, now)
    assert not verify(SECRET_A, body, header, now + 301)  # stale (a replay)
    assert not verify(SECRET_A, body, header, now - 301)  # from the future
    assert verify(SECRET_A, body, header, now + 299)
    old = sign(SECRET_A, body, int(now) - 1000)
    assert not verify(SECRET_A, body, old, now)
    retimed = old.replace(f"t={int(now) - 1000}", f"t={int(now)}")  # a fresh t on an old MAC
    assert not verify(SECRET_A, body, retimed, now)
    for bad in ("", "t=1", f"v1={header.split('v1=')[1]}", "garbage", f"t=x,v1={'0' * 64}", "t=²,v1=ab"):
        assert not verify(SECRET_A, body, bad, now)
    rotated = f"{header},v1={'0' * 64}"  # a second v1 (secret rotation): one match is enough
    assert verify(SECRET_A, body, rotated, now)


def docs_example_verified(secret: str, body: bytes, header: str, tolerance_s: float = 300) -> bool:
    """The receiver's check as docs/records.md shows it (standard library only), kept true here."""
    fields = [p.strip().partition("=") for p in header.split(",")]
    t = next((v for k, _, v in fields if k == "t"), "")
    if not (t.isascii() and t.isdigit()) or abs(time.time() - int(t)) > tolerance_s:
        return False  # no timestamp, or too old (a replay)
    expected = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest().encode()
    return any(hmac.compare_digest(expected, v.encode()) for k, _, v in fields if k == "v1")


def test_the_docs_example_agrees_with_verify() -> None:
    body = '{"id":"e1","data":{"caller":"Zoë"}}'.encode()
    now = int(time.time())
    for header in (
        sign(SECRET_A, body, now),
        sign(SECRET_B, body, now),
        sign(SECRET_A, body, now - 400),
        "x",
    ):
        assert docs_example_verified(SECRET_A, body, header) == verify(SECRET_A, body, header, time.time())
    assert docs_example_verified(SECRET_A, body, sign(SECRET_A, body, now))


def test_backoff_doubles_from_the_base_caps_at_an_hour_and_jitters_into_half_to_full() -> None:
    rng = random.Random(1)
    cases = [(1, 1.0), (2, 2.0), (3, 4.0), (10, 512.0), (12, 2048.0), (13, 3600.0), (500, 3600.0)]
    for attempt, full in cases:
        delays = [backoff(attempt, rng) for _ in range(200)]
        assert all(0.5 * full <= d <= full for d in delays), attempt
        assert max(delays) - min(delays) > 0.3 * full  # really jittered
    assert 0.005 <= backoff(1, rng, base_s=0.01) <= 0.01


# --- the outbox alone -------------------------------------------------------------------------
def test_outbox_gives_out_only_the_oldest_pending_event_of_each_call_and_endpoint(tmp_path: Path) -> None:
    db = Database(tmp_path / "calls.db")
    outbox = Outbox(db)
    a = endpoint("http://127.0.0.1:9/a")
    b = endpoint("http://127.0.0.1:9/b", SECRET_B, events=["call.ended"])
    t0 = 1000.0
    with db.transaction() as tx:
        started = Outbox.enqueue(tx, [a, b], "call.started", "c1", {"x": 1.5}, t0)
        ended = Outbox.enqueue(tx, [a, b], "call.ended", "c1", {}, t0 + 1)
        other = Outbox.enqueue(tx, [a], "call.started", "c2", {}, t0 + 2)
    assert len(started) == 1 and len(ended) == 2 and len(other) == 1  # b only wants call.ended
    body = json.loads(rows(db)[0]["body"])
    assert body == {
        "id": started[0],
        "type": "call.started",
        "created": t0,
        "call_id": "c1",
        "data": {"x": 1.5},
    }
    assert rows(db)[0]["body"] == json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    assert outbox.depth() == 4 and outbox.oldest_age(t0 + 10) == 10.0

    due = outbox.due(t0 + 5)
    assert [(p.event_id, p.endpoint) for p in due] == [
        (started[0], a.url),
        (ended[1], b.url),
        (other[0], a.url),
    ]
    first = due[0]
    outbox.retry(first.id, t0 + 100, "HTTP 500")  # the first event of c1 is being retried...
    due = outbox.due(t0 + 50)  # ...and c1's call.ended for `a` is due, but must wait for it
    assert [p.event_id for p in due] == [ended[1], other[0]]
    assert outbox.next_due() == t0 + 1  # b's call.ended: due since it was written
    assert outbox.next_due(exclude=[p.id for p in due]) == t0 + 100  # those in flight: c1's retry next
    assert [p.attempts for p in outbox.due(t0 + 100) if p.id == first.id] == [1]
    outbox.delivered(due[0].id, t0 + 51)
    outbox.finish(due[1].id, "rejected", "HTTP 400", t0 + 51)
    assert outbox.next_due() == t0 + 100
    outbox.finish(first.id, "expired", "HTTP 500", t0 + 101)  # given up: the next event goes
    assert [p.event_id for p in outbox.due(t0 + 101)] == [ended[0]]
    outbox.delivered(outbox.due(t0 + 101)[0].id, t0 + 102)
    assert outbox.depth() == 0 and outbox.oldest_age(t0 + 200) == 0.0 and outbox.next_due() is None
    states = {r["event_id"]: (r["state"], r["attempts"], r["last_error"]) for r in rows(db)}
    assert states[started[0]] == ("expired", 2, "HTTP 500")
    assert states[ended[0]] == ("delivered", 1, None)
    assert outbox.purge(before=t0 + 101.5) == 3  # done at 51, 51, 101; the one done at 102 stays
    assert [r["event_id"] for r in rows(db)] == [ended[0]]


def test_a_queue_whose_head_was_deleted_by_hand_moves_on_after_a_reopen(tmp_path: Path) -> None:
    db = Database(tmp_path / "calls.db")
    outbox = Outbox(db)
    a = endpoint("http://127.0.0.1:9/a")
    first, second = enqueue(db, [a], "call.started", "c1", 5.0) + enqueue(db, [a], "call.ended", "c1", 6.0)
    assert [p.event_id for p in outbox.due(10.0)] == [first]
    with db.transaction() as tx:
        tx.execute("DELETE FROM outbox WHERE event_id = ?", (first,))  # an operator dropped it
    assert [p.event_id for p in Outbox(db).due(10.0)] == [second]


def test_events_commit_and_roll_back_with_the_callers_transaction(tmp_path: Path) -> None:
    db = Database(tmp_path / "calls.db")
    outbox = Outbox(db)
    with pytest.raises(RuntimeError), db.transaction() as tx:
        Outbox.enqueue(tx, [endpoint("http://127.0.0.1:9/a")], "call.started", "c1", {}, 1.0)
        raise RuntimeError("the call record failed")
    assert outbox.depth() == 0
    with db.transaction() as tx, pytest.raises(ValueError):  # NaN is not JSON: nothing half-written
        Outbox.enqueue(tx, [endpoint("http://127.0.0.1:9/a")], "call.started", "c1", {"x": float("nan")}, 1.0)
    assert outbox.depth() == 0


# --- delivery -------------------------------------------------------------------------------
def test_every_event_arrives_once_in_order_per_call_through_500s_a_503_and_a_dropped_connection(
    tmp_path: Path,
) -> None:
    events_1 = ["call.started", "call.answered", "call.transferred", "call.ended", "recording.ready"]
    events_2 = ["call.started", "call.answered", "call.ended"]
    special: dict[str, str] = {}  # event id -> "503" | "drop"

    def plan(event_id: str, n: int) -> Action:
        if n <= 3:
            return 500
        if n == 4 and special.get(event_id) == "503":
            return (503, {"Retry-After": "1"})
        if n == 4 and special.get(event_id) == "drop":
            return "drop"
        return 200

    async def main() -> None:
        receiver = await Receiver({"a": SECRET_A, "b": SECRET_B}, plan).start()
        a = endpoint(receiver.url("a"))
        b = endpoint(receiver.url("b"), SECRET_B, events=["call.ended"])
        db = Database(tmp_path / "calls.db")
        outbox = Outbox(db)
        metrics = Metrics()
        d = dispatcher(outbox, [a, b], metrics=metrics)
        sent: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))  # path -> call -> ids

        def write(event: str, call_id: str) -> None:
            ids = enqueue(db, [a, b], event, call_id)
            for path, event_id in zip(["a", "b"] if event == "call.ended" else ["a"], ids, strict=True):
                sent[path][call_id].append(event_id)
            d.wake()

        write(events_1[0], "c1")  # some before the dispatcher starts, the rest while it runs
        write(events_2[0], "c2")
        task = asyncio.create_task(d.run())
        for i in range(1, 5):
            await asyncio.sleep(0.01)
            write(events_1[i], "c1")
            if i < len(events_2):
                write(events_2[i], "c2")
            if i == 1:  # before either can be attempted (their call's first event goes first)
                special[sent["a"]["c1"][1]] = "503"
                special[sent["a"]["c2"][1]] = "drop"
        await until(lambda: outbox.depth() == 0)
        await asyncio.sleep(0.2)  # nothing more arrives
        await d.stop()
        assert task.done()
        await receiver.close()

        assert_in_order_once(receiver, "a", sent["a"])
        assert_in_order_once(receiver, "b", sent["b"])
        assert all(x.valid for x in receiver.arrivals), "every signature verifies with its endpoint's secret"
        ids = [i for calls in sent.values() for call in calls.values() for i in call]
        assert len(ids) == len(set(ids)) == 10
        assert sorted(ids) == sorted(x.event_id for x in receiver.delivered())
        assert receiver.max_busy_per_call == 1, "two events of one call were in flight at once"
        assert receiver.max_busy >= 2, "calls are delivered concurrently"
        after_503 = [x.at for x in receiver.arrivals if x.event_id == sent["a"]["c1"][1] and x.attempt >= 4]
        assert after_503[1] - after_503[0] >= 0.95, "Retry-After: 1 is the least wait"
        assert [x.status for x in receiver.arrivals if x.event_id == sent["a"]["c2"][1]][3:] == ["drop", 200]
        assert count(metrics, "delivered") == 10
        assert count(metrics, "rejected") == count(metrics, "expired") == 0
        assert count(metrics, "retry") == len(receiver.arrivals) - 10
        assert metrics.registry.get_sample_value("voice_agent_webhook_delivery_seconds_count") == 10
        assert metrics.registry.get_sample_value("voice_agent_webhook_pending") == 0
        assert {(r["state"], r["last_error"]) for r in rows(db)} == {("delivered", None)}
        assert sorted(r["attempts"] for r in rows(db)) == sorted(receiver.attempts.values())

    asyncio.run(main())


def test_a_4xx_is_final_but_408_and_429_are_retried(tmp_path: Path) -> None:
    plans: dict[str, list[Action]] = {}

    def plan(event_id: str, n: int) -> Action:
        steps = plans.get(event_id, [200])
        return steps[min(n, len(steps)) - 1]

    async def main() -> None:
        receiver = await Receiver({"a": SECRET_A}, plan).start()
        a = endpoint(receiver.url("a"))
        db = Database(tmp_path / "calls.db")
        outbox = Outbox(db)
        metrics = Metrics()
        (bad,) = enqueue(db, [a], "call.started", "c1")
        (after_bad,) = enqueue(db, [a], "call.ended", "c1")  # a rejected event does not block its call
        (timeout,) = enqueue(db, [a], "call.started", "c2")
        (busy,) = enqueue(db, [a], "call.started", "c3")
        plans.update({bad: [400], timeout: [408, 200], busy: [(429, {"Retry-After": "0"}), 200]})
        d = dispatcher(outbox, [a], metrics=metrics)
        with capture_logs() as logs:
            task = asyncio.create_task(d.run())
            await until(lambda: outbox.depth() == 0)
            await asyncio.sleep(0.1)
            await d.stop()
        assert task.cancelled()
        await receiver.close()

        assert receiver.attempts == {bad: 1, after_bad: 1, timeout: 2, busy: 2}
        failures = {
            (x["event"], x["event_id"], x["attempt"], x["error"]) for x in logs if x["log_level"] != "debug"
        }
        assert failures == {
            ("webhook rejected", bad, 1, "HTTP 400"),
            ("webhook failed", timeout, 1, "HTTP 408"),
            ("webhook failed", busy, 1, "HTTP 429"),
        }
        assert SECRET_A not in repr(logs)
        state = {r["event_id"]: (r["state"], r["attempts"], r["last_error"]) for r in rows(db)}
        assert state[bad] == ("rejected", 1, "HTTP 400")
        assert state[timeout] == ("delivered", 2, None) and state[busy] == ("delivered", 2, None)
        assert state[after_bad] == ("delivered", 1, None)
        assert (count(metrics, "rejected"), count(metrics, "retry"), count(metrics, "delivered")) == (1, 2, 3)

    asyncio.run(main())


def test_an_event_past_retry_for_h_expires_instead_of_being_retried(tmp_path: Path) -> None:
    async def main() -> None:
        receiver = await Receiver({"a": SECRET_A}, lambda _id, _n: 500).start()
        a = endpoint(receiver.url("a"), retry_for_h=24)
        db = Database(tmp_path / "calls.db")
        outbox = Outbox(db)
        metrics = Metrics()
        t0 = 1_700_000_000.0
        deadline = t0 + 24 * 3600
        now = [deadline - 0.25]
        (old,) = enqueue(db, [a], "call.started", "c1", now=now[0] - 25 * 3600)  # already too old
        (young,) = enqueue(db, [a], "call.started", "c2", now=t0)
        d = dispatcher(outbox, [a], metrics=metrics, clock=lambda: now[0], base_delay_s=1.0)
        task = asyncio.create_task(d.run())
        await until(lambda: receiver.attempts[young] == 1 and outbox.depth() == 1)
        state = {r["event_id"]: r for r in rows(db)}
        assert state[old]["state"] == "expired" and receiver.attempts[old] == 1  # tried once, not retried
        assert state[young]["state"] == "pending"
        assert state[young]["next_at"] == deadline, "the last retry is at the deadline, not past it"
        now[0] = deadline  # the clock reaches the deadline: one last attempt, then it expires
        d.wake()
        await until(lambda: outbox.depth() == 0)
        await d.stop()
        assert task.cancelled()
        await receiver.close()
        state = {r["event_id"]: r for r in rows(db)}
        assert (state[young]["state"], state[young]["attempts"], state[young]["last_error"]) == (
            "expired",
            2,
            "HTTP 500",
        )
        assert state[young]["done_at"] == deadline
        assert (count(metrics, "expired"), count(metrics, "retry"), count(metrics, "delivered")) == (2, 1, 0)
        assert metrics.registry.get_sample_value("voice_agent_webhook_oldest_pending_seconds") == 0

    asyncio.run(main())


def test_an_endpoint_no_longer_configured_is_rejected_without_a_request(tmp_path: Path) -> None:
    async def main() -> None:
        receiver = await Receiver({"a": SECRET_A, "b": SECRET_B}).start()
        a, b = endpoint(receiver.url("a")), endpoint(receiver.url("b"), SECRET_B)
        db = Database(tmp_path / "calls.db")
        outbox = Outbox(db)
        enqueue(db, [a, b], "call.started", "c1")
        enqueue(db, [a, b], "call.ended", "c1")
        d = dispatcher(outbox, [a])  # b was removed from the config
        task = asyncio.create_task(d.run())
        await until(lambda: outbox.depth() == 0)
        await d.stop()
        assert task.cancelled()
        await receiver.close()
        assert [x.path for x in receiver.arrivals] == ["a", "a"]
        gone = [r for r in rows(db) if r["endpoint"] == b.url]
        assert [(r["state"], r["attempts"], r["last_error"]) for r in gone] == [
            ("rejected", 0, "endpoint no longer configured")
        ] * 2

    asyncio.run(main())


# --- durability -----------------------------------------------------------------------------
def test_events_written_while_the_receiver_is_down_arrive_after_a_restart(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port()  # nothing listens: connection refused
        a = endpoint(f"http://127.0.0.1:{port}/a")
        db = Database(tmp_path / "calls.db")
        outbox = Outbox(db)
        d = dispatcher(outbox, [a])
        task = asyncio.create_task(d.run())
        ids = enqueue(db, [a], "call.started", "c1") + enqueue(db, [a], "call.ended", "c1")
        d.wake()
        await until(lambda: rows(db)[0]["attempts"] >= 2)
        await d.stop()
        assert task.cancelled()
        assert "ClientConnectorError" in rows(db)[0]["last_error"]
        assert [r["state"] for r in rows(db)] == ["pending", "pending"] and rows(db)[1]["attempts"] == 0
        db.close()

        receiver = await Receiver({"a": SECRET_A}, port=port).start()  # the restart
        db2 = Database(tmp_path / "calls.db")
        outbox2 = Outbox(db2)
        d2 = dispatcher(outbox2, [a])
        task2 = asyncio.create_task(d2.run())
        await until(lambda: outbox2.depth() == 0)
        await asyncio.sleep(0.1)
        await d2.stop()
        assert task2.cancelled()
        await receiver.close()
        assert [(x.event_id, x.status, x.valid) for x in receiver.arrivals] == [(i, 200, True) for i in ids]

    asyncio.run(main())


CHILD = """
import asyncio, sys, time
from pathlib import Path
from agent.config import WebhookConfig
from agent.records.db import Database
from agent.records.outbox import Outbox
from agent.records.webhooks import Dispatcher

db = Database(Path(sys.argv[1]))
outbox = Outbox(db)
a = WebhookConfig(url=sys.argv[2], secret=sys.argv[3], timeout_s=1)
for event in ("call.started", "call.answered", "call.ended"):
    with db.transaction() as tx:
        Outbox.enqueue(tx, [a], event, "c1", {}, time.time())
print("written", flush=True)
asyncio.run(Dispatcher(outbox, [a], lease_margin_s=0.3).run())
"""


def test_an_attempt_in_flight_at_kill_9_is_sent_again_by_the_next_process(tmp_path: Path) -> None:
    hang = [True]

    async def main() -> None:
        receiver = await Receiver({"a": SECRET_A}, lambda _id, _n: "hang" if hang[0] else 200).start()
        a = endpoint(receiver.url("a"), timeout_s=1)
        path = tmp_path / "calls.db"
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, str(path), a.url, SECRET_A, cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert child.stdout is not None
            assert await asyncio.wait_for(child.stdout.readline(), 10) == b"written\n"
            await until(lambda: len(receiver.arrivals) == 1, timeout=10)  # in flight
            await asyncio.sleep(0.05)
        finally:
            child.kill()  # SIGKILL: no cleanup of any kind
            await child.wait()
        hang[0] = False
        killed = time.time()
        db = Database(path)
        outbox = Outbox(db)
        assert outbox.depth() == 3 and rows(db)[0]["attempts"] == 0
        lease = rows(db)[0]["next_at"]
        assert killed < lease < killed + 1.3, "the dead process's claim: 1 s timeout + 0.3 s margin"
        d = dispatcher(outbox, [a])
        task = asyncio.create_task(d.run())
        await until(lambda: outbox.depth() == 0)
        assert receiver.arrivals[1].at - receiver.arrivals[0].at >= 1.0, "not before the claim ran out"
        await d.stop()
        assert task.cancelled()
        await receiver.close()
        ids = [r["event_id"] for r in rows(db)]
        got = [(x.event_id, x.status) for x in receiver.arrivals]
        assert got == [(ids[0], "hang")] + [(i, 200) for i in ids]  # the first one twice: dedupe on the id
        assert all(x.valid for x in receiver.arrivals)

    asyncio.run(main())


def test_stop_gives_back_the_rows_it_was_sending(tmp_path: Path) -> None:
    async def main() -> None:
        receiver = await Receiver({"a": SECRET_A}, lambda _id, n: "hang" if n == 1 else 200).start()
        a = endpoint(receiver.url("a"))
        db = Database(tmp_path / "calls.db")
        outbox = Outbox(db)
        (event_id,) = enqueue(db, [a], "call.started", "c1")
        d = dispatcher(outbox, [a])  # claims for 5 s + 30 s
        task = asyncio.create_task(d.run())
        await until(lambda: len(receiver.arrivals) == 1)
        assert rows(db)[0]["next_at"] > time.time() + 30
        await d.stop()
        assert task.cancelled()
        assert rows(db)[0]["next_at"] <= time.time() and rows(db)[0]["attempts"] == 0  # due again now
        d2 = dispatcher(Outbox(Database(tmp_path / "calls.db")), [a])
        task2 = asyncio.create_task(d2.run())
        await until(lambda: outbox.depth() == 0, timeout=2)
        await d2.stop()
        assert task2.cancelled()
        await receiver.close()
        assert [(x.event_id, x.status) for x in receiver.arrivals] == [(event_id, "hang"), (event_id, 200)]

    asyncio.run(main())


def test_two_processes_dispatching_from_one_file_send_each_event_once_in_order(tmp_path: Path) -> None:
    """Cluster workers each run a dispatcher on the shared store: claims keep them apart."""

    async def main() -> None:
        receiver = await Receiver({"a": SECRET_A}, lambda _id, n: 500 if n == 1 else 200).start()
        a = endpoint(receiver.url("a"))
        dbs = [Database(tmp_path / "calls.db"), Database(tmp_path / "calls.db")]  # a connection each
        outboxes = [Outbox(db) for db in dbs]
        sent: dict[str, list[str]] = defaultdict(list)
        for n in range(4):
            for call_id in ("c1", "c2", "c3"):
                sent[call_id] += enqueue(dbs[n % 2], [a], ["call.started", "call.answered"][n % 2], call_id)
        metrics = [Metrics(), Metrics()]
        ds = [dispatcher(o, [a], metrics=m, concurrency=2) for o, m in zip(outboxes, metrics, strict=True)]
        tasks = [asyncio.create_task(d.run()) for d in ds]
        await until(lambda: outboxes[0].depth() == 0)
        await asyncio.sleep(0.1)
        for d in ds:
            await d.stop()
        await receiver.close()
        assert all(t.cancelled() for t in tasks)
        assert_in_order_once(receiver, "a", sent)
        assert receiver.max_busy_per_call == 1
        assert all(x.attempt <= 2 for x in receiver.arrivals), "one 500, then one 200: no extra sends"
        assert all(count(m, "delivered") > 0 for m in metrics), "both dispatchers took part"
        assert sum(count(m, "delivered") for m in metrics) == 12

    asyncio.run(main())
