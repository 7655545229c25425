"""Word error rate on normalised text (used by benchmarks, tests and callsim)."""

from __future__ import annotations

import re

_NUMBERS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four",
    "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine", "10": "ten",
}  # fmt: skip
_SPELLING = {"mr": "mister", "mrs": "missus", "dr": "doctor", "ok": "okay"}


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation; digits 0-10 and a few abbreviations spelled out."""
    text = text.lower().replace("-", " ")
    words = re.sub(r"[^a-z0-9' ]+", " ", text).split()
    words = [w.strip("'") for w in words]
    return [_SPELLING.get(w, _NUMBERS.get(w, w)) for w in words if w]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of one hypothesis (0 = perfect; can exceed 1)."""
    ref = normalize(reference)
    return edit_distance(ref, normalize(hypothesis)) / max(len(ref), 1)


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    """Total errors over total reference words, for (reference, hypothesis) pairs."""
    errors = sum(edit_distance(normalize(r), normalize(h)) for r, h in pairs)
    return errors / max(sum(len(normalize(r)) for r, _ in pairs), 1)
