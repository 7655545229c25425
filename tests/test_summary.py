"""The post-call step: background LLM work that gives way to live calls, the summary and the
collected fields (typed, checked), and call.ended carrying them."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from agent.dialog.dialplan import CollectField, Dialplan
from agent.dialog.services import Services
from agent.engines.base import CancelToken, Preempted
from agent.engines.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from agent.engines.worker import BACKGROUND, EngineWorker
from agent.records.db import Database
from agent.records.store import CallStore, Turn
from agent.records.summary import Summarizer, check, left_message, parse_fields, transcript_text

FIELDS = {
    "name": CollectField(description="the caller's name"),
    "callback_number": CollectField(type="phone", pattern=r"\d{7,15}"),
    "day": CollectField(type="day"),
    "party_size": CollectField(type="number"),
    "vip": CollectField(type="yes_no"),
}


def test_fields_are_parsed_from_lines_and_checked_by_type():
    answer = (
        "name: Maria Lopez\n- callback_number: 555 0199 12\nday: next Tuesday, please\n"
        "party_size: four\n`vip`: None\n"
    )
    got = parse_fields(
        answer,
        FIELDS,
        caller_words="It's Maria, call me on five five five zero one nine nine one two, next Tuesday",
    )
    assert got == {
        "name": "Maria Lopez",
        "callback_number": "555019912",
        "day": "tuesday",
        "party_size": None,
        "vip": None,
    }


def test_a_garbled_number_is_taken_from_the_callers_words_and_a_pattern_rejects_the_rest():
    words = "my number is four one seven nine two three three"
    assert check("the caller gave a number", FIELDS["callback_number"], words) == "4179233"
    # what the caller never said is not kept, however plausible (the 0.5B's "555-1234")
    assert check("555-1234", FIELDS["callback_number"], "what time do you open on saturday") is None
    assert check("friday", FIELDS["day"], "can I come on saturday") is None
    assert check("4", FIELDS["party_size"], "a table for four people") is None  # words: not checked as digits
    assert check("6", FIELDS["party_size"], "a table for 6") == 6
    assert check("none", FIELDS["callback_number"], "no number here") is None
    assert check("12", CollectField(type="digits", pattern=r"\d{4}"), "") is None
    assert check("Yes, please", CollectField(type="yes_no")) is True
    assert (
        check("write to ann@example.org", CollectField(type="email"), "ann@example.org") == "ann@example.org"
    )


def test_transcript_text_marks_interruptions_and_keeps_the_end_of_long_calls():
    record = {"turns": [Turn(0, 1.0, "Hi", "Hello there", True, "", {}).__dict__]}
    assert (
        transcript_text(record, "Welcome.") == "Agent: Welcome.\nCaller: Hi\nAgent: Hello there (interrupted)"
    )
    long = {"turns": [Turn(i, 1.0, "x" * 100, "y" * 100, False, "", {}).__dict__ for i in range(40)]}
    assert len(transcript_text(long)) == 3000


def test_background_work_waits_for_and_gives_way_to_foreground_work():
    async def main() -> list[str]:
        worker = EngineWorker("t")
        order: list[str] = []

        def job(name: str, seconds: float = 0.05) -> str:
            time.sleep(seconds)
            order.append(name)
            return name

        # Occupy the worker, then queue background before foreground: foreground goes first.
        first = asyncio.ensure_future(worker.run(job, "first", 0.2))
        await asyncio.sleep(0.05)
        bg = asyncio.ensure_future(worker.run(job, "background", priority=BACKGROUND))
        fg = asyncio.ensure_future(worker.run(job, "foreground"))
        assert worker.give_way()
        await asyncio.gather(first, bg, fg)
        assert not worker.give_way()
        worker.close()
        return order

    assert asyncio.run(main()) == ["first", "foreground", "background"]


def test_a_background_chat_stops_for_a_live_turn_and_finishes_after_it():
    llm = FakeLLM(["a summary of ten words one two three four five six"], token_delay_s=0.05)
    services = Services(FakeVAD(), FakeSTT(), llm, {"joe": FakeTTS()}, "joe")

    async def main() -> tuple[str, float]:
        summary = asyncio.ensure_future(services.background_chat([{"role": "user", "content": "x"}], 50))
        await asyncio.sleep(0.15)  # the summary is generating
        started = time.monotonic()
        async with services.chat([{"role": "user", "content": "live"}], CancelToken(), max_tokens=1) as s:
            async for _ in s:
                break
        live_wait = time.monotonic() - started
        return await summary, live_wait

    text, live_wait = asyncio.run(main())
    assert text == "a summary of ten words one two three four five six"
    assert len(llm.requests) == 3  # summary, live turn, summary again
    assert live_wait < 0.5, live_wait  # one token of the summary at most, not its whole length


def test_preempted_is_not_an_engine_failure():
    assert not issubclass(Preempted, RuntimeError)


def plan(**kw: object) -> Dialplan:
    return Dialplan.model_validate({"name": "clinic", "default": True, "greeting": "Clinic, hello.", **kw})


def a_call(tmp_path: Path) -> tuple[CallStore, str]:
    store = CallStore(Database(tmp_path / "calls.db"))
    call = store.start(
        sip_call_id="x", transport="sip", from_uri="sip:a@b", to_uri="sip:c@d", dialplan="clinic",
        offered=time.time(),
    )  # fmt: skip
    return store, call


def test_the_summary_and_fields_ride_on_call_ended(tmp_path: Path):
    store, call = a_call(tmp_path)
    store.add_turn(call, Turn(0, 1.0, "This is Ann, call me back on 5550199123", "Will do.", False, "", {}))
    store.end(call, "caller hung up", announce=False)
    assert store.unannounced() == [call]
    llm = FakeLLM(["Ann called and asked for a call back.", "name: Ann\ncallback_number: 555 019 9123"])
    services = Services(FakeVAD(), FakeSTT(), llm, {"joe": FakeTTS()}, "joe")
    asyncio.run(
        Summarizer(services, store).summarize(
            call, plan(collect={"name": {}, "callback_number": {"type": "phone"}})
        )
    )
    record = store.get(call)
    assert record is not None and record["summary"] == "Ann called and asked for a call back."
    assert record["fields"] == {"name": "Ann", "callback_number": "5550199123"}
    assert store.unannounced() == []
    assert "Clinic, hello." in llm.requests[0][1]["content"]  # the transcript the model read


def test_call_ended_goes_out_even_when_the_llm_fails(tmp_path: Path):
    store, call = a_call(tmp_path)
    store.add_turn(call, Turn(0, 1.0, "Hello?", "Hi.", False, "", {}))
    store.end(call, "completed", announce=False)
    services = Services(FakeVAD(), FakeSTT(), FakeLLM(fail=True), {"joe": FakeTTS()}, "joe")
    asyncio.run(Summarizer(services, store).summarize(call, plan(collect={"reason": {}})))
    record = store.get(call)
    assert record is not None and record["summary"] is None and store.unannounced() == []
    events = [json.loads(r["body"]) for r in store.db.query("SELECT body FROM outbox")]
    assert events == []  # no endpoints configured: nothing queued, but the call is announced


@pytest.mark.models
def test_the_real_llm_gives_way_and_keeps_the_live_prompt_cached(llm):
    from agent.engines.llm import LlamaLLM

    assert isinstance(llm, LlamaLLM)
    live = [
        {"role": "system", "content": "You answer for a bike shop."},
        {"role": "user", "content": "Hours?"},
    ]
    first = "".join(llm.stream_chat(live, max_tokens=8, temperature=0))
    cached = list(llm._llm.input_ids[: llm._llm.n_tokens])
    call = [
        {"role": "system", "content": "Summarize the phone call in one sentence."},
        {
            "role": "user",
            "content": "Caller: My name is Ann, please call me back.\nAgent: We will call you back.",
        },
    ]
    summary = "".join(llm.background_chat(call, give_way=lambda: False, max_tokens=40, temperature=0))
    assert "ann" in summary.lower(), summary
    assert list(llm._llm.input_ids[: llm._llm.n_tokens]) == cached  # the live prompt's cache is back
    checks = iter([False, False, True])
    with pytest.raises(Preempted):
        "".join(llm.background_chat(call, give_way=lambda: next(checks), max_tokens=40))
    assert list(llm._llm.input_ids[: llm._llm.n_tokens]) == cached
    assert "".join(llm.stream_chat(live, max_tokens=8, temperature=0)) == first


def test_after_a_failed_transfer_the_callers_next_words_are_their_message():
    def turns(*said: tuple[str, str]) -> list[dict]:
        return [Turn(i, 1.0, text, "ok", False, action, {}).__dict__ for i, (text, action) in enumerate(said)]

    failed = {"ok": False, "target": "desk"}
    record = {
        "transfer": failed,
        "turns": turns(("Real person please", "transfer:desk"), ("Tell Sam to call me", "")),
    }
    assert left_message(record) == "Tell Sam to call me"
    assert left_message({**record, "transfer": {"ok": True}}) is None
    declined = {"transfer": failed, "turns": turns(("Real person", "transfer:desk"), ("No thanks.", ""))}
    assert left_message(declined) is None
    assert left_message({"transfer": failed, "turns": turns(("Real person", "transfer:desk"))}) is None
    yes_then = turns(
        ("Real person", "transfer:desk"), ("Yes.", ""), ("", "ignored"), ("Ask Sam to call me back", "")
    )
    assert left_message({"transfer": failed, "turns": yes_then}) == "Ask Sam to call me back"
    assert left_message({"transfer": failed, "turns": yes_then[:2]}) is None  # "yes", then hung up
