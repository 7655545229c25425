"""Shared fixtures: the ../shared speech corpus and real engines, loaded once per session."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from agent.audio.resample import resample
from agent.audio.wav import read_wav
from agent.config import Config

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VOICE_AGENT_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    d = SHARED / "speech"
    if not (d / "MANIFEST.tsv").exists():
        if os.environ.get("CI"):
            pytest.fail(f"{d} is missing: CI must have ../shared beside the clone")
        pytest.skip(f"{d} not found (set VOICE_AGENT_SHARED)")
    return d


@pytest.fixture(scope="session")
def manifest(speech_dir: Path) -> list[dict[str, str]]:
    with (speech_dir / "MANIFEST.tsv").open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def load_16k(path: Path) -> np.ndarray:
    """A corpus file as 16 kHz mono int16."""
    pcm, rate = read_wav(path)
    return resample(pcm, rate, 16000)


@pytest.fixture(scope="session")
def config() -> Config:
    return Config()


@pytest.fixture(scope="session")
def silero(config: Config):
    from agent.engines.factory import load_vad

    return load_vad(config)


@pytest.fixture(scope="session")
def stt(config: Config):
    from agent.engines.factory import load_stt

    return load_stt(config)


@pytest.fixture(scope="session")
def llm(config: Config):
    from agent.engines.factory import load_llm

    return load_llm(config)


@pytest.fixture(scope="session")
def tts(config: Config):
    from agent.engines.factory import load_tts

    return load_tts(config)


@pytest.fixture(scope="session")
def meters(silero, stt):
    """callsim's ears (its VAD and STT), for tests that place calls with callsim in-process."""
    from callsim.runner import Meters

    return Meters(silero, stt)
