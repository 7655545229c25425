"""callsim through real SIP calls: its known-latency reference, SIPp as a foreign agent, and our
agent (`voice-agent serve` with the real models), with the HTML report opened in Chromium."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from callsim.reference import ReferenceTarget
from callsim.runner import run_one
from callsim.scenario import load_scenario
from tests.peers import LOCAL, free_port
from tests.test_sip import serve

pytestmark = [pytest.mark.models, pytest.mark.sip]
ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "callsim/scenarios"


def callsim(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callsim.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def scenario(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "scenario.yaml"
    p.write_text(text)
    return p


CALIBRATION = """name: calibration
line: {codec: %s}
timing: {answer_timeout_s: 5, quiet_s: 0.8, linger_s: 0.3}
turns:
  - {wait: none, delay_s: 0.4, say: "Yes."}
  - say: "Hello there, can you hear me?"
  - wav: %s
"""


@pytest.mark.parametrize("codec", ["PCMU", "G722"])
def test_measured_latency_is_within_30_ms_of_a_known_injected_delay(tmp_path, meters, speech_dir, codec):
    """The parrot replies exactly 700 ms after the caller's last sound: callsim must say so."""
    sc = load_scenario(scenario(tmp_path, CALIBRATION % (codec, speech_dir / "digits/4_george_0.wav")))

    async def go():
        ref = ReferenceTarget(LOCAL, delay_s=0.7)
        port = await ref.serve(0)
        try:
            return await run_one(sc, f"sip:parrot@{LOCAL}:{port}", tmp_path / "out", meters)
        finally:
            ref.close()

    result, summary = asyncio.run(go())
    assert not result["error"], result["error"]
    v2v = [t["voice_to_voice_ms"] for t in result["turns"]]
    assert all(v is not None and abs(v - 700) <= 30 for v in v2v), v2v
    assert "hear" in result["turns"][1]["transcript"].lower(), result["turns"][1]["transcript"]
    assert summary["latency"]["voice_to_voice_ms"]["n"] == 3


