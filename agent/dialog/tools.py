"""Tools a dialplan lets the agent use: hang up and transfer.

Two ways in, both deterministic to parse:
- the LLM ends its reply with a tag, `[hangup]` or `[transfer:NAME]` (the system prompt says
  so; the tag is cut out of the spoken text);
- the caller says one of the dialplan's trigger phrases, which runs the tool without asking
  the LLM (fast, and dependable with a small model).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.dialog.dialplan import Tools

TAG = re.compile(r"\[\s*(hangup|hang up|end call|transfer)\s*(?::\s*([\w .-]+?))?\s*\]", re.I)
# An unfinished tag at the end of the streamed text: hold it back until it completes.
PARTIAL_TAG = re.compile(r"\[[^\]]{0,40}$")


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class Transfer:
    target: str  # the dialplan's key
    uri: str
    spoken: str = ""  # how the agent names it


Action = Hangup | Transfer


def tool_instructions(tools: Tools) -> str:
    """What the system prompt says about the tools this dialplan allows ('' for none)."""
    lines = []
    if tools.hangup:
        lines.append(
            "When the caller says goodbye or wants to end the call, say goodbye and then write [hangup]."
        )
    if tools.transfer:
        targets = ", ".join(
            f"{name} ({t.description})" if t.description else name
            for name, t in tools.transfer.targets.items()
        )
        lines.append(
            "When the caller asks for a person or a department, write [transfer:NAME] with NAME one of: "
            f"{targets}. If nobody could take the call and the caller leaves a message, thank them and "
            "say it will be passed on."
        )
    return " ".join(lines)


def action_from_tag(name: str, arg: str | None, tools: Tools) -> Action | None:
    """The action a parsed tag asks for, if the dialplan allows it."""
    name = name.lower()
    if name in ("hangup", "hang up", "end call"):
        return Hangup() if tools.hangup else None
    if tools.transfer is None:
        return None
    targets = tools.transfer.targets
    key = (arg or "").strip().lower().replace(" ", "_")
    for target, spec in targets.items():
        if target.lower() == key:
            return Transfer(target, spec.uri, spec.spoken or target)
    # The model named no target, or one that does not exist: the first (the general) one.
    target, spec = next(iter(targets.items()))
    return Transfer(target, spec.uri, spec.spoken or target)


def _has_phrase(text: str, phrases: list[str]) -> bool:
    words = " " + re.sub(r"[^a-z0-9' ]+", " ", text.lower()) + " "
    return any(f" {p.lower().strip()} " in words for p in phrases if p.strip())


def action_from_phrase(text: str, tools: Tools) -> Action | None:
    """A tool the caller's words trigger directly, or None."""
    if tools.transfer:
        for name, spec in tools.transfer.targets.items():
            if _has_phrase(text, spec.phrases):
                return Transfer(name, spec.uri, spec.spoken or name)
    if tools.hangup and _has_phrase(text, tools.hangup.phrases):
        return Hangup()
    return None


DECLINES = re.compile(r"^\W*(no|nope|nah|no thanks|no thank you|not really|that's all|i'm good)\b\W*", re.I)


def declined(text: str) -> bool:
    """A short "no" (to an offer to take a message, say)."""
    return bool(DECLINES.match(text)) and len(text.split()) <= 4


ACCEPTS = re.compile(
    r"^\W*(yes|yeah|yep|yup|sure|ok|okay|alright|all right|please|of course|go ahead|i would|"
    r"i'd like that|that would be great)(\W+(yes|please|sure|thanks|thank you|ok|okay))*\W*$",
    re.I,
)


def accepted(text: str) -> bool:
    """A bare "yes" (to an offer to take a message): the message itself comes next."""
    return bool(ACCEPTS.match(text))


def message_to_come(text: str) -> bool:
    """Words heard while a message is expected that are not the message: a bare "yes" (answered
    "go ahead"), or nothing anyone could make out."""
    return not text.strip() or accepted(text)
