"""Learned end of turn: is what the caller said so far a finished utterance?

`SmartTurn` runs Pipecat's Smart Turn v3.2 (BSD-2-Clause, Daily; a Whisper-tiny-sized audio
encoder with a classifier head) on the last 8 s of the utterance as Whisper log-mel features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from agent.audio.frames import to_float32
from agent.audio.resample import resample
from agent.engines.base import ModelError
from agent.engines.catalog import CATALOG
from agent.engines.models import package_file
from agent.engines.onnx import cpu_session

MODEL_RATE = 16000
WINDOW_S = 8
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 80
N_FRAMES = WINDOW_S * MODEL_RATE // HOP  # 800
CATALOG_NAME = "smart-turn-v3.2"

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class EndOfTurnModel(Protocol):
    """Scores an utterance (from its start up to now) for being complete."""

    name: str

    def complete(self, audio: np.ndarray, sample_rate: int) -> float:
        """Probability (0..1) that the speaker has finished; int16 or float32 mono audio."""
        ...


def _hz_to_mel(hz: F64) -> F64:
    """Slaney's mel scale (librosa's default, Whisper's): linear to 1 kHz, then logarithmic."""
    lin = hz * 3.0 / 200.0
    log = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * (27.0 / np.log(6.4))
    out: F64 = np.where(hz >= 1000.0, log, lin)
    return out


def _mel_to_hz(mel: F64) -> F64:
    lin = mel * 200.0 / 3.0
    log = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    out: F64 = np.where(mel >= 15.0, log, lin)
    return out


def mel_filterbank(rate: int = MODEL_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> F64:
    """Triangular filters, equally spaced in Slaney mels over 0..rate/2, each scaled to unit
    area (librosa `norm="slaney"`): shape (n_mels, n_fft // 2 + 1)."""
    edges = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.array(rate / 2.0))), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    tri = np.maximum(0.0, np.minimum(rising, falling))
    out: F64 = tri * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return out


def _spans(filters: F64) -> list[tuple[int, int, F64]]:
    """Each filter as (first bin, past-last bin, weights): 391 of its 16080 weights are non-zero."""
    out = []
    for row in filters:
        nz = np.flatnonzero(row)
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)
        out.append((lo, hi, np.ascontiguousarray(row[lo:hi])))
    return out


_MEL = mel_filterbank()
# Not `_MEL @ power`: that dense product goes to OpenBLAS, which spreads it over every core and
# then competes with onnxruntime (16 ms and a doubled inference time on 2 cores, against 0.4 ms).
_MEL_SPANS = _spans(_MEL)
_HANN = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic, as torch.hann_window


def last_window(audio16k: F32) -> F32:
    """The last 8 s; a shorter utterance is zero-padded at the start (its end stays at the end)."""
    n = WINDOW_S * MODEL_RATE
    if len(audio16k) >= n:
        return np.ascontiguousarray(audio16k[-n:])
    return np.concatenate([np.zeros(n - len(audio16k), np.float32), audio16k])


def log_mel(audio16k: np.ndarray) -> F32:
    """Smart Turn's input from 16 kHz float audio: (80, 800) Whisper log-mel features.

    As transformers' WhisperFeatureExtractor(chunk_length=8, do_normalize=True), which Smart
    Turn was trained with: the 8 s window is normalised to zero mean and unit variance (padding
    included), then a centred STFT (reflect padding, periodic Hann, 25 ms / 10 ms) gives power
    spectra; Slaney mels, log10 (floor 1e-10), the 801st frame dropped, clamped to 8 below the
    maximum, and mapped by (x + 4) / 4.
    """
    x = last_window(np.asarray(audio16k, dtype=np.float32))
    x = (x - x.mean()) / np.sqrt(x.var() + np.float32(1e-7))
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]  # (801, 400)
    power = np.abs(np.fft.rfft(frames * _HANN, axis=1)) ** 2  # (801, 201)
    energy = np.stack([power[:, lo:hi] @ w for lo, hi, w in _MEL_SPANS])  # (80, 801)
    mel = np.log10(np.maximum(energy, 1e-10))[:, :N_FRAMES]
    mel = np.maximum(mel, mel.max() - 8.0)
    out: F32 = ((mel + 4.0) / 4.0).astype(np.float32)
    return out


def to_model_rate(audio: np.ndarray, sample_rate: int) -> F32:
    """The last 8 s (and a little more for the resampler's filter) as float32 at 16 kHz."""
    if audio.ndim != 1:
        raise ValueError(f"end of turn needs mono audio, got shape {audio.shape}")
    if sample_rate < 8000:
        raise ValueError(f"end of turn needs 8 kHz audio or better, not {sample_rate} Hz")
    tail = audio[-(WINDOW_S * sample_rate + sample_rate // 10) :]
    x = to_float32(tail)
    if sample_rate == MODEL_RATE:
        return x
    out: F32 = resample(x, sample_rate, MODEL_RATE).astype(np.float32, copy=False)
    return out


class SmartTurn:
    """Smart Turn v3.2 through onnxruntime, one thread: about 55 ms a call on one core here.

    Pipecat asks it once its VAD has heard ~200 ms of silence, with that silence in the audio;
    complete turns score higher with it (benchmarks/endturn.py). The session is shared:
    `complete` may be called from several threads.
    """

    name = "smart-turn"

    def __init__(self, model_path: Path | None = None, threads: int = 1) -> None:
        if model_path is None:
            location = CATALOG[CATALOG_NAME].location
            assert location is not None
            model_path = package_file(location)  # ModelError with the pip command if missing
        self._session = cpu_session(model_path, "Smart Turn", "pipecat-ai==1.14.0", threads)
        inputs = self._session.get_inputs()
        if [i.name for i in inputs] != ["input_features"] or list(inputs[0].shape[1:]) != [N_MELS, N_FRAMES]:
            raise ModelError(
                f"{model_path} is not a Smart Turn v3 model (inputs {[(i.name, i.shape) for i in inputs]})",
                hint="use the smart-turn-v3.2-cpu.onnx shipped in pipecat-ai==1.14.0",
            )

    def features(self, audio: np.ndarray, sample_rate: int) -> F32:
        """The model's input for `audio`: (80, 800) float32."""
        return log_mel(to_model_rate(audio, sample_rate))

    def complete(self, audio: np.ndarray, sample_rate: int) -> float:
        """Probability that the utterance in `audio` (int16 or float32, mono) is complete.

        Empty audio is not a finished turn: 0.0.
        """
        if len(audio) == 0:
            return 0.0
        feats = self.features(audio, sample_rate)[None]
        (prob,) = self._session.run(["logits"], {"input_features": feats})  # sigmoid applied inside
        return float(np.clip(prob[0, 0], 0.0, 1.0))
