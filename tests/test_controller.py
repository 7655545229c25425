"""The turn controller as event sequences → commands, on a made-up clock (instant, no engines)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.dialog import events as ev
from agent.dialog.controller import TurnController
from agent.dialog.dialplan import Dialplan
from agent.dialog.history import History
from agent.dialog.prompt import system_prompt
from agent.dialog.replies import ECHO_GATE, HELD, MAX_DURATION, SILENCE, State
from agent.dialog.tools import Hangup, Transfer
from agent.dialog.turns import (
    SpeechPaused,
    SpeechProgress,
    SpeechResumed,
    SpeechStarted,
    SpeechSustained,
    TurnEnded,
)
from tests.test_session import TOOLS  # the same dialplan tools as the real-clock session tests

AUDIO = np.zeros(1600, np.int16)
DESK = Transfer("desk", "sip:desk@127.0.0.1", "the desk")


class Call:
    """A controller and everything it asked for."""

    def __init__(self, **plan: object) -> None:
        base: dict[str, object] = {"default": True, "greeting": "Hi.", "tools": TOOLS}
        p = Dialplan.model_validate({**base, **plan})
        self.c = TurnController(p, History(system_prompt(p), 1000))
        self.log: list[ev.Command] = []

    def __call__(self, event: ev.Event) -> list[ev.Command]:
        out = self.c.handle(event)
        self.log += out
        return out

    def only(self, kind: type, out: list[ev.Command]) -> list:
        return [c for c in out if isinstance(c, kind)]

    def reply_id(self, out: list[ev.Command]) -> int:
        (c,) = [c for c in out if isinstance(c, ev.StartReply | ev.Say)]
        return c.reply

    def greet(self) -> None:
        """Start the call and play the greeting to its end (at t = 1)."""
        rid = self.reply_id(self(ev.Started(0.0)))
        self(ev.ChunkStarted(rid, 0.1, "Hi.", -20.0))
        self(ev.ReplyDone(rid, 1.0, "Hi."))

    def turn(self, start: float, end: float) -> int:
        """A caller's turn from `start` to `end`, decided 0.8 s later; returns its reply id."""
        self(SpeechStarted(start))
        out = self(TurnEnded(end + 0.8, end, AUDIO))
        return self.reply_id(out)

    def answer(self, rid: int, t: float, text: str = "We open at nine.", heard: str = "what are your hours"):
        self(ev.Transcribed(rid, t, heard))
        self(ev.FirstToken(rid, t + 0.2))
        self(ev.ChunkSynthesised(rid, t + 0.3))
        self(ev.ChunkStarted(rid, t + 0.35, text, -20.0))


def states(out: list[ev.Command]) -> list[str]:
    return [c.event["state"] for c in out if isinstance(c, ev.Notify) and c.event["type"] == "state"]


def captions(out: list[ev.Command]) -> list[tuple[str, str]]:
    return [(c.event["who"], c.event["text"]) for c in out if isinstance(c, ev.Notify) and "who" in c.event]


def test_greeting_then_listening_with_timers():
    call = Call(max_duration_s=300)
    out = call(ev.Started(10.0))
    (say,) = call.only(ev.Say, out)
    assert say.text == "Hi." and states(out) == ["greeting"]
    assert ev.SetTimer(MAX_DURATION, 310.0) in out
    out = call(ev.ChunkStarted(say.reply, 10.2, "Hi.", -18.0))
    assert captions(out) == [("agent", "Hi.")] and ev.SetEchoGate(-30.0) in out
    out = call(ev.ReplyDone(say.reply, 11.0, "Hi."))
    assert states(out) == ["listening"] and call.c.state is State.LISTENING
    assert ev.SetTimer(ECHO_GATE, 11.5) in out
    assert ev.SetTimer(SILENCE, 19.0) in out  # reprompt 8 s after the agent stopped
    assert [m["role"] for m in call.c.history.messages()] == ["system", "assistant"]
    assert call(ev.TimerFired(ECHO_GATE, 11.5)) == [ev.SetEchoGate(None)]


def test_a_turn_is_answered_and_every_timing_field_comes_from_its_event():
    call = Call()
    call.greet()
    rid = call.turn(2.0, 3.0)
    assert call.c.state is State.THINKING
    call.answer(rid, 4.0)
    assert call.c.state is State.SPEAKING
    out = call(ev.ReplyDone(rid, 6.0, "We open at nine."))
    (record,) = call.only(ev.RecordTurn, out)
    t = record.timing
    assert (t.speech_start, t.speech_end, t.turn_end, t.stt_done) == (2.0, 3.0, 3.8, 4.0)
    assert (t.llm_first_token, t.tts_first_chunk, t.first_audio) == (4.2, 4.3, 4.35)
    assert t.intervals()["voice_to_answer"] == pytest.approx(1.35)
    assert not t.speculative and not t.interrupted and t.index == 0
    assert (t.user_text, t.reply_text) == ("what are your hours", "We open at nine.")
    roles = [m["role"] for m in call.c.history.messages()]
    assert roles == ["system", "assistant", "user", "assistant"]
    assert captions(call.log)[-2:] == [("caller", "what are your hours"), ("agent", "We open at nine.")]


