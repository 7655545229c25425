"""What the turn controller hears (events) and what it asks for (commands).

Events come from four places: the turn detector (caller speech), a reply's engine work
(transcript, first token, synthesised chunk, done), the output side (a chunk's audio started,
playback stopped with what was heard) and the runner (timers, DTMF, transfer result, the
caller hanging up). Every event carries `t`, a time.monotonic() instant: the controller has
no clock of its own. Commands are carried out by `agent.dialog.session.CallSession`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.dialog.timing import TurnTiming
from agent.dialog.tools import Action, Transfer
from agent.dialog.turns import SpeechEvent

# --- events: engine work of one reply (each names its reply) ----------------------------------


@dataclass(frozen=True)
class Transcribed:
    reply: int
    t: float
    text: str  # "" when Whisper found no words (noise)


@dataclass(frozen=True)
class FirstToken:
    reply: int
    t: float


@dataclass(frozen=True)
class ChunkSynthesised:
    reply: int
    t: float


@dataclass(frozen=True)
class ReplyDone:
    """Everything the reply produced has been played (or it produced nothing)."""

    reply: int
    t: float
    text: str  # all it said
    actions: tuple[Action, ...] = ()
    failed: bool = False  # an engine failed and the fallback line was said


# --- events: the output side ------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkStarted:
    """The first frame of a chunk went to the transport."""

    reply: int
    t: float
    text: str  # "" for an acknowledgement
    level_db: float  # the loudest speech level queued so far in this reply (for the echo gate)
    ack: bool = False


@dataclass(frozen=True)
class PlaybackStopped:
    """A Flush dropped the reply's queued audio; `heard` is what the caller got of it."""

    reply: int
    t: float
    heard: str


# --- events: the runner -----------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    t: float


@dataclass(frozen=True)
class TimerFired:
    name: str
    t: float


@dataclass(frozen=True)
class DtmfReceived:
    digit: str
    t: float


@dataclass(frozen=True)
class TransferResult:
    ok: bool
    t: float


@dataclass(frozen=True)
class CallerLeft:
    t: float


Event = (
    SpeechEvent
    | Transcribed
    | FirstToken
    | ChunkSynthesised
    | ReplyDone
    | ChunkStarted
    | PlaybackStopped
    | Started
    | TimerFired
    | DtmfReceived
    | TransferResult
    | CallerLeft
)

# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartReply:
    """Transcribe `audio` and answer it; plays nothing until committed. `message`: the words
    are a message for someone who could not take the call (thank the caller; no LLM, no tools)."""

    reply: int
    turn: int
    audio: np.ndarray = field(repr=False)
    committed: bool
    message: bool = False


@dataclass(frozen=True)
class Prefill:
    """The caller is still talking: transcribe `audio` (16 kHz, so far) and have the LLM read
    the prompt for it, so that at the end of the turn only the last words are new. Best
    effort: dropped if one is already running, never delays a reply."""

    audio: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Say:
    """Speak a fixed line (greeting, reprompt, goodbye, transfer lines)."""

    reply: int
    text: str
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class Commit:
    reply: int


@dataclass(frozen=True)
class Cancel:
    """Stop the reply's engine work (its queued audio stays unless flushed)."""

    reply: int


@dataclass(frozen=True)
class Flush:
    """Drop the reply's queued audio now; answered by PlaybackStopped."""

    reply: int
    barge_in: bool = False  # the caller interrupted (counted and logged as a barge-in)


@dataclass(frozen=True)
class HoldOutput:
    """Pause the agent's audio where it is (True) or resume it (False); a Flush also ends it."""

    on: bool


@dataclass(frozen=True)
class SetEndSilence:
    """The silence that ends the caller's turn in progress (they sound unfinished)."""

    ms: int


@dataclass(frozen=True)
class SetEchoGate:
    """Caller audio below `db` (dBFS) is not speech; None lifts the gate."""

    db: float | None


@dataclass(frozen=True)
class Notify:
    """An event for the caller's side channel (WebRTC data channel)."""

    event: dict[str, Any]


@dataclass(frozen=True)
class SetTimer:
    """Raise TimerFired(name) at `at` (replaces a pending timer of that name)."""

    name: str
    at: float


@dataclass(frozen=True)
class HangUp:
    pass


@dataclass(frozen=True)
class StartTransfer:
    transfer: Transfer


@dataclass(frozen=True)
class Collected:
    """A value the caller gave (digits on the keypad): for the call record's fields."""

    name: str
    value: str | None


@dataclass(frozen=True)
class SwitchDialplan:
    """Go on with another dialplan: a new conversation on the same call."""

    name: str


@dataclass(frozen=True)
class RecordTurn:
    """A caller's turn is over: log its timing record and feed the metrics."""

    timing: TurnTiming


Command = (
    StartReply
    | Prefill
    | Say
    | Commit
    | Cancel
    | Flush
    | HoldOutput
    | SetEndSilence
    | SetEchoGate
    | Notify
    | SetTimer
    | HangUp
    | StartTransfer
    | Collected
    | SwitchDialplan
    | RecordTurn
)
