"""`voice-agent check`: load every engine and push one sentence round the whole audio path.

TTS a sentence -> 8 kHz mu-law and back to 16 kHz (what a phone line does) -> VAD -> STT ->
LLM reply. Reports load time, the latency of each step, and memory.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from agent.audio.frames import split_frames
from agent.audio.g711 import ulaw_decode, ulaw_encode
from agent.audio.resample import resample
from agent.config import Config
from agent.engines.base import CancelToken, EngineError
from agent.engines.factory import LOADERS, load_one, peak_rss_mb

SENTENCE = "Hello, I would like to book a table for two people tonight."
SYSTEM = "You are a friendly phone receptionist. Answer in one short sentence."


class _Progress:
    """One line per step on stderr, with elapsed time: a progress display that logs well."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        self._out.write(f"[{time.perf_counter() - self._t0:6.1f} s] {message}\n")
        self._out.flush()


def run_check(cfg: Config, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load the engines and run the round trip; return a JSON-able report."""
    report: dict[str, Any] = {}
    engines: dict[str, Any] = {}
    for kind in LOADERS:
        try:
            engines[kind], stats = load_one(kind, cfg, progress)
        except EngineError as exc:
            report[kind] = {"loaded": False, "error": str(exc)}
            if progress:
                progress(f"{kind} FAILED: {exc}")
            continue
        report[kind] = {
            "loaded": True,
            "engine": engines[kind].name,
            "load_s": round(stats.seconds, 3),
            "rss_mb": round(stats.rss_mb, 1),
        }
    if len(engines) == len(LOADERS):
        if progress:
            progress("round trip: TTS -> 8 kHz mu-law -> VAD -> STT -> LLM")
        _round_trip(engines, report)
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    report["ok"] = all(report[k].get("loaded") for k in LOADERS) and "error" not in report
    return report


def _round_trip(engines: dict[str, Any], report: dict[str, Any]) -> None:
    tts, vad, stt, llm = engines["tts"], engines["vad"], engines["stt"], engines["llm"]
    t0 = time.perf_counter()
    chunks = []
    first = None
    for chunk in tts.synthesize(SENTENCE):
        first = first or time.perf_counter() - t0
        chunks.append(chunk.pcm)
    pcm = np.concatenate(chunks)
    report["tts"].update(
        first_chunk_s=round(first or 0.0, 3),
        total_s=round(time.perf_counter() - t0, 3),
        audio_s=round(len(pcm) / tts.sample_rate, 3),
        sample_rate=tts.sample_rate,
    )

    t0 = time.perf_counter()
    line = ulaw_decode(ulaw_encode(resample(pcm, tts.sample_rate, 8000)))
    wideband = resample(line, 8000, 16000)
    pad = np.zeros(8000, dtype=np.int16)  # 0.5 s of silence each side, as on a call
    audio = np.concatenate([pad, wideband, pad])
    report["telephone_path"] = {"latency_s": round(time.perf_counter() - t0, 4), "codec": "PCMU"}

    stream = vad.stream(16000)
    t0 = time.perf_counter()
    probs = [stream.process(f) for f in split_frames(audio, 16000, 20)]
    speech = [i for i, p in enumerate(probs) if p >= 0.5]
    report["vad"].update(
        latency_s=round(time.perf_counter() - t0, 4),
        frames=len(probs),
        speech_frames=len(speech),
        speech_start_s=round(speech[0] * 0.02, 2) if speech else None,
        speech_end_s=round((speech[-1] + 1) * 0.02, 2) if speech else None,
    )

    result = stt.transcribe(audio)
    report["stt"].update(
        latency_s=round(result.processing_s, 3),
        rtf=round(result.rtf, 3),
        text=result.text,
        confidence=round(result.confidence, 3),
        no_speech_prob=round(result.no_speech_prob, 3),
    )

    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": result.text or SENTENCE}]
    t0 = time.perf_counter()
    first = None
    pieces = []
    for piece in llm.stream_chat(messages, cancel=CancelToken(timeout_s=30), max_tokens=48):
        first = first or time.perf_counter() - t0
        pieces.append(piece)
    report["llm"].update(
        first_token_s=round(first or 0.0, 3),
        total_s=round(time.perf_counter() - t0, 3),
        pieces=len(pieces),
        reply="".join(pieces).strip(),
    )


def print_table(report: dict[str, Any], out: TextIO = sys.stdout) -> None:
    """Human-readable summary of a check report."""
    rows = [("engine", "loaded", "load s", "MB", "latency", "result")]
    latency_key = {"vad": "latency_s", "stt": "latency_s", "llm": "first_token_s", "tts": "first_chunk_s"}
    result_key = {"vad": "speech_frames", "stt": "text", "llm": "reply", "tts": "audio_s"}
    for kind in LOADERS:
        r = report[kind]
        if not r.get("loaded"):
            rows.append((kind, "NO", "", "", "", r.get("error", "")))
            continue
        lat = r.get(latency_key[kind])
        rows.append(
            (
                f"{kind} ({r['engine']})",
                "yes",
                f"{r['load_s']:.2f}",
                f"{r['rss_mb']:.0f}",
                "" if lat is None else f"{lat * 1000:.0f} ms",
                str(r.get(result_key[kind], ""))[:60],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write("latency: vad/stt = processing time, llm = first token, tts = first sentence\n")
    out.write(f"peak memory: {report['peak_rss_mb']:.0f} MB   ok: {report['ok']}\n")


def main(cfg: Config, as_json: bool) -> int:
    report = run_check(cfg, _Progress(sys.stderr))
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(report)
    return 0 if report["ok"] else 1
