"""API keys kept in the store's SQLite file: `voice-agent keys create | revoke | list`.

A key is shown once when it is made; only its SHA-256 is kept. Revoking takes effect at the
next request (the running agent reads this table on each one: sub-millisecond, WAL readers
never block).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from agent.config import SCOPES, ApiKeyConfig
from agent.records.db import Database

PREFIX = "va_"  # makes a leaked key easy to recognise (secret scanners, logs)


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    scopes TEXT NOT NULL,          -- JSON list
    created REAL NOT NULL,
    revoked REAL                   -- unix seconds; NULL while the key works
);
"""


@dataclass
class KeyStore:
    db: Database

    def __post_init__(self) -> None:
        self.db.ensure(SCHEMA)

    def add(self, name: str, sha256: str, scopes: list[str]) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO api_keys (name, sha256, scopes, created) VALUES (?, ?, ?, ?)",
                (name, sha256, json.dumps(scopes), time.time()),
            )

    def revoke(self, name: str) -> bool:
        with self.db.transaction() as tx:
            n = tx.execute(
                "UPDATE api_keys SET revoked = ? WHERE name = ? AND revoked IS NULL", (time.time(), name)
            ).rowcount
        return bool(n)

    def active(self) -> list[ApiKeyConfig]:
        rows = self.db.query("SELECT name, sha256, scopes FROM api_keys WHERE revoked IS NULL")
        return [ApiKeyConfig(name=r[0], sha256=r[1], scopes=json.loads(r[2])) for r in rows]

    def rows(self) -> list[tuple[str, list[str], float, float | None]]:
        rows = self.db.query("SELECT name, scopes, created, revoked FROM api_keys ORDER BY created")
        return [(r[0], json.loads(r[1]), r[2], r[3]) for r in rows]


def main(db_path: Path, command: str, name: str = "", scopes: str = "") -> int:
    """`voice-agent keys create|revoke|list` against the store of the config."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    store = KeyStore(Database(db_path))
    if command == "list":
        for n, s, created, revoked in store.rows():
            state = f"revoked {_day(revoked)}" if revoked else "active"
            print(f"{n:24} {','.join(s):36} {_day(created)}  {state}")
        return 0
    if command == "revoke":
        if not store.revoke(name):
            print(f"voice-agent: no active key named {name!r}", file=sys.stderr)
            return 1
        print(f"key {name!r} revoked")
        return 0
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    if not wanted or any(s not in SCOPES for s in wanted):
        print(f"voice-agent: scopes are {', '.join(SCOPES)}", file=sys.stderr)
        return 2
    try:
        ApiKeyConfig(name=name, sha256="0" * 64, scopes=wanted)
    except ValueError:
        print("voice-agent: a key name is 1-64 letters, digits, _ . -", file=sys.stderr)
        return 2
    if any(n == name for n, *_ in store.rows()):
        print(f"voice-agent: a key named {name!r} exists (revoke it, or pick another name)", file=sys.stderr)
        return 2
    key = new_key()
    store.add(name, hash_key(key), wanted)
    print(f"API key {name!r} (shown once, keep it secret): {key}")
    print(f"kept (hashed) in {db_path}; `voice-agent keys revoke --name {name}` ends it")
    return 0


def _day(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))
