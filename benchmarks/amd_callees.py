"""Synthetic callees for answering-machine detection: people who pick up and machines that
greet, in several voices (espeak-ng, festival; never the agent's Piper), levels and lines.

Each is the audio the agent hears from the moment the call is answered, at 16 kHz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from callsim.voice import synthesize

RATE = 16000


@dataclass(frozen=True)
class Callee:
    name: str
    kind: str  # "human" | "machine"
    parts: tuple[tuple[str, object], ...]  # ("pause", s) | ("say", (text, voice)) | ("beep", hz)
    level_db: float = 0.0  # gain on the whole thing
    noise_db: float | None = None  # line noise level (dBFS), None: clean

    def audio(self, tail_s: float = 6.0) -> np.ndarray:
        out: list[np.ndarray] = []
        for kind, value in self.parts:
            if kind == "pause":
                out.append(np.zeros(int(float(value) * RATE), np.int16))  # type: ignore[arg-type]
            elif kind == "say":
                text, voice = value  # type: ignore[misc]
                out.append(synthesize(text, RATE, voice))
            elif kind == "beep":
                t = np.arange(int(0.5 * RATE)) / RATE
                out.append((0.3 * 32767 * np.sin(2 * np.pi * float(value) * t)).astype(np.int16))  # type: ignore[arg-type]
        out.append(np.zeros(int(tail_s * RATE), np.int16))
        x = np.concatenate(out).astype(np.float64) * 10 ** (self.level_db / 20)
        if self.noise_db is not None:
            rng = np.random.default_rng(len(self.name))
            x += rng.standard_normal(len(x)) * 32768 * 10 ** (self.noise_db / 20)
        return np.clip(x, -32768, 32767).astype(np.int16)


US, GB, KAL, SLT = "en-us", "en-gb", "festival:kal_diphone", "festival:cmu_us_slt_arctic_hts"
GREETING = (
    "Hi, you've reached Maria Lopez. I can't take your call right now. Please leave a message after the tone."
)
CARRIER = "The person you are calling is not available. At the tone, please record your message."


def human(name: str, text: str, voice: str, pause_s: float = 0.4, **kw: float) -> Callee:
    return Callee(name, "human", (("pause", pause_s), ("say", (text, voice))), **kw)  # type: ignore[arg-type]


def machine(
    name: str, text: str, voice: str, beep_hz: float | None = 1000, gap_s: float = 0.4, **kw: float
) -> Callee:
    parts: tuple[tuple[str, object], ...] = (("pause", 0.4), ("say", (text, voice)), ("pause", gap_s))
    if beep_hz is not None:
        parts += (("beep", beep_hz),)
    return Callee(name, "machine", parts, **kw)  # type: ignore[arg-type]


def callees() -> list[Callee]:
    """24 callees: 12 people, 12 machines."""
    twice = (("pause", 0.4), ("say", ("Hello?", US)), ("pause", 0.5), ("say", ("Hello?", US)))
    closed = "Thank you for calling Northside Dental. Our office is closed. Please call again tomorrow."
    return [
        human("hello-us", "Hello?", US),
        human("hello-gb-quiet", "Hello?", GB, 0.6, level_db=-14),
        human("hello-kal", "Hello?", KAL, 0.3),
        human("name-us", "Maria speaking.", US, 0.5),
        human("yes-slt", "Yes?", SLT, 0.8),
        human("whos-this-gb", "Hi, who's this?", GB),
        Callee("hello-hello-us", "human", twice),
        human("late-hello-kal", "Hello?", KAL, 2.0),
        human("hello-noisy-us", "Hello?", US, 0.5, noise_db=-40),
        human("good-morning-slt", "Good morning.", SLT, 0.5),
        human("hello-loud-gb", "Hello, yes?", GB, 0.3, level_db=6),
        Callee("silent", "human", (("pause", 5.0),)),
        machine("greeting-beep-us", GREETING, US),
        machine("greeting-beep-gb", GREETING, GB, 850, 0.6),
        machine("greeting-nobeep-kal", GREETING, KAL, None),
        machine("carrier-beep-slt", CARRIER, SLT, 1400, 0.5),
        machine("carrier-noisy-us", CARRIER, US, 440, 0.1, noise_db=-40),
        machine("short-beep-us", "Leave a message.", US, 1000, 0.3),
        machine("short-name-gb", "This is Sam, leave a message.", GB),
        machine("business-kal", closed, KAL, None),
        machine("greeting-quiet-slt", GREETING, SLT, level_db=-14),
        Callee("beep-only", "machine", (("pause", 0.8), ("beep", 1000))),
        machine("away-us", "Hey, it's Tom. I'm away from the phone, you know what to do.", US),
        machine("greeting-noisy-gb", GREETING, GB, noise_db=-40),
    ]
