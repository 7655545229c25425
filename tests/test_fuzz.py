"""Property-based fuzzing (hypothesis) of what the agent reads from outside: each reader either
takes the input or refuses it with its own, clear error, and never fails any other way.

Bounded for CI (a few seconds each; `FUZZ_EXAMPLES` raises the count for a longer local run).
Inputs: the config and dialplan loaders (YAML text, mutated real files), SIP messages and
SIP INFO key bodies, SDP offers (WebRTC signaling, callsim's SDP answer reader), the STT upload
decoder (random and mutated audio files), the outgoing-call JSON body, and JWTs.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.api import jwt
from agent.api.outbound import RequestRejected, parse_request
from agent.audio.decode import AudioError, decode_audio, encode_audio
from agent.config import Config
from agent.dialog.dialplan import Dialplan
from agent.dialog.dialplans import load_dialplan
from agent.signaling import _parse as parse_offer
from agent.telephony.siptext import SipParseError, info_key, parse
from agent.yamlconf import ConfigError, load_model
from callsim.sdp import SdpError, answer_media

ROOT = Path(__file__).resolve().parent.parent
N = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FAST = settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mutate(data: bytes, rng: random.Random, edits: int) -> bytes:
    """Flip, drop, repeat and insert bytes: a damaged copy of a real input."""
    b = bytearray(data)
    for _ in range(edits):
        if not b:
            break
        i = rng.randrange(len(b))
        match rng.randrange(4):
            case 0:
                b[i] = rng.randrange(256)
            case 1:
                del b[i : i + rng.randrange(1, 16)]
            case 2:
                b[i:i] = b[i : i + rng.randrange(1, 16)]
            case _:
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    return bytes(b)


REAL_YAML = [
    p.read_bytes()
    for p in [*(ROOT / "dialplans").glob("*.yaml"), *(ROOT / "dialplans/examples").glob("*.yaml")]
]


@FAST
@given(seed=st.integers(0, 2**32), edits=st.integers(1, 12), which=st.integers(0, len(REAL_YAML) - 1))
def test_damaged_dialplans_load_or_fail_with_a_config_error(tmp_path_factory, seed, edits, which):
    path = tmp_path_factory.mktemp("fuzz") / "plan.yaml"
    path.write_bytes(mutate(REAL_YAML[which], random.Random(seed), edits))
    try:
        assert isinstance(load_dialplan(path), Dialplan)
    except ConfigError as exc:
        assert "plan.yaml" in str(exc)


YAMLISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=12,
)


@FAST
@given(data=st.dictionaries(st.sampled_from([*Config.model_fields, "x"]), YAMLISH, max_size=5))
def test_any_config_structure_loads_or_fails_with_a_config_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(json.dumps(data, default=str))  # JSON is YAML
    try:
        load_model(Config, path)
    except ConfigError as exc:
        assert "c.yaml" in str(exc)


SIP = (
    b"INFO sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
    b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>;tag=2\r\nCall-ID: x\r\nCSeq: 2 INFO\r\n"
    b"Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=5\r\nDuration=160\r\n"
)


@FAST
@given(seed=st.integers(0, 2**32), edits=st.integers(0, 20))
def test_sip_messages_parse_or_fail_with_a_parse_error(seed, edits):
    try:
        message = parse(mutate(SIP, random.Random(seed), edits))
    except SipParseError:
        return
    key = info_key(message)
    assert key is None or (len(key) == 1 and key in "0123456789*#ABCD"), key


@FAST
@given(data=st.binary(max_size=600))
def test_random_bytes_are_not_sip(data):
    with contextlib.suppress(SipParseError):
        parse(data)


OFFER = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio 4000 RTP/AVP 0 8 9 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n")  # fmt: skip


@FAST
@given(seed=st.integers(0, 2**32), edits=st.integers(0, 20))
def test_sdp_answers_are_read_or_refused(seed, edits):
    sdp = mutate(OFFER.encode(), random.Random(seed), edits).decode("utf-8", errors="replace")
    try:
        media = answer_media(sdp, ["PCMU", "PCMA", "G722"])
    except SdpError:
        return
    assert 0 < media.port < 65536


@FAST
@given(body=st.one_of(st.binary(max_size=300), YAMLISH.map(lambda d: json.dumps(d, default=str).encode())))
def test_webrtc_offer_bodies_are_taken_or_refused_with_a_reason(body):
    try:
        sdp, user, _ = parse_offer(body, "web")
    except ValueError as exc:
        assert str(exc)
        return
    assert sdp.startswith("v=0") and user


@FAST
@given(body=YAMLISH)
def test_outgoing_call_bodies_are_taken_or_refused_with_a_reason(body):
    try:
        req = parse_request(body)
    except RequestRejected as exc:
        assert str(exc)
        return
    assert req.to.startswith(("sip:", "sips:", "tel:")) and req.dialplan


@FAST
@given(
    token=st.text(max_size=200)
    | st.from_regex(r"[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,80}\.[A-Za-z0-9_-]{0,50}")
)
def test_forged_tokens_are_never_valid(token):
    assert jwt.decode(token, b"s" * 32, 0.0) is None


SPEECH = (np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220) * 8000).astype(np.int16)
FILES = {fmt: encode_audio(SPEECH, 16000, fmt) for fmt in ("wav", "flac", "mp3", "ogg", "webm")}


@settings(max_examples=max(N // 3, 20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), edits=st.integers(0, 30), fmt=st.sampled_from(sorted(FILES)))
def test_damaged_audio_uploads_decode_or_fail_with_an_audio_error(seed, edits, fmt):
    data = mutate(FILES[fmt], random.Random(seed), edits)
    try:
        pcm = decode_audio(data, max_seconds=30)
    except AudioError as exc:
        assert str(exc)
        return
    assert pcm.dtype == np.int16 and len(pcm) > 0


@FAST
@given(data=st.binary(max_size=2000))
def test_random_bytes_are_not_audio(data):
    with contextlib.suppress(AudioError):
        decode_audio(data, max_seconds=30)


# --- what the fuzzing found, kept as plain tests --------------------------------------------
def test_a_dialplan_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("match: [x]\ngreeting: 'Grüß Gott'\n".encode("latin-1"))
    try:
        load_dialplan(path)
    except ConfigError as exc:
        assert "not UTF-8" in str(exc) and "latin1.yaml" in str(exc)
    else:
        raise AssertionError("a non-UTF-8 dialplan loaded")


def test_an_sdp_with_a_broken_media_line_is_an_sdp_error():
    for line in ("m=audio 4\x0000 RTP/AVP 0", "m=", "m=audio", "m=audio 99999 RTP/AVP 0"):
        try:
            answer_media(OFFER.replace("m=audio 4000 RTP/AVP 0 8 9 101", line), ["PCMU"])
        except SdpError:
            continue
        raise AssertionError(f"taken: {line!r}")
