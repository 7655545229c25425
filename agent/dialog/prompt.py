"""The system prompt a dialplan gives the LLM."""

from __future__ import annotations

from agent.dialog.dialplan import Dialplan
from agent.dialog.tools import tool_instructions

STYLE = (
    "You are talking on the phone: answer in one or two short, plain sentences that sound natural "
    "when spoken. No lists, no markdown, no emoji. If you don't know something, say so briefly."
)


def system_prompt(plan: Dialplan) -> str:
    return " ".join(p for p in (plan.system_prompt.strip(), STYLE, tool_instructions(plan.tools)) if p)
