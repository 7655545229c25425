"""The speech endpoints' cost, and what they cost live calls: `voice-agent serve` with the real
models, SIP and HTTP on loopback.

    .venv/bin/python benchmarks/speech_api.py [--out benchmarks/results/speech_api.json]

1. alone: /v1/stt latency (a 7.1 s recording, one at a time) and throughput (4 at a time),
   /v1/tts latency to the whole answer and to its first sentence;
2. the same while 2 callsim calls ask questions;
3. those 2 calls' voice-to-answer (caller side, acknowledgements off) without and with a
   burst of uploads running the whole time (4 at a time, 30 s of audio each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.api.keys import hash_key  # noqa: E402
from agent.audio.decode import decode_audio  # noqa: E402
from tests.peers import LOCAL, free_port  # noqa: E402
from tests.test_records_real import http_port  # noqa: E402
from tests.test_sip import serve  # noqa: E402
from tests.test_speech_api import encode  # noqa: E402

KEY = "va_speech-benchmark-key-0123456789"
RECORDING = (
    ROOT.parent
    / "shared/speech/utterances/pocketsphinx/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
)
TEXT = "Your bicycle is ready for pickup. We are open until six tonight, and on Saturday until four."
SCENARIO = """name: questions
timing: {quiet_s: 1.5, linger_s: 0.5}
turns:
  - say: "What time do you open on Saturday?"
  - say: "How much is a tune-up?"
  - say: "Do you sell used bikes?"
"""


def post(port: int, path: str, body: bytes, ctype: str) -> tuple[float, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": ctype}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST", headers=headers)
    t = time.monotonic()
    with urllib.request.urlopen(req, timeout=300) as r:
        data = r.read()
        return time.monotonic() - t, dict(r.headers), data


def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


def speech_round(port: int, wav: bytes) -> dict[str, Any]:
    stt = [post(port, "/v1/stt", wav, "audio/wav")[0] for _ in range(6)]
    t = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: post(port, "/v1/stt", wav, "audio/wav"), range(8)))
    wall = time.monotonic() - t
    tts = [
        post(port, "/v1/tts", json.dumps({"text": TEXT}).encode(), "application/json")[1] for _ in range(6)
    ]
    return {
        "stt_latency_s": {"p50": pct(stt, 50), "p95": pct(stt, 95)},
        "stt_throughput_audio_s_per_s": round(8 * 7.1 / wall, 2),
        "tts_latency_s": {"p50": pct([float(h["X-Latency"]) for h in tts], 50)},
        "tts_first_audio_s": {"p50": pct([float(h["X-First-Audio"]) for h in tts], 50)},
        "tts_audio_s": float(tts[0]["X-Duration"]),
    }


def calls(target: str, work: Path, n: int = 2) -> list[float]:
    """`n` concurrent callsim calls; the voice-to-answer of every turn, in ms."""
    sc = work / "questions.yaml"
    sc.write_text(SCENARIO)
    procs = []
    for i in range(n):
        out = work / f"call-{time.monotonic_ns()}-{i}"
        procs.append((out, subprocess.Popen(
            [sys.executable, "-m", "callsim.cli", "run", str(sc), "--target", target, "--out", str(out),
             "--local", f"127.0.0.{3 + i}"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL)))  # fmt: skip
    times: list[float] = []
    for out, proc in procs:
        proc.wait(timeout=300)
        result = json.loads((out / "result.json").read_text())
        times += [t["voice_to_voice_ms"] for t in result["turns"] if t.get("voice_to_voice_ms")]
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/speech_api.json")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="speech-api-"))
    plans = work / "dialplans"
    plans.mkdir()
    default = (ROOT / "dialplans/default.yaml").read_text()
    acks = 'acknowledgements: ["Okay.", "Alright.", "Let me see."]'
    (plans / "default.yaml").write_text(default.replace(acks, "acknowledgements: []"))
    sip = free_port()
    cfg = (f"sip: {{host: {LOCAL}, port: {sip}, rtp_port: 0}}\ndialplans: {{dir: {plans}}}\n"
           f"api:\n  keys:\n    - {{name: bench, sha256: {hash_key(KEY)}, scopes: [speech]}}\n")  # fmt: skip
    proc, events = serve(work, cfg)
    port, target = http_port(events), f"sip:agent@{LOCAL}:{sip}"
    pcm = decode_audio(RECORDING.read_bytes())
    wav, long_wav = encode(pcm, "wav"), encode(np.tile(pcm, 5)[: 30 * 16000], "wav")
    report: dict[str, Any] = {}
    try:
        report["alone"] = speech_round(port, wav)
        with ThreadPoolExecutor(1) as pool:
            live = pool.submit(calls, target, work)
            time.sleep(8)  # both calls are up and talking
            report["with_2_live_calls"] = speech_round(port, wav)
            live.result()
        quiet = calls(target, work)
        stop = threading.Event()
        uploads = [0]

        def burst() -> None:
            while not stop.is_set():
                post(port, "/v1/stt", long_wav, "audio/wav")
                uploads[0] += 1

        threads = [threading.Thread(target=burst, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        loaded = calls(target, work)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        report["live_voice_to_answer_ms"] = {
            "quiet": {"p50": pct(quiet, 50), "p95": pct(quiet, 95), "turns": len(quiet)},
            "upload_burst": {"p50": pct(loaded, 50), "p95": pct(loaded, 95), "turns": len(loaded),
                             "uploads_of_30_s": uploads[0]},
        }  # fmt: skip
    finally:
        proc.send_signal(15)
        proc.communicate(timeout=60)
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
