"""SIP telephony against real peers on 127.0.0.1: SIPp and baresip."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.audio.resample import resample
from agent.audio.wav import write_wav
from agent.sipconfig import RegistrationConfig, SipConfig
from agent.telephony.call import CallLeg
from agent.telephony.sipping import sip_ping
from tests.conftest import load_16k
from tests.peers import (
    LOCAL,
    AgentThread,
    SippResult,
    baresip_call,
    echo_windows,
    free_port,
    run_sipp,
    sipp_call_scenario,
    wait_until,
)

pytestmark = pytest.mark.sip
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def sip_config(**kw: object) -> SipConfig:
    return SipConfig(host=LOCAL, port=free_port(), rtp_port=0, **kw)  # type: ignore[arg-type]


@pytest.fixture
def agent():
    with AgentThread(sip_config()) as a:
        yield a


def test_sipp_uac_pcap_call_is_answered_with_rtp_both_ways(agent, tmp_path):
    result = run_sipp(tmp_path, "uac_pcap", agent.cfg.port, service="echo")
    assert result.returncode == 0 and result.successful == 1 and result.failed == 0, result.output[-2000:]
    time.sleep(0.3)
    rec = agent.recorder
    assert rec.loud_frames_in > 100, "the pcap's speech must reach the call as 16 kHz frames"
    assert rec.samples_sent > 16000 * 3, "echoed audio must go back out"
    assert rec.infos[0].to_user == "echo" and rec.infos[0].remote_addr.startswith(LOCAL)
    assert rec.codecs == ["PCMA/8000"]
    assert wait_until(lambda: agent.limiter.active == 0 and not agent.endpoint.legs)


@pytest.mark.parametrize(("codec", "rate"), [("PCMU", 8000), ("G722", 16000)])
def test_baresip_hears_its_own_audio_from_the_echo_target(agent, tmp_path, speech_dir, codec, rate):
    speech = load_16k(speech_dir / "utterances/cathy/arctic_a0024_1592747999.wav")
    pad = np.zeros(16000, dtype=np.int16)
    mic = tmp_path / f"mic{rate}.wav"
    write_wav(mic, resample(np.concatenate([pad, speech, pad, pad]), 16000, rate), rate)
    call = baresip_call(tmp_path, f"sip:echo@{LOCAL}:{agent.cfg.port}", mic, codec)
    assert call.rate == rate
    windows = echo_windows(call.heard, call.sent, rate)
    assert len(windows) >= 5, "the caller's speech must have been sent"
    delays = [d for d, _ in windows]
    corrs = [c for _, c in windows]
    # Every window but at most one (a lag estimate can lock onto a similar-sounding phrase).
    assert sum(0.45 < d < 0.7 for d in delays) >= len(delays) - 1, f"echo delays {delays}"
    # Exact copies somewhere (> 0.98), and mostly close: a window in which a jitter buffer
    # dropped or repeated a frame correlates less, and a loaded machine adapts more often.
    assert max(corrs) > 0.98 and np.median(corrs) > 0.8, f"the echo must be the caller's audio: {corrs}"
    assert agent.recorder.codecs == [f"{codec}/{8000 if codec == 'PCMU' else 16000}"]


def test_rfc4733_digits_arrive_in_order(agent, tmp_path):
    media: list[tuple[str, str | int]] = []
    for d in ("1", "2", "3", "pound", "9", "star", "0"):
        media += [("pcap", f"dtmf_2833_{d}.pcap"), ("pause", 500)]
    result = run_sipp(tmp_path, sipp_call_scenario("PCMU", media), agent.cfg.port, service="dtmf")
    assert result.successful == 1, result.output[-2000:]
    time.sleep(0.3)
    assert agent.recorder.digits == ["1", "2", "3", "#", "9", "*", "0"]


def test_sip_info_digits_arrive_with_either_body_type(agent, tmp_path):
    media = [("pause", 300), ("info-relay", "5"), ("info-dtmf", "7"), ("info-relay", "#"), ("pause", 300)]
    result = run_sipp(tmp_path, sipp_call_scenario("PCMU", media), agent.cfg.port, service="dtmf")
    assert result.successful == 1, result.output[-2000:]  # each INFO answered (see info_dtmf)
    time.sleep(0.3)
    assert agent.recorder.digits == ["5", "7", "#"]


def test_the_agent_presses_keys_by_rfc_4733(tmp_path, silero):
    """What a warm transfer needs to find its way through a PBX's menu."""
    import asyncio

    from callsim.call import place_call
    from callsim.scenario import load_scenario

    sent: list[bool] = []

    async def press(leg: CallLeg) -> None:
        await asyncio.sleep(1.0)
        sent.append(await leg.send_dtmf("12#"))
        await asyncio.sleep(2.0)

    scenario = tmp_path / "quiet.yaml"
    scenario.write_text("name: quiet\ntiming: {max_duration_s: 10}\nturns:\n  - {silence_s: 5}\n")
    with AgentThread(sip_config(), press) as agent:
        rec = asyncio.run(place_call(load_scenario(scenario), f"sip:dtmf@{LOCAL}:{agent.cfg.port}", silero))
    assert sent == [True] and rec.keys_received == ["1", "2", "#"], (sent, rec.keys_received, rec.error)


