"""Dialplans: YAML files that say how a called number is answered, validated at start-up.

Each file in the dialplan folder is one dialplan. `match` lists the called users/numbers it
answers (shell patterns: "sales", "+4930*"); exactly one dialplan has `default: true` and
answers everything else. Errors name file, line and field (see agent.yamlconf).
"""

from __future__ import annotations

import fnmatch
import re
import string
from collections.abc import Collection, Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TurnParams(_Strict):
    """Turn-taking. Defaults chosen by measurement (benchmarks/turns.py): 12 % of the pauses
    inside the corpus's utterances last 600 ms or more, 8 % 800 ms; on 2 cores the reply is
    ready 1.4 s or more after the caller stops, so waiting 800 ms costs no latency, and
    speculation (STT + LLM from 200 ms of silence on) hides most of the work."""

    start_threshold: float = Field(0.5, gt=0, lt=1)  # VAD probability that counts as speech
    end_threshold: float = Field(0.35, gt=0, lt=1)  # below this, speech has paused (hysteresis)
    # Shorter sounds never start a turn. Low, so a barge-in pauses the agent fast: a noise that
    # gets through only pauses it (Whisper makes no words of it, and the agent goes on).
    min_speech_ms: int = Field(80, ge=20, le=2000)
    end_silence_ms: int = Field(800, ge=100, le=5000)  # silence that ends the caller's turn
    # ... when Whisper's words so far end mid-phrase ("for", "and", "um", "..."): the caller is
    # thinking. 0: no difference.
    unfinished_silence_ms: int = Field(2000, ge=0, le=10000)
    # ... when they sound finished (any other words): the answer need not wait the full
    # end_silence_ms. 0: no difference.
    finished_silence_ms: int = Field(500, ge=0, le=5000)
    # Start STT and the LLM after this much silence, speculatively; committed if the silence
    # holds to end_silence_ms, dropped if the caller goes on. 0 turns it off.
    speculative_ms: int = Field(200, ge=0, le=5000)
    # After this much of the caller's speech (once a turn), transcribe what was said so far and
    # have the LLM read the prompt for it: at the end of the turn only the last words are new
    # to the LLM. Uses CPU that is idle while the caller talks. 0 turns it off.
    prefill_ms: int = Field(800, ge=0, le=10000)
    barge_in_min_ms: int = Field(80, ge=20, le=2000)  # caller speech that pauses/stops the agent
    # While the agent talks, caller speech pauses it; what Whisper hears decides: a backchannel
    # ("uh-huh", "okay", a cough) resumes it where it paused, other words stop it. Speech
    # longer than this stops it whatever it says. 0: every barge-in stops the agent at once.
    backchannel_max_ms: int = Field(1000, ge=0, le=5000)
    # While the agent talks, caller audio quieter than the agent's level minus this margin is
    # its own echo, not speech.
    echo_margin_db: float = Field(12.0, ge=0, le=60)
    preroll_ms: int = Field(300, ge=0, le=2000)  # audio kept from before speech onset
    max_utterance_s: float = Field(30.0, ge=1, le=120)

    @model_validator(mode="after")
    def _order(self) -> TurnParams:
        if self.end_threshold > self.start_threshold:
            raise ValueError("end_threshold must not be above start_threshold")
        if self.speculative_ms >= self.end_silence_ms:
            raise ValueError("speculative_ms must be below end_silence_ms (or 0 to turn it off)")
        if (
            self.finished_silence_ms
            and not self.speculative_ms < self.finished_silence_ms <= self.end_silence_ms
        ):
            raise ValueError("finished_silence_ms must be between speculative_ms and end_silence_ms (or 0)")
        if 0 < self.unfinished_silence_ms < self.end_silence_ms:
            raise ValueError("unfinished_silence_ms must not be below end_silence_ms (or 0 to turn it off)")
        return self


class SttHints(_Strict):
    prompt: str = ""  # Whisper initial prompt: vocabulary and style
    hotwords: str = ""  # names and terms to favour


class LlmParams(_Strict):
    max_tokens: int = Field(90, ge=8, le=1024)  # a spoken reply: two or three short sentences
    temperature: float | None = Field(None, ge=0, le=2)  # None: the engine's default
    history_tokens: int = Field(1000, ge=100, le=30000)  # budget for past turns (system prompt apart)
    timeout_s: float | None = Field(None, gt=0)  # None: llm.timeout_s of the config


