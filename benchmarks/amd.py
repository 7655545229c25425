"""Answering-machine detection on synthetic callees (benchmarks/amd_callees.py): accuracy and
decision time, with the real VAD and STT, in real time, over a G.711 line.

    .venv/bin/python benchmarks/amd.py [--out benchmarks/results/amd.json] [--only NAME]

For each callee: the verdict (human / machine / unknown, unknown counting as human: the agent
goes on as with a person), why, and when (seconds after the answer); for machines with a beep,
when the agent would start its voicemail message relative to the beep's end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.audio.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from agent.audio.resample import resample  # noqa: E402
from agent.config import Config  # noqa: E402
from agent.dialog.amd import AmdParams, Detector  # noqa: E402
from agent.dialog.services import Services  # noqa: E402
from agent.engines.factory import load_stt, load_vad  # noqa: E402
from agent.engines.fakes import FakeLLM, FakeTTS  # noqa: E402
from benchmarks.amd_callees import RATE, Callee, callees  # noqa: E402
from tests.fakeleg import FakeLeg  # noqa: E402


def phone_line(pcm: np.ndarray) -> np.ndarray:
    """Through G.711 µ-law at 8 kHz and back, as a PCMU call would carry it."""
    narrow = resample(pcm, RATE, 8000)
    return resample(ulaw_decode(ulaw_encode(narrow)), 8000, RATE)


def services() -> Services:
    cfg = Config()
    return Services(load_vad(cfg), load_stt(cfg), FakeLLM(), {"joe": FakeTTS()}, "joe", llm_timeout_s=5)


async def run_callee(callee: Callee, svc: Services, params: AmdParams) -> dict[str, Any]:
    audio = phone_line(callee.audio())
    leg = FakeLeg(audio, tail_s=0.0)
    detector = Detector(leg, svc, params)  # type: ignore[arg-type]
    decision = await detector.classify()
    as_human = decision.verdict in ("human", "unknown")
    row: dict[str, Any] = {
        "callee": callee.name, "kind": callee.kind, "verdict": decision.verdict,
        "reason": decision.reason, "decided_s": round(decision.at_s, 2),
        "correct": as_human == (callee.kind == "human"),
    }  # fmt: skip
    beep = [p for p in callee.parts if p[0] == "beep"]
    if decision.verdict == "machine":
        over = await detector.greeting_over()
        row["message_starts_s"] = round(detector._t, 2) if over else None
        if beep:
            row["beep_heard_s"] = round(detector.beep_at, 2) if detector.beep_at else None
    leg.ended.set()
    return row


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    svc = services()
    params = AmdParams()
    rows = []
    for callee in callees():
        if args.only and callee.name != args.only:
            continue
        started = time.monotonic()
        row = await run_callee(callee, svc, params)
        row["wall_s"] = round(time.monotonic() - started, 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    svc.close()
    decided = np.array([r["decided_s"] for r in rows])
    machines = [r for r in rows if r["kind"] == "machine"]
    humans = [r for r in rows if r["kind"] == "human"]
    return {
        "benchmark": "amd",
        "callees": len(rows),
        "accuracy": round(sum(r["correct"] for r in rows) / len(rows), 3),
        "machines_caught": f"{sum(r['correct'] for r in machines)}/{len(machines)}",
        "humans_kept": f"{sum(r['correct'] for r in humans)}/{len(humans)}",
        "decision_s": {"p50": round(float(np.percentile(decided, 50)), 2),
                       "p95": round(float(np.percentile(decided, 95)), 2),
                       "max": round(float(decided.max()), 2)},
        "params": params.model_dump(),
        "rows": rows,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/amd.json")
    ap.add_argument("--only", help="one callee by name")
    args = ap.parse_args()
    result = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
