"""Whisper on the phone band: word error rate of the agent's STT on the suites' questions and
on recorded speech, through 8 kHz µ-law, by model and by vocabulary hints.

    .venv/bin/python benchmarks/stt.py [--model tiny.en --model base] [--out FILE]

Questions: every `say` of benchmarks/suites/*.yaml in three caller voices (espeak-ng and two
festival voices, as callsim speaks them), plus the transcribed recordings of
../shared/speech/utterances up to 15 s (see ../shared/speech/LICENSES.md). Each goes through
the telephone path (8 kHz, µ-law, back to 16 kHz, as the agent hears a PCMU call) and is
transcribed with: no prompt; the dialplan's own `stt.prompt`; the vocabulary the agent builds
(`stt.prompt` plus the names in `business` and `knowledge`). Reported: WER per model × hint,
the share of questions whose business names (words of the vocabulary) came out right, and the
transcription time. JSON: benchmarks/results/stt.json.
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
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from agent.audio.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from agent.audio.resample import resample  # noqa: E402
from agent.audio.wav import read_wav  # noqa: E402
from agent.config import Config, STTConfig  # noqa: E402
from agent.dialog.dialplans import load_dialplan  # noqa: E402
from agent.dialog.knowledge import vocabulary  # noqa: E402
from agent.engines.factory import load_stt  # noqa: E402
from agent.wer import corpus_wer, normalize  # noqa: E402
from callsim.voice import synthesize  # noqa: E402

VOICES = ("en-us", "festival:kal_diphone", "festival:cmu_us_slt_arctic_hts")
SPEECH = ROOT.parent / "shared/speech"


def phone(pcm16k: np.ndarray) -> np.ndarray:
    """What the agent hears of a PCMU call: 8 kHz µ-law and back up to 16 kHz."""
    narrow = resample(pcm16k, 16000, 8000)
    return resample(ulaw_decode(ulaw_encode(narrow)), 8000, 16000)


def items() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for suite_file in sorted((ROOT / "benchmarks/suites").glob("*.yaml")):
        suite = yaml.safe_load(suite_file.read_text())
        plan = load_dialplan(ROOT / suite["dialplan"])
        hints = {"none": "", "stt.prompt": plan.stt.prompt, "vocabulary": vocabulary(plan)}
        for k, q in enumerate(q for q in suite["questions"] if q.get("say")):
            voice = VOICES[k % len(VOICES)]
            pcm = synthesize(q["say"], 16000, voice)
            out.append(
                {
                    "id": f"{suite_file.stem}/{q['id']}",
                    "text": q["say"],
                    "voice": voice,
                    "pcm": phone(pcm),
                    "hints": hints,
                    "names": _names(hints["vocabulary"], q["say"]),
                }
            )
    with (SPEECH / "MANIFEST.tsv").open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if (
                row["path"].startswith("utterances/")
                and float(row["duration_s"]) <= 15
                and row["channels"] == "1"
            ):
                pcm, rate = read_wav(SPEECH / row["path"])
                out.append(
                    {
                        "id": row["path"],
                        "text": row["transcript"],
                        "voice": "recorded",
                        "pcm": phone(resample(pcm, rate, 16000)),
                        "hints": {"none": ""},
                        "names": [],
                    }
                )
    return out


def _names(vocab: str, text: str) -> list[str]:
    """The vocabulary's words that the question says (what the hints should get right)."""
    said = set(normalize(text))
    return sorted({w for w in normalize(vocab) if w in said and len(w) > 3})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="tiny.en (default), base")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/stt.json")
    args = p.parse_args()
    data = items()
    print(f"{len(data)} utterances", flush=True)
    results: dict[str, Any] = {"benchmark": "stt", "command": "benchmarks/stt.py " + " ".join(sys.argv[1:])}
    for model in args.model or ["tiny.en"]:
        stt = load_stt(Config(stt=STTConfig(model=model)))
        for hint in ("none", "stt.prompt", "vocabulary"):
            pairs: list[tuple[str, str]] = []
            rec_pairs: list[tuple[str, str]] = []
            names_ok = names_all = 0
            took: list[float] = []
            for it in data:
                prompt = it["hints"].get(hint, "")
                started = time.perf_counter()
                heard = stt.transcribe(it["pcm"], prompt=prompt or None).text
                took.append(time.perf_counter() - started)
                (rec_pairs if it["voice"] == "recorded" else pairs).append((it["text"], heard))
                got = set(normalize(heard))
                names_all += len(it["names"])
                names_ok += sum(n in got for n in it["names"])
            results[f"{model}/{hint}"] = {
                "questions_wer": round(corpus_wer(pairs), 3),
                "recorded_wer": round(corpus_wer(rec_pairs), 3),
                "names_right": f"{names_ok}/{names_all}",
                "seconds_p50": round(statistics.median(took), 3),
                "worst": sorted(((round(corpus_wer([pr]), 2), *pr) for pr in pairs), reverse=True)[:8],
            }
            r = results[f"{model}/{hint}"]
            print(
                f"{model:8} {hint:11} questions WER {r['questions_wer']:.3f}  recorded WER "
                f"{r['recorded_wer']:.3f}  names {r['names_right']}  {r['seconds_p50']} s",
                flush=True,
            )
    args.out.write_text(json.dumps(results, indent=1))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
