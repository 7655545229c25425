"""The soak in short (benchmarks/soak.py runs 1,000 calls): 40 calls, 4 at a time, against one
real `voice-agent serve` (real models, callsim over SIP); nothing crashes, fails or leaks."""

from __future__ import annotations

import asyncio

from benchmarks.soak import soak


def test_forty_calls_four_at_a_time_leave_nothing_behind(tmp_path):
    result = asyncio.run(soak(40, 20, tmp_path))
    first, last = result["batches"][0], result["batches"][-1]
    print({k: v for k, v in result.items() if k != "batches"})
    assert not result["crashed"] and result["calls_placed"] == 40, result
    assert result["failed_calls"] == 0, result
    # Between batches no call is up: every slot and every pjsua2 Call object was given back.
    assert result["leaked_call_slots"] == 0 and result["leaked_pjsua_calls"] == 0, result
    assert last["fds"] <= first["fds"] + 4 and last["threads"] <= first["threads"] + 2, result
    assert result["content_misses"] <= 4, result  # the answer's words, heard by tiny.en
