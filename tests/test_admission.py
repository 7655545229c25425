"""New-call admission: token buckets per source and overall, on a made-up clock."""

from __future__ import annotations

from agent.telephony.admission import Admission, TokenBucket, source_host


def test_a_bucket_gives_its_burst_then_refills_at_its_rate():
    b = TokenBucket(rate=2.0, burst=3)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert 0.4 < b.wait_s() <= 0.5
    assert not b.take(0.25) and b.take(0.5)  # one token after 0.5 s at 2/s
    assert not b.take(0.5)


def test_one_flooding_source_is_limited_while_another_still_gets_in():
    adm = Admission(calls_per_s=100, burst=100, per_source_calls_per_s=1, per_source_burst=2)
    verdicts = [adm.check("127.0.0.2:5060", 0.01 * i) for i in range(10)]
    assert [v is None for v in verdicts[:2]] == [True, True]
    rejected = [v for v in verdicts[2:] if v is not None]
    assert len(rejected) == 8 and all(v.code == 503 and v.retry_after_s >= 1 for v in rejected)
    assert adm.check("127.0.0.1:5070", 0.2) is None


def test_the_global_rate_bounds_many_sources_and_trusted_sources_skip_the_per_source_limit():
    adm = Admission(
        calls_per_s=1, burst=3, per_source_calls_per_s=1, per_source_burst=1, trusted=["10.0.0.0/8"]
    )
    got = [adm.check(f"192.0.2.{i}:5060", 0.0) for i in range(5)]
    assert sum(v is None for v in got) == 3  # the global burst
    assert got[3] is not None and got[3].reason == "Too many new calls"
    adm = Admission(
        calls_per_s=100, burst=100, per_source_calls_per_s=1, per_source_burst=1, trusted=["10.0.0.0/8"]
    )
    assert all(adm.check("10.1.2.3:5060", 0.0) is None for _ in range(10))


def test_sources_are_bounded_in_memory():
    adm = Admission(100, 100, 1, 1, max_sources=10)
    for i in range(50):
        adm.check(f"198.51.100.{i}:5060", 0.0)
    assert len(adm._sources) == 10


def test_source_host_takes_the_port_off_v4_and_v6():
    assert source_host("127.0.0.2:5060") == "127.0.0.2"
    assert source_host("[::1]:5060") == "::1"
    assert source_host("::1") == "::1"
    assert source_host("127.0.0.2") == "127.0.0.2"


def test_outsiders_and_scanners_are_forbidden_before_any_rate_is_spent():
    adm = Admission(100, 100, 100, 100, allow=["127.0.0.3/32"], scanners=["friendly-scanner"])
    assert adm.check("127.0.0.2:5060", 0.0).code == 403  # type: ignore[union-attr]
    assert adm.check("127.0.0.3:5060", 0.0, "Friendly-Scanner 1.0").code == 403  # type: ignore[union-attr]
    assert adm.check("127.0.0.3:5060", 0.0, "baresip v3") is None


def test_a_source_may_have_only_so_many_calls_up_at_once_unless_trusted():
    adm = Admission(100, 100, 100, 100, calls_per_source=2, trusted=["10.0.0.0/8"])
    for _ in range(2):
        assert adm.check("127.0.0.2:5060", 0.0) is None
        adm.call_started("127.0.0.2:5060")
    busy = adm.check("127.0.0.2:5070", 0.0)
    assert busy is not None and busy.code == 486
    assert adm.check("127.0.0.3:5060", 0.0) is None  # another caller
    adm.call_ended("127.0.0.2:5060")
    assert adm.check("127.0.0.2:5060", 0.0) is None
    for _ in range(5):
        adm.call_started("10.1.1.1:5060")
    assert adm.check("10.1.1.1:5060", 0.0) is None