def test_hold_and_resume_reinvites_keep_the_call(agent, tmp_path):
    media = [
        ("pcap", "g711a.pcap"),
        ("pause", 1500),
        ("reinvite", "sendonly"),
        ("pause", 500),
        ("reinvite", "sendrecv"),
        ("pause", 1000),
    ]
    result = run_sipp(tmp_path, sipp_call_scenario("PCMA", media), agent.cfg.port)
    assert result.successful == 1, result.output[-3000:]
    assert wait_until(lambda: agent.limiter.active == 0), "the call slot must be freed"


def serve_plan(tmp: Path, name: str, plan: dict, extra: str = "") -> tuple[subprocess.Popen[str], int, Path]:
    """`voice-agent serve` on a free loopback port with one dialplan (as YAML data) and `extra`
    config sections, its log kept in tmp/agent.log; returns the process, the SIP port and the log."""
    import yaml as pyyaml

    plans = tmp / "dialplans"
    plans.mkdir()
    (plans / f"{name}.yaml").write_text(pyyaml.safe_dump(plan))
    port = free_port()
    log = tmp / "agent.log"
    proc, _ = serve(
        tmp, f"sip:\n  host: {LOCAL}\n  port: {port}\ndialplans:\n  dir: {plans}\n{extra}", stderr_to=log
    )
    return proc, port, log


def serve(
    tmp_path: Path, yaml: str, cluster: bool = False, stderr_to: Path | None = None
) -> tuple[subprocess.Popen[str], list[dict]]:
    """Start `voice-agent serve` with a config; return it once it (or its front) logged "ready".
    Its log is read only until then, unless `stderr_to` names a file that keeps all of it."""
    cfg = tmp_path / "c.yaml"
    if "http:" not in yaml:
        yaml += "http:\n  port: 0\n"  # any free port: tests never take 8080
    if "store:" not in yaml:  # call records and recordings stay in the test's folder
        yaml += f"store:\n  dir: {tmp_path / 'var'}\n"
    if "dialplans:" not in yaml:  # only the echo dialplan: any other user gets 404
        plans = tmp_path / "dialplans"
        plans.mkdir(exist_ok=True)
        shutil.copy(ROOT / "dialplans/echo.yaml", plans)
        yaml += f"dialplans:\n  dir: {plans}\n"
    cfg.write_text(yaml)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "agent.cli", "serve", "--config", str(cfg), "--log-format", "json"]
    if stderr_to is not None:  # the log goes to a file; `tail -f` it until ready
        proc = subprocess.Popen(cmd, stderr=stderr_to.open("w"), text=True, env=env, stdin=subprocess.DEVNULL)
        lines: Iterator[str] = _follow(stderr_to, proc)
    else:
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL)
        assert proc.stderr is not None
        lines = proc.stderr
    events: list[dict] = []
    try:
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:  # pjlib's own start-up lines are not JSON
                events.append({"event": line})
            if events[-1]["event"] == "ready" and (not cluster or "front" in events[-1]):
                break
        else:
            errors = [e["event"] for e in events if str(e["event"]).startswith("voice-agent:")]
            raise AssertionError(f"serve exited before it was ready: {errors} {events[-5:]}")
    except BaseException:
        proc.send_signal(signal.SIGTERM)  # never leave a cluster behind
        proc.communicate(timeout=60)
        raise
    return proc, events


def _follow(path: Path, proc: subprocess.Popen[str]) -> Iterator[str]:
    """The lines of a growing log file until its process exits."""
    with path.open() as f:
        while True:
            line = f.readline()
            if line:
                yield line
            elif proc.poll() is not None:
                return
            else:
                time.sleep(0.05)


