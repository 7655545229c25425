"""Call records through real calls: callsim (its own SIP UA and RTP) against `voice-agent serve`
with the real models, a real webhook receiver (tests.peers.WebhookReceiver), the real SQLite
file, the recording read by sox.

- a call is stored (turns, result), recorded in stereo (caller left, agent right), transcribed,
  served by the API and `voice-agent calls`, and its events reach a receiver that fails the
  first three attempts of each: every event exactly once, signed, in order;
- `kill -9` in the middle of a call leaves a recording sox plays to within a second of the
  kill; after a restart the call is ended as cut off, and the events the dead process had
  written (and the cut-off call.ended) are delivered.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest

from agent.api.keys import hash_key
from callsim.call import place_call
from callsim.runner import run_one
from callsim.scenario import load_scenario
from tests.peers import LOCAL, WebhookReceiver, free_port
from tests.test_sip import serve

pytestmark = [pytest.mark.models, pytest.mark.sip]
ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-webhook-secret-0123456789"
KEY = "va_records-test-key"


def config(port: int, store: Path, hook_url: str) -> str:
    return (
        f"sip:\n  host: {LOCAL}\n  port: {port}\ndialplans:\n  dir: {ROOT / 'dialplans'}\n"
        f"store:\n  dir: {store}\n"
        f"webhooks:\n  - url: {hook_url}\n    secret: {SECRET}\n"
        f"api:\n  keys:\n    - name: test\n      sha256: {hash_key(KEY)}\n      scopes: [calls:read]\n"
        "http:\n  port: 0\n"
    )


def http_port(events: list[dict]) -> int:
    ready = next(e for e in events if e.get("event") == "ready")
    return int(ready["http"].rsplit(":", 1)[1])


def api(port: int, path: str) -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return bytes(r.read())


def channels(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (2, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
        return pcm[:, 0].astype(np.float64), pcm[:, 1].astype(np.float64), w.getframerate()


def loud_seconds(x: np.ndarray, rate: int) -> list[int]:
    """The whole seconds in which a channel carries speech-level audio."""
    n = len(x) // rate
    return [i for i in range(n) if np.sqrt(np.mean(x[i * rate : (i + 1) * rate] ** 2)) > 300]


def test_a_call_is_stored_recorded_transcribed_and_its_events_delivered_once(tmp_path, meters):
    with WebhookReceiver(SECRET, fail_first=3) as hooks:
        sip_port = free_port()
        proc, events = serve(tmp_path, config(sip_port, tmp_path / "var", hooks.url))
        target = f"sip:agent@{LOCAL}:{sip_port}"
        try:
            sc = tmp_path / "q.yaml"
            sc.write_text(
                "name: q\nturns:\n  - say: 'Hi, this is Maria. What time do you open on Saturday?'\n"
            )
            result, _ = asyncio.run(run_one(load_scenario(sc), target, tmp_path / "out", meters))
            assert not result["error"], result["error"]
            # call.ended comes last: after the post-call summary
            got = hooks.wait_for(lambda ev: any(e["type"] == "call.ended" for e in ev), timeout_s=120)
            port = http_port(events)
            listing = json.loads(api(port, "/v1/calls"))["calls"]
            record = json.loads(api(port, f"/v1/calls/{listing[0]['id']}"))
            wav_bytes = api(port, f"/v1/calls/{record['id']}/recording")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)

    # The events: each exactly once after three failed attempts, signed, in order.
    assert [e["type"] for e in got] == ["call.started", "call.answered", "recording.ready", "call.ended"], got
    assert hooks.bad_signatures == 0 and all(hooks.attempts[e["id"]] == 4 for e in got), hooks.attempts
    assert sorted(hooks.accepted) == sorted(e["id"] for e in got)  # none delivered twice
    ended = got[3]["data"]["call"]
    assert ended["id"] == record["id"] and ended["result"] == "caller hung up"
    # The post-call step: a summary, and the default dialplan's fields (empty where not said).
    assert isinstance(ended["summary"], str) and len(ended["summary"].split()) >= 4, ended["summary"]
    assert set(ended["fields"]) == {"name", "callback_number", "reason"}, ended["fields"]
    assert ended["fields"]["callback_number"] is None  # no number was said: none invented

    # The record and its transcript.
    assert record["result"] == "caller hung up" and record["transport"] == "sip" and record["dialplan"]
    assert "saturday" in record["turns"][0]["caller"].lower(), record["turns"]
    assert record["turns"][0]["agent"], "what the caller heard of the answer"
    transcript = json.loads(Path(record["transcript"]).read_text())
    assert [line["who"] for line in transcript["lines"]][:3] == ["agent", "caller", "agent"]

    # The recording: stereo, the call's length, the agent's greeting on the right before the
    # caller's question on the left.
    wav = Path(record["recording"])
    assert wav.read_bytes() == wav_bytes
    chans, rate, seconds = (soxi(flag, wav) for flag in ("-c", "-r", "-D"))
    assert (chans, rate) == ("2", "16000") and abs(float(seconds) - record["duration_s"]) < 1.5, seconds
    caller, agent, rate_i = channels(wav)
    said, spoke = loud_seconds(caller, rate_i), loud_seconds(agent, rate_i)
    assert spoke and said and spoke[0] < said[0] < spoke[-1], (said, spoke)

    listed = subprocess.run(
        [sys.executable, "-m", "agent.cli", "calls", "--config", str(tmp_path / "c.yaml"), "--json"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert json.loads(listed.stdout.splitlines()[0])["id"] == record["id"], listed.stderr


def test_kill_9_mid_call_leaves_a_playable_recording_and_a_cut_off_record(tmp_path, meters):
    store = tmp_path / "var"
    hook_port = free_port()
    sip_port = free_port()
    cfg = config(sip_port, store, f"http://127.0.0.1:{hook_port}/hook")
    first = tmp_path / "first"
    first.mkdir()
    proc, _ = serve(first, cfg)  # no receiver yet: every delivery fails and stays in the outbox
    sc = tmp_path / "long.yaml"
    sc.write_text(
        "name: long\ntiming: {max_duration_s: 40}\nturns:\n"
        "  - say: 'Tell me everything about your repair services, your prices and your opening hours.'\n"
    )
    call = threading.Thread(
        target=lambda: asyncio.run(
            place_call(load_scenario(sc), f"sip:agent@{LOCAL}:{sip_port}", meters.vad)
        ),
        daemon=True,
    )
    call.start()
    answered = wait_answered(store / "calls.db", timeout_s=30)
    time.sleep(max(0.0, answered + 9.0 - time.time()))  # greeting, question, part of the answer
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)  # reaped: its pid is no longer alive
    call.join(timeout=60)

    row = only_call(store / "calls.db")
    wav = Path(row["recording"])
    soxi = subprocess.run(["soxi", "-D", str(wav)], capture_output=True, text=True)
    assert soxi.returncode == 0, soxi.stderr  # playable as the kill left it, before any repair
    assert killed_at - answered - 1.0 <= float(soxi.stdout) <= killed_at - answered + 0.1, (
        soxi.stdout, killed_at - answered,
    )  # fmt: skip

    with WebhookReceiver(SECRET, port=hook_port) as hooks:
        second = tmp_path / "second"
        second.mkdir()
        proc, _ = serve(second, cfg)
        try:
            got = hooks.wait_for(lambda ev: any(e["type"] == "recording.ready" for e in ev), timeout_s=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
    assert [e["type"] for e in got] == ["call.started", "call.answered", "call.ended", "recording.ready"], got
    ended = got[2]["data"]["call"]
    assert ended["result"] == "failed" and ended["cut_off"] is True
    assert abs(ended["ended"] - killed_at) < 1.5, (ended["ended"], killed_at)
    assert sorted(hooks.accepted) == sorted(e["id"] for e in got)
    rows = subprocess.run(["soxi", "-D", str(wav)], capture_output=True, text=True, check=True)
    assert float(rows.stdout) >= float(soxi.stdout)  # the repaired header covers all the data


def soxi(flag: str, wav: Path) -> str:
    return subprocess.run(["soxi", flag, str(wav)], capture_output=True, text=True, check=True).stdout.strip()


def wait_answered(db: Path, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if db.exists():
            try:
                return float(only_call(db)["answered"])
            except (LookupError, TypeError):
                pass
        time.sleep(0.1)
    raise AssertionError("no call was answered")


def only_call(db: Path) -> dict:
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM calls").fetchall()
    if len(rows) != 1:
        raise LookupError(f"{len(rows)} calls")
    return dict(rows[0])


def test_a_failed_transfer_comes_back_to_the_caller_who_leaves_a_message(tmp_path, meters):
    sip_port = free_port()
    store = tmp_path / "var"
    proc, _ = serve(tmp_path, config(sip_port, store, "http://127.0.0.1:9/unused"))
    try:
        sc = tmp_path / "busy.yaml"
        sc.write_text(
            "name: busy\nline: {refer: busy}\ntiming: {max_duration_s: 60}\nturns:\n"
            "  - say: 'Can I talk to a real person, please?'\n"  # a phrase: transfer, no LLM
            "  - say: 'Yes. Please ask Sam to call me back about my wheel.'\n"
        )
        result, _ = asyncio.run(
            run_one(load_scenario(sc), f"sip:agent@{LOCAL}:{sip_port}", tmp_path / "out", meters)
        )
        assert not result["error"], result["error"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (row := only_call(store / "calls.db"))["announced"]:
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    # The REFER was reported busy (NOTIFY 486): the agent came back and offered a message.
    assert [t["refer_to"] for t in result["transfers"]] == ["sip:frontdesk@127.0.0.1"], result["transfers"]
    assert "leave a message" in result["turns"][0]["transcript"].lower(), result["turns"][0]
    assert json.loads(row["transfer"])["ok"] is False and row["result"] == "caller hung up", row
    # What the caller said next is the message (as tiny.en heard espeak: words may vary).
    assert "wheel" in (row["message"] or "").lower(), row["message"]
