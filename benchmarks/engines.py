"""Engine benchmarks on this machine: STT speed and accuracy (incl. the telephone path), LLM and
TTS latency, resampler throughput, memory. JSON to stdout and to --out.

    .venv/bin/python benchmarks/engines.py [--quick] [--stt-models tiny.en,base] [--out FILE]

Speech comes from ../shared/speech (see its LICENSES.md); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.audio.frames import split_frames  # noqa: E402
from agent.audio.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from agent.audio.resample import StreamResampler, resample  # noqa: E402
from agent.audio.wav import read_wav  # noqa: E402
from agent.config import Config, STTConfig  # noqa: E402
from agent.engines import factory  # noqa: E402
from agent.engines.base import CancelToken  # noqa: E402
from agent.engines.vad import WebRtcVAD  # noqa: E402
from agent.wer import corpus_wer, normalize  # noqa: E402

SHARED = Path(os.environ.get("VOICE_AGENT_SHARED", ROOT.parent / "shared")) / "speech"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 4)


def p95(xs: list[float]) -> float:
    return round(float(np.percentile(xs, 95)), 4)


def corpus() -> list[dict[str, str]]:
    with (SHARED / "MANIFEST.tsv").open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def to_16k(path: Path) -> np.ndarray:
    pcm, rate = read_wav(path)
    return resample(pcm, rate, 16000)


def telephone(pcm16k: np.ndarray) -> np.ndarray:
    """What a G.711 call does to wideband speech: 8 kHz, mu-law, back to 16 kHz."""
    return resample(ulaw_decode(ulaw_encode(resample(pcm16k, 16000, 8000))), 8000, 16000)


def bench_stt(cfg: Config, model: str, rows: list[dict[str, str]], quick: bool) -> dict[str, Any]:
    before = factory.rss_mb()
    t0 = time.perf_counter()
    stt = factory.load_stt(cfg.model_copy(update={"stt": STTConfig(model=model)}))
    out: dict[str, Any] = {"load_s": round(time.perf_counter() - t0, 3)}
    stt.transcribe(np.zeros(16000, dtype=np.int16))  # warm-up
    out["rss_mb"] = round(factory.rss_mb() - before, 1)

    # Speed for 1-8 s of real speech (JFK, cut to length).
    jfk = to_16k(SHARED / "utterances/whisper/jfk.flac")
    speed = {}
    for seconds in (1, 2, 4, 8):
        clip = jfk[: seconds * 16000]
        times = [stt.transcribe(clip).processing_s for _ in range(2 if quick else 3)]
        speed[f"{seconds}s"] = {"latency_s": median(times), "rtf": round(median(times) / seconds, 4)}
    out["speed"] = speed

    # WER on every mono-speaker utterance, original and through the telephone path.
    utts = [r for r in rows if r["path"].startswith("utterances/") and "stereo" not in r["path"]]
    if quick:
        utts = utts[::3]
    pairs_orig, pairs_tel, per_file = [], [], []
    for r in utts:
        audio = to_16k(SHARED / r["path"])
        a = stt.transcribe(audio).text
        b = stt.transcribe(telephone(audio)).text
        pairs_orig.append((r["transcript"], a))
        pairs_tel.append((r["transcript"], b))
        per_file.append({"path": r["path"], "original": a, "telephone": b})
    wer_a, wer_b = corpus_wer(pairs_orig), corpus_wer(pairs_tel)
    out["wer"] = {
        "files": len(utts),
        "original": round(wer_a, 4),
        "telephone": round(wer_b, 4),
        "ratio_telephone_over_original": round(wer_b / wer_a, 3) if wer_a else None,
        "note": "excludes the two-speaker stereo_diarization.wav",
    }
    out["transcripts"] = per_file

    # Digits (8 kHz recordings, one digit each): exact = the whole answer is that digit.
    digit_rows = [r for r in rows if r["path"].startswith("digits/")]
    if quick:
        digit_rows = digit_rows[::4]
    pad = np.zeros(4800, dtype=np.int16)
    res: dict[str, Any] = {"files": len(digit_rows)}
    for label, prompt in (
        ("plain", None),
        ("with_prompt", "Digits: zero, one, two, three, four, five, six, seven, eight, nine."),
    ):
        exact = anywhere = 0
        for r in digit_rows:
            words = normalize(
                stt.transcribe(np.concatenate([pad, to_16k(SHARED / r["path"]), pad]), prompt=prompt).text
            )
            exact += words == [r["transcript"]]
            anywhere += r["transcript"] in words
        res[label] = {
            "exact": round(exact / len(digit_rows), 3),
            "contains": round(anywhere / len(digit_rows), 3),
        }
    out["digits"] = res
    return out


def bench_llm(cfg: Config, quick: bool) -> dict[str, Any]:
    before = factory.rss_mb()
    t0 = time.perf_counter()
    llm = factory.load_llm(cfg)
    out: dict[str, Any] = {"engine": llm.name, "load_s": round(time.perf_counter() - t0, 3)}
    out["rss_mb"] = round(factory.rss_mb() - before, 1)
    systems = [
        f"You are the receptionist of {shop}, a small business. We are open Monday to Friday from "
        "nine to five. Keep answers to one or two short sentences, with no lists or markdown."
        for shop in (
            "Bright Smile Dental",
            "Oak Street Bakery",
            "Riverside Auto Repair",
            "Green Leaf Florist",
            "Summit Physiotherapy",
            "Harbor View Hotel",
        )
    ]
    questions = [
        "What are your opening hours?",
        "Can I book an appointment for tomorrow?",
        "Where are you located?",
        "Do you take credit cards?",
    ]

    def ttft(messages: list[dict[str, str]], max_tokens: int = 1) -> tuple[float, int, float]:
        t = time.perf_counter()
        first, n = None, 0
        for _ in llm.stream_chat(
            messages, cancel=CancelToken(timeout_s=120), max_tokens=max_tokens, temperature=0
        ):
            first = first or time.perf_counter() - t
            n += 1
        return first or 0.0, n, time.perf_counter() - t

    n = 3 if quick else 6
    cold, cached = [], []
    for i in range(n):
        sys_msg = {"role": "system", "content": systems[i % len(systems)]}
        # A new system prompt: nothing to reuse (the previous call had another one).
        cold.append(ttft([sys_msg, {"role": "user", "content": questions[0]}])[0])
        # Same system prompt, new question: the prefix is reused.
        cached.append(ttft([sys_msg, {"role": "user", "content": questions[1 + i % 3]}])[0])
    out["first_token_s"] = {"cold_p50": median(cold), "cached_prefix_p50": median(cached), "runs": n}
    out["prompt_tokens"] = llm.count_tokens(systems[0]) + llm.count_tokens(questions[0])

    rates = []
    for i in range(2 if quick else 3):
        msgs = [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Tell me a long story about a lighthouse keeper number {i}."},
        ]
        first, count, total = ttft(msgs, max_tokens=100)
        rates.append((count - 1) / (total - first) if count > 1 else 0.0)
    out["tokens_per_s"] = round(statistics.median(rates), 2)
    return out


def bench_tts(cfg: Config, quick: bool) -> dict[str, Any]:
    before = factory.rss_mb()
    t0 = time.perf_counter()
    tts = factory.load_tts(cfg)
    out: dict[str, Any] = {"engine": tts.name, "load_s": round(time.perf_counter() - t0, 3)}
    list(tts.synthesize("Warm up."))
    out["rss_mb"] = round(factory.rss_mb() - before, 1)
    replies = [
        "Sure.",
        "We are open from nine to five, Monday to Friday.",
        "I can book that for you. What time would suit you best? We have slots at ten and at two.",
        "Thank you for calling Bright Smile Dental. How can I help you today?",
    ]
    first, rtf = [], []
    for _ in range(1 if quick else 3):
        for text in replies:
            t = time.perf_counter()
            got_first, audio = None, 0.0
            for chunk in tts.synthesize(text):
                got_first = got_first or time.perf_counter() - t
                audio += chunk.duration_s
            first.append(got_first or 0.0)
            rtf.append((time.perf_counter() - t) / audio)
    out["first_chunk_s"] = {"p50": median(first), "p95": p95(first)}
    out["rtf_p50"] = median(rtf)
    out["sample_rate"] = tts.sample_rate
    return out


def bench_vad(cfg: Config) -> dict[str, Any]:
    before = factory.rss_mb()
    vad = factory.load_vad(cfg)
    rss = round(factory.rss_mb() - before, 1)
    audio = to_16k(SHARED / "utterances/whisper/jfk.flac")
    out: dict[str, Any] = {}
    for name, engine in (("silero", vad), ("webrtc", WebRtcVAD(2))):
        stream = engine.stream(16000)
        frames = list(split_frames(audio, 16000, 20))
        t = time.perf_counter()
        for f in frames:
            stream.process(f)
        elapsed = time.perf_counter() - t
        out[name] = {
            "us_per_20ms_frame": round(elapsed / len(frames) * 1e6, 1),
            "x_realtime": round(len(audio) / 16000 / elapsed, 1),
        }
    out["silero"]["rss_mb"] = rss
    return out


def bench_resamplers() -> dict[str, Any]:
    out = {}
    for src, dst in [
        (8000, 16000),
        (16000, 8000),
        (48000, 16000),
        (16000, 48000),
        (22050, 8000),
        (22050, 16000),
        (22050, 48000),
    ]:
        t = np.arange(src * 10) / src
        x = (10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        frames = list(split_frames(x, src, 20))
        rs = StreamResampler(src, dst)
        cpu = time.process_time()
        for f in frames:
            rs.process(f)
        cpu = time.process_time() - cpu  # CPU time, so it is per core
        out[f"{src}->{dst}"] = {"x_realtime_per_core_20ms_frames": round(10 / cpu, 0)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer files and runs (for CI smoke)")
    ap.add_argument("--stt-models", default="tiny.en,base")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/engines.json")
    args = ap.parse_args()
    if not (SHARED / "MANIFEST.tsv").exists():
        print(f"{SHARED} not found: set VOICE_AGENT_SHARED", file=sys.stderr)
        return 2
    cfg = Config()
    rows = corpus()
    started = time.perf_counter()
    report: dict[str, Any] = {"machine": {"cores": os.cpu_count()}, "quick": args.quick}

    def step(name: str, fn: Any, *a: Any) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {name}", file=sys.stderr)
        report[name] = fn(*a)

    step("resampler", bench_resamplers)
    step("vad", bench_vad, cfg)
    step("tts", bench_tts, cfg, args.quick)
    step("llm", bench_llm, cfg, args.quick)
    report["stt"] = {}
    for model in args.stt_models.split(","):
        print(f"[{time.perf_counter() - started:6.1f} s] stt {model}", file=sys.stderr)
        report["stt"][model] = bench_stt(cfg, model, rows, args.quick)
    report["peak_rss_mb"] = round(factory.peak_rss_mb(), 1)
    report["total_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