@pytest.mark.models
def test_six_concurrent_echo_calls_all_succeed_through_the_kamailio_front(tmp_path):
    """pjsua takes 4 calls per process: max_calls 8 runs 2 workers behind Kamailio."""
    port = free_port(span=3)  # the front's, then its workers' (port + 1, + 2)
    yaml = f"sip:\n  host: {LOCAL}\n  port: {port}\n  rtp_port: 0\n  max_calls: 8\n"
    yaml += "  limits: {trusted: [127.0.0.1/32]}\n"  # SIPp here is a PBX: all 6 calls from one address
    proc, events = serve(tmp_path, yaml, cluster=True)
    try:
        assert events[-1].get("front") == "kamailio", events[-5:]
        media = [("pcap", "g711a.pcap"), ("pause", 3000), ("reinvite", "sendonly"), ("pause", 500)]
        result = run_sipp(tmp_path, sipp_call_scenario("PCMU", media), port, calls=6, concurrency=6, rate=20)
        assert result.returncode == 0 and result.successful == 6, result.output[-3000:]
        unknown = run_sipp(tmp_path / "o", sipp_call_scenario("PCMU", expect=404), port, service="nobody")
        assert unknown.successful == 1, "a 404 from a worker passes back through the front"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    # The workers share the supervisor's stderr: every call was answered by one of them.
    assert sum('"call answered"' in line for line in rest.splitlines()) == 6
    assert proc.returncode == 0, rest[-3000:]
    front = events[-1]["front_pid"]
    assert not Path(f"/proc/{front}").exists() or "zombie" in Path(f"/proc/{front}/status").read_text()


@pytest.mark.models
def test_a_killed_worker_is_skipped_restarted_and_taken_back_by_the_front(tmp_path):
    """kill -9 of one of two workers: calls keep connecting through the other, the supervisor
    restarts it, and the front's OPTIONS probes give it calls again once it answers."""
    port = free_port(span=3)
    yaml = f"sip:\n  host: {LOCAL}\n  port: {port}\n  rtp_port: 0\n  max_calls: 8\n"
    yaml += "  limits: {trusted: [127.0.0.1/32]}\n"
    log = tmp_path / "serve.log"
    proc, _ = serve(tmp_path, yaml, cluster=True, stderr_to=log)
    victim = port + 1

    def logged(event: str) -> list[dict]:
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        return [e for e in lines if e.get("event") == event]

    def answered_on(worker: int, since: int) -> int:
        return sum(e.get("on", "").endswith(f":{worker}") for e in logged("call answered")[since:])

    scenario = sipp_call_scenario("PCMU", [("pause", 500)])
    try:
        (pid,) = [e["pid"] for e in logged("worker started") if e["port"] == victim]
        os.kill(pid, signal.SIGKILL)
        before = len(logged("call answered"))
        # Right after the kill, all within a second (before the restarted worker can be up); the
        # front may not know yet: a try that times out goes on to the other worker.
        during = run_sipp(tmp_path / "during", scenario, port, calls=4, concurrency=4, rate=4, timeout=90)
        assert isinstance(during, SippResult) and during.successful == 4, during.output[-3000:]
        assert answered_on(port + 2, before) == 4
        assert wait_until(lambda: len([e for e in logged("worker started") if e["port"] == victim]) == 2, 30)
        assert wait_until(lambda: sip_ping_ok(victim), 240), "the restarted worker never answered"
        time.sleep(3)  # a probe or two: the front takes it back
        before = len(logged("call answered"))
        after = run_sipp(tmp_path / "after", scenario, port, calls=4, rate=1, timeout=90)
        assert isinstance(after, SippResult) and after.successful == 4, after.output[-3000:]
        assert answered_on(victim, before) >= 1, logged("call answered")[before:]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert logged("worker died; restarting")


def sip_ping_ok(port: int) -> bool:
    return asyncio.run(sip_ping(LOCAL, port, 0.5))


def test_call_limit_gives_486_and_unknown_user_gets_404(tmp_path):
    with AgentThread(sip_config(max_calls=2)) as agent:
        long_call = sipp_call_scenario("PCMU", [("pause", 5000)])
        background = run_sipp(
            tmp_path / "a", long_call, agent.cfg.port, calls=2, concurrency=2, background=True
        )
        deadline = time.monotonic() + 10
        while agent.limiter.active < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.limiter.active == 2
        # from another address: the call limit, not the per-source one, must answer 486
        third = run_sipp(
            tmp_path / "b", sipp_call_scenario("PCMU", expect=486), agent.cfg.port, from_ip="127.0.0.3"
        )
        assert third.successful == 1, "the third call must get 486 Busy Here\n" + third.output[-2000:]
        out, _ = background.communicate(timeout=30)
        assert background.returncode == 0, out[-2000:]
        missing = run_sipp(
            tmp_path / "c", sipp_call_scenario("PCMU", expect=404), agent.cfg.port, service="nobody"
        )
        assert missing.successful == 1, missing.output[-2000:]


def test_calls_over_tcp(agent, tmp_path):
    result = run_sipp(
        tmp_path,
        sipp_call_scenario("PCMU", [("pcap", "g711a.pcap"), ("pause", 2000)]),
        agent.cfg.port,
        transport="t1",
    )
    assert result.successful == 1, result.output[-2000:]


