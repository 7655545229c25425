"""Turn latency and barge-in over real SIP calls, with the real models.

    .venv/bin/python benchmarks/turns.py [--out FILE]

Our endpoint (pjsua2, default dialplan) on 127.0.0.1; baresip calls it (G.722) with a WAV of
real recorded questions from ../shared/speech, a few seconds apart, and records what it hears.

- Each turn's timing record (the session's own stamps): p50/p95 of every interval.
- Voice-to-voice from the caller's side: end of each question in the sent audio → first agent
  audio after it in baresip's recording (includes both jitter buffers and the network).
- Barge-in: a tour-guide dialplan gives long replies; the caller cuts in 2.5 s after each
  question. Stop latency = caller's cut-in onset → agent audio stops, on the caller's recording,
  and from the session's record (onset as VAD dated it → flush).
- Turn detection: pauses inside the corpus utterances (Silero, 20 ms frames), which is what
  end_silence_ms and speculative_ms must outlast.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.audio.resample import resample  # noqa: E402
from agent.audio.wav import read_wav, write_wav  # noqa: E402
from agent.config import Config  # noqa: E402
from agent.dialog.dialplan import Dialplan  # noqa: E402
from agent.dialog.dialplans import load_dialplan  # noqa: E402
from agent.dialog.services import Services  # noqa: E402
from agent.engines.factory import load_engines  # noqa: E402
from agent.observe import setup_logging  # noqa: E402
from tests.peers import LOCAL, SessionAgent, baresip_call  # noqa: E402
from tests.voices import at_phone_level, onset_s, quiet_from_s  # noqa: E402

SPEECH = ROOT.parent / "shared" / "speech"
QUESTIONS = [  # real recorded speech (see ../shared/speech/LICENSES.md)
    "utterances/cathy/arctic_a0207_1592712443.wav",  # How much was it.
    "utterances/cathy/arctic_a0222_1592712076.wav",  # What part of the United States is your home.
    "utterances/cathy/arctic_a0230_1592711917.wav",  # Do you know any good land around here.
    "utterances/asterisk/vm-savefolder.wav",  # Which folder should I save the message to?
    "utterances/cathy/arctic_a0158_1592713801.wav",  # Does that look good.
    "utterances/cathy/arctic_a0098_1592746254.wav",  # Shall I carry you.
    "utterances/cathy/arctic_a0039_1592747670.wav",  # The ship should be in within a week or ten days.
    "utterances/asterisk/privacy-prompt.wav",  # Please enter your phone number, starting with the area code.
    "utterances/cathy/arctic_a0038_1592747707.wav",  # We'll have to watch our chances.
    "utterances/cathy/arctic_a0221_1592712112.wav",  # I don't know why you're here at all.
    "utterances/deepspeech/arctic_a0024.wav",  # It was my reports from the north ...
    "utterances/asterisk/vm-sorry.wav",  # I'm sorry I did not understand your response.
]
GAP_S = 7.0  # after each question: room for the reply
TOUR = {
    "default": True,
    "system_prompt": "You are a tour guide. Answer every question with a long, detailed description "
    "of the city of Paris, in at least six sentences.",
    "llm": {"max_tokens": 200},
}


def load(rel: str) -> np.ndarray:
    pcm, rate = read_wav(SPEECH / rel)
    pcm = resample(pcm, rate, 16000)
    loud = np.abs(pcm) > 0.02 * np.abs(pcm).max()  # trim leading/trailing silence
    idx = np.flatnonzero(loud)
    return at_phone_level(pcm[idx[0] : idx[-1] + 1])


def pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.array(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "min": round(float(a.min()), 3),
        "max": round(float(a.max()), 3),
    }


def place_call(
    agent: SessionAgent, clips: list[np.ndarray], gaps: list[float], work: Path
) -> tuple[Any, list[tuple[float, float]]]:
    """One call: clips with the given silences after each; returns the call and (start, end) of each clip."""
    parts, spans, t = [np.zeros(16000 * 2, np.int16)], [], 2.0  # the greeting-less plan: 2 s lead-in
    for clip, gap in zip(clips, gaps, strict=True):
        spans.append((t, t + len(clip) / 16000))
        parts += [clip, np.zeros(int(gap * 16000), np.int16)]
        t += len(clip) / 16000 + gap
    work.mkdir(parents=True, exist_ok=True)
    mic = work / "mic.wav"
    write_wav(mic, np.concatenate(parts), 16000)
    result = baresip_call(work, f"sip:agent@{LOCAL}:{agent.cfg.port}", mic, "G722", seconds=int(t) + 4)
    return result, spans


def turn_calls(services: Services, plan: Dialplan, work: Path) -> dict[str, Any]:
    clips = [load(q) for q in QUESTIONS]
    records, caller_v2v = [], []
    for i in range(0, len(clips), 6):  # 6 questions a call
        batch = clips[i : i + 6]
        with SessionAgent(plan, services) as agent:
            result, spans = place_call(agent, batch, [GAP_S] * len(batch), work / f"t{i}")
        for session in agent.sessions:
            records += [t for t in session.turns if t.user_text]
        heard = result.heard
        for _, end in spans:
            first = onset_s(heard, result.rate, after_s=end)
            if first is not None and first < end + GAP_S:
                caller_v2v.append(first - end)
    intervals: dict[str, list[float]] = {}
    for r in records:
        for k, v in r.intervals().items():
            intervals.setdefault(k, []).append(v)
    return {
        "turns": len(records),
        "speculative_hits": sum(r.speculative for r in records),
        "intervals_s": {k: pct(v) for k, v in intervals.items()},
        "voice_to_voice_caller_side_s": pct(caller_v2v),
        "examples": [{"heard": r.user_text, "said": r.reply_text} for r in records[:4]],
    }


def barge_in_call(services: Services, work: Path) -> dict[str, Any]:
    plan = Dialplan.model_validate(TOUR)
    clips = [load(q) for q in QUESTIONS[:7]]
    cut_after = 3.0  # silence after each question: the reply (after ~1.5-2 s) is cut 1-1.5 s in
    with SessionAgent(plan, services) as agent:
        result, spans = place_call(agent, clips, [cut_after] * 6 + [GAP_S], work / "barge")
    records = [t for s in agent.sessions for t in s.turns if t.user_text]
    internal = [r.intervals()["barge_in_stop"] for r in records if "barge_in_stop" in r.intervals()]
    caller_side = []
    # Clip i+1 cut into the reply to clip i; where the session recorded that barge-in, measure
    # on the caller's recording from the cut-in onset to where the agent's audio stops: the
    # first silence longer than its pauses between sentences.
    for record, (start, _) in zip(records, spans[1:], strict=False):
        before = result.heard[int((start - 0.3) * result.rate) : int(start * result.rate)]
        audible = onset_s(before, result.rate) is not None  # else it was cut while still thinking
        if record.interrupted and record.barge_in is not None and audible:
            stopped = quiet_from_s(result.heard, result.rate, after_s=start, gap_s=0.6)
            if stopped is not None:
                caller_side.append(stopped - start)
    talking = len(caller_side)
    return {
        "cut_ins": len(spans) - 1,
        "barge_ins_measured_caller_side": talking,
        "barge_ins_recorded": len(internal),
        "stop_caller_side_s": pct(caller_side),
        "stop_session_record_s": pct(internal),
        "truncated_replies": [r.reply_text for r in records if r.interrupted][:3],
    }


def pauses_in_speech(vad: Any) -> dict[str, Any]:
    """Silences inside utterances (between the first and last voiced frame), by Silero."""
    with (SPEECH / "MANIFEST.tsv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["path"].startswith("utterances/")]
    pauses: list[float] = []
    for row in rows:
        if "stereo" in row["path"]:
            continue
        pcm, rate = read_wav(SPEECH / row["path"])
        pcm = resample(pcm, rate, 16000)
        stream = vad.stream(16000)
        voiced = [stream.process(pcm[i : i + 320]) >= 0.5 for i in range(0, len(pcm) - 320, 320)]
        idx = [i for i, v in enumerate(voiced) if v]
        if not idx:
            continue
        run = 0
        for v in voiced[idx[0] : idx[-1] + 1]:
            if v:
                if run:
                    pauses.append(run * 0.02)
                run = 0
            else:
                run += 1
    a = np.array(pauses)
    return {
        "utterances": len(rows) - 1,
        "pauses": len(pauses),
        "pause_p50_s": round(float(np.percentile(a, 50)), 3),
        "pause_p95_s": round(float(np.percentile(a, 95)), 3),
        "pause_p99_s": round(float(np.percentile(a, 99)), 3),
        "pause_max_s": round(float(a.max()), 3),
        "share_longer_than": {
            f"{ms}ms": round(float((a >= ms / 1000).mean()), 3) for ms in (200, 400, 600, 700, 800, 1000)
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/turns.json")
    args = p.parse_args()
    setup_logging("warning", "console")
    started = time.monotonic()
    cfg = Config()
    engines = load_engines(cfg)
    services = Services(engines.vad, engines.stt, engines.llm, {"joe": engines.tts}, "joe", llm_timeout_s=15)
    asyncio.run(services.warm())
    plan = load_dialplan(ROOT / "dialplans/default.yaml").model_copy(update={"greeting": ""})
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        report = {
            "machine": "2 cores, no GPU",
            "models": {
                "stt": cfg.stt.model,
                "llm": cfg.llm.model,
                "tts": cfg.tts.voice,
                "vad": cfg.vad.engine,
            },
            "turn_params": plan.turn.model_dump(),
            "turns": turn_calls(services, plan, work),
            "barge_in": barge_in_call(services, work),
            "pauses_within_utterances": pauses_in_speech(engines.vad),
        }
    services.close()
    report["seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