def test_speculation_kept_when_the_silence_holds():
    call = Call()
    call.greet()
    call(SpeechStarted(2.0))
    out = call(SpeechPaused(3.0, AUDIO))
    (start,) = call.only(ev.StartReply, out)
    assert not start.committed and call.c.state is State.LISTENING
    # no caption before the turn ends; words that sound finished end the turn sooner
    assert call(ev.Transcribed(start.reply, 3.3, "hours please")) == [ev.SetEndSilence(500)]
    out = call(TurnEnded(3.8, 3.0, AUDIO))
    assert ev.Commit(start.reply) in out and ("caller", "hours please") in captions(out)
    assert call.only(ev.StartReply, out) == []
    call(ev.ChunkStarted(start.reply, 4.5, "Nine.", -20.0))
    (record,) = call.only(ev.RecordTurn, call(ev.ReplyDone(start.reply, 5.0, "Nine.")))
    assert record.timing.speculative and record.timing.stt_done == 3.3
    assert record.timing.intervals()["stt"] == 0.0  # ready before the turn ended


def test_prefill_while_the_caller_talks_only_when_nothing_else_is_in_flight():
    call = Call()
    call.greet()
    call(SpeechStarted(2.0))
    assert call(SpeechProgress(2.8, AUDIO)) == [ev.Prefill(AUDIO)]
    first = call.reply_id(call(SpeechPaused(3.0, AUDIO)))
    assert call(SpeechProgress(3.1, AUDIO)) == []  # the speculative reply does the work
    assert call(SpeechResumed(3.2)) == [ev.Cancel(first)]
    assert call(SpeechProgress(3.6, AUDIO)) == [ev.Prefill(AUDIO)]
    rid = call.reply_id(call(TurnEnded(4.5, 3.7, AUDIO)))
    call(ev.ChunkStarted(rid, 5.0, "Nine.", -20.0))
    call(SpeechStarted(5.5))  # the caller talks over the agent: no prefill for a barge-in
    assert call(SpeechProgress(6.3, AUDIO)) == []


def test_words_that_end_mid_phrase_make_the_turn_wait_longer():
    call = Call()
    call.greet()
    call(SpeechStarted(2.0))
    spec = call.reply_id(call(SpeechPaused(3.0, AUDIO)))
    assert call(ev.Transcribed(spec, 3.4, "I'd like to book a table for")) == [ev.SetEndSilence(2000)]
    call(SpeechResumed(3.9))
    other = call.reply_id(call(SpeechPaused(4.5, AUDIO)))
    assert call(ev.Transcribed(other, 4.9, "I'd like to book a table for two.")) == [ev.SetEndSilence(500)]


def test_at_a_pause_the_turn_waits_for_its_words_before_it_can_end():
    """Slow STT must not end a turn the words would have kept open ("...open on")."""
    call = Call()
    call.greet()
    call(SpeechStarted(2.0))
    out = call(SpeechPaused(3.0, AUDIO))
    assert ev.SetEndSilence(2000) in out  # held open until the words are known
    assert call(ev.Transcribed(call.reply_id(out), 3.9, "")) == [ev.SetEndSilence(800)]  # noise: the usual


def test_speculation_dropped_when_the_caller_goes_on_and_the_turn_keeps_its_number():
    call = Call()
    call.greet()
    call(SpeechStarted(2.0))
    first = call.reply_id(call(SpeechPaused(2.5, AUDIO)))
    assert call(SpeechResumed(2.7)) == [ev.Cancel(first)]
    assert call(ev.Transcribed(first, 2.8, "first half")) == []  # a dropped reply's late news
    second = call.reply_id(call(SpeechPaused(3.5, AUDIO)))
    out = call(TurnEnded(4.3, 3.5, AUDIO))
    assert ev.Commit(second) in out
    starts = [c for c in call.log if isinstance(c, ev.StartReply)]
    assert [s.turn for s in starts] == [0, 0]
    call(ev.ReplyDone(second, 5.0, "Fine."))
    assert call.c.turns[0].speech_start == 2.0 and call.c.turns[0].index == 0


