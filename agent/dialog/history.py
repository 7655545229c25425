"""The conversation as the LLM sees it: system prompt, then turns within a token budget.

Only what the caller actually heard of the agent's replies is kept, so after a barge-in the
model does not believe it said things the caller never heard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from agent.engines.llm import Message


def rough_tokens(text: str) -> int:
    """About 4 characters a token, for engines that cannot count."""
    return len(text) // 4 + 1


@dataclass
class History:
    system_prompt: str
    budget_tokens: int
    count_tokens: Callable[[str], int] = rough_tokens
    turns: list[Message] = field(default_factory=list)
    dropped: int = 0  # messages dropped to stay within budget

    def add_user(self, text: str) -> None:
        if self.turns and self.turns[-1]["role"] == "user":  # two caller turns in a row: one message
            self.turns[-1] = Message(role="user", content=f"{self.turns[-1]['content']} {text}")
        else:
            self.turns.append(Message(role="user", content=text))
        self._trim()

    def add_agent(self, text: str) -> None:
        """What the agent said, as far as the caller heard it (no marker: a small model would
        copy one into its next replies). Nothing heard: nothing said, the caller's words merge."""
        text = text.strip()
        if text:
            self.turns.append(Message(role="assistant", content=text))
        self._trim()

    def messages(self, pending_user: str | None = None) -> list[Message]:
        """The prompt: system, kept turns, and the caller's new words if not yet added."""
        msgs = [Message(role="system", content=self.system_prompt), *self.turns]
        if pending_user and msgs[-1]["role"] == "user":  # the caller went on after a cut-off turn
            msgs[-1] = Message(role="user", content=f"{msgs[-1]['content']} {pending_user}")
        elif pending_user:
            msgs.append(Message(role="user", content=pending_user))
        return msgs

    def _trim(self) -> None:
        # Drop the oldest messages; the last one is always kept, and a user message leads.
        while (
            len(self.turns) > 1
            and sum(self.count_tokens(m["content"]) for m in self.turns) > self.budget_tokens
        ):
            self.turns.pop(0)
            self.dropped += 1
            while len(self.turns) > 1 and self.turns[0]["role"] != "user":
                self.turns.pop(0)
                self.dropped += 1
