"""callsim's parts without a call: SIP/SDP text, scenarios, measurements, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.telephony import siptext
from callsim import sdp
from callsim.analysis import _turn_metrics, check, speech_segments
from callsim.call import TurnLog
from callsim.report import format_summary, render_html, summarize
from callsim.scenario import ConfigError, load_scenario
from callsim.voice import speech_bounds, trim

INVITE = (
    "INVITE sip:agent@127.0.0.1:5060 SIP/2.0\r\n"
    "v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
    "f: <sip:c@127.0.0.1>;tag=abc\r\nt: <sip:agent@127.0.0.1>\r\ni: x1\r\nCSeq: 1 INVITE\r\n"
    "Subject: folded\r\n  line\r\nl: 4\r\n\r\nv=0\n"
)


def test_sip_messages_parse_compact_and_folded_headers_and_answer_with_our_tag():
    msg = siptext.parse(INVITE.encode())
    assert msg.is_request and msg.method == "INVITE" and msg.cseq == (1, "INVITE")
    assert msg.get("call-id") == "x1" and msg.get("subject") == "folded line" and msg.body == "v=0\n"
    resp = siptext.parse(siptext.response(msg, 200, "OK", "mytag").encode())
    assert (
        resp.status == 200 and siptext.tag_of(resp.get("to")) == "mytag" and resp.get("via") == msg.get("via")
    )
    assert siptext.uri_of('"A" <sip:a@h:5>;tag=1') == "sip:a@h:5"


@pytest.mark.parametrize(
    "junk",
    [
        b"hello",
        b"\xff\xfe",
        b"INVITE x SIP/2.0\r\nno colon here\r\n\r\n",
        b"SIP/2.0 2x0 OK\r\nCSeq: 1 INVITE\r\n\r\n",
    ],
)
def test_unreadable_sip_is_a_parse_error(junk):
    with pytest.raises(siptext.SipParseError):
        siptext.parse(junk)


def test_sdp_answer_picks_our_codec_and_telephone_event():
    offer = sdp.offer("127.0.0.1", 4000, ["G722", "PCMU"])
    assert "m=audio 4000 RTP/AVP 9 0 101" in offer
    m = sdp.answer_media(offer, ["PCMU"])
    assert (m.host, m.port, m.codec, m.payload_type, m.dtmf_pt) == ("127.0.0.1", 4000, "PCMU", 0, 101)
    with pytest.raises(sdp.SdpError, match="no codec in common"):
        sdp.answer_media(offer, ["PCMA"])
    with pytest.raises(sdp.SdpError, match="no active audio"):
        sdp.answer_media("v=0\r\nc=IN IP4 1.2.3.4\r\n", ["PCMU"])


def test_scenario_errors_name_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nturns:\n  - say: hi\n    dtmf: '12'\n  - say: x\n    expect:\n      says: '(['\n"
        "line:\n  codec: OPUS\n"
    )
    with pytest.raises(ConfigError) as err:
        load_scenario(bad)
    text = str(err.value)
    assert "bad.yaml:3: turns.0: Value error, a turn needs exactly one of" in text
    assert "bad.yaml:7: turns.1.expect.says" in text and "not a valid regular expression" in text
    assert "bad.yaml:9: line.codec" in text
    missing = tmp_path / "missing.yaml"
    missing.write_text("name: m\nturns:\n  - wav: [nowhere.wav]\n")
    with pytest.raises(ConfigError, match=r"turns\.0\.wav: no such file"):
        load_scenario(missing)


def test_every_shipped_scenario_loads(monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)  # the digits scenario finds ../shared from the project folder
    names = {load_scenario(p).name for p in (root / "callsim/scenarios").glob("*.yaml")}
    assert {"question", "two_questions", "barge_in", "silent_caller", "ask_for_human", "digits"} <= names


@pytest.mark.parametrize("voice", ["en-us", "festival:kal_diphone", "festival:cmu_us_slt_arctic_hts"])
def test_callers_speak_in_espeak_and_festival_voices(voice):
    from callsim.voice import synthesize

    pcm = synthesize("Do you take Meridian Care?", 8000, voice)
    assert 0.8 < len(pcm) / 8000 < 3.0 and np.abs(pcm).max() > 3000


def test_an_unknown_festival_voice_is_a_clear_error():
    from callsim.voice import VoiceError, synthesize

    with pytest.raises(VoiceError, match="festival"):
        synthesize("hello", 8000, "festival:no_such_voice")


def test_trim_keeps_exactly_the_sound():
    x = np.zeros(8000, np.int16)
    x[1000:3000] = 5000
    assert speech_bounds(x, 8000) == (1000, 3000) and len(trim(x, 8000)) == 2000


def test_speech_segments_find_speech_edges_within_a_few_ms(silero):
    from tests.voices import espeak, silence

    speech = espeak("Hello, this is a test of the segments.")
    pcm = np.concatenate([silence(1.0), speech, silence(1.0)])
    start, end = speech_bounds(pcm, 16000)
    (seg,) = speech_segments(pcm, silero)
    assert abs(seg[0] - start / 16000) <= 0.02 and abs(seg[1] - end / 16000) <= 0.03, (seg, start, end)


def _turn(kind="say", start=1.0, end=2.0, wait="agent_done"):
    return TurnLog(0, kind, "hi", wait, start, end)


def test_turn_metrics_reply_barge_in_and_talk_over():
    m = _turn_metrics(_turn(), [(0.0, 0.5), (2.8, 4.0)], 9.0)
    assert m["voice_to_voice_ms"] == 800.0 and m["agent_stopped"] is None and m["talk_over_ms"] == 0.0
    m = _turn_metrics(_turn(start=3.0, end=4.0), [(2.0, 3.25), (5.0, 6.0)], 9.0)
    assert m["agent_stopped"] and m["barge_in_stop_ms"] == 250.0 and m["talk_over_ms"] == 250.0
    assert m["voice_to_voice_ms"] == 1000.0
    m = _turn_metrics(_turn(start=3.0, end=4.0), [(2.0, 8.0)], 9.0)
    assert m["agent_stopped"] is False and m["barge_in_stop_ms"] is None and m["voice_to_voice_ms"] is None
    assert _turn_metrics(_turn("dtmf"), [(2.5, 3.0)], 9.0)["voice_to_voice_ms"] is None


def _result(**kw):
    base = {
        "error": "",
        "setup_ms": 5.0,
        "greeting": {"first_audio_ms": 300.0, "transcript": "Hello there"},
        "ended_by": "agent",
        "transfers": [],
        "passed": True,
        "scenario": "s",
        "target": "sip:a@h",
        "codec": "PCMU",
        "duration_s": 10.0,
        "agent_segments": [[0.3, 1.0]],
        "checks": [],
        "envelope": {"step_s": 0.02, "caller": [0.1] * 500, "agent": [0.2] * 500},
        "turns": [
            {
                "index": 0,
                "kind": "say",
                "text": "hi",
                "wait": "agent_done",
                "start_s": 2.0,
                "end_s": 3.0,
                "voice_to_voice_ms": 900.0,
                "barge_in_stop_ms": None,
                "agent_stopped": None,
                "talk_over_ms": 0.0,
                "transcript": "We open at ten on Saturday.",
                "skipped": "",
            }
        ],
    }
    base.update(kw)
    return base


def test_checks_report_what_was_heard(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nturns:\n  - say: hi\n    expect:\n      says: 'ten|10'\n"
        "      keywords: [saturday, sunday]\n"
        "      none_of: [closed, 'ten on']\n"
        "      max_latency_ms: 500\nexpect:\n  transfer: true\n  agent_hangs_up: true\n"
        "  greeting:\n    any_of: [hello]\n"
    )
    checks = {c["check"]: c for c in check(_result(), load_scenario(path))}
    assert checks["turn 1: says /ten|10/"]["passed"]
    assert not checks["turn 1: says all of ['saturday', 'sunday']"]["passed"]
    assert "missing ['sunday']" in checks["turn 1: says all of ['saturday', 'sunday']"]["detail"]
    assert not checks["turn 1: says none of ['closed', 'ten on']"]["passed"]
    assert "said ['ten on']" in checks["turn 1: says none of ['closed', 'ten on']"]["detail"]
    assert not checks["turn 1: voice-to-voice ≤ 500 ms"]["passed"]
    assert not checks["transfer requested"]["passed"] and checks["agent hangs up"]["passed"]
    assert checks["greeting: says one of ['hello']"]["passed"]


def test_summary_counts_failures_and_errors_and_gives_percentiles():
    results = [_result(call=i) for i in range(9)]
    results.append(
        _result(
            call=9,
            error="INVITE rejected: 486 Busy Here",
            passed=False,
            turns=[],
            checks=[{"check": "call completed", "passed": False, "detail": "486"}],
        )
    )
    s = summarize(results)
    assert (s["calls"], s["passed"], s["failed"]) == (10, 9, 1)
    assert s["errors"] == [{"call": 9, "scenario": "s", "error": "INVITE rejected: 486 Busy Here"}]
    assert s["failed_checks"] == {"call completed": 1}
    assert s["latency"]["voice_to_voice_ms"] == {
        "n": 9,
        "p50": 900.0,
        "p95": 900.0,
        "p99": 900.0,
        "min": 900.0,
        "max": 900.0,
        "mean": 900.0,
    }
    assert "ERROR call 9 (s): INVITE rejected: 486 Busy Here" in format_summary(s)
    html = render_html("t", s, results)
    assert html.count("<svg class=timeline") == 10 and "900 ms" in html
    json.dumps(s)  # summary.json must serialise


def test_line_impairments_drop_and_delay_packets_as_asked():
    """RTP over loopback: 20 % loss and 40 ms of jitter, seeded; plus the line's noise level."""
    import asyncio

    from callsim.codecs import make_codec
    from callsim.media import Track, Transmitter
    from callsim.rtp import RtpEndpoint

    async def go():
        got: list[int] = []
        rx = RtpEndpoint(make_codec("PCMU"), 0, lambda pcm, ts, at: got.append(ts))
        tx = RtpEndpoint(make_codec("PCMU"), 0, lambda *a: None, loss_pct=20, jitter_ms=40, seed=7)
        port = await rx.bind("127.0.0.1")
        await tx.bind("127.0.0.1")
        tx.connect("127.0.0.1", port)
        for _ in range(200):
            tx.send_audio(np.zeros(160, np.int16))
        await asyncio.sleep(0.2)
        track = Track(8000, 1.0)
        sender = Transmitter(tx, track, noise_rms=100.0, seed=1)
        for _ in range(25):
            sender._send_one()
            sender.tick += 1
        rx.close()
        tx.close()
        return got, tx.stats, track

    got, stats, track = asyncio.run(go())
    assert 200 * 0.1 < stats.dropped < 200 * 0.3 and len(got) >= 200 - stats.dropped
    assert got[: 200 - stats.dropped] != sorted(got[: 200 - stats.dropped]), (
        "jitter must reorder some packets"
    )
    rms = float(np.sqrt(np.mean(track.pcm[: 25 * 160].astype(np.float64) ** 2)))
    assert 80 < rms < 125, rms  # the caller track records the line noise at its level


def test_one_uri_reader_for_users_and_request_lines():
    assert siptext.uri_user('"Echo" <sip:echo@127.0.0.1:5060>;tag=1') == "echo"
    assert siptext.uri_user("sips:+4930123@pbx.example;user=phone") == "+4930123"
    assert siptext.uri_user("tel:+4930123") == "+4930123"
    assert siptext.uri_user("<sip:127.0.0.1>") == "" and siptext.uri_user("garbage") == ""
    invite = "INVITE sip:sales@10.0.0.1 SIP/2.0\r\nVia: x\r\n\r\n"
    assert siptext.request_uri(invite) == "sip:sales@10.0.0.1"
    assert siptext.request_uri(invite, "OPTIONS") == "" and siptext.request_uri("SIP/2.0 200 OK\r\n") == ""
    opts = siptext.parse(
        siptext.request("OPTIONS", "sip:h:5", [("Via", "v"), ("CSeq", "1 OPTIONS")]).encode()
    )
    assert opts.method == "OPTIONS" and opts.get("content-length") == "0"