class SilenceParams(_Strict):
    reprompt_after_s: float = Field(8.0, gt=0)
    reprompt: str = "Are you still there? How can I help?"
    hangup_after_s: float = Field(20.0, gt=0)
    goodbye: str = "I haven't heard anything, so I'll end the call now. Goodbye!"

    @model_validator(mode="after")
    def _order(self) -> SilenceParams:
        if self.hangup_after_s <= self.reprompt_after_s:
            raise ValueError("hangup_after_s must be longer than reprompt_after_s")
        return self


BRIEFING_FIELDS = ("caller", "said", "target")


class TransferTarget(_Strict):
    uri: str = Field(pattern=r"^(sips?|tel):")
    spoken: str = ""  # how the agent names it ("the front desk"); default: the key
    description: str = ""  # what the LLM is told this target is for
    phrases: list[str] = []  # caller phrases that transfer straight away, no LLM
    # blind: SIP REFER, the caller's side places the new call. warm: the agent calls the
    # target itself with the caller on hold, briefs the human, and joins the two calls.
    mode: Literal["blind", "warm"] = "blind"
    ring_timeout_s: float = Field(25.0, gt=0, le=120)  # warm: unanswered by then = no answer
    decide_timeout_s: float = Field(12.0, gt=0, le=60)  # warm: after the briefing, for 1/2 or yes/no
    # warm: what the human hears (the caller never does): {caller} their number or name,
    # {said} the caller's last words to the agent, {target} this target's spoken name.
    briefing: str = (
        "Hello, this is the voice agent with a caller, {caller}. They said: {said}. "
        "Press 1 or say yes to take the call; press 2 or say no to decline."
    )

    @field_validator("briefing")
    @classmethod
    def _briefing_fields(cls, v: str) -> str:
        try:
            v.format(**dict.fromkeys(BRIEFING_FIELDS, "x"))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"placeholders allowed: {{caller}}, {{said}}, {{target}} ({exc!r})") from None
        return v


class HangupTool(_Strict):
    goodbye: str = "Thank you for calling. Goodbye!"
    phrases: list[str] = []  # caller phrases that end the call straight away


