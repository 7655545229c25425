"""DTMF through real calls against `voice-agent serve` (real models): keys by SIP INFO (both
body types, from SIPp) and by RFC 4733 (callsim), a menu, and digit collection ended by the
terminator and by a pause, landing in the call record's fields."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path

import pytest
import yaml

from callsim.runner import run_one
from callsim.scenario import load_scenario
from tests.peers import LOCAL, read_log, run_sipp, sipp_call_scenario
from tests.test_sip import serve_plan

pytestmark = [pytest.mark.models, pytest.mark.sip]
ROOT = Path(__file__).resolve().parent.parent
MENU_PLAN = {
    "greeting": "Hello.",
    "menu": {
        "prompt": "For our hours press 1. For repairs press 2. To enter an order number press 3.",
        "options": {
            "1": {"say": "We are open from nine to six."},
            "2": {"say": "Repairs take one or two days."},
            "3": {"collect": "order"},
        },
    },
    "collect_digits": {
        "order": {"prompt": "Please enter your order number, then the hash key.", "max_length": 8,
                  "min_length": 3, "inter_digit_s": 2.0},
    },
    "summary": False,
}  # fmt: skip


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agent")
    plan = yaml.safe_load((ROOT / "dialplans/default.yaml").read_text())
    plan.update(MENU_PLAN)
    proc, port, log = serve_plan(tmp, "default", plan)
    yield port, log, tmp / "var" / "calls.db"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)


def fields(db: Path) -> list[dict]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT fields FROM calls ORDER BY offered").fetchall()
    return [json.loads(r[0]) if r[0] else {} for r in rows]


def test_keys_by_sip_info_reach_the_menu(tmp_path, agent):
    port, log, _ = agent
    seen = len(log.read_text().splitlines())
    media = [("pause", 1500), ("info-relay", "1"), ("pause", 1500), ("info-dtmf", "2"), ("pause", 1500)]
    result = run_sipp(tmp_path, sipp_call_scenario("PCMU", media), port, service="agent", timeout=60)
    assert result.returncode == 0 and result.successful == 1, result.output[-2000:]  # each INFO got 200
    events = read_log(log)[seen:]
    keys = [e["digit"] for e in events if e.get("event") == "dtmf menu"]
    assert keys == ["1", "2"], [e for e in events if "dtmf" in e.get("event", "")]


def test_keys_by_rfc_4733_collect_an_order_number(tmp_path, agent, meters):
    port, _, db = agent
    before = len(fields(db)) if db.exists() else 0
    scenario = tmp_path / "keys.yaml"
    scenario.write_text(
        "name: keys\ntiming: {quiet_s: 2.0, linger_s: 1.0}\nturns:\n"
        "  - {dtmf: '3'}\n"
        "  - {dtmf: '417#'}\n"  # ended by the terminator
        "  - {dtmf: '3'}\n"
        "  - {dtmf: '5551'}\n"  # ended by a 2 s pause
    )
    result, _ = asyncio.run(
        run_one(load_scenario(scenario), f"sip:agent@{LOCAL}:{port}", tmp_path / "out", meters)
    )
    assert not result["error"], result["error"]
    assert not any(t["skipped"] for t in result["turns"]), result["turns"]  # keys keep the call alive
    heard = " ".join(t["transcript"].lower() for t in result["turns"])
    # Read back each time (tiny.en hears "4, 1, 7" as "for 1-7": the record holds the digits).
    assert "order number" in heard and heard.count("entered") == 2, result["turns"]  # "you" may be lost
    (record,) = fields(db)[before:]
    assert record["order"] == "5551", record  # the second entry replaces the first
