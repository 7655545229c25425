"""Per-dialplan access: numbers reached only from named trunks (by address), and anonymous
callers refused where a dialplan says so; through real SIPp calls to one agent and to a cluster."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import yaml as pyyaml

from agent.dialog.dialplan import AccessParams
from agent.dialog.dialplans import load_dialplans
from agent.sipconfig import SipConfig
from agent.telephony.siptext import read, withheld
from agent.telephony.trunks import Trunks
from agent.yamlconf import ConfigError
from tests.peers import LOCAL, SippResult, free_port, run_sipp, sipp_call_scenario
from tests.test_sip import serve

OUTSIDER, CARRIER = "127.0.0.2", "127.0.0.3"
TRUNKS = {"carrier": {"allow": [f"{CARRIER}/32", "10.9.0.0/16"]}, "pbx": {"allow": ["192.0.2.7"]}}


def test_a_trunk_is_known_by_its_addresses():
    trunks = Trunks(SipConfig.model_validate({"trunks": TRUNKS}).trunks)
    assert trunks.of(f"{CARRIER}:5060") == {"carrier"}
    assert trunks.of("10.9.3.4") == {"carrier"} and trunks.of("192.0.2.7:5080") == {"pbx"}
    assert trunks.of(f"{OUTSIDER}:5060") == set() and trunks.of("[::1]:5060") == set()


def test_a_dialplan_refuses_callers_outside_its_trunks_and_anonymous_ones_if_told():
    open_to_all = AccessParams()
    assert open_to_all.refusal(set(), anonymous=True) is None
    trunk_only = AccessParams(trunks=["carrier"])
    assert trunk_only.refusal({"carrier"}, anonymous=True) is None
    assert trunk_only.refusal({"pbx"}, anonymous=False) == (
        403,
        "this number takes calls from its trunks only",
    )
    named = AccessParams(anonymous=False)
    assert named.refusal(set(), anonymous=True) == (433, "anonymous callers are not answered")
    assert named.refusal(set(), anonymous=False) is None


def test_withheld_identity_is_an_anonymous_from_or_a_privacy_header():
    def invite(*headers: str) -> str:
        lines = [
            "INVITE sip:x@h SIP/2.0",
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "Call-ID: 1",
            "CSeq: 1 INVITE",
        ]
        return "\r\n".join([*lines, *headers]) + "\r\n\r\n"

    assert not withheld(read(invite("From: <sip:alice@example.com>;tag=1")))
    assert withheld(read(invite('From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=1')))
    assert withheld(read(invite("From: <sip:Anonymous@example.com>;tag=1")))
    assert withheld(read(invite("From: <sip:alice@example.com>;tag=1", "Privacy: id")))
    assert withheld(read(invite("From: <sip:alice@example.com>;tag=1", "Privacy: header; user")))
    assert not withheld(read(invite("From: <sip:alice@example.com>;tag=1", "Privacy: none")))
    assert not withheld(read("not SIP at all"))


def plans(folder: Path, trunks: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, access in (("trunkline", {"trunks": trunks}), ("private", {"anonymous": False})):
        plan = {"kind": "echo", "match": [name], "access": access}
        (folder / f"{name}.yaml").write_text(pyyaml.safe_dump(plan))
    return folder


def test_a_dialplan_naming_a_trunk_the_config_lacks_is_a_load_error(tmp_path):
    folder = plans(tmp_path / "plans", ["carrier", "nosuch"])
    with pytest.raises(ConfigError, match=r"trunkline.yaml: access.trunks: 'nosuch' is not in"):
        load_dialplans(folder, ["carrier"])
    assert load_dialplans(folder, ["carrier", "nosuch"]).trunk_only


def call(tmp: Path, port: int, user: str, source: str, expect: int, anonymous: bool = False) -> SippResult:
    scenario = sipp_call_scenario("PCMU", [("pause", 300)], expect=expect)
    if anonymous:
        scenario = scenario.replace("Max-Forwards: 70\n", "Max-Forwards: 70\nPrivacy: id\n", 1)
    work = tmp / f"{user}-{source}-{expect}"
    result = run_sipp(work, scenario, port, service=user, from_ip=source, timeout=30)
    assert isinstance(result, SippResult)
    return result


def config(tmp: Path, port: int, extra: str = "") -> str:
    trunks = "    carrier: {allow: [" + f"{CARRIER}/32" + "]}\n"
    folder = plans(tmp / "dialplans", ["carrier"])
    return f"sip:\n  host: {LOCAL}\n  port: {port}\n{extra}  trunks:\n{trunks}dialplans:\n  dir: {folder}\n"


@pytest.mark.models
def test_trunk_only_and_no_anonymous_numbers_over_real_sip(tmp_path):
    port = free_port()
    proc, _ = serve(tmp_path, config(tmp_path, port))
    try:
        cases = [
            ("trunkline", OUTSIDER, 403, False),  # not from the carrier
            ("nobody", OUTSIDER, 403, False),  # the same answer: which numbers exist stays hidden
            ("trunkline", CARRIER, 200, False),
            ("nobody", CARRIER, 404, False),  # the carrier may learn a number is unknown
            ("private", OUTSIDER, 433, True),  # Privacy: id
            ("private", OUTSIDER, 200, False),
        ]
        for user, source, expect, anonymous in cases:
            result = call(tmp_path, port, user, source, expect, anonymous)
            assert result.successful == 1, (user, source, expect, result.output[-2000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


@pytest.mark.models
def test_behind_the_kamailio_front_workers_see_the_callers_address(tmp_path):
    """A cluster worker gets every INVITE from the front: the front's header carries the caller."""
    port = free_port(span=3)
    proc, _ = serve(tmp_path, config(tmp_path, port, "  rtp_port: 0\n  max_calls: 8\n"), cluster=True)
    try:
        assert call(tmp_path, port, "trunkline", OUTSIDER, 403).successful == 1
        assert call(tmp_path, port, "trunkline", CARRIER, 200).successful == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
