"""A real call through `voice-agent serve` while its engines fail on purpose (fault injection):
an LLM that hangs and an STT that crashes. The caller's recording must have the fallback line
where each failed and a real answer in between; the call goes on and the process survives."""

from __future__ import annotations

import json
import re
import signal
from typing import Any

import pytest
import yaml

from tests.peers import LOCAL, free_port
from tests.test_callsim_calls import ROOT, callsim, scenario
from tests.test_sip import serve

pytestmark = [pytest.mark.models, pytest.mark.sip]

FALLBACK = "trouble|say that again"
CALLER = """name: engine_faults
timing: {quiet_s: 2.0}
turns:
  - say: "When are you open on Saturday?"
    expect: {says: "FALLBACK"}
  - say: "How much does a basic tune-up cost?"
    expect: {any_of: ["45", "forty", "dollars", "tune"]}
  - say: "And do I need an appointment?"
    expect: {says: "FALLBACK"}
""".replace("FALLBACK", FALLBACK)


def place_call(tmp_path, port: int, caller: str) -> tuple[Any, dict]:
    """callsim calls the agent with this caller script: its run, and its result.json."""
    out = tmp_path / "call"
    run = callsim("run", str(scenario(tmp_path, caller)), "--target", f"sip:agent@{LOCAL}:{port}",
                  "--out", str(out))  # fmt: skip
    assert run.returncode in (0, 1), run.stdout + run.stderr
    return run, json.loads((out / "result.json").read_text())


def test_a_hung_llm_and_a_crashed_stt_cost_one_turn_each_and_the_call_goes_on(tmp_path):
    plans = tmp_path / "dialplans"
    plans.mkdir()
    # One transcription per turn (no speculation, no prefill), so the STT calls are the turns.
    default = yaml.safe_load((ROOT / "dialplans/default.yaml").read_text())
    default["turn"] = {**default.get("turn", {}), "speculative_ms": 0, "prefill_ms": 0}
    (plans / "default.yaml").write_text(yaml.safe_dump(default))
    port = free_port()
    proc, _ = serve(
        tmp_path,
        f"""sip: {{host: {LOCAL}, port: {port}}}
dialplans: {{dir: {plans}}}
llm: {{timeout_s: 2}}
faults:
  - {{engine: llm, mode: hang, calls: [1], seconds: 30}}
  - {{engine: stt, mode: fail, calls: [3]}}
""",
    )
    try:
        _, result = place_call(tmp_path, port, CALLER)
        said = [t.get("transcript", "") for t in result["turns"]]
        assert len(said) == 3, result
        assert re.search(FALLBACK, said[0], re.I), f"the hung LLM's turn: {said}"
        assert re.search(FALLBACK, said[2], re.I), f"the crashed STT's turn: {said}"
        assert not re.search(FALLBACK, said[1], re.I) and said[1].strip(), (
            f"the turn between is answered: {said}"
        )
        assert result["ended_by"] == "caller" and not result["transfers"], result
        assert proc.poll() is None, "the agent process survives"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=60)
    events = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    names = [e["event"] for e in events]
    assert "engine worker restarted" in names, "the hung LLM's thread was replaced"
    failed = {(e["engine"], e["kind"]) for e in events if e["event"] == "engine failed"}
    assert {("llm", "timeout"), ("stt", "error")} <= failed, failed
    assert proc.returncode == 0


FAILING_CALLER = """name: llm_down
timing: {quiet_s: 2.0}
turns:
  - say: "When are you open on Saturday?"
    expect: {says: "FALLBACK"}
  - say: "How much does a basic tune-up cost?"
expect: {transfer: "frontdesk"}
""".replace("FALLBACK", FALLBACK)


def test_an_llm_that_keeps_failing_hands_the_caller_to_the_first_transfer_target(tmp_path):
    """Two fallback lines in a row (fallback_limit 2): the second turn is the transfer (REFER)."""
    port = free_port()
    proc, _ = serve(
        tmp_path,
        f"""sip: {{host: {LOCAL}, port: {port}}}
dialplans: {{dir: {ROOT / "dialplans"}}}
faults:
  - {{engine: llm, mode: fail}}
""",
    )
    try:
        run, result = place_call(tmp_path, port, FAILING_CALLER)
        said = [t.get("transcript", "") for t in result["turns"]]
        assert re.search(FALLBACK, said[0], re.I), f"the first failed turn: {said}"
        assert re.search("transfer|front desk", said[1], re.I), f"the second: the transfer line: {said}"
        assert [t["refer_to"] for t in result["transfers"]] == ["sip:frontdesk@127.0.0.1"], result
        assert run.returncode == 0, run.stdout
        assert proc.poll() is None, "the agent process survives"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