class TransferTool(_Strict):
    say: str = "Please hold, I'm transferring you to {target}."
    # Said when a transfer fails (busy, no answer, refused); the caller's next words, unless a
    # "no", are kept as their message (the call record's `message`, in call.ended).
    unavailable: str = "I'm sorry, nobody can take your call right now. Would you like to leave a message?"
    # Said after the caller's words that follow `unavailable` (unless a "no"): those words are
    # the message, kept as they are (no LLM, no tool runs on them).
    message_taken: str = "Thank you, I'll pass your message on. Is there anything else I can help you with?"
    # Said to a bare "yes" to `unavailable`: the message is the caller's next turn.
    message_prompt: str = "Of course, go ahead."
    targets: dict[Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]+$")], TransferTarget] = Field(
        min_length=1
    )
    # What a caller on hold hears during a warm transfer: "tone" (a soft two-note chime every
    # few seconds), or a WAV file (any rate, mono; a path relative to the dialplan's folder).
    hold_audio: str = "tone"

    @field_validator("say")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        try:
            v.format(target="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"the only placeholder allowed is {{target}} ({exc!r})") from None
        return v


class KnowledgeEntry(_Strict):
    """One fact the agent may use, picked per turn for the questions it answers."""

    topic: str = ""  # a short label ("opening hours")
    fact: str = Field(min_length=1)  # a self-contained sentence or two, as it may be said aloud
    asks: list[str] = []  # example caller questions this fact answers (help picking it)


class CollectField(_Strict):
    """A field the post-call step fills from the transcript (agent/records/summary.py)."""

    type: Literal["text", "phone", "digits", "number", "day", "date", "yes_no", "email"] = "text"
    description: str = ""  # what it is, for the model ("the caller's name")
    pattern: str | None = None  # a regex the value must match in full (else it is left empty)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return v


Key = Annotated[str, StringConstraints(pattern=r"^[0-9*#ABCD]$")]


class MenuOption(_Strict):
    """What one key of the menu does: exactly one of these."""

    say: str | None = None  # a line, then the caller may press again or talk
    transfer: str | None = None  # a transfer target's key (tools.transfer.targets)
    dialplan: str | None = None  # go on with another dialplan (its greeting first)
    collect: str | None = None  # read a number on the keypad (a `collect_digits` entry)
    repeat: bool = False  # say the menu again
    hangup: bool = False  # say the hangup tool's goodbye, then BYE

    @model_validator(mode="after")
    def _one(self) -> MenuOption:
        chosen = [k for k in ("say", "transfer", "dialplan", "collect") if getattr(self, k) is not None]
        chosen += [k for k in ("repeat", "hangup") if getattr(self, k)]
        if len(chosen) != 1:
            raise ValueError("an option does exactly one of say, transfer, dialplan, collect, repeat, hangup")
        return self


class Menu(_Strict):
    """A keypad menu: said after the greeting; a key press (RFC 4733 or SIP INFO) picks an
    option at any time, cutting off what the agent is saying. Callers may still just talk."""

    prompt: str = Field(min_length=1)  # "For our hours press 1, to speak to someone press 0."
    options: dict[Key, MenuOption] = Field(min_length=1)
    invalid: str = "Sorry, that key is not an option."


class DigitCollect(_Strict):
    """Reading a number from the keypad (an account or order number)."""

    prompt: str = Field(min_length=1)  # "Please enter your order number, then the hash key."
    max_length: int = Field(12, ge=1, le=64)  # complete once this many digits are in
    min_length: int = Field(1, ge=1, le=64)
    terminator: Key | None = "#"  # ends the entry early (not part of the value)
    inter_digit_s: float = Field(3.0, gt=0, le=60)  # a pause this long ends the entry
    timeout_s: float = Field(10.0, gt=0, le=120)  # no key at all this long: say the prompt again
    reprompts: int = Field(2, ge=0, le=10)
    readback: bool = True  # "You entered 4, 1, 7. Thank you."
    done: str = "Thank you."
    failed: str = "Sorry, I didn't get that."

    @model_validator(mode="after")
    def _lengths(self) -> DigitCollect:
        if self.min_length > self.max_length:
            raise ValueError("min_length must not be above max_length")
        return self


class RecordingParams(_Strict):
    """Whether calls are recorded (stereo WAV: caller left, agent right) and for how long the
    recordings are kept; call records and transcripts stay."""

    enabled: bool = True
    retention_days: float = Field(30.0, gt=0, le=36500)


class AccessParams(_Strict):
    """Who may reach this dialplan, beyond `sip.access` (which every call passes first)."""

    trunks: list[str] = []  # names in sip.trunks: only calls from their addresses (others: 403)
    anonymous: bool = True  # false: a caller who withholds its identity gets 433

    def refusal(self, trunks: Collection[str], anonymous: bool) -> tuple[int, str] | None:
        """The SIP status and reason refusing a caller from these trunks, or None to answer."""
        if self.trunks and not set(self.trunks) & set(trunks):
            return 403, "this number takes calls from its trunks only"
        if anonymous and not self.anonymous:
            return 433, "anonymous callers are not answered"
        return None


class Tools(_Strict):
    hangup: HangupTool | None = None
    transfer: TransferTool | None = None


class AmdParams(_Strict):
    """Answering-machine detection on outgoing calls (agent/dialog/amd.py), in seconds."""

    human_speech_s: float = Field(1.6, gt=0, le=10)  # a first utterance longer than this: a machine
    end_silence_s: float = Field(0.7, gt=0, le=5)  # quiet after a short one: a person, waiting
    silent_s: float = Field(3.5, gt=0, le=30)  # nothing said by then: unknown (go on as with a person)
    words_after_s: float = Field(0.9, ge=0, le=10)  # of speech: Whisper reads the words so far
    greeting_max_s: float = Field(45.0, gt=0, le=300)  # a machine's greeting and beep, at most
    greeting_end_s: float = Field(1.5, gt=0, le=10)  # quiet that ends a greeting without a beep


VARIABLE_FIELDS = ("greeting", "system_prompt", "voicemail")  # where {name} placeholders may be


class Dialplan(_Strict):
    """How calls to the matching users are answered."""

    name: str = ""  # defaults to the file name
    kind: Literal["agent", "echo"] = "agent"
    match: list[str] = []
    default: bool = False
    greeting: str = ""
    system_prompt: str = "You are a helpful phone assistant."
    business: str = ""  # the business's name: for the prompt and Whisper's vocabulary
    # The facts the agent answers from; the ones relevant to each turn are put next to the
    # caller's words (a small model uses facts there far more reliably than in the prompt).
    knowledge: list[KnowledgeEntry] = []
    voice: str | None = None  # a Piper voice; None: the config's tts.voice
    stt: SttHints = SttHints()
    turn: TurnParams = TurnParams()
    llm: LlmParams = LlmParams()
    tools: Tools = Tools()
    silence: SilenceParams = SilenceParams()
    menu: Menu | None = None
    collect_digits: dict[
        Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")], DigitCollect
    ] = {}
    recording: RecordingParams = RecordingParams()
    access: AccessParams = AccessParams()
    # After the call: a two-sentence summary, and these fields filled from the transcript
    # (docs/records.md). Both ride on call.ended and are kept in the call record.
    summary: bool = True
    collect: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")], CollectField] = {}
    max_duration_s: float = Field(600.0, gt=0, le=86400)
    time_limit: str = "We've reached the time limit for this call. Thank you for calling, goodbye!"
    fallback: str = "Sorry, I'm having trouble right now. Could you say that again?"
    # After this many turns in a row answered with the fallback (an engine failing), the caller
    # is transferred to the first transfer target, or hears `failure_goodbye`. 0: never.
    fallback_limit: int = Field(2, ge=0, le=100)
    failure_goodbye: str = "I'm sorry, I can't help you right now. Please call again later. Goodbye!"
    # Said in turn as soon as the caller's words are known, while the answer is prepared (a
    # receptionist's "Okay."): the caller hears the agent within the end-of-turn silence
    # instead of after the whole STT → LLM → TTS chain. Empty: off.
    acknowledgements: list[str] = []
    echo_delay_s: float = Field(0.5, ge=0, le=5)  # kind: echo
    # Values a call brings ({name} in the greeting, system prompt and voicemail; an outgoing
    # call's `variables`): name -> default, null for one an outgoing call must give.
    variables: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")], str | None] = {}
    voicemail: str = ""  # said to an answering machine after its beep (outgoing calls); "": none
    amd: AmdParams = AmdParams()

    @model_validator(mode="after")
    def _placeholders(self) -> Dialplan:
        for name in VARIABLE_FIELDS:
            try:
                used = {f for _, f, _, _ in string.Formatter().parse(getattr(self, name)) if f is not None}
            except ValueError as exc:
                raise ValueError(f"{name}: {exc} (a literal brace is written {{{{ or }}}})") from None
            if unknown := sorted(used - self.variables.keys()):
                raise ValueError(
                    f"{name}: unknown placeholder {{{unknown[0]}}}: declare it under `variables`"
                )
        return self

    def render(self, values: Mapping[str, str]) -> Dialplan:
        """This dialplan with a call's variables filled in (defaults for those not given)."""
        if not self.variables:
            return self
        filled = {k: v or "" for k, v in self.variables.items()} | dict(values)
        return self.model_copy(update={f: getattr(self, f).format(**filled) for f in VARIABLE_FIELDS})

    @model_validator(mode="after")
    def _agent_needs(self) -> Dialplan:
        if not self.match and not self.default:
            raise ValueError("a dialplan needs `match` patterns or `default: true`")
        targets = self.tools.transfer.targets if self.tools.transfer else {}
        for key, o in (self.menu.options if self.menu else {}).items():
            if o.transfer is not None and o.transfer not in targets:
                raise ValueError(
                    f"menu key {key}: no transfer target {o.transfer!r} in tools.transfer.targets"
                )
            if o.collect is not None and o.collect not in self.collect_digits:
                raise ValueError(f"menu key {key}: no {o.collect!r} in collect_digits")
            if o.hangup and self.tools.hangup is None:
                raise ValueError(f"menu key {key}: hangup needs tools.hangup (its goodbye line)")
        return self

    def matches(self, user: str) -> bool:
        return any(fnmatch.fnmatchcase(user, p) for p in self.match)
