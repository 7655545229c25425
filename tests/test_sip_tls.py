"""SIP over TLS and SRTP, through real peers on loopback: baresip dials our endpoint over TLS
with SRTP required, and hears its own speech from the echo target; a caller without SRTP is
refused when the agent requires it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.audio.resample import resample
from agent.audio.wav import write_wav
from agent.sipconfig import SipConfig, SipTlsConfig
from tests.conftest import load_16k
from tests.peers import LOCAL, AgentThread, baresip_call, certificate, echo_windows, free_port

pytestmark = pytest.mark.skipif(not shutil.which("baresip"), reason="baresip is not installed")


@pytest.fixture
def secure_agent(tmp_path):
    cert, key = certificate(tmp_path)
    tls = SipTlsConfig(port=free_port(), cert=cert, key=key)
    cfg = SipConfig(host=LOCAL, port=free_port(), rtp_port=0, tls=tls, srtp="mandatory")
    with AgentThread(cfg) as agent:
        yield agent, cert


def mic(tmp_path: Path, speech_dir: Path) -> Path:
    speech = load_16k(speech_dir / "utterances/cathy/arctic_a0024_1592747999.wav")
    pad = np.zeros(16000, dtype=np.int16)
    path = tmp_path / "mic.wav"
    write_wav(path, resample(np.concatenate([pad, speech, pad, pad]), 16000, 8000), 8000)
    return path


def test_a_caller_over_tls_with_srtp_hears_its_own_speech_back(secure_agent, tmp_path, speech_dir):
    agent, cert = secure_agent
    assert agent.cfg.tls is not None
    call = baresip_call(
        tmp_path,
        f"sip:echo@{LOCAL}:{agent.cfg.tls.port};transport=tls",
        mic(tmp_path, speech_dir),
        "PCMU",
        account_extra=";mediaenc=srtp-mand",
        config_extra=f"module srtp.so\nsip_cafile {cert}\n",
    )
    assert agent.recorder.infos and agent.recorder.infos[0].to_user == "echo", call.log[-3000:]
    windows = echo_windows(call.heard, call.sent, 8000)
    assert len(windows) >= 5, call.log[-3000:]
    # The echo is the caller's speech: SRTP was decrypted and encrypted again on the way.
    assert max(c for _, c in windows) > 0.98 and np.median([c for _, c in windows]) > 0.8, windows
    assert agent.recorder.loud_frames_in > 50
    assert "SRTP is Enabled" in call.log and "Call established" in call.log, call.log[-3000:]


def test_a_caller_without_srtp_is_refused_when_it_is_required(secure_agent, tmp_path, speech_dir):
    agent, _ = secure_agent
    with pytest.raises(AssertionError, match="recorded nothing") as failed:
        baresip_call(
            tmp_path, f"sip:echo@{LOCAL}:{agent.cfg.port}", mic(tmp_path, speech_dir), "PCMU", seconds=6
        )
    assert "488" in str(failed.value) or "Not Acceptable" in str(failed.value), str(failed.value)[-3000:]
    assert agent.recorder.loud_frames_in == 0
