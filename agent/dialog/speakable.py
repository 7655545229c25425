"""Make LLM text speakable: no markdown, no emoji, symbols and amounts as words.

Piper (espeak-ng) already reads plain numbers ("42" → "forty-two"); this handles what it
would read badly or aloud as punctuation.
"""

from __future__ import annotations

import re

_MARKDOWN = [
    (re.compile(r"```.*?```", re.S), " "),  # code blocks: nothing speakable
    (re.compile(r"`([^`]*)`"), r"\1"),
    (re.compile(r"\*\*|__|\*|~~"), ""),
    (re.compile(r"^\s{0,3}#{1,6}\s*", re.M), ""),
    (re.compile(r"^\s*(?:[-•+]|\d+[.)])\s+", re.M), ""),  # list bullets and numbers
    (re.compile(r"\[([^\]]+)\]\([^)]+\)"), r"\1"),  # [text](link) → text
]
_BRACKETS = re.compile(r"\[[^\]]*\]")  # a tag the model made up: never read out
_URL = re.compile(r"https?://\S+|www\.\S+")
_EMAIL = re.compile(r"\b([\w.+-]+)@([\w-]+)\.([\w.]+)\b")
_CURRENCY = {"$": "dollars", "€": "euros", "£": "pounds"}
_MONEY = re.compile(r"([$€£])\s?(\d+(?:,\d{3})*)(?:\.(\d{2}))?")
_PERCENT = re.compile(r"(\d)\s?%")
_TIME = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s?([ap])\.?m\.?\b", re.I)
_SYMBOLS = {"&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "#": " number "}
_SLASH = re.compile(r"(?<=[A-Za-z])/(?=[A-Za-z])")
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]")
_SPACES = re.compile(r"[ \t]+")
# A phone number, order number, ...: five digits or more (or a leading 0), with or without
# dashes, is read digit by digit ("zero eight five, six one four"), never as an amount.
_DIGIT_STRING = re.compile(r"(?<![\d.,$€£])(?:0\d{3,}|\d{5,}|\d{3}-\d{3,4}(?:-\d{3,4})?)(?![\d.,]\d)")


def _money(m: re.Match[str]) -> str:
    unit = _CURRENCY[m.group(1)]
    whole = m.group(2).replace(",", "")
    cents = m.group(3)
    if unit == "dollars" and whole == "1":
        unit = "dollar"
    return f"{whole} {unit}" + (f" {int(cents)}" if cents and cents != "00" else "")


def _time(m: re.Match[str]) -> str:
    hour, minute, ap = m.group(1), m.group(2), m.group(3).lower()
    spoken = hour if not minute or minute == "00" else f"{hour} {minute}"
    return f"{spoken} {'A M' if ap == 'a' else 'P M'}"


def _digits(m: re.Match[str]) -> str:
    return ", ".join(" ".join(group) for group in m.group().split("-"))


def speakable(text: str) -> str:
    """Text as it should be spoken on the phone."""
    for pattern, repl in _MARKDOWN:
        text = pattern.sub(repl, text)
    text = _BRACKETS.sub(" ", text)
    text = _URL.sub("our website", text)
    text = _EMAIL.sub(lambda m: f"{m.group(1)} at {m.group(2)} dot {m.group(3)}", text)
    text = _DIGIT_STRING.sub(_digits, text)
    text = _MONEY.sub(_money, text)
    text = _PERCENT.sub(r"\1 percent", text)
    text = _TIME.sub(_time, text)
    text = _EMOJI.sub("", text)
    text = text.replace("24/7", "twenty-four seven")
    text = _SLASH.sub(" or ", text)
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = text.replace("\n", " ")
    return _SPACES.sub(" ", text).strip()
