"""The RFC 4475 torture messages against a live endpoint, inside a private network namespace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED
from tests.peers import netns_available

pytestmark = pytest.mark.sip


def test_endpoint_survives_the_rfc4475_torture_messages():
    torture = SHARED / "sip-torture"
    if not (torture / "MANIFEST.tsv").exists():
        pytest.skip(f"{torture} not found")
    if not netns_available():
        pytest.skip("cannot create a network namespace here (unshare -n needs CAP_SYS_ADMIN)")
    script = Path(__file__).with_name("netns_torture.py")
    proc = subprocess.run(["unshare", "-n", sys.executable, str(script), str(torture)],
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"messages"')]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads(lines[-1])
    assert summary["messages"] == 49
    assert not [s for s in summary["sent"] if "error" in s]
    assert summary["answers_options"] is True
    assert summary["call_after"] == 1
    assert summary["leaked_call_slots"] == 0, "torture INVITEs must not keep call slots"
