"""Outgoing calls, the logic: the request's checks, POST /v1/calls (keys, scopes, sizes, the
per-key rate), dialplan variables, and the call's life in the store on a fake dialer (busy, no
answer, a machine's voicemail, a person's conversation). Real SIP calls: test_outbound_real.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from agent.api.outbound import CallRequest, NoCapacity, OutboundApi, RequestRejected, parse_request
from agent.config import OutboundConfig, WebhookConfig
from agent.dialog.dialplan import Dialplan
from agent.dialog.dialplans import Dialplans, load_dialplan
from agent.metrics import Metrics
from agent.outbound import Outbound
from agent.records.db import Database
from agent.records.store import CallStore
from agent.telephony.call import Dialed
from agent.telephony.limits import CallLimiter
from agent.yamlconf import ConfigError
from tests.test_session import burst, services
from tests.test_store import READER, WRITER, api_keys
from tests.test_warm_transfer import TickLeg


def test_a_request_is_checked_field_by_field():
    ok = parse_request({"to": "sip:maria@pbx.example", "dialplan": "reminders", "variables": {"n": 3}})
    assert ok == CallRequest("sip:maria@pbx.example", "reminders", {"n": "3"}, True)
    for bad, why in [
        ([], "JSON object"),
        ({"to": "maria", "dialplan": "x"}, "`to`"),
        ({"to": "sip:a@b", "dialplan": ""}, "`dialplan`"),
        ({"to": "sip:a@b", "dialplan": "x", "variables": ["a"]}, "`variables`"),
        ({"to": "sip:a@b", "dialplan": "x", "variables": {"a": "{b}"}}, "variable 'a'"),
        ({"to": "sip:a@b", "dialplan": "x", "variables": {"a": "x\ny"}}, "variable 'a'"),
        ({"to": "sip:a@b", "dialplan": "x", "amd": "yes"}, "`amd`"),
        ({"to": "sip:a@b", "dialplan": "x", "caller": "me"}, "unknown field"),
    ]:
        with pytest.raises(RequestRejected, match=why):
            parse_request(bad)


PLAN = {
    "name": "reminders",
    "match": ["reminders"],
    "greeting": "Hi {first_name}, this is Northside calling about your {what} on {day}.",
    "voicemail": "Hi {first_name}, your {what} is on {day}. Call us back to change it.",
    "variables": {"first_name": None, "day": None, "what": "appointment"},
    "summary": False,
}


MARIA = {"first_name": "Maria", "day": "Friday"}


def test_variables_fill_the_greeting_and_an_unknown_placeholder_is_a_dialplan_error(tmp_path):
    plan = Dialplan.model_validate(PLAN)
    filled = plan.render({"first_name": "Maria", "day": "Friday"})
    assert filled.greeting == "Hi Maria, this is Northside calling about your appointment on Friday."
    assert filled.voicemail.startswith("Hi Maria, your appointment is on Friday.")
    assert plan.render({}).greeting == "Hi , this is Northside calling about your appointment on ."
    path = tmp_path / "bad.yaml"
    path.write_text("match: [x]\nvariables: {name: null}\ngreeting: 'Hello {nmae}'\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+.*unknown placeholder \{nmae\}"):
        load_dialplan(path)


async def with_app(routes: list[web.RouteDef], body: Any) -> Any:
    app = web.Application()
    app.router.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{runner.addresses[0][1]}") as http:
            return await body(http)
    finally:
        await runner.cleanup()


def test_post_v1_calls_wants_the_write_scope_a_good_body_and_keeps_to_the_rate():
    placed: list[CallRequest] = []

    def place(req: CallRequest) -> str:
        if req.dialplan == "full":
            raise NoCapacity("all lines are busy")
        if req.dialplan == "nope":
            raise RequestRejected("no agent dialplan named 'nope'")
        placed.append(req)
        return f"call-{len(placed)}"

    api = OutboundApi(api_keys(), place, calls_per_minute=3)
    auth = {"Authorization": f"Bearer {WRITER}"}
    good = {"to": "sip:maria@127.0.0.1", "dialplan": "reminders", "variables": {"first_name": "Maria"}}

    async def body(http: aiohttp.ClientSession) -> None:
        assert (await http.post("/v1/calls", json=good)).status == 401
        assert (await http.post("/v1/calls", json=good, headers={"X-API-Key": READER})).status == 403
        r = await http.post("/v1/calls", json=good, headers=auth)
        assert r.status == 202 and (await r.json()) == {"id": "call-1", "status": "queued"}
        assert r.headers["Location"] == "/v1/calls/call-1"
        r = await http.post("/v1/calls", json={**good, "dialplan": "nope"}, headers=auth)
        assert r.status == 400 and "nope" in (await r.json())["error"]
        r = await http.post("/v1/calls", json={**good, "dialplan": "full"}, headers=auth)
        assert r.status == 503 and r.headers["Retry-After"]
        r = await http.post("/v1/calls", data=b"x" * 20000, headers=auth)
        assert r.status == 413
        r = await http.post("/v1/calls", json=good, headers=auth)  # the 4th within the minute
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1

    asyncio.run(with_app(api.routes(), body))
    assert [p.variables for p in placed] == [{"first_name": "Maria"}]


def outbound(tmp_path: Path, dial: Any, **cfg: Any) -> tuple[Outbound, CallStore, list[str]]:
    hook = WebhookConfig(url="http://127.0.0.1:9/hook", secret="a-secret-of-16-chars")
    store = CallStore(Database(tmp_path / "calls.db"), [hook])
    plans = Dialplans([Dialplan.model_validate(PLAN)])
    out = Outbound(OutboundConfig(**cfg), plans, store, CallLimiter(4), lambda p: None, Metrics())
    conversed: list[str] = []

    async def converse(plan: Dialplan, leg: Any, record: Any) -> None:
        conversed.append(plan.greeting)
        await record.finish("completed", plan.greeting)

    out.dial, out.services, out.converse = dial, services(), converse
    return out, store, conversed


def events_of(store: CallStore, call_id: str) -> list[str]:
    return [
        r[0] for r in store.db.query("SELECT event FROM outbox WHERE call_id = ? ORDER BY id", (call_id,))
    ]


@pytest.mark.parametrize(("code", "result"), [(486, "busy"), (408, "no answer"), (503, "failed")])
def test_an_unanswered_call_ends_with_why(tmp_path, code, result):
    async def dial(uri: str, ring_timeout_s: float, on_ringing: Any = None) -> Dialed:
        if on_ringing is not None and code != 503:
            on_ringing()
        return Dialed(None, code, "")

    async def go() -> None:
        out, store, conversed = outbound(tmp_path, dial)
        call = out.place(
            CallRequest("sip:maria@127.0.0.1", "reminders", {"first_name": "M", "day": "Friday"})
        )
        await asyncio.gather(*out.tasks)
        record = store.get(call)
        assert record is not None and record["result"] == result and record["direction"] == "outbound"
        ringing = ["call.ringing"] if code != 503 else []
        assert events_of(store, call) == ["call.started", *ringing, "call.ended"]
        assert conversed == [] and out.limiter.active == 0

    asyncio.run(go())


def test_requests_that_do_not_fit_the_dialplan_or_the_lines_are_refused(tmp_path):
    async def go() -> None:
        out, _, _ = outbound(tmp_path, None, max_concurrent=1)
        for req, why in [
            (CallRequest("sip:a@b", "other", {}), "no agent dialplan"),
            (CallRequest("sip:a@b", "reminders", {"first_name": "M"}), "needs the variable 'day'"),
            (
                CallRequest("sip:a@b", "reminders", {"first_name": "M", "day": "x", "x": "1"}),
                "no variable 'x'",
            ),
        ]:
            with pytest.raises(RequestRejected, match=why):
                out.place(req)
        with pytest.raises(NoCapacity, match="not ready"):
            out.place(CallRequest("sip:a@b", "reminders", MARIA))

    asyncio.run(go())


@pytest.mark.parametrize("callee", ["person", "machine"])
def test_an_answered_call_is_a_conversation_or_a_voicemail_message(tmp_path, callee):
    async def go() -> None:
        if callee == "person":  # "Hello?" and then waits
            voice = np.concatenate([np.zeros(8000, np.int16), burst(0.5), np.zeros(48000, np.int16)])
        else:  # talks on and on
            voice = np.concatenate([np.zeros(8000, np.int16), burst(4.0), np.zeros(48000, np.int16)])
        leg = TickLeg("callee", voice, speed=2.0)

        async def dial(uri: str, ring_timeout_s: float, on_ringing: Any = None) -> Dialed:
            on_ringing()
            return Dialed(leg, 200)  # type: ignore[arg-type]

        out, store, conversed = outbound(tmp_path, dial)
        call = out.place(
            CallRequest("sip:maria@127.0.0.1", "reminders", {"first_name": "Maria", "day": "Friday"})
        )
        await asyncio.wait_for(asyncio.gather(*out.tasks), 30)
        record = store.get(call)
        assert record is not None
        sql = "SELECT body FROM outbox WHERE call_id = ? AND event = 'call.answered'"
        answered = json.loads(store.db.query(sql, (call,))[0][0])["data"]
        if callee == "person":
            assert record["answered_by"] == "human" and record["result"] == "completed"
            assert conversed == ["Hi Maria, this is Northside calling about your appointment on Friday."]
        else:
            assert record["answered_by"] == "machine" and record["result"] == "voicemail" and conversed == []
            assert leg.level_at(440.0) > 0.05  # the message (FakeTTS speaks a 440 Hz tone) went out
        assert answered["call"]["answered_by"] == record["answered_by"]
        assert events_of(store, call)[:3] == ["call.started", "call.ringing", "call.answered"]
        assert leg.hung_up or callee == "person"

    asyncio.run(go())
