"""Scenario files: what the simulated caller does and what it expects (YAML, validated).

Errors name the file, line and field (through agent.yamlconf), e.g.
`question.yaml:7: turns.0.say: turn needs exactly one of say, wav, dtmf, silence_s`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.yamlconf import ConfigError, load_model

__all__ = ["ConfigError", "Scenario", "load_scenario"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextExpect(Strict):
    """What the agent should say (checked on callsim's own transcript, case-insensitive)."""

    says: str | None = Field(None, description="a regular expression the transcript must match")
    keywords: list[str] = Field(default_factory=list, description="words that must all appear")
    any_of: list[str] = Field(default_factory=list, description="words of which one must appear")
    none_of: list[str] = Field(default_factory=list, description="words none of which may appear")

    @field_validator("says")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return v


class TurnExpect(TextExpect):
    max_latency_ms: float | None = Field(None, gt=0, description="voice-to-voice limit for this turn")
    stops: bool | None = Field(None, description="barge-in: the agent stops talking (True) or not")
    max_stop_ms: float | None = Field(None, gt=0, description="barge-in: stop latency limit")


class Turn(Strict):
    """One caller action. Exactly one of say / wav / dtmf / silence_s."""

    say: str | None = None
    wav: str | list[str] | None = Field(None, description="a WAV file, or several said in a row")
    dtmf: str | None = Field(None, pattern=r"^[0-9*#A-D]+$")
    silence_s: float | None = Field(None, gt=0, le=600)
    wait: Literal["agent_done", "agent_speaking", "none"] = Field(
        "agent_done",
        description="agent_done: after the agent finishes talking; agent_speaking: while it talks "
        "(barge-in, after delay_s of its speech); none: right after the previous turn + delay_s",
    )
    delay_s: float = Field(0.0, ge=0, le=60)
    expect: TurnExpect = Field(default_factory=TurnExpect)

    @model_validator(mode="after")
    def _one_action(self) -> Turn:
        given = [k for k in ("say", "wav", "dtmf", "silence_s") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a turn needs exactly one of say, wav, dtmf, silence_s (got {given or 'none'})")
        return self

    @property
    def wav_list(self) -> list[str]:
        return [] if self.wav is None else [self.wav] if isinstance(self.wav, str) else self.wav

    @property
    def kind(self) -> str:
        return next(k for k in ("say", "wav", "dtmf", "silence_s") if getattr(self, k) is not None)


class Line(Strict):
    """The caller's line: codec and what the network does to the caller's audio."""

    codec: Literal["PCMU", "PCMA", "G722"] = "PCMU"
    snr_db: float | None = Field(None, ge=-10, le=80, description="white noise this far below the speech")
    loss_pct: float = Field(0.0, ge=0, le=50)
    jitter_ms: float = Field(0.0, ge=0, le=500)
    refer: Literal["accept", "busy"] = Field(
        "accept", description="what a blind transfer (REFER) reports: success, or a busy target (486)"
    )


class CallExpect(Strict):
    greeting: TextExpect | None = None
    transfer: bool | str | None = Field(None, description="True, or a regex the Refer-To must match")
    agent_hangs_up: bool | None = None
    max_setup_ms: float | None = Field(None, gt=0)


class Timing(Strict):
    """How long the caller waits for the agent."""

    quiet_s: float = Field(2.0, gt=0, le=10, description="agent silence that counts as 'done talking'")
    answer_timeout_s: float = Field(15.0, gt=0, le=120, description="longest wait for the agent to speak")
    linger_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="after the last turn, the caller hangs up once "
        "the agent has been quiet for quiet_s + linger_s",
    )
    max_duration_s: float = Field(120.0, gt=0, le=1800)
    setup_timeout_s: float = Field(15.0, gt=0, le=60)


class Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    voice: str = Field(
        "en-us",
        description="the caller's voice for text turns: an espeak-ng voice, or festival:VOICE",
    )
    words_per_minute: int = Field(160, ge=80, le=400)
    line: Line = Field(default_factory=Line)
    timing: Timing = Field(default_factory=Timing)
    turns: list[Turn] = Field(min_length=1)
    expect: CallExpect = Field(default_factory=CallExpect)
    source: Path | None = Field(None, exclude=True)

    def wav_paths(self, turn: Turn) -> list[Path]:
        """A turn's WAVs ($VARS expanded): absolute, or relative to the scenario file, else to
        the working directory."""
        return [self._resolve(w) for w in turn.wav_list]

    def _resolve(self, name: str) -> Path:
        p = Path(os.path.expandvars(name)).expanduser()
        if p.is_absolute():
            return p
        if self.source is not None and (self.source.parent / p).exists():
            return self.source.parent / p
        return Path.cwd() / p


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario; ConfigError lists every problem. WAV files must exist."""
    path = Path(path)
    sc = load_model(Scenario, path)
    sc.source = path.resolve()
    missing = [
        f"{path}: turns.{i}.wav: no such file: {p}"
        for i, t in enumerate(sc.turns)
        for p in sc.wav_paths(t)
        if not p.is_file()
    ]
    if missing:
        raise ConfigError("\n".join(missing))
    return sc
