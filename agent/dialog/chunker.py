"""Cut a streamed LLM reply into speakable chunks, as early as the text allows.

The first chunk may end at a clause (the first comma, "Yes,") so the agent starts talking
sooner; later chunks end at sentences, which sound more natural. Tool tags are taken out of
the text and returned as actions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.dialog.dialplan import Tools
from agent.dialog.speakable import speakable
from agent.dialog.tools import PARTIAL_TAG, TAG, Action, action_from_tag

_SENTENCE = re.compile(r"[.!?]+[\"')\]]*\s")
_CLAUSE = re.compile(r"[,;:\u2014]\s")
# Words a phrase boundary usually comes before: a first chunk without punctuation is cut there.
_BREAK_BEFORE = re.compile(
    r"\s(?=(?:from|to|at|on|in|for|and|but|because|with|until|between|if|so|which|who)\s)", re.I
)


@dataclass
class Chunker:
    tools: Tools
    # A first chunk may end at the first comma: "Yes," / "No, sorry," is heard while the rest
    # is generated (the prompt asks for yes or no first).
    first_clause_words: int = 1
    first_phrase_words: int = 4  # ... and one cut before "from", "and", ... at least this many
    long_clause_words: int = 18  # any chunk this long may end at a comma
    first_max_words: int = 6  # a first chunk with no break is cut after this many words
    _buf: str = ""
    _chunks_out: int = 0
    actions: list[Action] = field(default_factory=list)

    def feed(self, piece: str) -> list[str]:
        """Add generated text; return the chunks now complete (speakable, non-empty)."""
        self._buf += piece
        self._take_tags()
        out: list[str] = []
        while (cut := self._cut()) is not None:
            text, self._buf = self._buf[:cut], self._buf[cut:]
            self._emit(text, out)
        return out

    def finish(self) -> list[str]:
        """The reply ended: whatever is left is the last chunk."""
        self._take_tags(final=True)
        out: list[str] = []
        self._emit(self._buf, out)
        self._buf = ""
        return out

    def _take_tags(self, final: bool = False) -> None:
        for m in TAG.finditer(self._buf):
            action = action_from_tag(m.group(1), m.group(2), self.tools)
            if action is not None and action not in self.actions:
                self.actions.append(action)
        self._buf = TAG.sub(" ", self._buf)
        if final:
            self._buf = PARTIAL_TAG.sub("", self._buf)

    def _cut(self) -> int | None:
        text = self._buf
        held = PARTIAL_TAG.search(text)
        if held:  # never speak half a tag
            text = text[: held.start()]
        if m := _SENTENCE.search(text):
            return m.end()
        for m in _CLAUSE.finditer(text):
            words = len(text[: m.start()].split())
            need = self.first_clause_words if self._chunks_out == 0 else self.long_clause_words
            if words >= need:
                return m.end()
        if self._chunks_out == 0:  # the first chunk decides when the caller hears us: cut early
            for m in _BREAK_BEFORE.finditer(text):
                if len(text[: m.start()].split()) >= self.first_phrase_words:
                    return m.end()
            # No natural break yet: a long first chunk takes Piper long to synthesise, so cut
            # after a whole word once there are enough (the next piece must have begun).
            spans = list(re.finditer(r"\S+\s+", text))
            if len(spans) > self.first_max_words:
                end = self.first_max_words - 1
                while end > 1 and any(ch.isdigit() for ch in spans[end].group()):
                    end -= 1  # never between an amount and its unit: "costs | 95 dollars"
                return spans[end].end()
        return None

    def _emit(self, text: str, out: list[str]) -> None:
        spoken = speakable(text)
        if re.search(r"\w", spoken):
            out.append(spoken)
            self._chunks_out += 1
