"""The caller's voice: text through espeak-ng or festival (never the agent's Piper), or
recorded WAV files.

Every turn's audio is trimmed to its speech, so "the end of the caller's audio" is the end of
its last word, exactly: latencies are measured from there.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from agent.audio.levels import block_db
from agent.audio.resample import resample
from agent.audio.wav import read_wav

PHONE_RMS = 3277  # about -20 dBFS: a normal telephone speech level
WAV_GAP_S = 0.3  # between the files of a multi-file turn (a spoken digit string)


class VoiceError(RuntimeError):
    """The caller's audio cannot be made (espeak-ng missing, unreadable WAV)."""


def synthesize(text: str, rate: int, voice: str = "en-us", wpm: int = 160) -> np.ndarray:
    """`text` in the caller's `voice`: an espeak-ng voice ("en-us", "en-gb+f3") or
    "festival:VOICE" ("festival:kal_diphone", "festival:cmu_us_slt_arctic_hts")."""
    if voice.startswith("festival:"):
        return festival(text, rate, voice.removeprefix("festival:"))
    return espeak(text, rate, voice, wpm)


def festival(text: str, rate: int, voice: str) -> np.ndarray:
    """`text` spoken by festival's `voice`, trimmed, at telephone level."""
    exe = shutil.which("text2wave")
    if exe is None:
        raise VoiceError("festival is not installed (apt-get install festival festvox-kallpc16k)")
    if not voice.replace("_", "").isalnum():
        raise VoiceError(f"not a festival voice name: {voice!r}")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "say.wav"
        proc = subprocess.run(
            [exe, "-eval", f"(voice_{voice})", "-o", str(out)],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0 or not out.exists() or "not defined" in proc.stderr:
            raise VoiceError(f"festival failed for voice {voice!r}: {proc.stderr.strip()[:200]}")
        pcm, r = read_wav(out)
    return at_phone_level(trim(resample(pcm, r, rate), rate))


def espeak(text: str, rate: int, voice: str = "en-us", wpm: int = 160, trimmed: bool = True) -> np.ndarray:
    """`text` spoken by espeak-ng: int16 mono at `rate`, at telephone level, cut to its sound
    (`trimmed`) or with espeak's own short silence around it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise VoiceError("espeak-ng is not installed (apt-get install espeak-ng); text turns need it")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "say.wav"
        proc = subprocess.run(
            [exe, "-v", voice, "-s", str(wpm), "-w", str(out), text],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0 or not out.exists():
            raise VoiceError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.strip()[:200]}")
        pcm, r = read_wav(out)
    pcm = resample(pcm, r, rate)
    return at_phone_level(trim(pcm, rate) if trimmed else pcm)


def load_wavs(paths: list[Path], rate: int) -> np.ndarray:
    """Recorded speech, each file trimmed, joined with short gaps, at telephone level."""
    parts: list[np.ndarray] = []
    for p in paths:
        try:
            pcm, r = read_wav(p)
        except (OSError, ValueError, EOFError) as exc:
            raise VoiceError(f"{p}: cannot read: {exc}") from exc
        if parts:
            parts.append(np.zeros(int(WAV_GAP_S * rate), np.int16))
        parts.append(trim(resample(pcm, r, rate), rate))
    return at_phone_level(np.concatenate(parts))


def at_phone_level(pcm: np.ndarray, target_rms: float = PHONE_RMS) -> np.ndarray:
    """Scale speech so its active part (samples above 300) has `target_rms`."""
    x = pcm.astype(np.float32)
    active = x[np.abs(x) > 300]
    rms = float(np.sqrt(np.mean(active**2))) if active.size else 0.0
    return np.clip(x * (target_rms / max(rms, 1.0)), -32767, 32767).astype(np.int16)


def trim(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Cut leading and trailing silence (see `speech_bounds`)."""
    start, end = speech_bounds(pcm, rate)
    return pcm[start:end]


def speech_bounds(pcm: np.ndarray, rate: int, floor_db: float = 40.0) -> tuple[int, int]:
    """First and past-last sample of the sound: 5 ms blocks within `floor_db` of the loudest."""
    block = rate // 200
    db = block_db(pcm, block)
    if db.size == 0:
        return 0, 0
    loud = np.flatnonzero(db > max(db.max() - floor_db, 20.0))  # 20 dB: |x| ~ 10 LSB
    if loud.size == 0:
        return 0, 0
    return int(loud[0] * block), int((loud[-1] + 1) * block)


def add_noise(pcm: np.ndarray, noise_rms: float, rng: np.random.Generator) -> np.ndarray:
    """White noise added to one frame (the line's noise is on all the time)."""
    noisy = pcm.astype(np.float32) + rng.normal(0.0, noise_rms, len(pcm)).astype(np.float32)
    return np.clip(noisy, -32767, 32767).astype(np.int16)
