"""One bookkeeping path for SIP and WebRTC calls: limit, routing, metrics, 'answered'."""

from __future__ import annotations

import asyncio

import pytest

from agent.metrics import Metrics
from agent.telephony.call import BridgedLeg, CallInfo, CallLeg
from agent.telephony.callbook import CallBook, CallRejected
from agent.telephony.limits import CallLimiter
from agent.telephony.media import FrameBridge


def info(user: str = "agent", transport: str = "webrtc") -> CallInfo:
    return CallInfo("c1", transport, "from", "to", user)


def count(m: Metrics, transport: str, result: str) -> float:
    return (
        m.registry.get_sample_value("voice_agent_calls_total", {"transport": transport, "result": result})
        or 0
    )


async def answer(leg: CallLeg) -> None:
    pass


async def broken(leg: CallLeg) -> None:
    raise RuntimeError("handler bug")


class Leg(BridgedLeg):
    async def _request_hangup(self) -> None:
        self.on_ended()


def test_the_limit_is_checked_before_routing_and_a_rejection_holds_no_slot():
    routed: list[str] = []
    m, limiter = Metrics(), CallLimiter(1)

    def router(i: CallInfo):
        routed.append(i.to_user)
        return answer if i.to_user == "agent" else None

    book = CallBook(router, limiter, m)
    with pytest.raises(CallRejected) as exc:
        book.admit(info("nobody"))
    assert exc.value.result == "rejected_not_found" and limiter.active == 0
    assert book.admit(info()) is answer and limiter.active == 1
    with pytest.raises(CallRejected) as exc:
        book.admit(info("agent"))
    assert exc.value.result == "rejected_busy" and routed == ["nobody", "agent"]  # not routed when full
    book.abandon(info(), None)
    assert limiter.active == 0 and count(m, "webrtc", "rejected_busy") == 1


@pytest.mark.parametrize(("handler", "failed"), [(answer, 0), (broken, 1)])
def test_a_run_call_is_answered_active_then_released_and_a_broken_handler_counts_as_failed(handler, failed):
    m, limiter = Metrics(), CallLimiter(2)
    book = CallBook(lambda i: handler, limiter, m)

    async def main() -> None:
        i = info(transport="sip")
        book.admit(i)
        leg = Leg(i, FrameBridge(asyncio.get_running_loop()))
        await book.run(leg, handler)
        assert leg.ended.is_set(), "always hung up"

    asyncio.run(main())
    assert limiter.active == 0
    assert count(m, "sip", "answered") == 1 and count(m, "sip", "failed") == failed
    assert m.registry.get_sample_value("voice_agent_calls_active", {"transport": "sip"}) == 0


def test_the_slot_is_free_once_the_call_has_ended_even_while_its_handler_tidies_up():
    m, limiter = Metrics(), CallLimiter(1)
    seen: list[int] = []

    async def slow_tidy(leg: CallLeg) -> None:
        await leg.hangup()  # the call is over (BYE) ...
        await asyncio.sleep(0.05)  # ... and the handler is still writing its records
        seen.append(limiter.active)

    book = CallBook(lambda i: slow_tidy, limiter, m)

    async def main() -> None:
        i = info(transport="sip")
        book.admit(i)
        await book.run(Leg(i, FrameBridge(asyncio.get_running_loop())), slow_tidy)

    asyncio.run(main())
    assert seen == [0], "the caller's next call would have been turned away"
    assert limiter.active == 0, "released once, not twice"
    assert m.registry.get_sample_value("voice_agent_calls_active", {"transport": "sip"}) == 0
