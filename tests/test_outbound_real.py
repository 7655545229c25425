"""Outgoing calls through the real thing: `voice-agent serve` (real models) places calls asked
for over its HTTP API (and by `voice-agent call`) to real baresip phones; a real webhook
receiver follows them.

- a person answers ("Hello?"): answering-machine detection says human, they hear the greeting
  with the call's variables, and say goodbye;
- an answering machine (a long greeting, then a beep): detection says machine, the agent waits
  for the beep and leaves the voicemail message with the variables, then hangs up;
- nobody answers: "no answer", as `voice-agent call --wait` reports.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml as pyyaml

from agent.api.keys import hash_key
from agent.audio.resample import resample
from agent.audio.wav import write_wav
from tests.peers import LOCAL, BaresipPhone, WebhookReceiver, free_port, read_log
from tests.test_sip import serve, serve_plan
from tests.test_warm_transfer_real import transcribe_parts
from tests.voices import espeak, silence

pytestmark = [pytest.mark.models, pytest.mark.sip]
KEY = "va_outbound-test-key-0123456789"
SECRET = "outbound-webhook-secret-0123"
PLAN = {
    "match": ["reminders"],
    "greeting": "Hi {first_name}, this is Northside Bike Repair. Your bike is ready for pickup on {day}.",
    "voicemail": "Hi {first_name}, this is Northside Bikes. Your bike is ready for pickup on {day}. Bye.",
    "variables": {"first_name": None, "day": None},
    "system_prompt": "You call customers of Northside Bike Repair to tell them their bike is ready.",
    "tools": {"hangup": {"goodbye": "Thank you, goodbye!", "phrases": ["goodbye", "bye"]}},
    "summary": False,
}
BEEP_AT_S = 7.0  # into the machine's audio, after its greeting


def person(path: Path) -> None:
    rate = 8000
    parts = [silence(0.6, rate), espeak("Hello?", rate), silence(11, rate),
             espeak("Great, thank you. Goodbye.", rate, voice="en-gb"), silence(8, rate)]  # fmt: skip
    write_wav(path, np.concatenate(parts), rate)


def machine(path: Path) -> None:
    rate = 8000
    greeting = espeak(
        "Hi, you've reached Sam. I can't take your call right now. Please leave a message.", rate
    )
    pad = silence(BEEP_AT_S - 0.4 - len(greeting) / rate, rate)
    t = np.arange(int(0.5 * rate)) / rate
    beep = (0.3 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    write_wav(path, np.concatenate([silence(0.4, rate), greeting, pad, beep, silence(20, rate)]), rate)


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outbound")
    phones = {}
    for name, make, answer in (("maria", person, True), ("sam", machine, True), ("nobody", person, False)):
        (tmp / name).mkdir()
        make(tmp / f"{name}.wav")
        phones[name] = BaresipPhone(tmp / name, tmp / f"{name}.wav", answer=answer, seconds=150, user=name)
    hooks = WebhookReceiver(SECRET).__enter__()
    extra = (
        f"api:\n  keys:\n    - name: crm\n      sha256: {hash_key(KEY)}\n"
        "      scopes: [calls:write, calls:read]\n"
        f"webhooks:\n  - url: {hooks.url}\n    secret: {SECRET}\n"
        "outbound:\n  ring_timeout_s: 6\n"
    )
    proc, _, log = serve_plan(tmp, "reminders", PLAN, extra)
    ready = next(e for e in read_log(log) if e.get("event") == "ready")
    port = int(ready["http"].rsplit(":", 1)[1])
    yield port, log, phones, hooks, tmp
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    hooks.__exit__()
    for phone in phones.values():
        phone.stop()


def post(port: int, body: dict) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/calls", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 202
        return dict(json.loads(r.read()))


def get(port: int, path: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.loads(r.read()))


def ended(hooks: WebhookReceiver, call_id: str, timeout_s: float = 90) -> list[dict]:
    got = hooks.wait_for(
        lambda ev: any(e["type"] == "call.ended" and e["data"]["call"]["id"] == call_id for e in ev),
        timeout_s,
    )
    return [e for e in got if e["data"].get("call", {}).get("id") == call_id]


def test_a_person_answers_hears_the_greeting_with_the_variables(agent, stt):
    port, log, phones, hooks, _ = agent
    call = post(port, {"to": phones["maria"].uri, "dialplan": "reminders",
                       "variables": {"first_name": "Maria", "day": "Friday"}})  # fmt: skip
    events = ended(hooks, call["id"])
    assert [e["type"] for e in events] == ["call.started", "call.ringing", "call.answered", "call.ended"], (
        events
    )
    assert events[2]["data"]["call"]["answered_by"] == "human"
    record = events[3]["data"]["call"]
    assert record["direction"] == "outbound" and record["result"] == "completed", record
    heard = phones["maria"].result()
    text = transcribe_parts(stt, resample(heard.heard, heard.rate, 16000))
    assert "maria" in text and "friday" in text, text
    amd = [e for e in read_log(log) if e.get("event") == "amd"]
    assert amd and amd[0]["verdict"] == "human" and amd[0]["at_s"] <= 3.0, amd


def test_a_machine_gets_the_voicemail_message_after_its_beep(agent, stt):
    port, _, phones, hooks, _ = agent
    call = post(port, {"to": phones["sam"].uri, "dialplan": "reminders",
                       "variables": {"first_name": "Sam", "day": "Monday"}})  # fmt: skip
    events = ended(hooks, call["id"])
    assert events[2]["data"]["call"]["answered_by"] == "machine", events
    assert events[-1]["data"]["call"]["result"] == "voicemail"
    heard = phones["sam"].result()  # what the machine recorded of us
    pcm = resample(heard.heard, heard.rate, 16000)
    loud = np.flatnonzero(np.abs(pcm) > 1000)
    assert len(loud) and loud[0] / 16000 > BEEP_AT_S, "the agent spoke over the greeting"
    text = transcribe_parts(stt, pcm)
    assert "ready for pickup" in text and "monday" in text, text


def test_nobody_answers_and_voice_agent_call_says_so(agent, tmp_path):
    port, _, phones, _, _ = agent
    cfg = tmp_path / "client.yaml"
    cfg.write_text(f"http:\n  host: 127.0.0.1\n  port: {port}\n")
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "call", phones["nobody"].uri, "--dialplan", "reminders",
         "--var", "first_name=Ann", "--var", "day=Tuesday", "--key", KEY, "--wait", "--timeout", "60",
         "--config", str(cfg)],
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1 and lines[-1]["result"] == "no answer", (done.stdout, done.stderr)


def test_in_cluster_mode_the_supervisor_spreads_outgoing_calls_over_the_workers(tmp_path, stt):
    """Two workers (one call each) behind Kamailio; the supervisor's HTTP front takes both
    requests, each worker places one call, and each leaves through the front."""
    phones = []
    for name in ("ann", "bob"):
        (tmp_path / name).mkdir()
        person(tmp_path / f"{name}.wav")
        phones.append(BaresipPhone(tmp_path / name, tmp_path / f"{name}.wav", seconds=120, user=name))
    plans = tmp_path / "dialplans"
    plans.mkdir()
    (plans / "reminders.yaml").write_text(pyyaml.safe_dump({**PLAN, "default": True}))
    http = free_port(span=3)  # the supervisor's API, then its workers' (http + 1, + 2)
    cfg = (
        f"sip:\n  host: {LOCAL}\n  port: {free_port(span=3)}\n  rtp_port: 0\n"
        "  max_calls: 2\n  calls_per_process: 1\n"
        f"dialplans:\n  dir: {plans}\nhttp:\n  host: 127.0.0.1\n  port: {http}\n"
        f"api:\n  keys:\n    - {{name: crm, sha256: {hash_key(KEY)}, scopes: [calls:write, calls:read]}}\n"
    )
    proc, events = serve(tmp_path, cfg, cluster=True)
    try:
        assert events[-1].get("http") == f"127.0.0.1:{http}", events[-3:]
        ids = [post(http, {"to": p.uri, "dialplan": "reminders",
                           "variables": {"first_name": n, "day": "Friday"}})["id"]
               for p, n in zip(phones, ("Maria", "Peter"), strict=True)]  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not all(get(http, f"/v1/calls/{i}")["result"] for i in ids):
            time.sleep(1)
        heard = [p.result() for p in phones]
        # Each worker placed one: it calls from its own port (the From of its record).
        records = [get(http, f"/v1/calls/{i}") for i in ids]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=90)
        (tmp_path / "cluster.log").write_text(log)  # the workers' lines too: they share its stderr
        for p in phones:
            p.stop()
    for call, name in zip(heard, ("maria", "peter"), strict=True):
        text = transcribe_parts(stt, resample(call.heard, call.rate, 16000))
        assert name in text and "friday" in text, (name, text)
    assert all(r["direction"] == "outbound" and r["answered_by"] == "human" for r in records), records
    assert len({r["from_uri"] for r in records}) == 2, [r["from_uri"] for r in records]
