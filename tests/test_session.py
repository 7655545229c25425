"""The call session's logic on fake engines and a fake leg (real time, a few seconds each)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.dialog.dialplan import Dialplan, TransferTool
from agent.dialog.services import Services
from agent.dialog.session import CallSession
from agent.dialog.tools import Transfer, accepted
from agent.engines.base import EngineError
from agent.engines.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from agent.engines.stt import Transcript
from tests.fakeleg import RATE, FakeLeg
from tests.voices import silence

TOOLS = {
    "hangup": {"goodbye": "Bye now.", "phrases": ["goodbye"]},
    "transfer": {
        "say": "Transferring you to {target}.",
        "unavailable": "Nobody is free.",
        "targets": {"desk": {"uri": "sip:desk@127.0.0.1", "spoken": "the desk", "phrases": ["real person"]}},
    },
}


def plan(**kw: object) -> Dialplan:
    base: dict[str, object] = {"default": True, "greeting": "Hi.", "tools": TOOLS}
    return Dialplan.model_validate({**base, **kw})


def burst(seconds: float, db: float = -20.0, seed: int = 0) -> np.ndarray:
    """Noise at `db` dBFS: 'speech' for the energy-based FakeVAD."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * RATE)) * 32768 * 10 ** (db / 20)
    return np.clip(x, -32767, 32767).astype(np.int16)


def services(
    stt: FakeSTT | None = None, llm: FakeLLM | None = None, tts: object = None, vad: object = None
) -> Services:
    return Services(
        vad or FakeVAD(),
        stt or FakeSTT(["what are your hours"]),
        llm or FakeLLM(["We open at nine."]),
        {"joe": tts or FakeTTS(seconds_per_char=0.03)},
        "joe",
        llm_timeout_s=5,
    )


def run(leg: FakeLeg, p: Dialplan, s: Services, **kw: object) -> CallSession:
    session = CallSession(leg, p, s, **kw)  # type: ignore[arg-type]

    async def go() -> None:
        await asyncio.wait_for(session.run(), 60)

    asyncio.run(go())
    s.close()
    return session


def active(heard: np.ndarray, start_s: float, end_s: float) -> bool:
    seg = heard[int(start_s * RATE) : int(end_s * RATE)]
    return bool(len(seg)) and float(np.abs(seg).max()) > 1000


def last_audio_s(heard: np.ndarray) -> float:
    idx = np.flatnonzero(np.abs(heard) > 1000)
    return float(idx[-1] / RATE) if len(idx) else 0.0


def test_greets_then_answers_a_turn_with_a_timing_record():
    leg = FakeLeg(np.concatenate([silence(1.0), burst(1.0)]), tail_s=3)
    s = services()
    session = run(leg, plan(), s)
    assert active(leg.heard, 0.0, 0.3), "the greeting plays at once"
    assert [t.user_text for t in session.turns] == ["what are your hours"]
    t = session.turns[0]
    assert t.reply_text == "We open at nine." and not t.interrupted
    iv = t.intervals()
    assert {"end_of_turn", "stt", "llm_first_token", "tts_first_chunk", "voice_to_voice"} <= iv.keys()
    # finished_silence_ms 500 on the media clock (the words at the pause sound finished)
    assert 0.45 <= iv["end_of_turn"] <= 0.6
    assert active(leg.heard, 2.5, 4.0), "the reply is heard after the turn"
    msgs = session.history.messages()
    assert [m["role"] for m in msgs] == ["system", "assistant", "user", "assistant"]
    assert msgs[1]["content"] == "Hi."


def test_speculation_is_dropped_when_the_caller_goes_on_then_committed():
    caller = np.concatenate([silence(0.5), burst(0.8), silence(0.4), burst(0.8, seed=1)])
    stt = FakeSTT(["first half", "whole sentence"])
    leg = FakeLeg(caller, tail_s=3)
    session = run(leg, plan(greeting="", turn={"prefill_ms": 0}), services(stt=stt))
    assert len(stt.calls) == 2  # speculative at the first pause (dropped), then at the second (committed)
    assert len(session.turns) == 1
    assert session.turns[0].speculative
    # The committed transcription covered both bursts.
    assert stt.calls[-1]["samples"] > 1.6 * RATE


