"""The controller's view of a call: its state, the replies it started, its timer names."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from agent.dialog.timing import TurnTiming

ECHO_TAIL_S = 0.5  # the agent's audio may come back this long after it was sent
# Timer names
MAX_DURATION, SILENCE, ECHO_GATE, HELD, KEYPAD = "max_duration", "silence", "echo_gate", "held", "keypad"


class State(enum.StrEnum):
    GREETING = "greeting"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    TRANSFERRING = "transferring"
    ENDED = "ended"


@dataclass
class Reply:
    """The controller's view of one reply (the engine work is the runner's)."""

    id: int
    timing: TurnTiming | None  # None for a fixed line (greeting, reprompt, ...)
    committed: bool
    message: bool = False  # the words are a message (see StartReply)
    user_text: str = ""
    playing: bool = False  # some of its audio has gone out
    stopped_at: tuple[float, float] = (0.0, 0.0)  # caller's onset, agent paused/stopped
