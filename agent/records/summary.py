"""After a call: a two-sentence summary and the dialplan's `collect` fields, from the transcript.

It runs once the caller has left, as background LLM work (agent/dialog/services.py:
`background_chat`): queued behind every live call's work and giving way to it, so it never
delays a caller. A small model answers a line-per-field layout far more reliably than JSON, so
fields are asked as `name: value` lines; each value is then checked against its type and
pattern, and numbers (a phone number the caller gave) are taken from the caller's own words
when the model garbles them. What the model cannot fill stays empty (null), never invented.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from agent.dialog.dialplan import CollectField, Dialplan
from agent.dialog.prompt import spoken_digits
from agent.dialog.services import Services
from agent.dialog.tools import declined, message_to_come
from agent.engines.base import EngineError
from agent.engines.llm import Message
from agent.records.store import CallStore

log = structlog.get_logger("summary")

MAX_TRANSCRIPT_CHARS = 3000  # the end of a long call matters most (what was agreed)
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
EMPTY = {"", "none", "null", "n/a", "unknown", "not given", "not provided", "not mentioned", "-"}

SUMMARY_RULES = (
    "You write call notes for a business. Summarize the phone call in at most two short "
    "sentences: who called and what they wanted, then what the agent did or what should happen "
    "next. Use only what was said in the call. Write plain sentences, no lists."
)
FIELD_RULES = (
    "Read the phone call and fill in each field with what the caller said. Answer with exactly "
    "one line per field, `field: value`, in the order given. Write `field: none` when the caller "
    "did not say it. Never guess."
)


def transcript_text(record: dict[str, Any], greeting: str = "") -> str:
    lines = [f"Agent: {greeting}"] if greeting else []
    for t in record.get("turns", []):
        if t["caller"]:
            lines.append(f"Caller: {t['caller']}")
        if t["agent"]:
            lines.append(f"Agent: {t['agent']}" + (" (interrupted)" if t["interrupted"] else ""))
    text = "\n".join(lines)
    return text[-MAX_TRANSCRIPT_CHARS:]


def field_prompt(fields: dict[str, CollectField]) -> str:
    described = [
        f"- {name}: {f.description or name.replace('_', ' ')} ({_kind(f)})" for name, f in fields.items()
    ]
    return "Fields:\n" + "\n".join(described)


def _kind(f: CollectField) -> str:
    return {
        "text": "a few words",
        "phone": "a phone number, digits only",
        "digits": "digits only",
        "number": "a number",
        "day": "a day of the week",
        "date": "a date, YYYY-MM-DD",
        "yes_no": "yes or no",
        "email": "an email address",
    }[f.type]


def parse_fields(answer: str, fields: dict[str, CollectField], caller_words: str) -> dict[str, Any]:
    """The model's `name: value` lines → checked values (None where missing or invalid)."""
    said: dict[str, str] = {}
    for line in answer.splitlines():
        m = re.match(r"^\s*[-*]?\s*`?([A-Za-z_][A-Za-z0-9_ ]*?)`?\s*[:=]\s*(.*?)\s*$", line)
        if m:
            said.setdefault(m[1].strip().lower().replace(" ", "_"), m[2].strip().strip("`\"'."))
    return {name: check(said.get(name, ""), f, caller_words) for name, f in fields.items()}


def check(value: str, f: CollectField, caller_words: str = "") -> Any:
    """One value as its type wants it, and (for numbers, days, addresses) said by the caller:
    a small model fills a form with plausible inventions ("555-1234"). None otherwise."""
    v = value.strip()
    out: Any = None
    if v.lower() not in EMPTY:
        out = _typed(v, f)
    if out is not None and not _said(out, f, caller_words):
        out = None
    if out is None and f.type in ("phone", "digits"):  # the model garbled it: the caller's words
        digits = spoken_digits(caller_words)
        out = digits.replace(" ", "") if digits else None
    if out is not None and f.pattern is not None and not re.fullmatch(f.pattern, str(out)):
        return None
    return out


