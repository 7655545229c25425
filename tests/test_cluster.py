"""Cluster pieces without processes: call split and the generated Kamailio config (checked by kamailio -c)."""

import subprocess

import pytest

from agent.cluster import split_calls
from agent.sipconfig import SipConfig
from agent.telephony.kamailio import render_config


@pytest.mark.parametrize(
    ("total", "per", "expected"),
    [(4, 4, [4]), (5, 4, [3, 2]), (8, 4, [4, 4]), (9, 4, [3, 3, 3]), (2, 1, [1, 1])],
)
def test_calls_are_split_evenly_over_as_few_workers_as_possible(total, per, expected):
    assert split_calls(total, per) == expected


def test_generated_config_is_accepted_by_kamailio(tmp_path):
    cfg = SipConfig(host="127.0.0.1", port=5999, max_calls=8, public_address="198.51.100.7")
    path = render_config(cfg, [6001, 6002], tmp_path)
    assert (tmp_path / "dispatcher.list").read_text() == "1 sip:127.0.0.1:6001\n1 sip:127.0.0.1:6002\n"
    text = path.read_text()
    assert "listen=udp:127.0.0.1:5999 advertise 198.51.100.7:5999" in text
    check = subprocess.run(["kamailio", "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-2000:]
