"""`voice-agent call`: place an outgoing call through a running agent's HTTP API (POST
/v1/calls), and with `--wait` follow it (GET /v1/calls/{id}) until it has ended."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from agent.config import Config

KEY_ENV = "VOICE_AGENT_API_KEY"


def _request(url: str, key: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Authorization", f"Bearer {key}")
    if data:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def main(cfg: Config, to: str, dialplan: str, variables: list[str], amd: bool, key: str | None,
         wait: bool, timeout_s: float) -> int:  # fmt: skip
    key = key or os.environ.get(KEY_ENV, "")
    if not key:
        print(f"voice-agent: an API key with calls:write is needed (--key or {KEY_ENV})", file=sys.stderr)
        return 2
    values = {}
    for item in variables:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"voice-agent: --var takes NAME=VALUE, not {item!r}", file=sys.stderr)
            return 2
        values[name] = value
    host = "127.0.0.1" if cfg.http.host in ("0.0.0.0", "::") else cfg.http.host
    base = f"http://{host}:{cfg.http.port}/v1/calls"
    try:
        status, answer = _request(
            base, key, {"to": to, "dialplan": dialplan, "variables": values, "amd": amd}
        )
    except (OSError, ValueError) as exc:
        print(f"voice-agent: the agent at {base} did not answer: {exc}", file=sys.stderr)
        return 1
    if status != 202:
        print(f"voice-agent: {status}: {answer.get('error', answer)}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    deadline = time.monotonic() + timeout_s
    while wait and time.monotonic() < deadline:
        time.sleep(1.0)
        status, record = _request(f"{base}/{answer['id']}", key)
        if status == 200 and record.get("result"):
            print(json.dumps({k: record.get(k) for k in ("id", "result", "answered_by", "duration_s")}))
            return 0 if record["result"] not in ("failed", "busy", "no answer") else 1
    return 1 if wait else 0