def test_barge_in_is_one_transition_and_history_keeps_what_was_heard():
    call = Call(turn={"backchannel_max_ms": 0})  # every barge-in stops the agent at once
    call.greet()
    rid = call.turn(2.0, 3.0)
    call.answer(rid, 4.0, text="One two three four five six.")
    out = call(SpeechSustained(5.0, onset=4.88))
    assert out[:3] == [ev.Notify({"type": "barge_in"}), ev.Flush(rid, barge_in=True), ev.Cancel(rid)]
    assert call.c.state is State.LISTENING
    assert call(ev.ChunkStarted(rid, 5.01, "late", -20.0)) == []  # frames pulled before the flush
    out = call(ev.PlaybackStopped(rid, 5.02, "One two"))
    (record,) = call.only(ev.RecordTurn, out)
    t = record.timing
    assert t.interrupted and t.reply_text == "One two"
    assert (t.barge_in, t.audio_stopped) == (4.88, 5.0)
    assert t.intervals()["barge_in_stop"] == pytest.approx(0.12)
    assert call.c.history.messages()[-1] == {"role": "assistant", "content": "One two"}
    # the interruption is the caller's next turn
    nxt = call.reply_id(call(TurnEnded(6.0, 5.2, AUDIO)))
    assert nxt != rid and call.c.state is State.THINKING


def test_a_backchannel_pauses_the_agent_which_then_goes_on_where_it_paused():
    call = Call()
    call.greet()
    rid = call.turn(2.0, 3.0)
    call.answer(rid, 4.0, text="One two three four five six.")
    call(SpeechStarted(4.88))
    assert call(SpeechSustained(5.0, onset=4.88)) == [ev.HoldOutput(True), ev.SetTimer(HELD, 5.88)]
    spec = call.reply_id(call(SpeechPaused(5.3, AUDIO)))  # the caller's words are transcribed
    assert call(ev.Transcribed(spec, 5.6, "Uh-huh.")) == [ev.Cancel(spec), ev.HoldOutput(False)]
    assert call(TurnEnded(6.1, 5.3, AUDIO)) == []  # that turn was nothing to answer
    assert call(ev.TimerFired(HELD, 5.88)) == []
    (record,) = call.only(ev.RecordTurn, call(ev.ReplyDone(rid, 8.0, "One two three four five six.")))
    assert not record.timing.interrupted and record.timing.barge_in is None
    assert record.timing.reply_text == "One two three four five six."
    nxt = call.turn(9.0, 10.0)  # the next question is the caller's turn 1, not 2
    assert [c.turn for c in call.log if isinstance(c, ev.StartReply) and c.reply == nxt] == [1]


def test_words_over_the_paused_agent_stop_it_and_are_the_next_turn():
    call = Call()
    call.greet()
    rid = call.turn(2.0, 3.0)
    call.answer(rid, 4.0, text="One two three four five six.")
    call(SpeechStarted(4.88))
    call(SpeechSustained(5.0, onset=4.88))
    spec = call.reply_id(call(SpeechPaused(5.5, AUDIO)))
    out = call(ev.Transcribed(spec, 5.8, "Sorry, what about Sunday?"))
    assert out[:3] == [ev.Notify({"type": "barge_in"}), ev.Flush(rid, barge_in=True), ev.Cancel(rid)]
    (record,) = call.only(ev.RecordTurn, call(ev.PlaybackStopped(rid, 5.81, "One two")))
    assert record.timing.interrupted and (record.timing.barge_in, record.timing.audio_stopped) == (4.88, 5.0)
    assert ev.Commit(spec) in call(TurnEnded(6.3, 5.5, AUDIO))


def test_a_reply_that_had_all_gone_out_when_paused_ends_and_the_callers_words_are_a_turn():
    call = Call()
    call.greet()
    rid = call.turn(2.0, 3.0)
    call.answer(rid, 4.0, text="Nine.")
    call(SpeechStarted(4.88))
    call(SpeechSustained(5.0, onset=4.88))
    spec = call.reply_id(call(SpeechPaused(5.3, AUDIO)))
    out = call(ev.ReplyDone(rid, 5.35, "Nine."))
    assert out[0] == ev.HoldOutput(False) and not call.only(ev.RecordTurn, out)[0].timing.interrupted
    assert ev.Cancel(spec) not in out
    assert call(ev.Transcribed(spec, 5.6, "And on Sunday?")) == [ev.SetEndSilence(500)]
    assert ev.Commit(spec) in call(TurnEnded(5.8, 5.3, AUDIO))


