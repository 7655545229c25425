"""Turn-taking through real calls: callsim (its own SIP UA, RTP and voices) against
`voice-agent serve` with the real models and the example bike-shop dialplan.

- "uh-huh" while the agent talks pauses it, and it finishes what it was saying;
- a real interruption stops it at once, and the new question is answered;
- a caller who stops mid-sentence for a second ("...open on") is not cut off. (Not every such
  pause is caught: after "...charge for" tiny.en writes "for it?", which sounds finished.)
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
import yaml

from callsim.runner import Meters, run_one
from callsim.scenario import load_scenario
from tests.peers import LOCAL, read_log
from tests.test_sip import serve_plan

pytestmark = [pytest.mark.models, pytest.mark.sip]
ROOT = Path(__file__).resolve().parent.parent
# A long opening line is the one agent speech whose words and length are known in advance.
LONG_GREETING = (
    "Hello, thanks for calling Northside Bike Repair. We are open Monday to Friday from nine to six, "
    "and on Saturday from ten to four. How can I help you today?"
)


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    plan = yaml.safe_load((ROOT / "dialplans/examples/bikeshop.yaml").read_text())
    plan["greeting"] = LONG_GREETING
    proc, port, log = serve_plan(tmp_path_factory.mktemp("agent"), "bikeshop", plan)
    yield f"sip:bikeshop@{LOCAL}:{port}", log
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)


def call(tmp_path: Path, meters: Meters, target: str, text: str) -> dict:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    result, _ = asyncio.run(run_one(load_scenario(path), target, tmp_path / "out", meters))
    assert not result["error"], result["error"]
    return result


def test_uh_huh_while_the_agent_talks_does_not_stop_it(tmp_path, meters, agent):
    target, log = agent
    seen = len(log.read_text().splitlines())
    result = call(tmp_path, meters, target, (
        "name: backchannel\ntiming: {quiet_s: 3.0, linger_s: 0.5}\nturns:\n"
        "  - {say: 'uh huh', wait: agent_speaking, delay_s: 2.5}\n"
    ))  # fmt: skip
    greeting = result["greeting"]["transcript"].lower() + " " + result["turns"][0]["transcript"].lower()
    assert "help you today" in greeting, greeting  # the last words of the line were said
    said = [e["event"] for e in read_log(log, seen)]
    assert "caller talks over the agent: paused" in said and "backchannel: the agent goes on" in said, said
    assert "barge-in" not in said, said


def test_a_real_interruption_stops_the_agent_and_is_answered(tmp_path, meters, agent):
    target, _log = agent
    result = call(tmp_path, meters, target, (
        "name: interruption\ntiming: {quiet_s: 2.0, linger_s: 1.0}\nturns:\n"
        "  - say: 'Sorry, where is the shop?'\n    wait: agent_speaking\n    delay_s: 1.5\n"
        "    expect: {stops: true, max_stop_ms: 400, any_of: ['harbor', 'harbour', '14', 'fourteen']}\n"
    ))  # fmt: skip
    turn = result["turns"][0]
    assert turn["agent_stopped"] and turn["barge_in_stop_ms"] < 400, turn
    assert "help you today" not in result["greeting"]["transcript"].lower()
    assert result["passed"], result["checks"]


def test_a_caller_who_stops_mid_sentence_for_a_second_is_not_cut_off(tmp_path, meters, agent):
    target, log = agent
    seen = len(log.read_text().splitlines())
    result = call(tmp_path, meters, target, (
        "name: thinking\ntiming: {quiet_s: 2.0, linger_s: 1.0}\nturns:\n"
        "  - {say: 'What time do you open on', wait: agent_done}\n"
        "  - {say: 'Saturday?', wait: none, delay_s: 1.0}\n"
    ))  # fmt: skip
    first, second = result["turns"]
    assert first["voice_to_voice_ms"] is None or first["voice_to_voice_ms"] > 1000, (
        first
    )  # no reply in the gap
    records = [e for e in read_log(log, seen) if e["event"] == "turn record"]
    assert len(records) == 1, records
    heard = records[0]["user_text"].lower()
    assert "open" in heard and "saturday" in heard, heard
    assert second["voice_to_voice_ms"] is not None
