"""The call store: one row per call, one per caller turn, in the shared SQLite file.

Each change of a call and the webhook events it raises are written in one transaction (a
transactional outbox, agent/records/outbox.py): a committed change always has its events, and
an event never describes a change that was rolled back.

A call's row is written when the call starts and updated as it goes, so a process that dies in
the middle leaves a row without an end; the next process to start (`recover`) marks such calls
cut off and raises their `call.ended`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from agent.config import WebhookConfig
from agent.records.db import Database
from agent.records.outbox import Outbox

if TYPE_CHECKING:  # the session's module loads the engines' code: not for `voice-agent calls`
    from agent.dialog.session import Outcome

    Result = Literal[Outcome, "failed", "no answer", "busy", "voicemail"]

# How a call ended (`Result`: the session's Outcome, or failed): the agent said goodbye
# (completed) or gave up on silence / a time limit (agent hung up); the caller hung up after
# saying something, or before (abandoned); handed to a person; or the agent failed (an error,
# or the process died: `cut_off`).
RESULTS: tuple[str, ...] = (
    "completed",
    "caller hung up",
    "agent hung up",
    "transferred",
    "failed",
    "abandoned",
    "no answer",  # outgoing calls: nobody picked up in time
    "busy",
    "voicemail",  # an answering machine took the call (and the dialplan's voicemail message)
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,          -- ours (uuid4 hex); a SIP Call-ID is neither unique nor short
    sip_call_id TEXT NOT NULL,
    transport TEXT NOT NULL,
    from_uri TEXT NOT NULL,
    to_uri TEXT NOT NULL,
    dialplan TEXT NOT NULL,
    offered REAL NOT NULL,        -- unix seconds
    answered REAL,
    ended REAL,
    duration_s REAL,              -- answered -> ended
    result TEXT,                  -- NULL while the call runs
    cut_off INTEGER NOT NULL DEFAULT 0,  -- the process died during the call
    announced INTEGER NOT NULL DEFAULT 0,  -- call.ended written (after the summary)
    transfer TEXT,                -- JSON {target, uri, ok}
    summary TEXT,
    fields TEXT,                  -- JSON of the collected fields
    message TEXT,                 -- a message the caller left
    recording TEXT,               -- path of the WAV
    transcript TEXT,              -- path of the transcript JSON
    pid INTEGER NOT NULL,         -- the process running the call (to find calls of a dead one)
    direction TEXT NOT NULL DEFAULT 'inbound',  -- or 'outbound' (placed by the API)
    answered_by TEXT              -- outbound: human / machine / unknown (answering-machine detection)
);
CREATE INDEX IF NOT EXISTS calls_offered ON calls (offered);
CREATE INDEX IF NOT EXISTS calls_open ON calls (result) WHERE result IS NULL;
CREATE TABLE IF NOT EXISTS turns (
    call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    at_s REAL,                    -- caller speech onset, seconds after the answer
    caller TEXT NOT NULL,         -- what the agent heard
    agent TEXT NOT NULL,          -- what the caller heard of the reply
    interrupted INTEGER NOT NULL, -- the caller cut the reply off
    action TEXT NOT NULL,
    timing TEXT NOT NULL,         -- JSON: the turn's intervals in seconds
    PRIMARY KEY (call_id, idx)
);
"""


@dataclass(frozen=True)
class Turn:
    """One caller turn as stored."""

    index: int
    at_s: float | None
    caller: str
    agent: str
    interrupted: bool
    action: str
    timing: dict[str, float]


