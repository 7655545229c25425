"""SIP media bridge cost: CPU per echo call and the agent-side frame timing jitter.

    .venv/bin/python benchmarks/sip_media.py [--seconds 10] [--out FILE]

1 and 4 calls: one in-process endpoint (pjsua's limit is 4 per process), CPU of this process.
6 calls: `voice-agent serve` with max_calls 8 (two workers behind Kamailio), CPU of the whole
process tree. SIPp on 127.0.0.1 plays a G.711 speech pcap in each call; the agent echoes.
Idle CPU over the same time is measured first and subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.observe import setup_logging  # noqa: E402
from agent.sipconfig import SipConfig, SipLimitsConfig  # noqa: E402
from agent.telephony.call import CallLeg  # noqa: E402
from agent.telephony.echo import echo_handler  # noqa: E402
from tests.peers import LOCAL, AgentThread, free_port, run_sipp, sipp_call_scenario  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def scenario(seconds: int) -> str:
    return sipp_call_scenario("PCMU", [("pcap", "g711a.pcap"), ("pause", seconds * 1000)])


def in_process(calls: int, seconds: int, work: Path) -> dict[str, Any]:
    clocks: list[dict[str, float]] = []
    echo = echo_handler(0.5)

    async def handler(leg: CallLeg) -> None:
        await echo(leg)
        b = leg.bridge  # type: ignore[attr-defined]
        clocks.append({
            "send_mean_ms": b.send_clock.mean_s * 1e3, "send_std_ms": b.send_clock.std_s * 1e3,
            "send_max_ms": b.send_clock.max_s * 1e3, "recv_mean_ms": b.receive_clock.mean_s * 1e3,
            "recv_std_ms": b.receive_clock.std_s * 1e3, "recv_max_ms": b.receive_clock.max_s * 1e3,
            "inbound_dropped": b.inbound_dropped,
        })  # fmt: skip

    cfg = SipConfig(
        host=LOCAL, port=free_port(), transports=["udp"], rtp_port=0, max_calls=4,
        limits=SipLimitsConfig(trusted=["127.0.0.1/32"]),  # all calls come from one SIPp
    )  # fmt: skip
    with AgentThread(cfg, handler=handler) as agent:
        idle0 = time.process_time()
        time.sleep(seconds)
        idle = time.process_time() - idle0
        t0, c0 = time.monotonic(), time.process_time()
        result = run_sipp(work, scenario(seconds), agent.cfg.port, calls=calls, concurrency=calls, rate=50)
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
        time.sleep(0.5)
    busy = cpu - idle * wall / seconds
    return {
        "calls": calls,
        "successful": result.successful,
        "cpu_percent_of_one_core_total": round(100 * busy / wall, 2),
        "cpu_percent_of_one_core_per_call": round(100 * busy / wall / calls, 2),
        "frame_clock": _summary(clocks),
    }


def _tree_cpu(pid: int) -> float:
    """utime+stime (s) of a process and all its descendants."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    return total


def cluster(calls: int, seconds: int, work: Path) -> dict[str, Any]:
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "c.yaml"
    cfg.write_text(
        f"sip:\n  host: {LOCAL}\n  port: {port}\n  rtp_port: 0\n  max_calls: 8\n"
        "  limits: {trusted: [127.0.0.1/32]}\n"  # all calls come from one SIPp
        "log:\n  level: warning\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "serve", "--config", str(cfg), "--log-format", "json"],
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        from agent.telephony.sipping import sip_ping

        deadline = time.monotonic() + 300
        while not asyncio.run(sip_ping(LOCAL, port, 0.5)) and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(2)
        c0 = _tree_cpu(proc.pid)
        time.sleep(seconds)
        idle = _tree_cpu(proc.pid) - c0
        t0, c0 = time.monotonic(), _tree_cpu(proc.pid)
        result = run_sipp(work, scenario(seconds), port, calls=calls, concurrency=calls, rate=50)
        wall, cpu = time.monotonic() - t0, _tree_cpu(proc.pid) - c0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    busy = cpu - idle * wall / seconds
    return {
        "calls": calls,
        "successful": result.successful,
        "processes": "2 workers + kamailio",
        "cpu_percent_of_one_core_total": round(100 * busy / wall, 2),
        "cpu_percent_of_one_core_per_call": round(100 * busy / wall / calls, 2),
    }


def _summary(clocks: list[dict[str, float]]) -> dict[str, float]:
    if not clocks:
        return {}
    return {
        k: round(
            max(c[k] for c in clocks)
            if "max" in k or "dropped" in k
            else sum(c[k] for c in clocks) / len(clocks),
            3,
        )
        for k in clocks[0]
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/sip_media.json")
    args = ap.parse_args()
    setup_logging("warning", "console")
    work = Path(tempfile.mkdtemp(prefix="sip-media-"))
    report = {
        "one_call": in_process(1, args.seconds, work / "1"),
        "four_calls_one_process": in_process(4, args.seconds, work / "4"),
        "six_calls_cluster": cluster(6, args.seconds, work / "6"),
    }
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
