"""`voice-agent calls`: the call store as a table, or as JSON lines."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from agent.config import Config
from agent.records.db import Database
from agent.records.store import CallStore

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(value: str) -> float:
    """Unix seconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is neither unix seconds nor an ISO 8601 time") from None
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()


def parse_since(value: str, now: float) -> float:
    """'90m', '2h', '7d' ago, or an absolute time (unix seconds, ISO 8601)."""
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value.strip()):
        return now - float(m[1]) * UNITS[m[2]]
    return parse_time(value)


def main(cfg: Config, since: str | None, as_json: bool, limit: int) -> int:
    if not cfg.store.db_path.exists():
        print(f"no calls yet ({cfg.store.db_path} does not exist)")
        return 0
    store = CallStore(Database(cfg.store.db_path))
    calls = store.list(since=parse_since(since, time.time()) if since else None, limit=limit)
    if as_json:
        for call in calls:
            print(json.dumps(call, allow_nan=False))
        return 0
    print(f"{'started (UTC)':19}  {'secs':>6}  {'result':15}  {'dialplan':12}  {'from':28}  id")
    for c in calls:
        print(_row(c))
    return 0


def _row(c: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c["offered"]))
    secs = f"{c['duration_s']:.0f}" if c["duration_s"] is not None else "-"
    result = (c["result"] or "in progress") + (" (cut off)" if c["cut_off"] else "")
    return (
        f"{started:19}  {secs:>6}  {result:15}  {c['dialplan'][:12]:12}  {c['from_uri'][:28]:28}  {c['id']}"
    )