def register_against_sipp(tmp_path: Path, password: str) -> tuple[bool | None, int, str]:
    """Register to a SIPp registrar that challenges with 401 and checks the digest.

    Returns (agent registered, SIPp exit code, SIPp output).
    """
    registrar_port = free_port()
    registrar = run_sipp(
        tmp_path,
        (HERE / "sipp/register_uas.xml").read_text(),
        0,
        calls=1,
        background=True,
        local_port=registrar_port,
        timeout=20,
    )
    time.sleep(0.5)
    reg = RegistrationConfig(
        registrar=f"sip:{LOCAL}:{registrar_port}",
        aor=f"sip:agent@{LOCAL}",
        username="agent",
        password=password,
        expires_s=300,
        retry_s=60,
    )
    with AgentThread(sip_config(registration=reg)) as agent:
        out, _ = registrar.communicate(timeout=30)
        deadline = time.monotonic() + 5
        while not agent.endpoint.registered and time.monotonic() < deadline:
            time.sleep(0.05)
        registered = agent.endpoint.registered
    return registered, registrar.returncode, out


def test_register_answers_the_digest_challenge(tmp_path):
    registered, code, out = register_against_sipp(tmp_path, "s3cret")
    assert registered is True
    assert code == 0, out[-3000:]


def test_wrong_password_is_not_registered(tmp_path):
    registered, code, _ = register_against_sipp(tmp_path, "wrong")
    assert registered is False
    assert code != 0


def test_a_taken_port_is_a_clear_error(tmp_path):
    with AgentThread(sip_config()) as agent:  # holds the port
        yaml = (
            f"sip:\n  host: {LOCAL}\n  port: {agent.cfg.port}\n  transports: [udp]\nhttp:\n  enabled: false\n"
        )
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml)
        proc = subprocess.run(
            [sys.executable, "-m", "agent.cli", "serve", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdin=subprocess.DEVNULL,
        )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"SIP endpoint on {LOCAL}:{agent.cfg.port} failed to start" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_malformed_datagrams_do_not_stop_the_endpoint(agent, tmp_path):
    port = agent.cfg.port
    junk = [
        b"INVITE sip:echo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK1\r\n"
        b"From: <sip:a@b>",
        bytes(range(256)) * 4,
        b"INVITE sip:echo@127.0.0.1 SIP/2.0\r\n" + b"X-Huge: " + b"a" * 60000 + b"\r\n\r\n",
        b"\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: garbage\r\n\r\n",
        b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999\r\n\r\nshort",
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for datagram in junk:
            s.sendto(datagram, (LOCAL, port))
    for payload in junk[:3]:
        with socket.create_connection((LOCAL, port), timeout=2) as t:
            t.sendall(payload)
    time.sleep(0.5)
    result = run_sipp(tmp_path, sipp_call_scenario("PCMU", [("pcap", "g711a.pcap"), ("pause", 1000)]), port)
    assert result.successful == 1, result.output[-2000:]


@pytest.mark.models
def test_sigterm_with_a_call_up_sends_bye_and_exits_0(tmp_path):
    port = free_port()
    proc, _ = serve(tmp_path, f"sip:\n  host: {LOCAL}\n  port: {port}\n  rtp_port: 0\n")
    wait_for_bye = sipp_call_scenario("PCMU", [("pcap", "g711a.pcap")], end="recv_bye")
    sipp = run_sipp(tmp_path, wait_for_bye, port, background=True, timeout=40)
    time.sleep(3)  # the call is up and streaming
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=30)
    out, _ = sipp.communicate(timeout=30)
    assert proc.returncode == 0, rest[-3000:]
    assert "Assertion" not in rest
    assert sipp.returncode == 0, "SIPp must receive the agent's BYE and answer it\n" + out[-2000:]
    assert '"call ended"' in rest and '"stopped"' in rest


def test_an_invite_flood_does_not_kill_the_endpoint_and_a_call_gets_through_after(tmp_path):
    """150 and 400 INVITEs a second from one address used to abort pjlib (ioqueue assertion)."""
    port = free_port()
    out = tmp_path / "server.log"
    with out.open("w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sip_echo_server", str(port)],
            cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        assert wait_until(lambda: "ready" in out.read_text().split(), 20), out.read_text()[-2000:]
        for rate in (150, 400):
            flood = run_sipp(
                tmp_path / f"flood-{rate}", "uac", port, service="echo", calls=3 * rate,
                concurrency=3 * rate, rate=rate, timeout=20, from_ip="127.0.0.2",
            )  # fmt: skip
            assert isinstance(flood, SippResult)
            assert proc.poll() is None, f"the endpoint died under {rate} INVITEs/s: {out.read_text()[-1500:]}"
            assert flood.failed > 0 and flood.successful >= 1, "the flood is limited, not ignored"
        after = run_sipp(tmp_path / "after", "uac_pcap", port, service="echo", from_ip="127.0.0.3")
        assert isinstance(after, SippResult)
        assert after.successful == 1 and after.failed == 0, after.output[-2000:]
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0
