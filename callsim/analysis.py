"""Measure a recorded call from its audio alone: the agent's speech segments, each turn's
latencies and transcript, and the scenario's expectations.

Nothing here reads the agent's logs: this works the same against any SIP agent.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

import numpy as np

from agent.audio.levels import block_db
from agent.audio.resample import resample
from agent.engines.stt import STTEngine
from agent.engines.vad import VADEngine
from agent.wer import normalize
from callsim.call import CallRecording, TurnLog
from callsim.scenario import Scenario, TextExpect

RATE = 16000
STOP_WINDOW_S = 3.0  # a barge-in the agent has not yielded to within this is "did not stop"
MERGE_GAP_S = 0.25  # pauses shorter than this are inside one stretch of agent speech
MIN_SEGMENT_S = 0.12
Seg = tuple[float, float]


def speech_segments(pcm: np.ndarray, vad: VADEngine, rate: int = RATE) -> list[Seg]:
    """Where the agent talks: Silero windows (32 ms) with hysteresis, merged, edges refined to
    5 ms with the signal's energy (the VAD alone is only as precise as its window)."""
    stream = vad.stream(rate)
    window = 512 if rate == 16000 else 256
    step = window / rate
    raw: list[list[float]] = []
    on, quiet = False, 0
    for i in range(len(pcm) // window):
        p = stream.process(pcm[i * window : (i + 1) * window])
        t = i * step
        if p >= 0.5:
            if not on:
                raw.append([t, t + step])
            on, quiet = True, 0
            raw[-1][1] = t + step
        elif on and p < 0.35:
            quiet += 1
            on = quiet * step < 0.1
    merged: list[list[float]] = []
    for s, e in raw:
        if merged and s - merged[-1][1] < MERGE_GAP_S:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    db = block_db(pcm, rate // 200)  # 5 ms blocks, once for the whole channel
    floor = float(np.percentile(db, 10)) if db.size else 0.0
    return [_refine(db, floor, s, e, step) for s, e in merged if e - s >= MIN_SEGMENT_S]


def _refine(db: np.ndarray, floor: float, start: float, end: float, step: float) -> Seg:
    """Snap a VAD segment's edges to the first/last loud 5 ms block near them. Silero's voiced
    windows lag the sound: up to a window at the start, more at the end (its state decays)."""
    lo, hi = int(start * 200), int(end * 200)
    seg_peak = float(db[lo:hi].max()) if hi > lo else 0.0
    thresh = max(floor + 10, seg_peak - 35)
    s_from, s_to = max(0, lo - 20), min(len(db), lo + int(2 * step * 200))  # -100 ms .. +2 windows
    loud = np.flatnonzero(db[s_from:s_to] > thresh)
    if loud.size:
        start = (s_from + loud[0]) / 200
    e_from, e_to = max(0, hi - 40), min(len(db), hi + 20)  # -200 ms .. +100 ms
    loud = np.flatnonzero(db[e_from:e_to] > thresh)
    if loud.size:
        end = (e_from + loud[-1] + 1) / 200
    return round(float(start), 4), round(float(end), 4)


def analyse(rec: CallRecording, sc: Scenario, vad: VADEngine, stt: STTEngine) -> dict[str, Any]:
    """The call's result: what result.json holds."""
    agent = resample(rec.agent, rec.rate, RATE) if len(rec.agent) else np.zeros(0, np.int16)
    segs = speech_segments(agent, vad) if len(agent) else []
    turns = [t for t in rec.turns if t.start_s is not None]
    first_turn = turns[0].start_s if turns else rec.duration_s

    def transcribe(a: float, b: float) -> str:
        parts = [
            agent[int(max(s - 0.15, a) * RATE) : int(min(e + 0.15, b) * RATE)]
            for s, e in segs
            if e > a and s < b
        ]
        return stt.transcribe(np.concatenate(parts)).text if parts else ""

    greeting_segs = [s for s in segs if s[0] < first_turn]
    greeting = {
        "first_audio_ms": _ms(greeting_segs[0][0]) if greeting_segs else None,
        "transcript": transcribe(0.0, first_turn),
    }
    out_turns = []
    for i, t in enumerate(rec.turns):
        row: dict[str, Any] = asdict(t)
        if t.start_s is not None and t.end_s is not None:
            nxt = next((u.start_s for u in rec.turns[i + 1 :] if u.start_s is not None), rec.duration_s)
            row.update(_turn_metrics(t, segs, nxt))
            row["transcript"] = transcribe(t.end_s, nxt)
        out_turns.append(row)
    result: dict[str, Any] = {
        "scenario": rec.scenario,
        "target": rec.target,
        "codec": rec.codec,
        "started_at": rec.started_at,
        "duration_s": rec.duration_s,
        "setup_ms": _ms(rec.setup_s),
        "ringing_ms": _ms(rec.ringing_s),
        "ended_by": rec.ended_by,
        "transfers": rec.transfers,
        "error": rec.error,
        "greeting": greeting,
        "turns": out_turns,
        "agent_segments": [list(s) for s in segs],
        "talk_over_ms": round(sum(r.get("talk_over_ms") or 0 for r in out_turns), 1),
        "rtp": rec.rtp,
        "tx_late_max_ms": rec.tx_late_max_ms,
        "envelope": envelope(rec),
    }
    result["checks"] = check(result, sc)
    result["passed"] = not rec.error and all(c["passed"] for c in result["checks"])
    return result


def _turn_metrics(t: TurnLog, segs: list[Seg], window_end: float) -> dict[str, Any]:
    assert t.start_s is not None and t.end_s is not None
    m: dict[str, Any] = {"voice_to_voice_ms": None, "barge_in_stop_ms": None, "agent_stopped": None}
    if t.kind != "silence_s":
        m["talk_over_ms"] = _ms(sum(max(0.0, min(e, t.end_s) - max(s, t.start_s)) for s, e in segs))
    talking = next(((s, e) for s, e in segs if s < t.start_s < e), None)
    if talking is not None and t.kind != "silence_s":  # the caller spoke over the agent: a barge-in
        stop = talking[1] - t.start_s
        m["agent_stopped"] = stop <= STOP_WINDOW_S
        m["barge_in_stop_ms"] = _ms(stop) if stop <= STOP_WINDOW_S else None
    reply = next((s for s, _ in segs if t.end_s - 0.01 <= s < window_end), None)
    if reply is not None and t.kind in ("say", "wav"):  # DTMF and silence have no "voice" to time from
        m["voice_to_voice_ms"] = _ms(reply - t.end_s)
    return m


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000, 1)


def envelope(rec: CallRecording, step_s: float = 0.02) -> dict[str, Any]:
    """Both channels' peak level per 20 ms (0..1): enough to draw the call, small enough for JSON."""
    n = int(rec.rate * step_s)

    def peaks(x: np.ndarray) -> list[float]:
        k = len(x) // n
        if k == 0:
            return []
        return np.round(np.abs(x[: k * n].astype(np.int32)).reshape(k, n).max(axis=1) / 32768, 3).tolist()

    return {"step_s": step_s, "caller": peaks(rec.caller), "agent": peaks(rec.agent)}


# --- expectations -------------------------------------------------------------------------
def check(result: dict[str, Any], sc: Scenario) -> list[dict[str, Any]]:
    """Every expectation of the scenario, passed or not, with what was observed."""
    out: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        out.append({"check": name, "passed": bool(ok), "detail": detail})

    exp = sc.expect
    if result["error"]:
        add("call completed", False, result["error"])
    if exp.max_setup_ms is not None:
        setup = result["setup_ms"]
        add(
            f"setup ≤ {exp.max_setup_ms:g} ms", setup is not None and setup <= exp.max_setup_ms, f"{setup} ms"
        )
    if exp.greeting is not None:
        _text_checks(add, "greeting", exp.greeting, result["greeting"]["transcript"])
    if exp.agent_hangs_up is not None:
        by = result["ended_by"] or "nobody"
        add(
            "agent hangs up" if exp.agent_hangs_up else "agent does not hang up",
            (by == "agent") == exp.agent_hangs_up,
            f"ended by {by}",
        )
    if exp.transfer is not None:
        targets = [t["refer_to"] for t in result["transfers"]]
        if isinstance(exp.transfer, str):
            ok = any(re.search(exp.transfer, t, re.I) for t in targets)
            add(f"transfer to /{exp.transfer}/", ok, f"REFER to {targets or 'none'}")
        else:
            add(
                "transfer requested" if exp.transfer else "no transfer",
                bool(targets) == exp.transfer,
                f"REFER to {targets or 'none'}",
            )
    for turn, row in zip(sc.turns, result["turns"], strict=True):
        e, name = turn.expect, f"turn {row['index'] + 1}"
        if row["skipped"] and e.model_dump(exclude_defaults=True):
            add(f"{name} played", False, row["skipped"])
            continue
        _text_checks(add, name, e, row.get("transcript", ""))
        if e.max_latency_ms is not None:
            v = row.get("voice_to_voice_ms")
            add(
                f"{name}: voice-to-voice ≤ {e.max_latency_ms:g} ms",
                v is not None and v <= e.max_latency_ms,
                "no reply" if v is None else f"{v} ms",
            )
        if e.stops is not None:
            stopped = bool(row.get("agent_stopped"))
            add(
                f"{name}: agent {'stops' if e.stops else 'keeps talking'} on barge-in",
                stopped == e.stops,
                _stop_detail(row),
            )
        if e.max_stop_ms is not None:
            v = row.get("barge_in_stop_ms")
            add(
                f"{name}: barge-in stop ≤ {e.max_stop_ms:g} ms",
                v is not None and v <= e.max_stop_ms,
                _stop_detail(row),
            )
    return out


def _stop_detail(row: dict[str, Any]) -> str:
    if row.get("agent_stopped") is None:
        return "the agent was not talking when the caller started"
    v = row.get("barge_in_stop_ms")
    return f"stopped after {v} ms" if v is not None else f"still talking {STOP_WINDOW_S:g} s later"


def text_checks(name: str, e: TextExpect, transcript: str) -> list[dict[str, Any]]:
    """The checks of `e` on any text (e.g. what the agent meant to say, against what was heard)."""
    out: list[dict[str, Any]] = []
    _text_checks(
        lambda n, ok, detail: out.append({"check": n, "passed": bool(ok), "detail": detail}),
        name,
        e,
        transcript,
    )
    return out


def _text_checks(add, name: str, e: TextExpect, transcript: str) -> None:
    heard = f"heard: {transcript!r}" if transcript else "heard nothing"
    words = " " + " ".join(normalize(transcript)) + " "
    if e.says is not None:
        add(f"{name}: says /{e.says}/", re.search(e.says, transcript, re.I) is not None, heard)
    if e.keywords:
        missing = [k for k in e.keywords if f" {' '.join(normalize(k))} " not in words]
        add(
            f"{name}: says all of {e.keywords}",
            not missing,
            heard + (f"; missing {missing}" if missing else ""),
        )
    if e.any_of:
        add(
            f"{name}: says one of {e.any_of}",
            any(f" {' '.join(normalize(k))} " in words for k in e.any_of),
            heard,
        )
    if e.none_of:
        said = [k for k in e.none_of if f" {' '.join(normalize(k))} " in words]
        add(f"{name}: says none of {e.none_of}", not said, heard + (f"; said {said}" if said else ""))
