"""Run inside `unshare -n` (a private network namespace with only loopback): send the 49
RFC 4475 torture messages to a live endpoint, then prove it still answers and places calls.

Their Via hosts are not loopback, so any reply the endpoint sends goes nowhere: the namespace
has no other interface. Prints a JSON summary; exits non-zero if the endpoint did not survive.
"""

from __future__ import annotations

import asyncio
import csv
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.observe import setup_logging  # noqa: E402
from agent.sipconfig import SipConfig  # noqa: E402
from agent.telephony.sipping import sip_ping  # noqa: E402
from tests.peers import AgentThread, run_sipp, sipp_call_scenario, wait_until  # noqa: E402


def main(torture_dir: Path) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    setup_logging("error", "json")
    with (torture_dir / "MANIFEST.tsv").open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    port = 5060
    cfg = SipConfig(host="127.0.0.1", port=port, rtp_port=0, log_level=0)
    sent = []
    with AgentThread(cfg) as agent:
        for row in rows:
            data = (torture_dir / row["file"]).read_bytes()
            tcp = row["top_via_transport"].upper() == "TCP"
            try:
                if tcp:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                        s.sendall(data)
                        time.sleep(0.05)
                else:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                        s.sendto(data, ("127.0.0.1", port))
            except OSError as exc:
                sent.append({"file": row["file"], "error": str(exc)})
                continue
            sent.append({"file": row["file"], "transport": "tcp" if tcp else "udp"})
            time.sleep(0.02)
        time.sleep(1.0)
        alive = asyncio.run(sip_ping("127.0.0.1", port, 2.0))
        work = Path(tempfile.mkdtemp(prefix="torture-"))
        call = run_sipp(work, sipp_call_scenario("PCMU", [("pcap", "g711a.pcap"), ("pause", 1000)]), port)
        wait_until(lambda: agent.limiter.active == 0)
        active = agent.limiter.active
    summary = {"messages": len(sent), "answers_options": alive, "call_after": call.successful,
               "leaked_call_slots": active, "sent": sent}  # fmt: skip
    print(json.dumps(summary))
    return 0 if alive and call.successful == 1 else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
