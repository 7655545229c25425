"""DTMF: the keypad state machine, the controller's use of it, and the dialplan checks."""

from __future__ import annotations

import pytest

from agent.dialog import events as ev
from agent.dialog.dialplan import Dialplan, DigitCollect, Menu
from agent.dialog.dialplans import load_dialplans
from agent.dialog.keypad import KeyCollected, KeyHangup, Keypad, KeySay, KeySwitch, KeyTransfer
from agent.dialog.replies import KEYPAD, State
from agent.dialog.tools import Transfer
from agent.yamlconf import ConfigError
from tests.test_controller import Call

MENU = {
    "prompt": "For hours press 1, for the desk press 2.",
    "options": {
        "1": {"say": "We open at nine."},
        "2": {"transfer": "desk"},
        "3": {"collect": "order"},
        "4": {"dialplan": "clinic"},
        "0": {"hangup": True},
        "*": {"repeat": True},
    },
}
ORDER = {"prompt": "Enter your order number, then hash.", "max_length": 6, "min_length": 3, "reprompts": 1}


def keypad() -> Keypad:
    return Keypad(Menu.model_validate(MENU), {"order": DigitCollect.model_validate(ORDER)})


def test_menu_keys_pick_their_options():
    k = keypad()
    assert k.press("1", 0) == [KeySay("We open at nine.")]
    assert k.press("2", 0) == [KeyTransfer("desk")]
    assert k.press("4", 0) == [KeySwitch("clinic")]
    assert k.press("0", 0) == [KeyHangup()]
    assert k.press("*", 0) == [KeySay(MENU["prompt"])]
    assert k.press("9", 0) == [KeySay(f"Sorry, that key is not an option. {MENU['prompt']}")]


def test_digits_end_at_the_terminator_at_max_length_or_after_a_pause():
    k = keypad()
    assert k.press("3", 0) == [KeySay(ORDER["prompt"])] and k.deadline == 10.0
    for i, d in enumerate("417"):
        assert k.press(d, 1 + i) == []
    assert k.deadline == 6.0  # inter-digit pause after the last key
    assert k.press("#", 3.5) == [KeyCollected("order", "417"), KeySay("You entered 4, 1, 7. Thank you.")]
    assert k.deadline is None and k.press("1", 4) == [KeySay("We open at nine.")]  # back to the menu

    k.press("3", 10)
    for d in "123456":
        k.press(d, 11)
    assert k.deadline is None  # six keys: complete without a terminator
    k.press("3", 20)
    k.press("5", 21)
    k.press("5", 22)
    k.press("5", 23)
    assert k.timeout(24) == [] and k.timeout(26.0) == [
        KeyCollected("order", "555"),
        KeySay("You entered 5, 5, 5. Thank you."),
    ]


def test_no_keys_reprompts_then_gives_up_and_too_few_keys_are_no_value():
    k = keypad()
    k.press("3", 0)
    assert k.timeout(10) == [KeySay(ORDER["prompt"])] and k.deadline == 20
    assert k.timeout(20) == [KeyCollected("order", None), KeySay("Sorry, I didn't get that.")]
    k.press("3", 30)
    k.press("1", 31)
    assert k.press("#", 32) == [KeyCollected("order", None), KeySay("Sorry, I didn't get that.")]


def test_without_a_menu_keys_are_ignored():
    assert Keypad(None, {}).press("5", 0) == [] and not Keypad(None, {}).active


def test_a_key_cuts_the_agent_off_and_the_menu_option_runs():
    call = Call(menu=MENU, collect_digits={"order": ORDER})
    out = call(ev.Started(0.0))
    (say,) = call.only(ev.Say, out)
    assert say.text == "Hi. " + MENU["prompt"]  # the menu follows the greeting
    call(ev.ChunkStarted(say.reply, 0.1, "Hi.", -20.0))
    out = call(ev.DtmfReceived("2", 1.0))  # pressed while the greeting plays
    assert any(isinstance(c, ev.Flush) and c.reply == say.reply for c in out)
    (transfer,) = call.only(ev.Say, out)
    assert transfer.text == "Transferring you to the desk." and transfer.actions == (
        Transfer("desk", "sip:desk@127.0.0.1", "the desk"),
    )


