"""Observability through the real thing: serve with models, a real SIP call, then HTTP and logs."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.audio.wav import write_wav
from agent.telephony.sipping import sip_ping
from tests.peers import LOCAL, baresip_call, free_port, run_sipp, sipp_call_scenario
from tests.test_sip import serve
from tests.voices import espeak, silence

pytestmark = [pytest.mark.models, pytest.mark.sip]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_health_and_call_logs_after_a_real_call(tmp_path):
    sip_port, http_port = free_port(), free_port()
    yaml = f"sip:\n  host: {LOCAL}\n  port: {sip_port}\n  rtp_port: 0\n"
    yaml += f"http:\n  host: {LOCAL}\n  port: {http_port}\n"
    proc, events = serve(tmp_path, yaml)
    base = f"http://{LOCAL}:{http_port}"
    try:
        assert events[-1]["http"] == f"{LOCAL}:{http_port}"
        status, body = get(f"{base}/healthz")
        assert status == 200 and json.loads(body) == {"status": "alive"}
        status, body = get(f"{base}/readyz")
        ready = json.loads(body)
        assert status == 200 and ready["ready"] is True and ready["models_loaded"] is True
        assert ready["sip"] == [f"udp:{LOCAL}:{sip_port}", f"tcp:{LOCAL}:{sip_port}"]
        assert asyncio.run(sip_ping(LOCAL, sip_port)), "OPTIONS must get 200 (proxies health-check with it)"

        call = run_sipp(
            tmp_path, sipp_call_scenario("PCMU", [("pcap", "g711a.pcap"), ("pause", 2000)]), sip_port
        )
        assert call.successful == 1, call.output[-2000:]
        missing = run_sipp(tmp_path / "b", sipp_call_scenario("PCMU", expect=404), sip_port, service="nobody")
        assert missing.successful == 1

        status, body = get(f"{base}/metrics")
        assert status == 200
        m = samples(body.decode())  # the prometheus-client parser accepts the exposition
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    sip = (("transport", "sip"),)
    assert m[("voice_agent_calls_total", (("result", "answered"), ("transport", "sip")))] == 1
    assert m[("voice_agent_calls_total", (("result", "rejected_not_found"), ("transport", "sip")))] == 1
    assert m[("voice_agent_calls_active", sip)] == 0
    assert m[("voice_agent_call_duration_seconds_count", sip)] == 1
    assert 2 < m[("voice_agent_call_duration_seconds_sum", sip)] < 30
    assert m[("voice_agent_frame_jitter_seconds_count", (("direction", "send"),))] == 1
    assert m[("voice_agent_ready", ())] == 1
    # pjsua's own RTP statistics, read as the stream closed: about 2 s of call, 50 packets/s.
    assert m[("voice_agent_rtp_packets_total", (("direction", "received"),))] > 50
    assert m[("voice_agent_rtp_packets_total", (("direction", "sent"),))] > 50
    assert m[("voice_agent_rtp_jitter_seconds_count", ())] == 1
    assert m[("voice_agent_rtp_packets_lost_total", ())] == 0
    assert ("voice_agent_turn_interval_seconds_count", (("interval", "voice_to_voice"),)) in m

    # Every log line of the answered call carries its call_id, from answer to hang-up.
    lines = [json.loads(x) for x in rest.splitlines() if x.startswith("{")]
    answered = next(x for x in lines if x["event"] == "call answered" and x["to"] == "echo")
    call_id = answered["call_id"]
    events_of_call = [x for x in lines if x.get("call_id") == call_id]
    assert {"call answered", "call started", "media", "call ended"} <= {x["event"] for x in events_of_call}
    # No call line may lack a call_id, and there were exactly two calls: ours and the 404.
    call_lines = [x for x in lines if x["event"] in {"call answered", "call started", "media", "call ended",
                                                       "call state", "call rejected"}]  # fmt: skip
    assert all("call_id" in x for x in call_lines), [x for x in call_lines if "call_id" not in x]
    rejected = next(x["call_id"] for x in call_lines if x["event"] == "call rejected" and x["code"] == 404)
    assert {x["call_id"] for x in call_lines} == {call_id, rejected}


def test_a_conversation_fills_the_turn_histograms_and_its_log_lines_carry_call_id_and_turn(tmp_path):
    plans = tmp_path / "dialplans"
    plans.mkdir()
    (plans / "agent.yaml").write_text(
        "default: true\ngreeting: Hello, how can I help?\n"
        "system_prompt: You are the receptionist of a bike shop, open 9 AM to 6 PM.\n"
    )
    sip_port, http_port = free_port(), free_port()
    yaml = f"sip:\n  host: {LOCAL}\n  port: {sip_port}\n  rtp_port: 0\n"
    yaml += f"http:\n  host: {LOCAL}\n  port: {http_port}\ndialplans:\n  dir: {plans}\n"
    proc, _ = serve(tmp_path, yaml)
    try:
        mic = tmp_path / "mic.wav"
        caller = np.concatenate([silence(3.5), espeak("When do you open tomorrow?"), silence(7.0)])
        write_wav(mic, caller, 16000)
        baresip_call(tmp_path, f"sip:agent@{LOCAL}:{sip_port}", mic, "G722", seconds=14)
        status, body = get(f"http://{LOCAL}:{http_port}/metrics")
        m = samples(body.decode())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    assert status == 200
    for interval in ("end_of_turn", "stt", "llm_first_token", "tts_first_chunk", "voice_to_voice"):
        assert m[("voice_agent_turn_interval_seconds_count", (("interval", interval),))] >= 1, interval
    assert m[("voice_agent_calls_total", (("result", "answered"), ("transport", "sip")))] == 1
    lines = [json.loads(x) for x in rest.splitlines() if x.startswith("{")]
    start = next(i for i, x in enumerate(lines) if x["event"] == "call started")
    end = next(i for i, x in enumerate(lines) if x["event"] == "session ended")
    of_call = lines[start : end + 1]
    assert len({x.get("call_id") for x in of_call}) == 1, "every line of the call carries its call_id"
    heard = next(x for x in of_call if x["event"] == "heard")
    record = next(x for x in of_call if x["event"] == "turn record")
    assert heard.get("turn") == record.get("turn") == 0, (heard, record)
    assert "open" in record["user_text"].lower() and record["reply_text"]
