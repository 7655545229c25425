"""What the LLM is given: the system prompt, worked examples, and each turn's grounded words.

Written for 0.5B–1.5B models, which copy shapes better than they follow rules: the rules are
short, a few worked examples (a made-up salon, so no fact of the real business is shown twice)
show the answer shapes (yes/no first, "not sure → message or a person", digits read back one
by one), and each caller turn arrives with the dialplan facts picked for it. The system prompt
and the examples are the same on every turn, so llama.cpp reuses their evaluation.
"""

from __future__ import annotations

import re
import time

from agent.dialog.dialplan import Dialplan
from agent.dialog.history import History
from agent.dialog.knowledge import Knowledge, vocabulary
from agent.dialog.tools import tool_instructions
from agent.engines.llm import Message

STYLE = (
    "You are talking on the phone: answer in one or two short, plain sentences that sound natural "
    "when spoken. No lists, no markdown, no emoji."
)
GROUNDING = (
    "Answer from the facts given with the caller's words; they are true. Answer a yes/no question "
    "with yes or no first. If the facts do not answer it, say you're not sure and offer to take a "
    "message or to put the caller through; never make up names, prices or times. Never refuse a "
    "question about the business. When the caller gives a number, read it back digit by digit."
)
NO_FACTS = "(no fact covers this)"
_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Facts:\n- Open Tuesday to Saturday from 10 AM to 7 PM. Closed on Sunday and Monday.\n\n"
        "Caller: are you open on monday",
        "No, sorry, we're closed on Mondays.",
    ),
    ("Facts:\n- A haircut costs 30 dollars. Coloring costs 80 dollars.\n\nCaller: how much is a haircut",
     "A haircut is 30 dollars."),
    (
        f"Facts:\n{NO_FACTS}\n\nCaller: do you sell gift cards",
        "I'm not sure about that. Would you like me to take a message, or put you through to someone?",
    ),
    (
        "Facts:\n- To book, take the caller's name, phone number and preferred day.\n\n"
        "Caller: my number is 6 0 2 8 1 (digits: 6 0 2 8 1)",
        "Thanks. That's 6, 0, 2, 8, 1. Is that right?",
    ),
)  # fmt: skip
_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_TOKEN = re.compile(r"[a-z]+|\d+|[^\sa-z\d]", re.I)
_TIME_WORDS = re.compile(r"\b(today|tonight|tomorrow|now|currently|this (morning|afternoon|evening))\b", re.I)


def system_prompt(plan: Dialplan) -> str:
    persona = plan.system_prompt.strip()
    if plan.business and plan.business.lower() not in persona.lower():
        persona = f"{persona} You answer the phone for {plan.business}."
    rules = GROUNDING if plan.knowledge else "If you don't know something, say so briefly."
    return " ".join(p for p in (persona, rules, STYLE, tool_instructions(plan.tools)) if p)


def examples(plan: Dialplan) -> list[Message]:
    """The worked examples, with a transfer to the plan's first target when it has one."""
    shots = list(_EXAMPLES)
    if plan.tools.transfer is not None:
        first = next(iter(plan.tools.transfer.targets))
        shots.append((f"Facts:\n{NO_FACTS}\n\nCaller: can I talk to a person please", f"[transfer:{first}]"))
    out: list[Message] = []
    for user, agent in shots:
        out += [Message(role="user", content=user), Message(role="assistant", content=agent)]
    return out


def spoken_digits(text: str) -> str | None:
    """A number the caller said (4 digits or more, as digits or words, spaced or not), as
    single digits: "four seven 1 9-2" → "4 7 1 9 2"; None if there is none."""
    runs: list[str] = []
    run = ""
    for tok in _TOKEN.findall(text.lower()):
        if tok.isdigit():
            run += tok
        elif tok in _DIGIT_WORDS and (tok not in ("o", "oh") or run):
            run += _DIGIT_WORDS[tok]
        elif tok in ",-.":
            continue
        else:
            runs.append(run)
            run = ""
    runs.append(run)
    longest = max(runs, key=len)
    return " ".join(longest) if len(longest) >= 4 else None


def readback(text: str, min_digits: int = 5) -> str | None:
    """What a receptionist says to a phone or order number (`min_digits` or more) the caller
    just gave: each digit, then "Is that right?" — never left to a small model, which runs the
    digits together or drops some. None if the words hold no such number."""
    digits = spoken_digits(text)
    if digits is None or len(digits.split()) < min_digits:
        return None
    return f"That's {digits.replace(' ', ', ')}. Is that right?"


class Prompt:
    """One call's prompt builder: the history it shares with the controller, and the facts."""

    def __init__(self, plan: Dialplan, history: History) -> None:
        self.history = history
        self.knowledge = Knowledge.of(plan)
        self.stt_prompt = vocabulary(plan)  # Whisper's hints: the dialplan's words and names
        self._examples = examples(plan) if plan.knowledge else []

    def opening(self) -> list[Message]:
        """What every turn's prompt starts with (to warm the LLM's cache)."""
        return self._with_examples(self.history.messages())

    def answered(self, greeting: str) -> list[Message]:
        """What the LLM is primed with when a call is answered: the turns' prefix, then the
        greeting (the server primes the main dialplan's at start-up, so the first call does
        not wait for a whole system prompt to be evaluated)."""
        msgs = self.opening()
        if greeting:
            msgs.append(Message(role="assistant", content=greeting))
        return msgs

    def for_turn(self, text: str) -> list[Message]:
        """The prompt for answering the caller's `text` (merged with words of theirs the
        agent has not answered yet)."""
        msgs = self._with_examples(self.history.messages(pending_user=text))
        msgs[-1] = Message(role="user", content=self.grounded(msgs[-1]["content"]))
        return msgs

    def grounded(self, words: str) -> str:
        """The caller's words with the facts for them (only dialplans with knowledge)."""
        if not self.knowledge.entries:
            return words
        picked = self.knowledge.pick(words)
        facts = "\n".join(f"- {e.fact}" for e in picked) if picked else NO_FACTS
        notes = []
        if (digits := spoken_digits(words)) is not None:
            notes.append(f"digits: {digits}")
        if _TIME_WORDS.search(words):
            notes.append(time.strftime("it is now %A %I:%M %p").replace(" 0", " "))
        note = f" ({'; '.join(notes)})" if notes else ""
        return f"Facts:\n{facts}\n\nCaller: {words}{note}"

    def _with_examples(self, msgs: list[Message]) -> list[Message]:
        return [msgs[0], *self._examples, *msgs[1:]]
