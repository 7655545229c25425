"""The command line as a user runs it: check, serve + Ctrl-C, and clear errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.wer import wer

BIN = Path(sys.executable).parent / "voice-agent"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, env=ENV, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.mark.models
def test_check_json_round_trip():
    proc = run("check", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for kind in ("vad", "stt", "llm", "tts"):
        assert report[kind]["loaded"] is True
        assert report[kind]["load_s"] > 0
    assert report["tts"]["first_chunk_s"] > 0 and report["tts"]["sample_rate"] == 22050
    assert report["vad"]["speech_frames"] > 20
    assert wer("Hello, I would like to book a table for two people tonight.", report["stt"]["text"]) < 0.3
    assert report["llm"]["first_token_s"] > 0 and report["llm"]["reply"]
    assert report["peak_rss_mb"] > 100
    assert "loading llm" in proc.stderr, "a progress display while models load"


@pytest.mark.models
def test_check_table_and_a_broken_model(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"llm:\n  model: {bad}\n")
    proc = run("check", "--config", str(cfg))
    assert proc.returncode == 1
    assert "broken.gguf" in proc.stdout  # the table names the file
    assert "NO" in proc.stdout


def test_config_error_exits_2_with_file_and_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stt:\n  modle: base\n")
    proc = run("check", "--config", str(cfg))
    assert proc.returncode == 2
    assert f"{cfg}:2: stt.modle" in proc.stderr


def test_unknown_model_name_is_explained(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("llm:\n  model: gpt-9\nhttp:\n  port: 0\n")
    proc = run("serve", "--config", str(cfg), timeout=120)
    assert proc.returncode == 2
    assert "gpt-9" in proc.stderr and "qwen2.5-coder-0.5b" in proc.stderr


@pytest.mark.models
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_starts_and_stops_cleanly(sig):
    from tests.peers import free_port

    sip = f"127.0.0.1:{free_port()}"  # tests bind loopback only
    proc = subprocess.Popen(
        [str(BIN), "serve", "--sip", sip, "--http", "127.0.0.1:0", "--log-format", "json"],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        events = []
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            events.append(json.loads(line))
            if events[-1]["event"] == "ready":
                break
        assert events and events[-1]["event"] == "ready", events
        loaded = next(e for e in events if e["event"] == "engines loaded")
        assert loaded["llm"] == "qwen2.5-coder-0.5b" and loaded["stt"] == "whisper-tiny.en"
        assert events[-1]["sip"] == [f"udp:{sip}", f"tcp:{sip}"]
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        proc.kill()
    tail = proc.stderr.read() if proc.stderr and not proc.stderr.closed else ""
    assert "stopped" in (rest or "") + tail + json.dumps(events)


def test_models_list():
    proc = run("models", "--list")
    assert proc.returncode == 0
    assert "qwen2.5-coder-0.5b" in proc.stdout and "installed" in proc.stdout