def test_talking_on_over_the_paused_agent_stops_it():
    call = Call(turn={"backchannel_max_ms": 800})
    call.greet()
    rid = call.turn(2.0, 3.0)
    call.answer(rid, 4.0)
    call(SpeechStarted(4.88))
    call(SpeechSustained(5.0, onset=4.88))
    assert ev.Flush(rid, barge_in=True) in call(ev.TimerFired(HELD, 5.68))  # still voiced


def test_barge_in_on_the_greeting_but_not_on_the_goodbye():
    call = Call(turn={"backchannel_max_ms": 0})
    rid = call.reply_id(call(ev.Started(0.0)))
    call(ev.ChunkStarted(rid, 0.1, "Hi.", -20.0))
    assert ev.Flush(rid, barge_in=True) in call(SpeechSustained(0.5, 0.38))
    call(ev.PlaybackStopped(rid, 0.52, ""))
    assert call.c.turns == []  # a fixed line has no turn record
    call = Call(max_duration_s=60)
    call.greet()
    goodbye = call.reply_id(call(ev.TimerFired(MAX_DURATION, 60.0)))
    call(ev.ChunkStarted(goodbye, 60.1, "Bye.", -20.0))
    assert call(SpeechSustained(60.5, 60.38)) == []
    assert call(SpeechPaused(61.0, AUDIO)) == [] and call(TurnEnded(61.5, 61.0, AUDIO)) == []
    assert call.only(ev.HangUp, call(ev.ReplyDone(goodbye, 62.0, "Bye."))) == [ev.HangUp()]
    assert call.c.ended


def test_a_short_sound_while_the_agent_talks_is_ignored():
    call = Call()
    call.greet()
    rid = call.turn(2.0, 3.0)
    call.answer(rid, 4.0)
    call(SpeechStarted(4.5))
    out = call(TurnEnded(5.4, 4.6, AUDIO))  # a cough: too short for SpeechSustained
    assert out == [] and call.c.state is State.SPEAKING
    call(ev.ReplyDone(rid, 6.0, "We open at nine."))
    assert [t.reply_text for t in call.c.turns] == ["We open at nine."]


def test_reprompt_then_goodbye_and_hang_up_on_a_silent_caller():
    call = Call(silence={"reprompt_after_s": 5, "hangup_after_s": 12, "reprompt": "Still there?"})
    call.greet()  # the greeting ends at t = 1: reprompt due at 6, hang-up at 12
    assert call(ev.TimerFired(SILENCE, 4.0)) == [ev.SetTimer(SILENCE, 6.0)]  # early: re-armed
    out = call(ev.TimerFired(SILENCE, 6.0))
    (say,) = call.only(ev.Say, out)
    assert say.text == "Still there?" and call.c.state is State.SPEAKING
    call(ev.ChunkStarted(say.reply, 6.1, "Still there?", -20.0))
    out = call(ev.ReplyDone(say.reply, 7.0, "Still there?"))
    assert ev.SetTimer(SILENCE, 12.0) in out  # the caller's silence still counts from t = 1
    (bye,) = call.only(ev.Say, call(ev.TimerFired(SILENCE, 12.0)))
    assert "end the call" in bye.text
    assert call.only(ev.HangUp, call(ev.ReplyDone(bye.reply, 14.0, bye.text))) == [ev.HangUp()]


def test_silence_does_not_count_while_the_caller_speaks():
    call = Call(silence={"reprompt_after_s": 5, "hangup_after_s": 12})
    call.greet()
    call(SpeechStarted(5.0))
    assert call(ev.TimerFired(SILENCE, 6.0)) == []


def test_engine_failure_is_a_fallback_turn_and_noise_an_ignored_one():
    call = Call()
    call.greet()
    rid = call.turn(2.0, 3.0)
    call(ev.ChunkStarted(rid, 4.0, "Sorry, say again?", -20.0))
    (record,) = call.only(ev.RecordTurn, call(ev.ReplyDone(rid, 5.0, "Sorry, say again?", failed=True)))
    assert record.timing.action == "fallback"
    rid = call.turn(6.0, 7.0)
    call(ev.Transcribed(rid, 8.0, ""))
    (record,) = call.only(ev.RecordTurn, call(ev.ReplyDone(rid, 8.1, "")))
    assert record.timing.action == "ignored" and call.c.state is State.LISTENING


