"""Soak: many short calls against one `voice-agent serve`, 4 at a time; does anything leak?

    .venv/bin/python benchmarks/soak.py [--calls 1000] [--batch 100] [--out FILE]

Each call (callsim over SIP, from 127.0.0.1): the greeting, one question, the answer, hang-up.
The calls run in batches of `--batch`; between batches, when no call is up, the agent process
is sampled: RSS, open file descriptors, threads, call slots in use and pjsua2 Call objects
held (`/readyz`). Reported: crashes, failed calls (a SIP or media error; an answer that misses
its words counts apart), leaks (slots or Call objects left after a batch; descriptors and
threads growing), RSS growth from the first batch to the last, and voice-to-answer p50/p95
per batch (acknowledgements off: callsim's voice-to-voice is the answer's).

Bounded: each batch has callsim's own time limit. JSON: benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callsim.runner import Meters, run_load  # noqa: E402
from callsim.scenario import Scenario  # noqa: E402
from tests.peers import ServedAgent, free_port, serve_agent  # noqa: E402

SCENARIO = {
    "name": "soak",
    "turns": [
        {"say": "What time do you open on Saturday?", "expect": {"any_of": ["open", "saturday", "ten", "10"]}}
    ],
    "timing": {"max_duration_s": 45, "quiet_s": 1.5},
}


def start_agent(work: Path) -> tuple[ServedAgent, int, int]:
    plans = work / "dialplans"
    plans.mkdir()
    plan = yaml.safe_load((ROOT / "dialplans/default.yaml").read_text())
    plan["acknowledgements"] = []  # the first words after the question are the answer
    (plans / "default.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    sip, http = free_port(), free_port()
    config = (
        f"sip:\n  host: 127.0.0.1\n  port: {sip}\n  rtp_port: 0\n"
        "  limits: {trusted: [127.0.0.0/8]}\n"  # every caller is 127.0.0.1: no per-source cap
        f"http:\n  port: {http}\ndialplans:\n  dir: {plans}\n"
    )
    return serve_agent(config, work, timeout_s=300), sip, http


def sample(pid: int, http_port: int) -> dict[str, Any]:
    """The agent process now: memory, descriptors, threads, and what /readyz says."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5) as r:
            ready = json.loads(r.read())
    except urllib.error.HTTPError as exc:  # 503 still carries the details
        ready = json.loads(exc.read())
    return {
        "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
        "calls_active": ready.get("calls_active"),
        "sip_calls_held": ready.get("sip_calls_held"),
        "ready": ready.get("ready"),
    }


async def soak(calls: int, batch: int, work: Path) -> dict[str, Any]:
    meters = Meters.load()
    sc = Scenario.model_validate(SCENARIO)
    agent, sip_port, http_port = start_agent(work)
    proc = agent.proc
    batches: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for k in range(-(-calls // batch)):
            n = min(batch, calls - k * batch)
            summary = await run_load(
                sc, f"sip:agent@127.0.0.1:{sip_port}", work / f"batch-{k:02d}", meters, calls=n, concurrency=4
            )
            await asyncio.sleep(3)  # hang-ups and the last records settle
            if proc.poll() is not None:
                batches.append({"batch": k, "calls": n, "crashed": True})
                break
            v2a = summary["latency"]["voice_to_voice_ms"]
            row = {
                "batch": k,
                "calls": n,
                "errors": len(summary["errors"]),
                "content_misses": summary["failed"] - len(summary["errors"]),
                "voice_to_answer_ms": {"p50": v2a.get("p50"), "p95": v2a.get("p95")},
                **sample(proc.pid, http_port),
                "elapsed_s": round(time.monotonic() - started),
            }
            batches.append(row)
            print(json.dumps(row), flush=True)
    finally:
        crashed = proc.poll() is not None
        try:
            agent.stop()
        except subprocess.TimeoutExpired:
            proc.kill()
    return report(batches, crashed, calls)


def report(batches: list[dict[str, Any]], crashed: bool, calls: int) -> dict[str, Any]:
    done = [b for b in batches if not b.get("crashed")]
    first, last = (done[0], done[-1]) if done else ({}, {})
    growth = round(100 * (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"], 1) if len(done) > 1 else None
    p50_first, p50_last = (
        first.get("voice_to_answer_ms", {}).get("p50"),
        last.get("voice_to_answer_ms", {}).get("p50"),
    )
    return {
        "calls": calls,
        "calls_placed": sum(b["calls"] for b in batches),
        "crashed": crashed or any(b.get("crashed") for b in batches),
        "failed_calls": sum(b.get("errors", 0) for b in done),
        "content_misses": sum(b.get("content_misses", 0) for b in done),
        "leaked_call_slots": max((b["calls_active"] or 0 for b in done), default=None),
        "leaked_pjsua_calls": max((b["sip_calls_held"] or 0 for b in done), default=None),
        "rss_mb_first_batch": first.get("rss_mb"),
        "rss_mb_last_batch": last.get("rss_mb"),
        "rss_growth_pct": growth,
        "fds_first_last": [first.get("fds"), last.get("fds")],
        "threads_first_last": [first.get("threads"), last.get("threads")],
        "voice_to_answer_p50_first_last_ms": [p50_first, p50_last],
        "batches": batches,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/soak.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        result = asyncio.run(soak(args.calls, args.batch, Path(tmp)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "batches"}, indent=1))


if __name__ == "__main__":
    main()