def test_barge_in_flushes_within_a_few_frames_and_history_keeps_what_was_heard():
    long = "One two three four five six. Seven eight nine ten eleven twelve. Thirteen fourteen fifteen."
    llm = FakeLLM([long, "Sure, I can do that."])
    stt = FakeSTT(["tell me a story", "stop please"])
    tts = FakeTTS(seconds_per_char=0.05)  # the reply lasts about 4.6 s
    # Caller: a question, then talks 1 s into the agent's reply.
    caller = np.concatenate([silence(0.3), burst(1.0), silence(2.6), burst(1.2, seed=2)])
    leg = FakeLeg(caller, tail_s=4)
    session = run(leg, plan(greeting=""), services(stt=stt, llm=llm, tts=tts))
    first, second = session.turns
    assert first.interrupted and first.barge_in is not None and first.audio_stopped is not None
    assert first.intervals()["barge_in_stop"] < 0.3
    heard = first.reply_text
    assert heard and long.startswith(heard) and len(heard) < len(long) / 2
    assert second.user_text == "stop please" and second.reply_text == "Sure, I can do that."
    assistant = [m["content"] for m in session.history.messages() if m["role"] == "assistant"]
    assert assistant[0] == heard
    # On the caller's side: agent audio stopped within 0.3 s of the caller's onset (3.9 s).
    onset = 0.3 + 1.0 + 2.6
    assert active(leg.heard, onset - 0.5, onset)
    assert not active(leg.heard, onset + 0.3, onset + 1.2)


def test_a_backchannel_during_a_long_answer_pauses_it_and_the_answer_completes():
    long = "One two three four five six. Seven eight nine ten eleven twelve. Thirteen fourteen fifteen."
    llm = FakeLLM([long])
    stt = FakeSTT(["tell me a story", "uh huh"])
    tts = FakeTTS(seconds_per_char=0.05)  # the reply lasts about 4.6 s
    caller = np.concatenate([silence(0.3), burst(1.0), silence(2.6), burst(0.4, seed=2), silence(6.0)])
    leg = FakeLeg(caller, tail_s=2)
    session = run(leg, plan(greeting="", turn={"prefill_ms": 0}), services(stt=stt, llm=llm, tts=tts))
    (turn,) = session.turns
    assert not turn.interrupted and turn.reply_text == long
    assert session.history.messages()[-1]["content"] == long
    onset = 0.3 + 1.0 + 2.6
    assert not active(leg.heard, onset + 0.3, onset + 0.45), "paused while the caller spoke"
    assert active(leg.heard, onset + 1.5, onset + 2.5), "then it went on"


def test_a_100ms_click_does_not_barge_in():
    """It may pause the agent (80 ms of sound does), but Whisper makes no words of it."""
    tts = FakeTTS(seconds_per_char=0.05)
    llm = FakeLLM(["One two three four five six. Seven eight nine ten eleven twelve."])
    stt = FakeSTT(["what are your hours", ""])
    caller = np.concatenate([silence(0.3), burst(1.0), silence(2.0), burst(0.1, db=-6), silence(4.0)])
    leg = FakeLeg(caller, tail_s=1)
    session = run(leg, plan(greeting="", turn={"prefill_ms": 0}), services(stt=stt, llm=llm, tts=tts))
    assert len(session.turns) == 1 and not session.turns[0].interrupted
    assert session.turns[0].reply_text == "One two three four five six. Seven eight nine ten eleven twelve."


def test_silence_reprompts_then_hangs_up_politely():
    p = plan(
        silence={
            "reprompt_after_s": 1.0,
            "reprompt": "Still there?",
            "hangup_after_s": 3.0,
            "goodbye": "Bye.",
        }
    )
    leg = FakeLeg(silence(0.1), tail_s=8)
    session = run(leg, p, services())
    assert leg.hung_up_at is not None and 2.5 <= leg.hung_up_at <= 4.5  # media time lags the wall a little
    said = [m["content"] for m in session.history.messages() if m["role"] == "assistant"]
    assert said[0] == "Hi." and "Still there?" in said and said[-1] == "Bye."


