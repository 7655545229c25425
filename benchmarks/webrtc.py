"""Voice-to-voice latency of WebRTC calls, measured like the SIP one (benchmarks/turns.py).

    .venv/bin/python benchmarks/webrtc.py [--out FILE]

`voice-agent serve` (default dialplan, SIP off) on 127.0.0.1; an aiortc caller (Opus 48 kHz,
as a browser sends) plays the same 12 recorded questions, 6 per call, 7 s apart, and records
what it hears with arrival times.

- Caller side: end of each question as sent → arrival of the first agent audio after it.
- Agent side: each turn's own timing record (the `turn record` log lines).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.turns import GAP_S, QUESTIONS, load, pct  # noqa: E402
from tests.peers import free_port, serve_agent  # noqa: E402
from tests.webrtc_client import webrtc_call  # noqa: E402

LEAD_S = 6.0  # the greeting plays first


async def one_call(url: str, clips: list[np.ndarray]) -> list[float]:
    parts, ends, t = [np.zeros(int(LEAD_S * 16000), np.int16)], [], LEAD_S
    for clip in clips:
        t += len(clip) / 16000
        ends.append(t)
        parts += [clip, np.zeros(int(GAP_S * 16000), np.int16)]
        t += GAP_S
    call = await webrtc_call(url, np.concatenate(parts), t + 2)
    assert call.status == 200 and call.mic_start is not None, call.error
    v2v = []
    for end in ends:
        at = call.mic_start + end
        first = next((arr - 0.02 for arr, pcm in call.heard if arr > at and np.abs(pcm).max() > 1000), None)
        if first is not None and first - at < GAP_S:
            v2v.append(first - at)
    return v2v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/webrtc.json")
    args = ap.parse_args()
    clips = [load(q) for q in QUESTIONS]
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        agent = serve_agent(
            f"sip:\n  enabled: false\nhttp:\n  port: {port}\ndialplans:\n  dir: {ROOT / 'dialplans'}\n",
            Path(d),
        )
        try:
            caller = []
            for i in range(0, len(clips), 6):
                caller += asyncio.run(one_call(f"http://127.0.0.1:{port}", clips[i : i + 6]))
            time.sleep(1)
        finally:
            agent.stop()
    turns = [e for e in agent.logged("turn record") if e.get("user_text")]
    agent_side: dict[str, list[float]] = {}
    for t in turns:
        for k in ("voice_to_voice_s", "voice_to_answer_s", "end_of_turn_s", "stt_s", "llm_first_token_s"):
            if t.get(k) is not None:
                agent_side.setdefault(k, []).append(t[k])
    result: dict[str, Any] = {
        "transport": "webrtc (aiortc caller, Opus 48 kHz)",
        "turns": len(turns),
        "voice_to_voice_caller_side_s": pct(caller),
        "agent_side_s": {k: pct(v) for k, v in agent_side.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
