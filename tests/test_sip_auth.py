"""Digest authentication of inbound INVITEs at the Kamailio edge, with baresip and SIPp."""

from __future__ import annotations

import hashlib
import signal

import numpy as np
import pytest

from agent.audio.wav import write_wav
from tests.conftest import load_16k
from tests.peers import LOCAL, baresip_call, free_port, run_sipp, sipp_call_scenario
from tests.test_sip import serve

pytestmark = [pytest.mark.sip, pytest.mark.models]


def test_only_a_caller_with_the_right_password_gets_through(tmp_path, speech_dir):
    ha1 = hashlib.md5(b"alice:voice-agent:s3cret").hexdigest()
    port = free_port(span=2)  # the edge's and its worker's
    yaml = f"sip:\n  host: {LOCAL}\n  port: {port}\n  rtp_port: 0\n  edge: true\n"
    yaml += f"  access:\n    auth: {{realm: voice-agent, users: {{alice: {ha1}}}}}\n"
    proc, _ = serve(tmp_path, yaml, cluster=True)
    speech = load_16k(speech_dir / "utterances/cathy/arctic_a0024_1592747999.wav")
    mic = tmp_path / "mic.wav"
    pad = np.zeros(8000, np.int16)
    write_wav(mic, np.concatenate([pad, speech, pad])[::2].copy(), 8000)  # 8 kHz is enough here
    target = f"sip:echo@{LOCAL}:{port}"
    try:
        # Without credentials: a challenge, whoever the caller claims to be.
        challenged = run_sipp(tmp_path / "none", sipp_call_scenario("PCMU", expect=407), port, service="echo")
        assert challenged.successful == 1, challenged.output[-2000:]
        call = baresip_call(
            tmp_path / "alice", target, mic, "PCMU", seconds=8, user="alice", password="s3cret"
        )
        assert np.abs(call.heard).max() > 3000, "the authenticated call is answered: the echo comes back"
        for user, password in (("alice", "wrong"), ("mallory", "s3cret")):
            with pytest.raises(AssertionError, match="recorded nothing"):
                baresip_call(tmp_path / user, target, mic, "PCMU", seconds=5, user=user, password=password)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    answered = [x for x in rest.splitlines() if '"call answered"' in x]
    assert len(answered) == 1 and "alice" in answered[0], answered
