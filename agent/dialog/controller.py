"""The turn controller: every decision of a call, as events in and commands out.

`TurnController.handle(event) -> list[Command]` is the whole interface. It holds the call's
state (listening, thinking, speaking, ...), the reply in progress, the conversation history
and each turn's timing record, and decides: when a caller's turn starts a reply (speculatively
at a pause, committed at its end), when caller speech is a barge-in, when silence earns a
reprompt or a goodbye, what a finished reply's tools do. It does no I/O (it logs) and has no
clock: every event carries its time, so its tests are instant sequences of events.

Where things are decided: barge-in in `_on_sustained`, end of turn in `_on_turn_ended`,
speculation in `_on_paused` / `_on_resumed` (and Prefill while the caller talks), silence and
time limits in `_on_timer`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import structlog

from agent.dialog import events as ev
from agent.dialog import turns as sp
from agent.dialog.backchannel import is_backchannel
from agent.dialog.dialplan import Dialplan
from agent.dialog.endofturn import silence_after
from agent.dialog.history import History
from agent.dialog.keypad import KeyAction, KeyCollected, KeyHangup, Keypad, KeySay, KeySwitch, KeyTransfer
from agent.dialog.replies import ECHO_GATE, ECHO_TAIL_S, HELD, KEYPAD, MAX_DURATION, SILENCE, Reply, State
from agent.dialog.silence import SilenceWatch
from agent.dialog.timing import TurnTiming
from agent.dialog.tools import Action, Hangup, Transfer, message_to_come

log = structlog.get_logger("session")


class TurnController:
    """One per call. Feed it events; carry out the commands it returns, in order."""

    def __init__(self, plan: Dialplan, history: History, ids: Iterator[int] | None = None) -> None:
        self.plan = plan
        self.history = history
        self.state = State.GREETING
        self.turns: list[TurnTiming] = []  # finished caller turns, in order
        self.transfers: list[Transfer] = []
        self._reply: Reply | None = None
        self._stopping: dict[int, Reply] = {}  # flushed, waiting for PlaybackStopped
        self._ids = ids or itertools.count(1)  # reply ids (a switched-to dialplan goes on counting)
        self._turn_start: float | None = None  # onset of the caller's turn in progress
        self._turn_index: int | None = None  # its number, once a reply was started for it
        self._turns_started = 0
        self._in_speech = False
        self._closing = False  # saying goodbye: not interruptible, then hang up
        self._failures = 0  # caller turns in a row answered with the fallback line
        self._message_next = False  # a transfer failed: the caller's next turn is a message
        self._silence = SilenceWatch(plan.silence)
        self.keypad = Keypad(plan.menu, plan.collect_digits)
        self._held: Reply | None = None  # paused while the caller talks over it (backchannel?)
        self._voiced = False  # the caller is talking now (not in a pause)
        self._out: list[ev.Command] = []

    @property
    def ended(self) -> bool:
        return self.state is State.ENDED

    def handle(self, event: ev.Event) -> list[ev.Command]:
        """Decide what `event` means for the call; returns the commands to carry out."""
        self._out = []
        match event:
            case ev.Started(t=t):
                self._on_started(t)
            case sp.SpeechStarted(t=t):
                self._in_speech = self._voiced = True
                self._turn_start, self._turn_index = t, None
                log.info("speech started")
            case sp.SpeechSustained():
                self._on_sustained(event)
            case sp.SpeechProgress(audio=audio) if self._reply is self._held is None and not self._blocked():
                self._emit(ev.Prefill(audio))  # nothing else in flight: prepare the reply
            case sp.SpeechPaused():
                self._on_paused(event)
            case sp.SpeechResumed(t=t):
                self._on_resumed(t)
            case sp.TurnEnded():
                self._on_turn_ended(event)
            case ev.Transcribed() | ev.FirstToken() | ev.ChunkSynthesised() | ev.ChunkStarted():
                self._on_progress(event)
            case ev.ReplyDone():
                self._on_reply_done(event)
            case ev.PlaybackStopped(reply=rid, t=t, heard=heard):
                stopped = self._stopping.pop(rid, None)
                if stopped is not None:
                    self._finish(stopped, heard, t)  # cut off by the caller
            case ev.TimerFired(name=name, t=t):
                self._on_timer(name, t)
            case ev.DtmfReceived(digit=digit, t=t):
                self._on_key(digit, t)
            case ev.TransferResult(ok=ok, t=t):
                self._on_transfer_result(ok, t)
            case ev.CallerLeft(t=t):
                for r in (self._reply, self._held):
                    if r is not None:
                        self._stop(r)
                self._set(State.ENDED)
        return self._out

    # --- start, speech --------------------------------------------------------------------
    def _on_started(self, t: float) -> None:
        self._silence.last_caller = self._silence.last_agent = t
        self._emit(ev.Notify({"type": "state", "state": str(self.state)}))
        self._emit(ev.SetTimer(MAX_DURATION, t + self.plan.max_duration_s))
        if opening := " ".join(
            x for x in (self.plan.greeting, self.plan.menu and self.plan.menu.prompt) if x
        ):
            self._say(opening)
        else:
            self._set(State.LISTENING)
            self._arm_silence()

    def _on_sustained(self, e: sp.SpeechSustained) -> None:
        """Barge-in: caller speech long enough while the agent thinks or speaks. While it
        speaks, it pauses at once; the caller's words decide (`_decide_held`)."""
        r = self._reply
        if r is None or not r.committed or self._closing or self.state is State.TRANSFERRING:
            return
        r.stopped_at = (e.onset, e.t)
        if not (r.playing and self.plan.turn.backchannel_max_ms):
            self._interrupt(r)
            return
        log.info("caller talks over the agent: paused")
        self._held, self._reply = r, None
        self._emit(ev.HoldOutput(True))
        self._emit(ev.SetTimer(HELD, e.onset + self.plan.turn.backchannel_max_ms / 1000))

    def _interrupt(self, r: Reply) -> None:
        if r.timing is not None:
            r.timing.barge_in, r.timing.audio_stopped = r.stopped_at
        log.info("barge-in", turn=r.timing.index if r.timing else None)
        self._emit(ev.Notify({"type": "barge_in"}))
        if self._held is r:
            self._held = None
        self._stop(r, barge_in=True)
        if self._reply is None:
            self._set(State.LISTENING)

    def _decide_held(self, words: str) -> None:
        """The caller's words over the paused agent are known: a backchannel (or noise) lets
        it go on where it paused; anything else is an interruption and a turn of its own."""
        held, r = self._held, self._reply
        assert held is not None and r is not None
        if not is_backchannel(words):
            self._interrupt(held)
            return
        log.info("backchannel: the agent goes on", heard=words)
        self._emit(ev.Cancel(r.id))
        self._turns_started, self._turn_index, self._turn_start = self._turns_started - 1, None, None
        self._held, self._reply = None, held
        self._emit(ev.HoldOutput(False))

    def _on_paused(self, e: sp.SpeechPaused) -> None:
        """Speculation: start STT and the LLM on what was said so far."""
        self._voiced = False
        if self._blocked() or self._reply is not None or self._turn_start is None:
            return
        timing = TurnTiming(speech_start=self._turn_start, speculative=True)
        self._start_reply(timing, e.audio, committed=False)
        if self.plan.turn.unfinished_silence_ms and self._held is None:  # its words decide: wait for them
            self._emit(ev.SetEndSilence(self.plan.turn.unfinished_silence_ms))

    def _on_resumed(self, t: float) -> None:
        self._voiced = True
        limit = self.plan.turn.backchannel_max_ms / 1000
        if (held := self._held) is not None and t - held.stopped_at[0] >= limit:
            self._interrupt(held)  # talking again, and long since: more than a backchannel
        r = self._reply
        if r is not None and not r.committed and not self._blocked():
            self._emit(ev.Cancel(r.id))
            self._reply = None
            log.info("speculation dropped: caller went on")

    def _on_turn_ended(self, e: sp.TurnEnded) -> None:
        """End of turn: commit the speculative reply, or start one."""
        self._in_speech = self._voiced = False
        if self._blocked():
            return
        self._silence.last_caller = e.t
        log.info("speech stopped", seconds=round(len(e.audio) / 16000, 2))
        r = self._reply
        if r is not None and r.committed:
            # Too short to barge in (a cough, an "mm-hm") while the agent was busy: ignored.
            log.info("short sound ignored while the agent talks")
            return
        if r is None:
            r = self._start_reply(TurnTiming(), e.audio, committed=True)
        else:
            r.committed = True
            self._emit(ev.Commit(r.id))
        assert r.timing is not None
        r.timing.speech_start = self._turn_start
        r.timing.speech_end, r.timing.turn_end = e.speech_end, e.t
        heard = r.timing.stt_done is not None  # else the words come later (Transcribed)
        self._turn_start, self._message_next = None, heard and r.message and message_to_come(r.user_text)
        if r.user_text:
            self._caption("caller", r.user_text)
        self._set(State.THINKING)

    # --- replies ----------------------------------------------------------------------------
    def _start_reply(self, timing: TurnTiming, audio: np.ndarray, committed: bool) -> Reply:
        # A caller's turn is numbered once: a dropped speculation and its successor share it.
        if self._turn_index is None:
            self._turn_index = self._turns_started
            self._turns_started += 1
        timing.index = self._turn_index
        r = self._reply = Reply(next(self._ids), timing, committed, self._message_next)
        self._emit(ev.StartReply(r.id, timing.index, audio, committed, self._message_next))
        return r

    def _say(self, text: str, actions: tuple[Action, ...] = ()) -> None:
        """Speak a fixed line now, instead of whatever was being said."""
        for r in (self._reply, self._held):
            if r is not None:
                self._stop(r)
        self._held = None
        self._reply = Reply(next(self._ids), None, committed=True)
        self._emit(ev.Say(self._reply.id, text, actions))
        if self.state is State.LISTENING:
            self._set(State.SPEAKING)

    def _stop(self, r: Reply, barge_in: bool = False) -> None:
        """Cancel a reply; a committed one is flushed and finished once PlaybackStopped says
        what was heard of it."""
        if r.committed:
            self._stopping[r.id] = r
            self._emit(ev.Flush(r.id, barge_in))
        self._emit(ev.Cancel(r.id))
        if self._reply is r:
            self._reply = None

    def _on_progress(self, e: ev.Transcribed | ev.FirstToken | ev.ChunkSynthesised | ev.ChunkStarted) -> None:
        r = self._reply
        if r is None or e.reply != r.id:
            return  # a cancelled reply's late news
        t = r.timing
        match e:
            case ev.Transcribed(text=text):
                r.user_text = text
                if t is not None:
                    t.stt_done, t.user_text = e.t, text
                if self._held is not None:
                    self._decide_held(text)
                elif not r.committed:  # at a pause: do the words sound finished? (none: noise)
                    ms = silence_after(text, self.plan.turn) if text else 0
                    self._emit(ev.SetEndSilence(ms or self.plan.turn.end_silence_ms))
                elif r.committed and text:
                    self._caption("caller", text)
                if r.committed:
                    self._message_next = self._message_next or (r.message and message_to_come(text))
            case ev.FirstToken() if t is not None and t.llm_first_token is None:
                t.llm_first_token = e.t
            case ev.ChunkSynthesised() if t is not None and t.tts_first_chunk is None:
                t.tts_first_chunk = e.t
            case ev.ChunkStarted():
                r.playing = True
                self._emit(ev.SetEchoGate(e.level_db - self.plan.turn.echo_margin_db))
                if t is not None and e.ack and t.ack_audio is None:
                    t.ack_audio = e.t
                elif t is not None and not e.ack and t.first_audio is None:
                    t.first_audio = e.t
                if e.text:
                    self._caption("agent", e.text)
                if self.state in (State.THINKING, State.LISTENING):
                    self._set(State.SPEAKING)

    def _on_reply_done(self, e: ev.ReplyDone) -> None:
        if self._held is not None and e.reply == self._held.id:  # it had all gone out already
            self._emit(ev.HoldOutput(False))
            if self._reply is not None:  # the caller's words over it are a turn of their own
                held, self._held = self._held, None
                return self._finish(held, e.text, e.t, e, listen=False)
            self._reply, self._held = self._held, None
        r = self._reply
        if r is None or e.reply != r.id:
            return
        tool = next((a for a in e.actions if isinstance(a, Hangup | Transfer)), None)
        ends = tool is not None or self._closing
        if r.timing is not None:  # a caller's turn: count fallbacks in a row
            self._failures = self._failures + 1 if e.failed else 0
        limit = self.plan.fallback_limit
        give_up = not ends and limit > 0 and self._failures >= limit
        self._finish(r, e.text, e.t, e, listen=not (ends or give_up))
        if isinstance(tool, Transfer):
            self._transfer(tool)
        elif ends:  # the hangup tool, or a goodbye (time limit, silence)
            self._hang_up()
        elif give_up:
            self._give_up()

    def _give_up(self) -> None:
        """Engines keep failing: hand the caller to a person if there is one, else apologise."""
        log.warning("engines keep failing: giving up on the conversation", fallbacks=self._failures)
        transfer = self.plan.tools.transfer
        if transfer is not None and transfer.targets:
            self._transfer_to(next(iter(transfer.targets)))
        else:
            self._close(self.plan.failure_goodbye)

    def _transfer_to(self, name: str) -> None:
        """Say the transfer line; the transfer starts once it has been said."""
        transfer = self.plan.tools.transfer
        assert transfer is not None
        target = transfer.targets[name]
        action = Transfer(name, target.uri, target.spoken or name)
        self._say(transfer.say.format(target=action.spoken), (action,))

    # --- the keypad ---------------------------------------------------------------------------
    def _on_key(self, digit: str, t: float) -> None:
        """A key press: it cuts off what the agent says (like a barge-in), then acts."""
        if self._blocked() or not self.keypad.active:
            log.info("dtmf ignored", digit=digit)
            return
        self._silence.last_caller = t  # a caller pressing keys is not a silent one
        if (r := self._reply) is not None and r.committed:  # an answer, or a prompt being said
            r.stopped_at = (t, t)
            self._interrupt(r)
        self._keys(self.keypad.press(digit, t))

    def _keys(self, actions: list[KeyAction]) -> None:
        for a in actions:
            match a:
                case KeySay(text=text):
                    self._say(text)
                case KeyTransfer(target=name):
                    self._transfer_to(name)
                case KeySwitch(dialplan=name):
                    self._set(State.ENDED)
                    self._emit(ev.SwitchDialplan(name))
                case KeyHangup() if self.plan.tools.hangup is not None:
                    self._close(self.plan.tools.hangup.goodbye)
                case KeyCollected(name=name, value=value):
                    self._emit(ev.Collected(name, value))
        if self.keypad.deadline is not None:
            self._emit(ev.SetTimer(KEYPAD, self.keypad.deadline))

    def _finish(
        self, r: Reply, heard: str, t: float, done: ev.ReplyDone | None = None, listen: bool = True
    ) -> None:
        """Record what the caller heard of a reply (`done`: it ended by itself, else it was
        cut off): in the history and in its timing record."""
        interrupted, actions, failed = (False, done.actions, done.failed) if done else (True, (), False)
        if r.user_text:
            self.history.add_user(r.user_text)
        self.history.add_agent(heard)
        if r.playing:
            self._silence.last_agent = t
            self._emit(ev.SetTimer(ECHO_GATE, t + ECHO_TAIL_S))
        if self._reply is r:
            self._reply = None
        timing = r.timing
        if timing is not None:
            # The caller's silence counts from the end of the answer to them (a long answer
            # must not use up their time), but not from a reprompt.
            self._silence.last_caller = t
            timing.reply_text, timing.interrupted = heard, interrupted
            timing.action = ",".join(_name(a) for a in actions) or ("fallback" if failed else "")
            if not r.user_text and not failed and not actions:
                timing.action = "ignored"  # noise, or nothing Whisper could make words of
            self.turns.append(timing)
            self._emit(ev.RecordTurn(timing))
        if listen and self._reply is None and not self._blocked():
            self._set(State.LISTENING)
            self._arm_silence()

    # --- tools, timers ------------------------------------------------------------------------
    def _hang_up(self) -> None:
        self._set(State.ENDED)
        self._emit(ev.HangUp())

    def _transfer(self, action: Transfer) -> None:
        self._set(State.TRANSFERRING)
        self.transfers.append(action)
        log.info("transfer requested", target=action.target, uri=action.uri)
        self._emit(ev.StartTransfer(action))

    def _on_transfer_result(self, ok: bool, t: float) -> None:
        if self.state is not State.TRANSFERRING:
            return
        if ok:
            self._set(State.ENDED)
            return
        self._set(State.LISTENING)
        assert self.plan.tools.transfer is not None
        self._say(self.plan.tools.transfer.unavailable)
        self._message_next = True

    def _on_timer(self, name: str, t: float) -> None:
        if name == ECHO_GATE:
            if self._reply is None or not self._reply.playing:
                self._emit(ev.SetEchoGate(None))
            return
        if self._closing or self.state is State.ENDED:
            return
        if name == KEYPAD:
            self._keys(self.keypad.timeout(t))
        elif name == MAX_DURATION:
            log.info("time limit reached", seconds=self.plan.max_duration_s)
            self._close(self.plan.time_limit)
        elif name == HELD and self._held is not None and self._voiced:
            self._interrupt(self._held)  # still talking: more than a backchannel
        elif name == SILENCE and self._idle():
            verdict = self._silence.verdict(t)
            if verdict is not None:
                log.info("caller silent", then=verdict)
            if verdict == "hang up":
                self._close(self.plan.silence.goodbye)
            elif verdict == "reprompt":
                self._say(self.plan.silence.reprompt)
            else:
                self._arm_silence()

    def _arm_silence(self) -> None:
        self._emit(ev.SetTimer(SILENCE, self._silence.next_check()))

    def _close(self, line: str) -> None:
        self._say(line)
        self._closing = True

    # --- small helpers ------------------------------------------------------------------------
    def _idle(self) -> bool:
        return self.state is State.LISTENING and self._reply is None and not self._in_speech

    def _blocked(self) -> bool:
        """Caller speech changes nothing while saying goodbye or transferring."""
        return self._closing or self.state in (State.TRANSFERRING, State.ENDED)

    def _caption(self, who: str, text: str) -> None:
        self._emit(ev.Notify({"type": "caption", "who": who, "text": text}))

    def _set(self, state: State) -> None:
        if state is not self.state:
            log.info("state", state=str(state), was=str(self.state))
            self.state = state
            self._emit(ev.Notify({"type": "state", "state": str(state)}))

    def _emit(self, command: ev.Command) -> None:
        self._out.append(command)


def _name(a: Action) -> str:
    return "hangup" if isinstance(a, Hangup) else f"transfer:{a.target}"
