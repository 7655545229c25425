"""The webhook outbox: events waiting for their endpoints, in the shared SQLite file.

An event is written in the same transaction as the call change it describes (`Outbox.enqueue`
inside the caller's `Database.transaction()`), one row per subscribed endpoint, so a committed
change always has its events and a rolled-back one has none. The row holds the exact bytes to
send; every retry sends them again unchanged, with the same event id.

Order: per (endpoint, call) only the oldest pending row (the queue's head) is ever due, so
event n+1 of a call goes to an endpoint only after event n was delivered there or given up.
Rows behind a head have no `next_at` (NULL) until the head leaves 'pending', so finding the due
rows reads an index of heads only, however long the backlog (statements on the event loop must
stay well under a millisecond). Rows stay (delivered, rejected, expired) until `purge`, for
the record. Pure SQLite: the network is webhooks.py's.

Several dispatchers may share the file (cluster workers): each attempt first `claim`s its row,
which moves `next_at` past the attempt's end (a lease), so no other dispatcher takes it
meanwhile. A process killed during an attempt leaves the lease; the row is due again when it
runs out.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agent.config import WebhookConfig
from agent.records.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- order of writing (never reused, even after purge)
    event_id TEXT NOT NULL UNIQUE,         -- uuid4 hex; sent as X-Voice-Agent-Event-Id
    endpoint TEXT NOT NULL,                -- the receiver's URL
    event TEXT NOT NULL,                   -- call.started, call.answered, ...
    call_id TEXT NOT NULL,
    body BLOB NOT NULL,                    -- the exact JSON bytes sent (fixed at enqueue)
    created REAL NOT NULL,                 -- unix seconds
    attempts INTEGER NOT NULL DEFAULT 0,   -- HTTP attempts made so far
    next_at REAL,                          -- not sent before (backoff, Retry-After); NULL while
                                           -- an earlier event of its (endpoint, call) is pending
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'rejected', 'expired')),
    last_error TEXT,
    done_at REAL                           -- when it left 'pending'
);
CREATE INDEX IF NOT EXISTS outbox_queue ON outbox (endpoint, call_id, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at, id) WHERE state = 'pending' AND next_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_age ON outbox (created) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_done ON outbox (done_at) WHERE state != 'pending';
"""

# A pending row with an earlier pending row in its queue (it must wait). One index lookup.
_BEHIND = (
    "EXISTS (SELECT 1 FROM outbox AS p WHERE p.state = 'pending' AND p.endpoint = o.endpoint"
    " AND p.call_id = o.call_id AND p.id < o.id)"
)


@dataclass(frozen=True)
class Pending:
    """A row to (re)send."""

    id: int
    event_id: str
    endpoint: str
    event: str
    call_id: str
    body: bytes
    attempts: int  # attempts made before this one
    created: float