def test_collected_digits_become_a_command_and_a_timer_drives_the_pause():
    call = Call(menu=MENU, collect_digits={"order": ORDER})
    call.greet()
    out = call(ev.DtmfReceived("3", 2.0))
    assert call.only(ev.Say, out)[0].text == ORDER["prompt"] and ev.SetTimer(KEYPAD, 12.0) in out
    for i, d in enumerate("9876"):
        out = call(ev.DtmfReceived(d, 3.0 + i))
    assert ev.SetTimer(KEYPAD, 9.0) in out
    out = call(ev.TimerFired(KEYPAD, 9.0))
    assert ev.Collected("order", "9876") in out
    assert call.only(ev.Say, out)[0].text == "You entered 9, 8, 7, 6. Thank you."


def test_a_key_to_another_dialplan_ends_this_conversation_and_hangup_says_goodbye():
    call = Call(menu=MENU, collect_digits={"order": ORDER})
    call.greet()
    out = call(ev.DtmfReceived("4", 2.0))
    assert ev.SwitchDialplan("clinic") in out and call.c.state is State.ENDED
    call = Call(menu=MENU, collect_digits={"order": ORDER})
    call.greet()
    out = call(ev.DtmfReceived("0", 2.0))
    assert call.only(ev.Say, out)[0].text == "Bye now."


def test_the_dialplan_checks_menu_targets(tmp_path):
    with pytest.raises(ValueError, match="no transfer target 'nobody'"):
        Dialplan.model_validate(
            {"default": True, "menu": {"prompt": "p", "options": {"1": {"transfer": "nobody"}}}}
        )
    with pytest.raises(ValueError, match="exactly one"):
        Dialplan.model_validate(
            {"default": True, "menu": {"prompt": "p", "options": {"1": {"say": "a", "repeat": True}}}}
        )
    with pytest.raises(ValueError, match="no 'pin' in collect_digits"):
        Dialplan.model_validate(
            {"default": True, "menu": {"prompt": "p", "options": {"1": {"collect": "pin"}}}}
        )
    (tmp_path / "a.yaml").write_text(
        "default: true\nmenu:\n  prompt: p\n  options:\n    '1': {dialplan: sales}\n"
    )
    with pytest.raises(ConfigError, match="menu key 1: no dialplan 'sales'"):
        load_dialplans(tmp_path)


def test_a_key_hands_the_call_to_another_dialplan_which_greets_and_answers(tmp_path):
    import asyncio

    import numpy as np

    from agent.dialog.session import CallSession
    from tests.fakeleg import FakeLeg
    from tests.test_session import burst, plan, services, silence

    other = plan(name="other", greeting="Other desk here.", match=["other"], default=False)
    first = plan(menu={"prompt": "Press 4 for the other desk.", "options": {"4": {"dialplan": "other"}}})
    leg = FakeLeg(np.concatenate([silence(4.0), burst(1.0)]), tail_s=3)
    s = services()
    session = CallSession(leg, first, s, find_plan={"other": other}.get)

    async def go() -> None:
        run = asyncio.ensure_future(session.run())
        await asyncio.sleep(1.0)  # the greeting and menu are playing
        leg.dtmf.put_nowait("4")
        await asyncio.wait_for(run, 60)

    asyncio.run(go())
    s.close()
    assert session.plan is other
    said = [m["content"] for m in session.history.messages() if m["role"] == "assistant"]
    assert said[0] == "Other desk here." and said[-1] == "We open at nine.", said  # then a turn is answered
    assert [t.user_text for t in session.turns] == ["what are your hours"]


def test_the_first_key_of_a_number_stops_the_prompt_being_said():
    call = Call(menu=MENU, collect_digits={"order": ORDER})
    call.greet()
    prompt = call.only(ev.Say, call(ev.DtmfReceived("3", 2.0)))[0]
    call(ev.ChunkStarted(prompt.reply, 2.1, ORDER["prompt"], -20.0))
    out = call(ev.DtmfReceived("4", 2.5))
    assert any(isinstance(c, ev.Flush) and c.reply == prompt.reply for c in out)
