"""End-of-turn accuracy of Smart Turn v3.2 and of the agent's words rule (Whisper + endofturn),
at 16 kHz and through the telephone (8 kHz µ-law), on complete and incomplete utterances.

    .venv/bin/python benchmarks/endturn.py [--method smartturn|words|both] [--limit N] [--out FILE]

Two classifiers of the same samples. "smartturn": Pipecat's Smart Turn v3.2 on the audio.
"words": what the agent does at a pause: Whisper tiny.en (the agent's STT, faster-whisper int8,
one thread here, no vocabulary prompt) transcribes the audio so far and the turn is complete
unless `agent.dialog.endofturn.sounds_unfinished` says the words end mid-phrase.

Complete turns: each utterance of ../shared/speech/utterances (see its LICENSES.md) up to its
last word, and 30 espeak-ng sentences a caller might say to the bike shop. Incomplete turns:
the same recordings cut at an internal pause (Silero VAD, 20 ms frames; "ambiguous" where the
transcript has several sentences or is a list, as the pause may end one) and mid-phrase at the
quietest 20 ms between 40 and 70 % of the speech (a word boundary or a stop's closure), and 30
espeak-ng fragments of the sentences ("What time do you open on"). Every sample is scored as
it ends (0 ms) and with 200 ms of silence after it (what a VAD that waits 200 ms hands over,
as Pipecat does). Telephone: resampled to 8 kHz, µ-law coded and decoded, given to the model
at 8 kHz (it resamples to 16 kHz). Also single spoken digits (FSDD), which are complete
answers on the phone. One onnxruntime thread; threshold 0.5. The words rule ignores trailing
silence (each sample is transcribed once per band; at 8 kHz the decoded µ-law resampled to
16 kHz, as the agent hears a call); its transcripts are kept per sample. --limit N keeps the
first N samples of each set (corpus, espeak, digits) for a quick check. JSON to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the machine is shared; stay on one core
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.audio.frames import split_frames  # noqa: E402
from agent.audio.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from agent.audio.resample import resample  # noqa: E402
from agent.audio.wav import read_wav  # noqa: E402
from agent.config import Config, STTConfig  # noqa: E402
from agent.dialog.endofturn import sounds_unfinished  # noqa: E402
from agent.engines.endturn import SmartTurn  # noqa: E402
from agent.engines.factory import load_stt  # noqa: E402
from agent.engines.models import resolve  # noqa: E402
from agent.engines.vad import SileroVAD  # noqa: E402
from callsim.voice import espeak, speech_bounds  # noqa: E402

SPEECH = ROOT.parent / "shared" / "speech"
RATE = 16000
TAILS_MS = (0, 200)
BANDS = ("16k", "8k")
THRESHOLD = 0.5
STT_MODEL = "tiny.en"
SKIP = {
    "utterances/faster-whisper/stereo_diarization.wav",  # two speakers, one per channel
    "utterances/speechbrain/LJ050-0131.wav",  # ends mid-sentence ("... in this regard")
}
# (complete, incomplete): the incomplete one is where a caller might stop to think
PHRASES = [
    ("What time do you open on Saturday?", "What time do you open on"),
    ("Can I book a repair for tomorrow morning?", "Can I book a repair for"),
    ("How much does a new chain cost?", "How much does a new"),
    ("I'd like to speak to the manager, please.", "I'd like to speak to the"),
    ("My name is John Smith.", "My name is"),
    ("Do you sell electric bikes?", "Do you sell electric bikes and"),
    ("My phone number is five five five, one two three four.", "My phone number is five five five, one"),
    ("Is the shop open on Sunday?", "Is the shop open on"),
    ("I need a new tyre for my road bike.", "I need a new tyre for my"),
    ("Can you tell me where you are located?", "Can you tell me where you are"),
    ("I want to cancel my appointment.", "I want to cancel my"),
    ("How long does a full service take?", "How long does a full"),
    ("Do you have helmets in stock?", "Do you have helmets in"),
    ("Thanks, that's all I needed.", "Thanks, that's all I"),
    ("Could you call me back later today?", "Could you call me back later because"),
    ("I dropped my bike off last week.", "I dropped my bike off last week and"),
    ("What is the price of a basic tune up?", "What is the price of a basic"),
    ("Yes, that works for me.", "Yes, that works for me but"),
    ("No, I don't think so.", "No, I don't think so, because"),
    ("Can I pay by card?", "Can I pay by"),
    ("Where can I park when I come in?", "Where can I park when I"),
    ("My brakes are making a strange noise.", "My brakes are making a strange"),
    ("Do you rent out mountain bikes for the weekend?", "Do you rent out mountain bikes for the"),
    ("I'll come by around three o'clock.", "I'll come by around"),
    ("Is it possible to order a part online?", "Is it possible to order a"),
    ("The gears keep slipping when I pedal hard.", "The gears keep slipping when I"),
    ("Please send the invoice to my email address.", "Please send the invoice to my"),
    ("That sounds great, thank you.", "That sounds great, thank you, and um"),
    ("How far is the shop from the station?", "How far is the shop from the"),
    ("I would like to buy a gift card.", "I would like to buy a"),
]


def load_16k(rel: str) -> np.ndarray:
    pcm, rate = read_wav(SPEECH / rel)
    return resample(pcm, rate, RATE)


def pause_cut(vad: SileroVAD, pcm: np.ndarray, start: int, end: int) -> int | None:
    """Start of the longest pause (>= 100 ms without speech) inside 20..90 % of the speech."""
    stream = vad.stream(RATE)
    speech = np.array([stream.process(f) >= 0.5 for f in split_frames(pcm, RATE, 20)])
    hop = RATE // 50
    lo, hi = start + (end - start) // 5, start + (end - start) * 9 // 10
    best: tuple[int, int] | None = None
    run_start = None
    for i, is_speech in enumerate([*speech, True]):
        if not is_speech and run_start is None:
            run_start = i
        elif is_speech and run_start is not None:
            length = i - run_start
            if length >= 5 and lo <= run_start * hop <= hi and (best is None or length > best[1]):
                best = (run_start, length)
            run_start = None
    return best[0] * hop if best else None


def quiet_cut(pcm: np.ndarray, start: int, end: int) -> int:
    """Start of the quietest 20 ms block between 40 and 70 % of the speech."""
    block = RATE // 50
    lo, hi = start + (end - start) * 2 // 5, start + (end - start) * 7 // 10
    starts = list(range(lo, max(lo + 1, hi - block), block // 2))
    rms = [float(np.sqrt(np.mean(pcm[s : s + block].astype(np.float64) ** 2))) for s in starts]
    return starts[int(np.argmin(rms))]


def build_samples(vad: SileroVAD, limit: int | None = None) -> list[dict[str, Any]]:
    """All samples, or the first `limit` of each set (built no further than needed)."""
    n = limit if limit is not None else 10**9
    samples: list[dict[str, Any]] = []
    with (SPEECH / "MANIFEST.tsv").open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for row in rows:
        rel = row["path"]
        if not rel.startswith("utterances/") or rel in SKIP:
            continue
        if len(samples) >= n:
            break
        pcm = load_16k(rel)
        start, end = speech_bounds(pcm, RATE)
        samples.append({"id": rel, "set": "corpus", "cut": "end", "label": 1, "pcm": pcm[:end]})
        cuts = {"pause": pause_cut(vad, pcm, start, end), "mid-phrase": quiet_cut(pcm, start, end)}
        if cuts["pause"] is not None and abs(cuts["pause"] - cuts["mid-phrase"]) < RATE // 10:
            cuts["mid-phrase"] = None  # the same place twice
        # A pause may be a sentence end (". ; ? !" inside the transcript) or between two items
        # of a list (the card names): labelled incomplete all the same, but counted apart too.
        several = bool(re.search(r"[.;?!]\s+\S", row["transcript"])) or "/cards/" in rel
        for kind, at in cuts.items():
            if at is not None:
                s = {"id": f"{rel}@{at / RATE:.2f}s", "set": "corpus", "cut": kind, "label": 0}
                s["ambiguous"] = kind == "pause" and several
                samples.append({**s, "fraction": round((at - start) / (end - start), 2), "pcm": pcm[:at]})
    del samples[n:]
    phrases = [(text, label) for whole, part in PHRASES for text, label in ((whole, 1), (part, 0))]
    for text, label in phrases[:n]:
        pcm = espeak(text, RATE)
        samples.append({"id": text, "set": "espeak", "cut": "text", "label": label, "pcm": pcm})
    digits = sorted(
        r["path"] for r in rows if r["path"].startswith("digits/") and r["path"].endswith("_0.wav")
    )
    for rel in digits[::2][:n]:  # 30: each digit three times, several speakers
        pcm = load_16k(rel)
        end = speech_bounds(pcm, RATE)[1]
        samples.append({"id": rel, "set": "digits", "cut": "end", "label": 1, "pcm": pcm[:end]})
    return samples


def telephone(pcm16k: np.ndarray) -> np.ndarray:
    return ulaw_decode(ulaw_encode(resample(pcm16k, RATE, 8000)))


def score(model: SmartTurn, samples: list[dict[str, Any]]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {band: [] for band in BANDS}
    for s in samples:
        for band in BANDS:
            pcm, rate = (s["pcm"], RATE) if band == "16k" else (telephone(s["pcm"]), 8000)
            for tail in TAILS_MS:
                audio = np.concatenate([pcm, np.zeros(rate * tail // 1000, np.int16)])
                t0 = time.perf_counter()
                s[f"p_{band}_{tail}ms"] = round(model.complete(audio, rate), 4)
                times[band].append((time.perf_counter() - t0) * 1000)
    return times


def score_words(stt: Any, samples: list[dict[str, Any]]) -> dict[str, list[float]]:
    """The agent's rule at a pause: transcribe the audio so far (16 kHz; a call's µ-law decoded
    and resampled to 16 kHz) and call the turn complete unless the words sound unfinished."""
    times: dict[str, list[float]] = {band: [] for band in BANDS}
    for s in samples:
        for band in BANDS:
            pcm = s["pcm"] if band == "16k" else resample(telephone(s["pcm"]), 8000, RATE)
            t0 = time.perf_counter()
            text = stt.transcribe(pcm).text
            times[band].append((time.perf_counter() - t0) * 1000)
            s[f"text_{band}"] = text
            s[f"words_complete_{band}"] = not sounds_unfinished(text)
    return times


def predicted_complete(value: float | bool) -> bool:
    """Smart Turn's probability against the threshold; the words rule's verdict as it is."""
    return value if isinstance(value, bool) else value >= THRESHOLD


def rates(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    pos = [predicted_complete(s[key]) for s in samples if s["label"] == 1]
    neg = [not predicted_complete(s[key]) for s in samples if s["label"] == 0]
    out: dict[str, Any] = {"n_complete": len(pos), "n_incomplete": len(neg)}
    if pos and neg:
        out["accuracy"] = round((sum(pos) + sum(neg)) / (len(pos) + len(neg)), 3)
    if pos:
        out["tpr_complete"] = round(sum(pos) / len(pos), 3)
    if neg:
        out["tnr_incomplete"] = round(sum(neg) / len(neg), 3)
    return out


def subsets(samples: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    main_sets = [s for s in samples if s["set"] != "digits"]
    corpus = [s for s in samples if s["set"] == "corpus"]
    return {
        "all": rates(main_sets, key),
        "all_but_ambiguous_pauses": rates([s for s in main_sets if not s.get("ambiguous")], key),
        "corpus": rates(corpus, key),
        "corpus_pause_cuts": rates([s for s in corpus if s["cut"] in ("end", "pause")], key),
        "corpus_mid_phrase_cuts": rates([s for s in corpus if s["cut"] in ("end", "mid-phrase")], key),
        "espeak": rates([s for s in samples if s["set"] == "espeak"], key),
        "digits": rates([s for s in samples if s["set"] == "digits"], key),
    }


def percentiles(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {
        band: {
            "p50": round(float(np.percentile(t, 50)), 1),
            "p95": round(float(np.percentile(t, 95)), 1),
            "n": len(t),
        }
        for band, t in times.items()
        if t
    }


def table(results: dict[str, Any]) -> str:
    """Subsets down, classifier and condition across; each cell accuracy/tpr_complete/tnr_incomplete."""
    cols = list(results)
    rows = list(next(iter(results.values())))

    def cell(r: dict[str, Any]) -> str:
        return "/".join(
            f"{r[k]:.2f}".removeprefix("0") if k in r else "-"
            for k in ("accuracy", "tpr_complete", "tnr_incomplete")
        )

    counts = {r: results[cols[0]][r] for r in rows}
    labels = {r: f"{r} ({c['n_complete']}+{c['n_incomplete']})" for r, c in counts.items()}
    width = max(map(len, labels.values()))
    lines = [
        "accuracy / tpr_complete / tnr_incomplete (subset (n complete + n incomplete))",
        f"{'':<{width}}" + "".join(f"{c:>16}" for c in cols),
    ]
    for row in rows:
        lines.append(f"{labels[row]:<{width}}" + "".join(f"{cell(results[c][row]):>16}" for c in cols))
    return "\n".join(lines)


def positive(text: str) -> int:
    if (n := int(text)) < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/endturn.json")
    ap.add_argument("--method", choices=("smartturn", "words", "both"), default="both")
    ap.add_argument("--limit", type=positive, default=None, help="first N samples of each set only")
    args = ap.parse_args()
    cpu0 = time.process_time()
    vad = SileroVAD(resolve("silero", "vad"))
    samples = build_samples(vad, args.limit)
    results: dict[str, Any] = {}
    report: dict[str, Any] = {"method": args.method, "limit": args.limit}
    if args.method in ("smartturn", "both"):
        model = SmartTurn()
        model.complete(samples[0]["pcm"], RATE)  # warm-up
        times = score(model, samples)
        for band in BANDS:
            for tail in TAILS_MS:
                results[f"{band}_tail{tail}ms"] = subsets(samples, f"p_{band}_{tail}ms")
        report |= {
            "model": "smart-turn-v3.2-cpu.onnx (pipecat-ai==1.14.0)",
            "threshold": THRESHOLD,
            "onnx_threads": 1,
            "inference_ms": percentiles(times),
        }
    if args.method in ("words", "both"):
        stt = load_stt(Config(stt=STTConfig(model=STT_MODEL, cpu_threads=1)))
        stt.transcribe(samples[0]["pcm"])  # warm-up
        stt_times = score_words(stt, samples)
        for band in BANDS:
            results[f"words_{band}"] = subsets(samples, f"words_complete_{band}")
        report |= {
            "words_rule": "complete = not agent.dialog.endofturn.sounds_unfinished(Whisper's text)",
            "stt_model": f"whisper {STT_MODEL} (faster-whisper int8, beam 1, no prompt)",
            "stt_threads": 1,
            "transcribe_ms": percentiles(stt_times),
        }
    report |= {
        "note": "8k = resampled to 8 kHz, mu-law coded and decoded; tailNms = N ms of silence appended "
        "(Smart Turn); words_8k = that audio resampled to 16 kHz and transcribed",
        "results": results,
        "load_avg_1min": float(Path("/proc/loadavg").read_text().split()[0]),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "samples": [{k: v for k, v in s.items() if k != "pcm"} for s in samples],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    for name in ("inference_ms", "transcribe_ms"):
        if name in report:
            print(f"{name}: {json.dumps(report[name])}")
    print(f"cpu_seconds: {report['cpu_seconds']}  load_avg_1min: {report['load_avg_1min']}  -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