class Outbox:
    """The outbox table of one Database. Statements are short: call it from the event loop."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure(SCHEMA)
        with db.transaction() as tx:
            # A head without next_at cannot happen through this class, but would stall its
            # queue for good (say a row was deleted by hand): make such heads due.
            tx.execute(
                "UPDATE outbox SET next_at = created WHERE id IN (SELECT min(id) FROM outbox"
                " WHERE state = 'pending' GROUP BY endpoint, call_id) AND next_at IS NULL"
            )

    @staticmethod
    def enqueue(
        tx: sqlite3.Connection,
        endpoints: Sequence[WebhookConfig],
        event: str,
        call_id: str,
        data: dict[str, Any],
        now: float,
    ) -> list[str]:
        """Write `event` for every endpoint subscribed to it, inside the caller's transaction
        (`with db.transaction() as tx`). Returns the event ids, one per endpoint."""
        ids = []
        for endpoint in endpoints:
            if event not in endpoint.events:
                continue
            event_id = uuid.uuid4().hex
            body = json.dumps(
                {"id": event_id, "type": event, "created": now, "call_id": call_id, "data": data},
                separators=(",", ":"),
                sort_keys=True,
                allow_nan=False,
            ).encode()
            waits = tx.execute(
                "SELECT 1 FROM outbox WHERE state = 'pending' AND endpoint = ? AND call_id = ? LIMIT 1",
                (endpoint.url, call_id),
            ).fetchone()
            tx.execute(
                "INSERT INTO outbox (event_id, endpoint, event, call_id, body, created, next_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event_id, endpoint.url, event, call_id, body, now, None if waits else now),
            )
            ids.append(event_id)
        return ids

    def due(self, now: float, limit: int = 50) -> list[Pending]:
        """Rows to send now: pending, `next_at` reached, and the oldest pending row of their
        (endpoint, call_id). Soonest due first."""
        rows = self.db.query(
            "SELECT o.id, o.event_id, o.endpoint, o.event, o.call_id, o.body, o.attempts, o.created"
            f" FROM outbox AS o WHERE o.state = 'pending' AND o.next_at <= ? AND NOT {_BEHIND}"
            " ORDER BY o.next_at, o.id LIMIT ?",
            (now, limit),
        )
        return [
            Pending(
                id=r["id"],
                event_id=r["event_id"],
                endpoint=r["endpoint"],
                event=r["event"],
                call_id=r["call_id"],
                body=bytes(r["body"]),
                attempts=r["attempts"],
                created=r["created"],
            )
            for r in rows
        ]

    def next_due(self, exclude: Collection[int] = ()) -> float | None:
        """The earliest `next_at` among the rows `due()` may return (the head of each queue);
        None when nothing is pending. `exclude`: row ids being sent right now (their queues
        wait for them to finish)."""
        marks = ",".join("?" * len(exclude))
        rows = self.db.query(
            "SELECT o.next_at FROM outbox AS o WHERE o.state = 'pending' AND o.next_at IS NOT NULL"
            f" AND o.id NOT IN ({marks}) AND NOT {_BEHIND} ORDER BY o.next_at, o.id LIMIT 1",
            tuple(exclude),
        )
        return float(rows[0][0]) if rows else None

    def claim(self, id: int, now: float, until: float) -> bool:
        """Take a due row for one attempt: not due again before `until` (here or in another
        process) unless settled first. False when it is no longer due (someone else took it)."""
        with self.db.transaction() as tx:
            cur = tx.execute(
                "UPDATE outbox SET next_at = ? WHERE id = ? AND state = 'pending' AND next_at <= ?",
                (until, id, now),
            )
            return cur.rowcount == 1

    def release(self, id: int, until: float, now: float) -> None:
        """An attempt claimed until `until` was abandoned (the dispatcher stopped): due now."""
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE outbox SET next_at = ? WHERE id = ? AND state = 'pending' AND next_at = ?",
                (now, id, until),
            )

    def delivered(self, id: int, now: float) -> None:
        """The endpoint answered 2xx."""
        with self.db.transaction() as tx:
            cur = tx.execute(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, done_at = ?,"
                " last_error = NULL WHERE id = ? AND state = 'pending'",
                (now, id),
            )
            if cur.rowcount:
                _next_in_queue(tx, id, now)

    def retry(self, id: int, next_at: float, error: str) -> None:
        """An attempt failed in a way worth retrying: send again from `next_at`."""
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ?"
                " WHERE id = ? AND state = 'pending'",
                (next_at, error, id),
            )

    def finish(
        self,
        id: int,
        state: Literal["rejected", "expired"],
        error: str,
        now: float,
        *,
        attempted: bool = True,
    ) -> None:
        """Give the row up. `attempted`: an HTTP attempt led to this (counted in `attempts`)."""
        with self.db.transaction() as tx:
            cur = tx.execute(
                "UPDATE outbox SET state = ?, attempts = attempts + ?, last_error = ?, done_at = ?"
                " WHERE id = ? AND state = 'pending'",
                (state, int(attempted), error, now, id),
            )
            if cur.rowcount:
                _next_in_queue(tx, id, now)

    def depth(self) -> int:
        """Pending rows."""
        return int(self.db.query("SELECT count(*) FROM outbox WHERE state = 'pending'")[0][0])

    def oldest_age(self, now: float) -> float:
        """Seconds since the oldest pending row was written; 0 when none is pending."""
        value = self.db.query("SELECT min(created) FROM outbox WHERE state = 'pending'")[0][0]
        return 0.0 if value is None else max(0.0, now - float(value))

    def purge(self, before: float) -> int:
        """Delete the rows that left 'pending' before `before`. Returns how many."""
        with self.db.transaction() as tx:
            cur = tx.execute("DELETE FROM outbox WHERE state != 'pending' AND done_at < ?", (before,))
            return cur.rowcount


def _next_in_queue(tx: sqlite3.Connection, id: int, now: float) -> None:
    """Row `id` left 'pending': the next pending row of its (endpoint, call) is due from `now`."""
    tx.execute(
        "UPDATE outbox SET next_at = ? WHERE id = (SELECT min(p.id) FROM outbox AS o, outbox AS p"
        " WHERE o.id = ? AND p.state = 'pending' AND p.endpoint = o.endpoint AND p.call_id = o.call_id)"
        " AND next_at IS NULL",
        (now, id),
    )