def test_acknowledgement_is_timed_but_neither_captioned_nor_in_history():
    call = Call()
    call.greet()
    rid = call.turn(2.0, 3.0)
    call(ev.Transcribed(rid, 3.9, "what are your hours"))
    out = call(ev.ChunkStarted(rid, 4.0, "", -22.0, ack=True))
    assert captions(out) == [] and call.c.state is State.SPEAKING
    call(ev.ChunkStarted(rid, 5.0, "We open at nine.", -20.0))
    (record,) = call.only(ev.RecordTurn, call(ev.ReplyDone(rid, 6.0, "We open at nine.")))
    iv = record.timing.intervals()
    assert iv["voice_to_voice"] == pytest.approx(1.0) and iv["voice_to_answer"] == pytest.approx(2.0)
    assert call.c.history.messages()[-1]["content"] == "We open at nine."


def test_hangup_tool_and_transfer_that_fails_then_succeeds():
    call = Call()
    call.greet()
    rid = call.turn(2.0, 3.0)
    out = call(ev.ReplyDone(rid, 4.0, "Bye now.", actions=(Hangup(),)))
    assert call.only(ev.HangUp, out) and call.c.ended and call.c.turns[0].action == "hangup"

    call = Call()
    call.greet()
    rid = call.turn(2.0, 3.0)
    out = call(ev.ReplyDone(rid, 4.0, "Transferring you to the desk.", actions=(DESK,)))
    assert call.only(ev.StartTransfer, out) == [ev.StartTransfer(DESK)]
    assert call.c.state is State.TRANSFERRING and call.c.transfers == [DESK]
    assert call(SpeechPaused(4.5, AUDIO)) == []  # nothing starts while transferring
    (say,) = call.only(ev.Say, call(ev.TransferResult(False, 5.0)))
    assert say.text == "Nobody is free." and call.c.state is State.SPEAKING
    call(ev.ReplyDone(say.reply, 6.0, "Nobody is free."))
    rid = call.turn(7.0, 8.0)
    call(ev.ReplyDone(rid, 9.0, "Transferring you to the desk.", actions=(DESK,)))
    call(ev.TransferResult(True, 10.0))
    assert call.c.ended and len(call.c.transfers) == 2


def test_time_limit_cuts_the_reply_and_says_goodbye():
    call = Call(max_duration_s=30, time_limit="Time is up.")
    call.greet()
    rid = call.turn(2.0, 3.0)
    call.answer(rid, 4.0)
    out = call(ev.TimerFired(MAX_DURATION, 30.0))
    assert [type(c) for c in out[:3]] == [ev.Flush, ev.Cancel, ev.Say]
    assert not out[0].barge_in
    call(ev.PlaybackStopped(rid, 30.01, "We open"))
    assert call.c.turns[0].interrupted and call.c.turns[0].reply_text == "We open"


def test_the_caller_hanging_up_stops_and_records_the_reply():
    call = Call()
    call.greet()
    rid = call.turn(2.0, 3.0)
    call.answer(rid, 4.0)
    out = call(ev.CallerLeft(4.5))
    assert ev.Flush(rid) in out and call.c.ended
    call(ev.PlaybackStopped(rid, 4.5, "We"))
    assert call.c.turns[0].interrupted and call.c.state is State.ENDED


def test_after_a_failed_transfer_a_bare_yes_or_noise_leaves_the_message_to_the_next_turn():
    call = Call()
    call.greet()
    rid = call.turn(2.0, 3.0)
    call(ev.ReplyDone(rid, 4.0, "Transferring you to the desk.", actions=(DESK,)))
    (say,) = call.only(ev.Say, call(ev.TransferResult(False, 5.0)))
    call(ev.ReplyDone(say.reply, 6.0, "Nobody is free."))

    def message_turn(start: float, heard: str, before_commit: bool) -> bool:
        """One turn; whether it was started as the message."""
        call(SpeechStarted(start))
        if before_commit:  # speculation: the words are known when the turn ends
            (reply,) = call.only(ev.StartReply, call(SpeechPaused(start + 1.0, AUDIO)))
            call(ev.Transcribed(reply.reply, start + 1.2, heard))
            call(TurnEnded(start + 1.8, start + 1.0, AUDIO))
        else:
            (reply,) = call.only(ev.StartReply, call(TurnEnded(start + 1.8, start + 1.0, AUDIO)))
            call(ev.Transcribed(reply.reply, start + 2.0, heard))
        call(ev.ReplyDone(reply.reply, start + 3.0, "Go ahead." if heard else ""))
        return reply.message

    assert message_turn(7.0, "Yes, please.", before_commit=False)
    assert message_turn(11.0, "", before_commit=True)  # noise: still waiting for the message
    assert message_turn(15.0, "Yeah.", before_commit=True)
    assert message_turn(19.0, "Tell Sam my wheel is bent.", before_commit=False)
    assert not message_turn(23.0, "When do you open?", before_commit=False)  # the message was taken