def _said(value: Any, f: CollectField, caller_words: str) -> bool:
    words = caller_words.lower()
    if f.type in ("phone", "digits", "number"):
        said = "".join(_digit_runs(words))
        return str(value).replace(".0", "") in said or str(value) in words
    if f.type in ("day", "email"):
        return str(value).lower() in words
    return True  # free text (a name, a reason) is the model's reading of the call


def _digit_runs(words: str) -> list[str]:
    """Every number in the words as digits (spoken digit by digit or written)."""
    runs = re.findall(r"\d+", words)
    spoken = spoken_digits(words)
    return [*runs, spoken.replace(" ", "")] if spoken else runs


def _typed(v: str, f: CollectField) -> Any:
    if f.type in ("phone", "digits"):
        digits = spoken_digits(v)
        return digits.replace(" ", "") if digits else None
    if f.type == "number":
        m = re.search(r"-?\d+(?:\.\d+)?", v.replace(",", ""))
        return (float(m[0]) if "." in m[0] else int(m[0])) if m else None
    if f.type == "day":
        return next((d for d in DAYS if d in v.lower()), None)
    if f.type == "date":
        m = re.search(r"\d{4}-\d{2}-\d{2}", v)
        return m[0] if m else None
    if f.type == "yes_no":
        word = v.lower().split()[0].strip(",.!")
        return {"yes": True, "no": False}.get(word)
    if f.type == "email":
        m = re.search(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", v)
        return m[0] if m else None
    return v[:200]


def left_message(record: dict[str, Any]) -> str | None:
    """What the caller said right after a transfer failed and they were offered to leave a
    message (the dialplan's `unavailable` line), unless they declined."""
    transfer = record.get("transfer") or {}
    if transfer.get("ok", True):
        return None
    turns = record.get("turns", [])
    asked = max((i for i, t in enumerate(turns) if t["action"].startswith("transfer:")), default=None)
    if asked is None:
        return None
    for turn in turns[asked + 1 :]:
        words = str(turn["caller"]).strip()
        if declined(words):
            return None
        if not message_to_come(words):
            return words
    return None


class Summarizer:
    """Writes each ended call's summary and fields, then raises its call.ended."""

    def __init__(self, services: Services, store: CallStore) -> None:
        self.services = services
        self.store = store

    async def summarize(self, call_id: str, plan: Dialplan | None) -> None:
        """Never raises: whatever fails, the call's call.ended still goes out."""
        summary: str | None = None
        fields: dict[str, Any] | None = None
        message: str | None = None
        try:
            record = self.store.get(call_id)
            message = left_message(record) if record is not None else None
            if record is not None and plan is not None and record["turns"]:
                text = transcript_text(record, plan.greeting)
                if plan.summary:
                    summary = await self._ask(SUMMARY_RULES, text, 90)
                if plan.collect:
                    answer = await self._ask(
                        f"{FIELD_RULES}\n\n{field_prompt(plan.collect)}", text, 24 * len(plan.collect)
                    )
                    caller_words = " ".join(t["caller"] for t in record["turns"])
                    fields = parse_fields(answer, plan.collect, caller_words)
            elif plan is not None and plan.collect:
                fields = dict.fromkeys(plan.collect)
        except EngineError as exc:
            log.warning("post-call summary failed", call=call_id, error=str(exc))
        except Exception:  # a bug here must not keep call.ended from going out
            log.exception("post-call summary failed", call=call_id)
        # (Cancelled at shutdown: no call.ended yet; the next start summarizes the call again.)
        self.store.announce(call_id, summary, fields, message)
        log.info("call summarized", call=call_id, summary=summary, fields=fields, message=message)

    async def _ask(self, rules: str, transcript: str, max_tokens: int) -> str:
        messages: list[Message] = [
            {"role": "system", "content": rules},
            {"role": "user", "content": f"The call:\n{transcript}"},
        ]
        return (await self.services.background_chat(messages, max_tokens=max_tokens)).strip()
