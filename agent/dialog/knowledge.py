"""Pick the dialplan facts that answer the caller's words (per turn, in microseconds).

A small LLM answers from facts put right next to the question far more reliably than from a
long system prompt, so each turn gets the two or three entries that share the most (rare)
words with what the caller said. Words are folded onto a few concepts callers reach by many
words ("how much" and "price", "weekend" and "saturday"), so "what do you charge for a
filling" finds "A filling costs 140 dollars". No entry matching is information too: the
prompt then says the facts do not cover it, and the model offers a message or a human.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from agent.dialog.dialplan import Dialplan, KnowledgeEntry

_WORD = re.compile(r"[a-z0-9]+")


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_STOP_WORDS = (  # apostrophes are dropped first: "i'm" is "im"
    "a about am an and any anything are as at be been but by can could did do does doing for "
    "from get got have hello hey hi how i id im if in is it its just like may me my of on "
    "or our please so some that the their them then there these they this to uh um us was we "
    "were what which will with would you your yes no okay ok well want need know tell "
    "something thanks thank"
)
_STOP = _word_set(_STOP_WORDS)
# Words callers use for the same thing, folded onto one concept word on both sides.
_CONCEPTS = {
    "hours": "open opens opening close closes closing closed hour hours time times when late early "
    "today tonight tomorrow",
    "price": "price prices cost costs much charge charges fee fees dollar dollars pay expensive cheap "
    "rate rates",
    "address": "where address located location street find directions avenue",
    "saturday": "saturday saturdays weekend weekends",
    "sunday": "sunday sundays weekend weekends",
    "weekday": "weekday weekdays monday tuesday wednesday thursday friday",
    "book": "book booking appointment appointments reserve reservation reservations schedule table slot",
    "staff": "who doctor doctors dentist dentists staff chef mechanic manager owner name works",
    "park": "park parking car garage",
    "insurance": "insurance insurer insurers plan coverage cover covered",
    "card": "card cards cash credit payment payments visa mastercard",
}
_FOLD: dict[str, set[str]] = {}
for _concept, _words in _CONCEPTS.items():
    for _w in _words.split():
        _FOLD.setdefault(_w, set()).add(_concept)


def terms(text: str) -> set[str]:
    """The words of `text` that can match: lower case, no stop words, crude singulars, plus
    the concepts they stand for."""
    out: set[str] = set()
    for w in _WORD.findall(text.lower().replace("'", "")):
        if w in _STOP or (len(w) < 3 and not w.isdigit()):
            continue
        out |= _FOLD.get(w, set())
        out.add(w[:-1] if len(w) > 4 and w.endswith("s") and not w.endswith("ss") else w)
    return out


_PERSONA_ASKS = ("who am I speaking with", "what's your name", "who is this", "are you a person or a robot")


def _first_sentence(text: str) -> str:
    """The persona's first sentence, in the agent's own voice ("You are Sam" → "I am Sam"): as
    a fact, small models read "you" as the caller."""
    m = re.match(r"\s*(.+?[.!?])(\s|$)", text, re.S)
    sentence = " ".join((m.group(1) if m else text).split())
    return re.sub(r"^You are\b", "I am", sentence)


@dataclass(frozen=True)
class Knowledge:
    """A dialplan's facts, indexed for `pick`."""

    entries: tuple[KnowledgeEntry, ...]
    _terms: tuple[frozenset[str], ...]
    _idf: dict[str, float]

    @classmethod
    def of(cls, plan: Dialplan) -> Knowledge:
        entries = tuple(plan.knowledge)
        if entries and (persona := _first_sentence(plan.system_prompt)):  # "who am I talking to?"
            entries += (KnowledgeEntry(topic="who you are", fact=persona, asks=list(_PERSONA_ASKS)),)
        index = tuple(frozenset(terms(" ".join([e.topic, e.fact, *e.asks]))) for e in entries)
        df = Counter(t for ts in index for t in ts)
        n = len(entries)
        idf = {t: math.log(1 + n / c) for t, c in df.items()}
        return cls(entries, index, idf)

    def pick(self, text: str, k: int = 2) -> list[KnowledgeEntry]:
        """The (at most `k`) entries that best match `text`, in dialplan order; [] if none does."""
        asked = terms(text)
        scored = sorted(
            ((sum(self._idf[t] for t in asked & ts), i) for i, ts in enumerate(self._terms)),
            key=lambda s: (-s[0], s[1]),
        )
        best = scored[0][0] if scored else 0.0
        if best <= 0:
            return []
        # Runners-up only when nearly as good: a second weak match distracts a small model.
        # In the dialplan's order, not by score: the prompt read while the caller was still
        # talking then shares more of its start with the final one (llama.cpp reuses it).
        picked = sorted(i for score, i in scored[:k] if score >= 0.6 * best)
        return [self.entries[i] for i in picked]


_NAME = re.compile(r"[A-Z][A-Za-z'\-]*\.?(?:\s+(?:[A-Z][A-Za-z'\-]*\.?|of|de|la|del|van|von))*")
_COMMON = _word_set(
    "The It Its We Our A An To There This That For If On In At And Or But Please Yes No Open Closed "
    "All Any May Monday Tuesday Wednesday Thursday Friday Saturday Sunday AM PM"
)
_CONNECTORS = _word_set("of de la del van von")


def _names(text: str) -> list[str]:
    """Capitalised word runs that are names: not a sentence's first word alone, not days."""
    out = []
    for m in _NAME.finditer(text):
        words = m.group().split()
        initial = m.start() == 0 or text[: m.start()].rstrip().endswith((".", "!", "?", ":"))
        while words and (words[0].rstrip(".") in _COMMON or words[0] in _CONNECTORS):
            words.pop(0)
            initial = False if words else initial
        while words and (words[-1] in _CONNECTORS or words[-1].rstrip(".") in _COMMON):
            words.pop()
        if not words or (len(words) == 1 and (initial or words[0].endswith("."))):
            continue
        out.append(" ".join(words).rstrip("."))
    return out


def vocabulary(plan: Dialplan, limit_words: int = 60) -> str:
    """Whisper's prompt for this dialplan: its explicit `stt.prompt`, then the names in its
    business name and facts (people, brands, places), so "Okafor" and "Meridian Care" are
    spelled as the business does. Whisper reads only the last ~220 tokens of a prompt."""
    given = plan.stt.prompt.strip().rstrip(".")
    names = dict.fromkeys(
        n
        for t in (plan.business, *(e.fact for e in plan.knowledge))
        for n in _names(t)
        if n.lower() not in given.lower()
    )
    picked: list[str] = []
    count = len(given.split())
    for name in names:
        count += len(name.split())
        if count > limit_words:
            break
        picked.append(name)
    words = ", ".join(p for p in (given, *picked) if p)
    return f"{words}." if words else ""
