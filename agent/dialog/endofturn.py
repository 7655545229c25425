"""Does what the caller said so far sound finished? (From Whisper's words, at a pause.)

"I'd like to book an appointment for..." stops on a word no sentence ends with: the caller is
thinking, not done, and the agent should give them longer than the usual end-of-turn silence.
Whisper marks trailing off with "..." or a comma, and a number said digit by digit ("my
number is 4 1 7") often pauses between groups: both are read as unfinished too.
"""

from __future__ import annotations

import re

from agent.dialog.dialplan import TurnParams

_LAST_WORD = re.compile(r"([a-z']+|\d+)\W*$")
# Words a sentence does not end with (not "this", "that", "what": "can I have that?").
_OPEN = (
    "a an the to for of in on at with and but or so because my your our their is are was be um uh "
    "er like about from than if by into as i'm i'd i'll we're you're there's number"
)
_OPEN_ENDINGS = frozenset(_OPEN.split())


def sounds_unfinished(text: str) -> bool:
    """True when `text` ends mid-phrase ("for", "and", "um", "my number is", "4 1 7" of a
    longer number, "...", ","); False for "" and for anything that can end a sentence."""
    t = text.strip()
    if not t:
        return False
    if t.endswith(("...", "…", ",", "-", "—")):
        return True
    m = _LAST_WORD.search(t.lower())
    if m is None:
        return False
    last = m.group(1)
    if last.isdigit():  # a number said so far: more digits may follow after a breath
        return not t.endswith((".", "?", "!"))
    return last in _OPEN_ENDINGS


def silence_after(words: str, params: TurnParams) -> int:
    """The silence (ms) that should end a turn whose words so far are `words`: longer when they
    end mid-phrase ("...for": the caller is thinking), shorter when they sound finished; 0 for
    the dialplan's `end_silence_ms`."""
    return params.unfinished_silence_ms if sounds_unfinished(words) else params.finished_silence_ms
