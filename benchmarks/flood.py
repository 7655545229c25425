"""A legitimate call during an INVITE flood, against the real agent behind its Kamailio edge.

    .venv/bin/python benchmarks/flood.py [--rate 500] [--seconds 30] [--out FILE]

`voice-agent serve` (real models, the default dialplan without acknowledgements, `sip.edge:
true`) on 127.0.0.1. First a quiet call: callsim asks one question from 127.0.0.3. Then SIPp
floods INVITEs from 127.0.0.2 at `--rate` for `--seconds` (bounded in count and time), and 5 s
in, the same callsim call is placed from 127.0.0.3 again. Reported: the legitimate call's setup
time and voice-to-answer (caller side; with no acknowledgement, the first agent speech after the
question is the answer) quiet vs. flood, whether it passed, the agent's CPU (supervisor, worker
and Kamailio together) over the flood, and how many flood INVITEs reached the worker.
Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers import LOCAL, free_port, run_sipp  # noqa: E402
from tests.test_sip import serve  # noqa: E402

SCENARIO = ROOT / "callsim/scenarios/question.yaml"
TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of `root` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    return sum(cpu.get(p, 0.0) for p in tree)


def legit_call(target: str, out: Path) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, "-m", "callsim.cli", "run", str(SCENARIO), "--target", target, "--out", str(out),
         "--local", "127.0.0.3"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    r = json.loads((out / "result.json").read_text())
    return {
        "passed": r["passed"],
        "setup_ms": r.get("setup_ms"),
        "voice_to_answer_ms": r["turns"][0].get("voice_to_voice_ms") if r["turns"] else None,
        "answer": r["turns"][0].get("transcript", "") if r["turns"] else "",
        "error": r.get("error", ""),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=int, default=500)
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/flood.json")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flood-"))
    plans = work / "dialplans"
    plans.mkdir()
    acks = 'acknowledgements: ["Okay.", "Alright.", "Let me see."]'
    default = (ROOT / "dialplans/default.yaml").read_text()
    assert acks in default, "the default dialplan's acknowledgements changed: update this benchmark"
    (plans / "default.yaml").write_text(default.replace(acks, "acknowledgements: []"))
    port = free_port()
    proc, _ = serve(work, f"sip: {{host: {LOCAL}, port: {port}, rtp_port: 0, edge: true}}\n"
                          f"dialplans: {{dir: {plans}}}\n", cluster=True)  # fmt: skip
    target = f"sip:agent@{LOCAL}:{port}"
    report: dict[str, Any] = {"rate_per_s": args.rate, "seconds": args.seconds}
    try:
        report["quiet"] = legit_call(target, work / "quiet")
        calls = args.rate * args.seconds
        cpu0, t0 = tree_cpu_s(proc.pid), time.monotonic()
        flood = run_sipp(
            work / "flood", "uac", port, service="agent", calls=calls, concurrency=calls, rate=args.rate,
            timeout=args.seconds + 10, background=True, from_ip="127.0.0.2",
        )  # fmt: skip
        assert isinstance(flood, subprocess.Popen)
        time.sleep(5)
        report["during_flood"] = legit_call(target, work / "flood-call")
        flood.communicate(timeout=args.seconds + 60)
        report["agent_cpu_share_during_flood"] = round(
            (tree_cpu_s(proc.pid) - cpu0) / (time.monotonic() - t0), 3
        )
        report["agent_alive_after"] = proc.poll() is None
        report["after_flood"] = legit_call(target, work / "after")
    finally:
        proc.send_signal(15)
        _, log = proc.communicate(timeout=60)
    seen = [
        x for x in log.splitlines() if ('"call answered"' in x or '"call rejected' in x) and "127.0.0.2" in x
    ]
    report["flood_invites_reaching_the_worker"] = len(seen)
    report["flood_invites_sent"] = args.rate * args.seconds
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
