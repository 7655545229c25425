"""Is what the caller said over the agent a backchannel ("uh-huh", "yeah", a cough) or an
interruption ("sorry, wait", a new question)?

The controller pauses the agent the moment the caller's voice is sustained, then asks this
about the words Whisper heard: a backchannel resumes the agent where it paused, anything else
stops it. Noise that Whisper makes no words of (a cough, a door) counts as a backchannel, and
so do the one or two words tiny.en tends to invent for noise ("you", "thank you").
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z']+")
# Words that acknowledge without asking anything; a few at most count as a backchannel.
_ACK = (
    "uh huh uhuh hm hmm mm mmm mhm mmhm um yeah yes yep yup ya okay ok kay right sure alright all "
    "i see oh ah aha got it cool great good fine nice true exactly wow thank thanks you that's"
)
_ACK_WORDS = frozenset(_ACK.split())
MAX_WORDS = 4


# Words that mean "stop, listen to me" however short the utterance.
_STOP = "wait stop sorry hold excuse no hang pardon what actually but hello hey"
_STOP_WORDS = frozenset(_STOP.split())


def is_backchannel(text: str) -> bool:
    """True for "", "Uh-huh.", "Yeah, okay.", "That's right."; False for "Sorry, wait." or a
    question. One or two words that ask nothing and say no stop word also count: that is how
    Whisper hears a synthetic or mumbled "mm-hm" ("I'm...", "And have...")."""
    words = _WORD.findall(text.lower())
    if "?" in text or any(w in _STOP_WORDS for w in words):
        return False
    return len(words) <= 2 or (len(words) <= MAX_WORDS and all(w in _ACK_WORDS for w in words))