def test_llm_timeout_gives_the_spoken_fallback_and_the_call_goes_on():
    llm = FakeLLM(["never heard", "Second answer."], first_token_delay_s=3.0)
    p = plan(greeting="", llm={"timeout_s": 0.5}, fallback="Sorry, say again?")
    leg = FakeLeg(np.concatenate([silence(0.3), burst(0.8)]), tail_s=3)
    session = run(leg, p, services(llm=llm))
    (t,) = session.turns
    assert t.action == "fallback" and t.reply_text == "Sorry, say again?"
    assert active(leg.heard, 2.0, 3.5)
    assert leg.hung_up_at is None


def test_hangup_tool_from_the_llm_says_goodbye_then_ends_the_call():
    llm = FakeLLM(["Goodbye, have a nice day! [hangup]"])
    leg = FakeLeg(np.concatenate([silence(0.3), burst(0.8)]), tail_s=6)
    session = run(leg, plan(greeting=""), services(stt=FakeSTT(["ok thanks"]), llm=llm))
    (t,) = session.turns
    assert t.action == "hangup" and t.reply_text == "Goodbye, have a nice day!"
    # The fake's clock stops while the session waits before BYE: the goodbye was all sent first.
    assert leg.hung_up_at is not None and last_audio_s(leg.heard) - 0.02 <= leg.hung_up_at < 5
    assert session.state == "ended"


def test_hangup_phrase_skips_the_llm():
    llm = FakeLLM(["should not be asked"])
    leg = FakeLeg(np.concatenate([silence(0.3), burst(0.8)]), tail_s=6)
    session = run(leg, plan(greeting=""), services(stt=FakeSTT(["okay goodbye"]), llm=llm))
    assert llm.requests == [] and session.turns[0].reply_text == "Bye now."
    assert leg.hung_up_at is not None


def test_transfer_raises_an_event_and_an_unavailable_target_keeps_the_call():
    asked: list[Transfer] = []

    async def on_transfer(t: Transfer) -> bool:
        asked.append(t)
        return False

    leg = FakeLeg(np.concatenate([silence(0.3), burst(0.8)]), tail_s=5)
    session = run(
        leg, plan(greeting=""), services(stt=FakeSTT(["a real person please"])), on_transfer=on_transfer
    )
    assert asked == [Transfer("desk", "sip:desk@127.0.0.1", "the desk")]
    said = [m["content"] for m in session.history.messages() if m["role"] == "assistant"]
    assert said == ["Transferring you to the desk.", "Nobody is free."]
    assert session.turns[0].action == "transfer:desk" and leg.hung_up_at is None


def test_after_a_failed_transfer_the_next_words_are_a_message_even_with_a_transfer_phrase():
    asked: list[Transfer] = []

    async def on_transfer(t: Transfer) -> bool:
        asked.append(t)
        return False

    llm = FakeLLM(["We open at nine."])
    caller = np.concatenate(
        [silence(0.3), burst(0.8), silence(4.0), burst(1.2, seed=1), silence(3.0), burst(0.8)]
    )
    stt = FakeSTT(["a real person please", "tell the real person to call me", "when do you open"])
    session = run(
        FakeLeg(caller, tail_s=4), plan(greeting=""), services(stt=stt, llm=llm), on_transfer=on_transfer
    )
    assert len(asked) == 1  # the message's "real person" started no second transfer
    said = [m["content"] for m in session.history.messages() if m["role"] == "assistant"]
    assert said[2] == TransferTool.model_fields["message_taken"].default, said
    assert said[3] == "We open at nine."  # and then the conversation goes on as before
    assert [t.action for t in session.turns][:2] == ["transfer:desk", ""]


class ByLengthSTT(FakeSTT):
    """Words chosen by the audio's length: a re-transcribed (speculative) turn hears the same."""

    def __init__(self, texts: dict[float, str]) -> None:
        super().__init__()
        self._by_length = sorted(texts.items())

    def transcribe(
        self, pcm: np.ndarray, *, prompt: str | None = None, hotwords: str | None = None
    ) -> Transcript:
        super().transcribe(pcm)
        text = next(t for limit, t in self._by_length if len(pcm) / RATE <= limit)
        return Transcript(text, 0.9, 0.01, len(pcm) / RATE, 0.0)