def test_a_foreign_agent_sipp_rtp_echo_is_measured_and_reported(tmp_path):
    """SIPp's UAS echoes RTP: callsim knows nothing of it, and still runs, measures and reports."""
    port = free_port()
    sipp = subprocess.Popen(
        ["sipp", "-sn", "uas", "-rtp_echo", "-i", LOCAL, "-p", str(port), "-m", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        sc = scenario(
            tmp_path,
            "name: sipp_echo\ntiming: {answer_timeout_s: 3, linger_s: 0.5}\nturns:\n"
            "  - {wait: none, delay_s: 0.3, say: 'Testing one two three.'}\n",
        )
        out = tmp_path / "out"
        proc = callsim("run", str(sc), "--target", f"sip:service@{LOCAL}:{port}", "--out", str(out))
    finally:
        sipp.wait(timeout=10) if sipp.poll() is None and not sipp.send_signal(signal.SIGTERM) else None
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "calls 1   passed 1" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    turn = result["turns"][0]
    # The echo is the caller's own words, back at once: all of it is talk-over, none of it a reply.
    assert turn["talk_over_ms"] > 1000 and turn["voice_to_voice_ms"] is None
    assert result["ended_by"] == "caller" and (out / "report.html").exists() and (out / "call.wav").exists()


def test_a_load_against_nobody_counts_every_failed_call(tmp_path):
    sc = scenario(tmp_path, "name: nobody\ntiming: {setup_timeout_s: 1}\nturns:\n  - say: hi\n")
    out = tmp_path / "load"
    proc = callsim(
        "load",
        str(sc),
        "--target",
        f"sip:x@{LOCAL}:{free_port()}",
        "--calls",
        "3",
        "--concurrency",
        "2",
        "--out",
        str(out),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["calls"], summary["failed"], len(summary["errors"])) == (3, 3, 3)
    assert "ERROR call 2 (nobody): no answer to INVITE within 1 s" in proc.stdout


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agent")
    port = free_port()
    proc, _ = serve(tmp, f"sip:\n  host: {LOCAL}\n  port: {port}\ndialplans:\n  dir: {ROOT / 'dialplans'}\n")
    yield f"sip:agent@{LOCAL}:{port}"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)


def test_a_question_call_against_our_agent_prints_and_writes_the_report(tmp_path, agent):
    out = tmp_path / "question"
    proc = callsim("run", str(SCENARIOS / "question.yaml"), "--target", agent, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "voice_to_voice_ms" in proc.stdout and "passed 1" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    # The greeting as the caller's STT heard it. tiny.en hears Piper's "Northside" as "Northlight" now
    # and then (a CI run did), so the check rests on the words around the name.
    heard = result["greeting"]["transcript"].lower()
    assert "thanks for calling" in heard and "bike repair" in heard, result["greeting"]
    assert result["passed"] and result["turns"][0]["voice_to_voice_ms"] < 4000, result["checks"]
    shown = timeline_in_chromium(out / "report.html", tmp_path / "report.png")
    assert shown["width"] > 700 and shown["caller_px"] > 500 and shown["agent_px"] > 500, shown
    assert shown["labels"] >= 2, shown  # the greeting's and the answer's latency


def test_barge_in_and_transfer_calls_against_our_agent(tmp_path, agent):
    """What callsim measures here must hold; what the 0.5B model answers may vary, so the exit
    status of the barge-in call (its content checks) is not asserted."""
    out = tmp_path / "calls"
    for name in ("barge_in", "ask_for_human"):
        proc = callsim("run", str(SCENARIOS / f"{name}.yaml"), "--target", agent, "--out", str(out / name))
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    greeting_cut = json.loads((out / "barge_in/result.json").read_text())["turns"][0]
    assert greeting_cut["agent_stopped"] and greeting_cut["barge_in_stop_ms"] < 1000, greeting_cut
    assert greeting_cut["talk_over_ms"] == greeting_cut["barge_in_stop_ms"]  # it stopped mid-question
    human = json.loads((out / "ask_for_human/result.json").read_text())
    assert human["passed"], human["checks"]
    assert human["transfers"][0]["refer_to"] == "sip:frontdesk@127.0.0.1" and human["ended_by"] == "agent"
    rebuilt = callsim("report", str(out))
    assert rebuilt.returncode in (0, 1) and "calls 2   passed" in rebuilt.stdout, rebuilt.stdout
    assert json.loads((out / "summary.json").read_text())["latency"]["barge_in_stop_ms"]["n"] >= 1


def test_a_small_load_against_our_agent_reports_percentiles_and_every_call(tmp_path, agent):
    out = tmp_path / "load"
    proc = callsim("load", str(SCENARIOS / "question.yaml"), "--target", agent, "--calls", "4",
                   "--concurrency", "2", "--ramp", "1", "--out", str(out))  # fmt: skip
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calls"] == 4 and summary["passed"] + summary["failed"] == 4 and not summary["errors"]
    v2v = summary["latency"]["voice_to_voice_ms"]
    assert v2v["n"] == 4 and 0 < v2v["p50"] <= v2v["p95"] <= v2v["max"] < 6000, v2v
    assert len(list((out / "calls").glob("*/result.json"))) == 4 and (out / "report.html").exists()


_COUNT_PIXELS = """async () => {
  const svg = document.querySelector('svg.timeline');
  const box = svg.getBoundingClientRect();
  const img = new Image();
  const xml = new XMLSerializer().serializeToString(svg);
  img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(xml);
  await img.decode();
  const c = document.createElement('canvas');
  c.width = 1100; c.height = 278;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let caller = 0, agent = 0;
  for (let i = 0; i < d.length; i += 4) {
    const [r, gr, b] = [d[i], d[i + 1], d[i + 2]];
    if (b > 180 && r < 90) caller++;             // the caller's blue waveform
    if (r > 200 && gr > 90 && gr < 150 && b < 60) agent++;  // the agent's orange waveform
  }
  const labels = [...svg.querySelectorAll('text')].filter(t => /ms|first audio/.test(t.textContent)).length;
  return {width: box.width, caller_px: caller, agent_px: agent, labels};
}"""


def timeline_in_chromium(report: Path, png: Path) -> dict:
    """Open the report in headless Chromium, screenshot it, and count what the timeline drew."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(report.as_uri())
            page.screenshot(path=str(png), full_page=True)
            return page.evaluate(_COUNT_PIXELS)
        finally:
            browser.close()
