"""The timing record of one turn: each step of caller speech → agent audio, stamped once.

Times are time.monotonic() seconds; the caller's speech end is converted from the media
clock. Logs, metrics and benchmarks read this record; nothing re-measures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class TurnTiming:
    index: int = -1  # the caller's turn number in the call (from 0); -1 until it gets one
    speech_start: float | None = None  # caller speech onset
    speech_end: float | None = None  # caller stopped talking
    turn_end: float | None = None  # end of turn decided
    stt_done: float | None = None
    llm_first_token: float | None = None
    tts_first_chunk: float | None = None  # first chunk synthesised
    first_audio: float | None = None  # first frame of the answer handed to the transport
    ack_audio: float | None = None  # first frame of an acknowledgement ("Okay.") before it
    barge_in: float | None = None  # caller interrupted this turn's reply
    audio_stopped: float | None = None  # agent audio flushed after the barge-in
    speculative: bool = False  # STT/LLM had started before the end of turn
    user_text: str = ""
    reply_text: str = ""  # what the agent said (heard part, if interrupted)
    interrupted: bool = False
    action: str = ""  # hangup / transfer:NAME / fallback / ignored

    def intervals(self) -> dict[str, float]:
        """Seconds between steps (the metric names of agent.metrics.TURN_INTERVALS)."""
        heard_again = min((x for x in (self.ack_audio, self.first_audio) if x is not None), default=None)
        spans = {
            "end_of_turn": (self.speech_end, self.turn_end),
            "stt": (self.turn_end, self.stt_done),
            "llm_first_token": (self.stt_done, self.llm_first_token),
            "tts_first_chunk": (self.llm_first_token, self.tts_first_chunk),
            # The caller hears the agent again: acknowledgement or answer, whichever came first.
            "voice_to_voice": (self.speech_end, heard_again),
            "voice_to_answer": (self.speech_end, self.first_audio),
            "barge_in_stop": (self.barge_in, self.audio_stopped),
        }
        # With speculation STT may finish before the turn is decided: the wait is then 0.
        return {k: max(b - a, 0.0) for k, (a, b) in spans.items() if a is not None and b is not None}

    def as_log(self) -> dict[str, object]:
        # The stamps are monotonic times (meaningless in a log): only texts, flags and intervals.
        d: dict[str, object] = {
            k: v for k, v in asdict(self).items() if isinstance(v, str | bool | int) and k != "index"
        }
        d["turn"] = self.index
        d.update({f"{k}_s": round(v, 3) for k, v in self.intervals().items()})
        return d