def test_a_bare_yes_to_the_offer_gets_go_ahead_and_the_next_turn_is_the_message():
    async def on_transfer(t: Transfer) -> bool:
        return False

    llm = FakeLLM(["unused"])
    caller = np.concatenate(
        [silence(0.3), burst(1.2), silence(4.0), burst(0.3, seed=1), silence(3.0), burst(2.5, seed=2)]
    )
    stt = ByLengthSTT({0.9: "Yes.", 2.0: "a real person please", 99.0: "tell the real person to call me"})
    session = run(
        FakeLeg(caller, tail_s=4), plan(greeting=""), services(stt=stt, llm=llm), on_transfer=on_transfer
    )
    said = [m["content"] for m in session.history.messages() if m["role"] == "assistant"]
    fields = TransferTool.model_fields
    assert said[1:] == [
        "Nobody is free.",
        fields["message_prompt"].default,
        fields["message_taken"].default,
    ], said
    assert llm.requests == []  # neither the "yes" nor the message went to the LLM


@pytest.mark.parametrize(
    ("text", "yes"),
    [
        ("Yes.", True),
        ("Yes, please.", True),
        ("Sure", True),
        ("okay thanks", True),
        ("Go ahead.", True),
        ("Yes. Please ask Sam to call me back.", False),
        ("No thanks", False),
        ("Yesterday I called", False),
    ],
)
def test_a_bare_acceptance_is_told_from_a_message(text, yes):
    assert accepted(text) is yes


def test_noise_only_turn_is_ignored_without_a_reply():
    llm = FakeLLM(["nope"])
    leg = FakeLeg(np.concatenate([silence(0.3), burst(0.8)]), tail_s=2)
    session = run(leg, plan(greeting=""), services(stt=FakeSTT([""]), llm=llm))
    assert llm.requests == [] and session.turns[0].action == "ignored"
    assert not active(leg.heard, 0, len(leg.heard) / RATE)


@pytest.mark.parametrize("fail", ["stt", "tts"])
def test_an_engine_failure_costs_one_turn_and_the_call_goes_on(fail):
    class FlakySTT(FakeSTT):  # fails the first transcription only
        def transcribe(self, pcm, *, prompt=None, hotwords=None):
            if not self.calls:
                self.calls.append({"samples": len(pcm)})
                raise EngineError("stt exploded")
            return super().transcribe(pcm, prompt=prompt, hotwords=hotwords)

    class FlakyTTS(FakeTTS):  # fails on the first answer's chunk only
        def synthesize(self, text, *, cancel=None):
            if text.startswith("We open"):
                raise RuntimeError("tts exploded")
            yield from super().synthesize(text, cancel=cancel)

    stt = FlakySTT(["what are your hours"]) if fail == "stt" else FakeSTT(["what are your hours"])
    tts = FlakyTTS(seconds_per_char=0.03) if fail == "tts" else FakeTTS(seconds_per_char=0.03)
    llm = FakeLLM(["We open at nine.", "Bikes cost two hundred."])
    caller = np.concatenate([silence(0.3), burst(0.8), silence(3.0), burst(0.8, seed=3)])
    leg = FakeLeg(caller, tail_s=3)
    p = plan(greeting="", turn={"prefill_ms": 0})  # the reply's own STT is the first to fail
    session = run(leg, p, services(stt=stt, llm=llm, tts=tts))
    first, second = session.turns
    if fail == "stt":
        assert first.action == "fallback" and first.reply_text == p.fallback
        assert active(leg.heard, 1.9, 3.5), "the caller hears the fallback line"
    else:
        assert first.reply_text == "" and first.user_text == "what are your hours"
        assert not active(leg.heard, 1.2, 4.0), "the lost chunk is silence, nothing else"
    assert second.reply_text in ("We open at nine.", "Bikes cost two hundred.") and second.reply_text
    assert leg.hung_up_at is None and active(leg.heard, 5.5, 7.5)