class CallStore:
    """Call records and their webhook events. Use from one event loop (statements are short)."""

    def __init__(
        self, db: Database, endpoints: Sequence[WebhookConfig] = (), *, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.outbox = Outbox(db)
        db.ensure(SCHEMA)
        db.add_columns("calls", {"direction": "TEXT NOT NULL DEFAULT 'inbound'", "answered_by": "TEXT"})
        self.endpoints = list(endpoints)
        self.clock = clock
        self.on_event: Callable[[], None] = lambda: None  # the webhook dispatcher's wake()

    # --- a call's life -----------------------------------------------------------------------
    def start(
        self, *, sip_call_id: str, transport: str, from_uri: str, to_uri: str, dialplan: str, offered: float,
        direction: str = "inbound",
    ) -> str:  # fmt: skip
        """A call was answered (inbound: `call.started` and `call.answered`), or is about to be
        placed (outbound: `call.started`; `ringing` and `answered` follow). Returns its id."""
        call_id = uuid.uuid4().hex
        now = self.clock()
        answered = now if direction == "inbound" else None
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO calls (id, sip_call_id, transport, from_uri, to_uri, dialplan, offered,"
                " answered, pid, direction) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (call_id, sip_call_id, transport, from_uri, to_uri, dialplan, offered, answered,
                 os.getpid(), direction),
            )  # fmt: skip
            record = self._record(tx, call_id)
            self._emit(tx, "call.started", call_id, {"call": {**record, "answered": None}}, now)
            if answered is not None:
                self._emit(tx, "call.answered", call_id, {"call": record}, now)
        self.on_event()  # after the commit: the dispatcher must find the rows
        return call_id

    def progress(
        self, call_id: str, *, sip_call_id: str = "", from_uri: str = "", answered_by: str | None = None
    ) -> None:
        """An outgoing call rings (`call.ringing`), or was answered (`call.answered`, with who
        answered it when detection ran). `from_uri`: the identity it went out with."""
        now = self.clock()
        with self.db.transaction() as tx:
            if sip_call_id or from_uri:
                tx.execute(
                    "UPDATE calls SET sip_call_id = coalesce(nullif(?, ''), sip_call_id),"
                    " from_uri = coalesce(nullif(?, ''), from_uri) WHERE id = ?",
                    (sip_call_id, from_uri, call_id),
                )
            if answered_by is None:
                self._emit(tx, "call.ringing", call_id, {"call": self._record(tx, call_id)}, now)
            else:
                tx.execute(
                    "UPDATE calls SET answered = coalesce(answered, ?), answered_by = ? WHERE id = ?",
                    (now, answered_by, call_id),
                )
                self._emit(tx, "call.answered", call_id, {"call": self._record(tx, call_id)}, now)
        self.on_event()

    def add_turn(self, call_id: str, turn: Turn) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO turns (call_id, idx, at_s, caller, agent, interrupted, action,"
                " timing) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    call_id, turn.index, turn.at_s, turn.caller, turn.agent, int(turn.interrupted),
                    turn.action, json.dumps(turn.timing, allow_nan=False),
                ),
            )  # fmt: skip

    def transferred(
        self, call_id: str, target: str, uri: str, ok: bool, mode: str = "blind", outcome: str = ""
    ) -> None:
        """A transfer was tried: its outcome, and `call.transferred` when it worked."""
        now = self.clock()
        outcome = outcome or ("connected" if ok else "failed")
        about = {"target": target, "uri": uri, "ok": ok, "mode": mode, "outcome": outcome}
        with self.db.transaction() as tx:
            tx.execute("UPDATE calls SET transfer = ? WHERE id = ?", (json.dumps(about), call_id))
            if ok:
                self._emit(tx, "call.transferred", call_id, {"call": self._record(tx, call_id)}, now)
        self.on_event()

    def set_field(self, call_id: str, name: str, value: Any) -> None:
        """One collected field (keypad digits), merged into the record's fields."""
        with self.db.transaction() as tx:
            row = tx.execute("SELECT fields FROM calls WHERE id = ?", (call_id,)).fetchone()
            fields = {**(json.loads(row["fields"]) if row and row["fields"] else {}), name: value}
            tx.execute(
                "UPDATE calls SET fields = ? WHERE id = ?", (json.dumps(fields, allow_nan=False), call_id)
            )

    def set_files(self, call_id: str, *, recording: str | None = None, transcript: str | None = None) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE calls SET recording = coalesce(?, recording), transcript = coalesce(?, transcript)"
                " WHERE id = ?",
                (recording, transcript, call_id),
            )

    def end(
        self,
        call_id: str,
        result: Result,
        *,
        cut_off: bool = False,
        ended: float | None = None,
        announce: bool = True,
    ) -> bool:
        """The call is over: its result, and (`announce`) `call.ended` with the whole record;
        else `announce()` raises it later, with the summary. False if it had ended already."""
        ended = self.clock() if ended is None else ended
        with self.db.transaction() as tx:
            changed = tx.execute(
                "UPDATE calls SET ended = ?, duration_s = max(? - coalesce(answered, offered), 0),"
                " result = ?, cut_off = ? WHERE id = ? AND result IS NULL",
                (ended, ended, result, int(cut_off), call_id),
            ).rowcount
        if changed and announce:
            self.announce(call_id)
        return bool(changed)

    def announce(
        self,
        call_id: str,
        summary: str | None = None,
        fields: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> None:
        """Keep the post-call summary and fields, and raise `call.ended` (once per call). What
        the caller entered on the keypad (`set_field`) wins over the model's reading."""
        with self.db.transaction() as tx:
            row = tx.execute("SELECT fields FROM calls WHERE id = ?", (call_id,)).fetchone()
            keyed = (
                {k: v for k, v in json.loads(row["fields"] or "{}").items() if v is not None} if row else {}
            )
            merged = {**(fields or {}), **keyed} if fields is not None or keyed else None
            changed = tx.execute(
                "UPDATE calls SET summary = coalesce(?, summary), fields = coalesce(?, fields),"
                " message = coalesce(?, message), announced = 1"
                " WHERE id = ? AND result IS NOT NULL AND announced = 0",
                (
                    summary,
                    json.dumps(merged, allow_nan=False) if merged is not None else None,
                    message,
                    call_id,
                ),
            ).rowcount
            if changed:
                self._emit(
                    tx, "call.ended", call_id, {"call": self._record(tx, call_id, turns=True)}, self.clock()
                )
        self.on_event()

    def unannounced(self) -> list[str]:
        """Ended calls whose call.ended is still to be raised (the process stopped meanwhile)."""
        return [
            r["id"] for r in self.db.query("SELECT id FROM calls WHERE result IS NOT NULL AND announced = 0")
        ]

    def recording_ready(self, call_id: str, path: str, seconds: float, size: int) -> None:
        with self.db.transaction() as tx:
            data = {"call_id": call_id, "path": path, "seconds": round(seconds, 2), "bytes": size}
            self._emit(tx, "recording.ready", call_id, {"recording": data}, self.clock())
        self.on_event()

    # --- after a crash --------------------------------------------------------------------
    def orphans(self) -> list[dict[str, Any]]:
        """Calls still open whose process is gone (it was killed, or the machine stopped)."""
        rows = self.db.query("SELECT * FROM calls WHERE result IS NULL")
        return [dict(r) for r in rows if not _alive(int(r["pid"]))]

    # --- retention -------------------------------------------------------------------------
    def recordings_before(self, dialplan: str, before: float) -> list[tuple[str, str]]:
        """(call id, recording path) of the dialplan's ended calls offered before `before`."""
        rows = self.db.query(
            "SELECT id, recording FROM calls WHERE dialplan = ? AND recording IS NOT NULL"
            " AND result IS NOT NULL AND offered < ?",
            (dialplan, before),
        )
        return [(r["id"], r["recording"]) for r in rows]

    def dialplans_with_recordings(self) -> list[str]:
        return [
            r[0] for r in self.db.query("SELECT DISTINCT dialplan FROM calls WHERE recording IS NOT NULL")
        ]

    def forget_recording(self, call_id: str) -> None:
        with self.db.transaction() as tx:
            tx.execute("UPDATE calls SET recording = NULL WHERE id = ?", (call_id,))

    # --- reading ---------------------------------------------------------------------------
    def get(self, call_id: str, turns: bool = True) -> dict[str, Any] | None:
        rows = self.db.query("SELECT * FROM calls WHERE id = ?", (call_id,))
        if not rows:
            return None
        record = _public(dict(rows[0]))
        if turns:
            record["turns"] = [t.__dict__ for t in self.turns(call_id)]
        return record

    def turns(self, call_id: str) -> list[Turn]:
        rows = self.db.query("SELECT * FROM turns WHERE call_id = ? ORDER BY idx", (call_id,))
        return [
            Turn(
                r["idx"],
                r["at_s"],
                r["caller"],
                r["agent"],
                bool(r["interrupted"]),
                r["action"],
                json.loads(r["timing"]),
            )
            for r in rows
        ]

    def list(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        dialplan: str | None = None,
        result: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Calls newest first. `before` = (offered, id) of the last one of the previous page."""
        where, params = ["1"], []  # type: list[str], list[Any]
        for clause, value in (
            ("offered >= ?", since), ("offered < ?", until),
            ("dialplan = ?", dialplan), ("result = ?", result),
        ):  # fmt: skip
            if value is not None:
                where.append(clause)
                params.append(value)
        if before is not None:
            where.append("(offered < ? OR (offered = ? AND id < ?))")
            params += [before[0], before[0], before[1]]
        sql = f"SELECT * FROM calls WHERE {' AND '.join(where)} ORDER BY offered DESC, id DESC LIMIT ?"
        return [_public(dict(r)) for r in self.db.query(sql, (*params, limit))]

    # --- inside ------------------------------------------------------------------------------
    def _record(self, tx: sqlite3.Connection, call_id: str, turns: bool = False) -> dict[str, Any]:
        row = tx.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
        record = _public(dict(row))
        if turns:
            rows = tx.execute("SELECT * FROM turns WHERE call_id = ? ORDER BY idx", (call_id,)).fetchall()
            record["turns"] = [
                {
                    "index": r["idx"],
                    "caller": r["caller"],
                    "agent": r["agent"],
                    "interrupted": bool(r["interrupted"]),
                }
                for r in rows
            ]
        return record

    def _emit(
        self, tx: sqlite3.Connection, event: str, call_id: str, data: dict[str, Any], now: float
    ) -> None:
        Outbox.enqueue(tx, self.endpoints, event, call_id, data, now)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the API and webhooks show it: JSON columns parsed, flags as booleans."""
    row.pop("pid", None)
    row["cut_off"] = bool(row["cut_off"])
    row.pop("announced", None)
    for key in ("transfer", "fields"):
        row[key] = json.loads(row[key]) if row[key] else None
    return row


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
