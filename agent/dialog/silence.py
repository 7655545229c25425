"""When a silent caller earns a reprompt or a goodbye (pure: times in, verdicts out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.dialog.dialplan import SilenceParams


@dataclass
class SilenceWatch:
    """The caller's silence counts from their last words or the end of the last answer to them;
    a reprompt waits for the agent's own last words too (never right after it spoke)."""

    params: SilenceParams
    last_caller: float = 0.0
    last_agent: float = 0.0

    def next_check(self) -> float:
        p = self.params
        return min(
            self.last_caller + p.hangup_after_s, max(self.last_caller, self.last_agent) + p.reprompt_after_s
        )

    def verdict(self, t: float) -> Literal["hang up", "reprompt"] | None:
        """What silence until `t` calls for (None: nothing yet; check again at next_check())."""
        if t >= self.last_caller + self.params.hangup_after_s:
            return "hang up"
        if t >= max(self.last_caller, self.last_agent) + self.params.reprompt_after_s:
            return "reprompt"
        return None