def test_acknowledgement_is_heard_first_but_is_not_part_of_the_answer():
    llm = FakeLLM(["We open at nine."], first_token_delay_s=0.8)
    p = plan(greeting="", acknowledgements=["Okay."])
    leg = FakeLeg(np.concatenate([silence(0.3), burst(0.8)]), tail_s=4)
    session = run(leg, p, services(llm=llm))
    (t,) = session.turns
    assert t.ack_audio is not None and t.first_audio is not None and t.ack_audio < t.first_audio
    iv = t.intervals()
    assert iv["voice_to_voice"] < iv["voice_to_answer"]
    assert t.reply_text == "We open at nine."
    said = [m["content"] for m in session.history.messages() if m["role"] == "assistant"]
    assert said == ["We open at nine."]


def test_caller_silence_counts_from_the_end_of_a_long_answer():
    llm = FakeLLM(["This answer takes a good three seconds to say out loud."])
    p = plan(
        greeting="",
        silence={"reprompt_after_s": 1, "reprompt": "Still there?", "hangup_after_s": 2.5, "goodbye": "Bye"},
    )
    leg = FakeLeg(np.concatenate([silence(0.3), burst(0.8)]), tail_s=12)
    session = run(leg, p, services(llm=llm, tts=FakeTTS(seconds_per_char=0.06)))
    said = [m["content"] for m in session.history.messages() if m["role"] == "assistant"]
    assert said == ["This answer takes a good three seconds to say out loud.", "Still there?", "Bye"]


def test_the_leg_is_told_state_and_captions_in_order():
    """What a WebRTC page shows: states, the caller's words, the agent's sentences as heard."""
    leg = FakeLeg(np.concatenate([silence(1.0), burst(1.0)]), tail_s=3)
    run(leg, plan(), services(llm=FakeLLM(["We open at nine. We close at five."])))
    captions = [(e["who"], e["text"]) for e in leg.events if e["type"] == "caption"]
    assert captions == [("agent", "Hi."), ("caller", "what are your hours"),
                        ("agent", "We open at nine."), ("agent", "We close at five.")]  # fmt: skip
    states = [e["state"] for e in leg.events if e["type"] == "state"]
    assert (
        states[:5] == ["greeting", "listening", "thinking", "speaking", "listening"] and states[-1] == "ended"
    )


def test_while_the_caller_talks_the_llm_reads_the_grounded_prompt_for_the_words_so_far():
    knowledge = [{"topic": "hours", "fact": "Open nine to five.", "asks": ["what are your hours"]}]
    stt = FakeSTT(["what are", "what are your hours"])
    llm = FakeLLM(["We open at nine."])
    leg = FakeLeg(np.concatenate([silence(1.0), burst(1.3)]), tail_s=3)
    session = run(leg, plan(knowledge=knowledge, turn={"prefill_ms": 800}), services(stt, llm))
    # STT once for the words so far (0.8 s into the turn, with its pre-roll), once for them all
    assert (
        len(stt.calls) == 2 and 0.8 <= stt.calls[0]["samples"] / 16000 < 1.2 < stt.calls[1]["samples"] / 16000
    )
    prefill = llm.primed[-1]
    assert prefill[-1]["content"].endswith("Caller: what are")
    answer = llm.requests[0]
    assert answer[:-1] == prefill[:-1]  # the same prompt but for the caller's last words
    assert "Open nine to five." in answer[-1]["content"] and session.turns[0].reply_text


def test_a_number_is_confirmed_digit_by_digit_without_the_llm():
    stt = FakeSTT(["my number is 4 1 7 9 2"])
    llm = FakeLLM(["Your number is 41792."])
    leg = FakeLeg(np.concatenate([silence(1.0), burst(1.0)]), tail_s=4)
    session = run(leg, plan(greeting="", turn={"prefill_ms": 0}), services(stt, llm))
    assert session.turns[0].reply_text == "That's 4, 1, 7, 9, 2. Is that right?"
    assert llm.requests == []
