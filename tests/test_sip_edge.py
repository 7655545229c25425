"""The Kamailio edge (`sip.edge`) against the open internet, through real peers on loopback:
an INVITE flood from one address, a legitimate call from another placed during it, an outsider
outside the allow-list, and SIPVicious' svmap / svwar scanning."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.peers import LOCAL, free_port, run_sipp, sipp_call_scenario
from tests.test_sip import serve

pytestmark = [pytest.mark.sip, pytest.mark.models]


def test_the_edge_stops_a_flood_scanners_and_outsiders_while_a_real_call_gets_through(tmp_path):
    port = free_port(span=2)  # the edge's and its worker's
    yaml = (
        f"sip:\n  host: {LOCAL}\n  port: {port}\n  rtp_port: 0\n  edge: true\n"
        "  access:\n    allow: [127.0.0.2/32, 127.0.0.3/32]\n"
    )
    proc, events = serve(tmp_path, yaml, cluster=True)
    try:
        assert events[-1].get("front") == "kamailio", events[-3:]
        # 500 INVITEs a second from 127.0.0.2 for 6 s (bounded: 3000 calls, SIPp gives up after 12 s)
        flood = run_sipp(tmp_path / "flood", "uac", port, service="echo", calls=3000, concurrency=3000,
                         rate=500, timeout=12, background=True, from_ip="127.0.0.2")  # fmt: skip
        assert isinstance(flood, subprocess.Popen)
        time.sleep(2.0)
        # (SIPp's built-in scenarios ignore Record-Route: their BYE never reaches a worker behind a
        # proxy, so the flood's answered calls stay up: the per-source call limit is what holds.)
        call = sipp_call_scenario("PCMU", [("pcap", "g711a.pcap")])
        legit = run_sipp(tmp_path / "legit", call, port, service="echo", from_ip="127.0.0.3", timeout=30)
        flood.communicate(timeout=60)
        assert not isinstance(legit, subprocess.Popen)
        assert legit.successful == 1 and legit.failed == 0, legit.output[-3000:]
        assert proc.poll() is None, "front and worker survive the flood"

        outsider = run_sipp(tmp_path / "outsider", sipp_call_scenario("PCMU", expect=403), port,
                            service="echo", from_ip="127.0.0.4")  # fmt: skip
        assert not isinstance(outsider, subprocess.Popen) and outsider.successful == 1, "403 outside the list"

        for cmd in (
            ["svmap", LOCAL, "-p", str(port)],
            ["svwar", "-e100-105", "-m", "INVITE", "-p", str(port), LOCAL],
        ):
            scan = subprocess.run([*cmd, "-b", "127.0.0.3"], capture_output=True, text=True, timeout=90,
                                  stdin=subprocess.DEVNULL)  # fmt: skip
            assert "found nothing" in scan.stdout + scan.stderr, (
                cmd,
                scan.stdout[-1500:],
                scan.stderr[-1500:],
            )
        # Still serving; and a key by SIP INFO application/dtmf, which pjsua cannot answer, is
        # turned into dtmf-relay by the edge: 200.
        keys = sipp_call_scenario(
            "PCMU", [("pause", 300), ("info-dtmf", "7"), ("info-relay", "8")], dtmf_info_answer=200
        )
        after = run_sipp(tmp_path / "after", keys, port, service="echo", from_ip="127.0.0.3", timeout=30)
        assert not isinstance(after, subprocess.Popen) and after.successful == 1, after.output[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest[-2000:]
    # The flood stopped at the edge: of 3000 INVITEs, the worker saw a handful.
    answered = [x for x in rest.splitlines() if '"call answered"' in x or '"call rejected' in x]
    from_flood = [x for x in answered if "127.0.0.2" in x]
    assert 0 < len(from_flood) <= 12, len(from_flood)
