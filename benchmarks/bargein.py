"""Barge-in: how often the agent stops for a backchannel or a noise (false barge-in), and how
fast it stops for a real interruption, over real SIP.

    .venv/bin/python benchmarks/bargein.py [--only backchannel|interruption] [--limit N]
        [--llm qwen2.5-coder-0.5b] [--stt tiny.en] [--judge-stt tiny.en] [--out FILE]
    .venv/bin/python benchmarks/bargein.py --dump DIR   # scenarios + sounds only: no agent, no calls

Starts `voice-agent serve` once (real models; dialplans/examples/bikeshop.yaml through
benchmarks/suites/bikeshop.yaml, acknowledgements off) and places one callsim call at a time
(PCMU). In every call the caller acts during the agent's greeting ("Hello, thanks for calling
Northside Bike Repair. How can I help you today?", about 3.7 s on the wire), 0.8-1.6 s after
the agent's voice starts: the only moment the agent is talking for sure.

- backchannels (expect `stops: false`): "uh huh", "mm-hm", "yeah", "okay", "right", "sure",
  "yep", "I see" in espeak-ng (en-us) and two festival voices (kal_diphone,
  cmu_us_slt_arctic_hts); synthetic sounds written with numpy (coughs, a throat clear, door
  slams, a breath into the mouthpiece, laughs, a static burst, line crackle); steady line hiss
  at 20 and 10 dB below speech (callsim's `line.snr_db`: on all call long; the caller's turn
  is silent).
  The caller hangs up once the greeting is over (quiet for 3.5 s: the agent may pause first).
- interruptions (expect `stops: true`): seven phrases in the three voices, and three recorded
  utterances of a real speaker (below). The caller hangs up once the agent has answered.
- two control calls first, with a silent caller: the length of the uninterrupted greeting.

What the caller hears, on the wire (callsim's agent track and its speech segments): the
agent's speech in progress when the caller started either runs to the greeting's natural end
(the control calls' length, 0.4 s tolerance): "kept talking"; or it ends early: the agent went
silent (stop ms: the caller's first sample on the wire → the end of that speech, i.e. callsim's
barge_in_stop_ms). Then, since the agent pauses on caller speech and goes on if the words
were a backchannel (turn.backchannel_max_ms), "paused" if its next speech completes the
greeting (the played parts add up to the control's length within 0.35 s, pauses under 3 s, and
callsim's transcript of it is words of the greeting), "stopped" if not. A false barge-in is a
backchannel that "stopped" the agent (the pauses are counted and timed apart); a miss is an
interruption that did not. callsim's own `agent_stopped` (and its `stops` check in each
call's report.html) is kept but not used: it counts any end of speech within 3 s of the
caller's start, and the rest of the greeting is shorter than that, so every call "stops".
An item is left out of the rates (listed, with the reason) if its call failed, the caller did
not act inside the greeting, or the agent was not talking at that moment (a gap in its audio).
The agent's own view is kept alongside: its log lines ("caller talks over the agent: paused",
"backchannel: the agent goes on", "barge-in", "short sound ignored while the agent talks"),
what it heard and said; the items where its log disagrees with the wire are listed.

JSON (benchmarks/results/bargein.json): for backchannels the false barge-in rate and the items
that stopped the agent, the pauses (how many, how long); for interruptions the miss rate, the
misses and the stop time p50/p95; by voice and by kind of sound; per item: label, voice,
outcome, stopped, stop ms, pause ms, the agent's log lines. The calls (call.wav, result.json,
report.html), the sounds and agent.log are kept in the folder printed at the start.

Notes. callsim brings every WAV turn to telephone speech level (load_wavs → at_phone_level:
the samples above 300 get an RMS of 3277, and a file with none above 300 is multiplied by
3277), so a quiet breath cannot be a WAV turn: the breath here is one into the mouthpiece, at
speech level, and quiet steady noise is the line hiss. "mm-hm" is said as "um hum" (both
engines spell out "mm-hm" letter by letter).

Recorded speech: three utterances of "Voice Dataset (Cathy)", rhasspy,
github.com/rhasspy/dataset-voice-cathy, CC0 1.0, from ../shared/speech/utterances/cathy
(MANIFEST.tsv; licences: ../shared/speech/LICENSES.md). callsim trims, resamples and levels
them for the call. Skipped, with a warning, if the folder is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ (not a package)

import conversation  # benchmarks/conversation.py (sets HF_HUB_OFFLINE): start_agent, read_log, pct

from agent.audio.wav import write_wav
from agent.wer import normalize
from callsim.runner import Meters, run_one
from callsim.scenario import Line, Scenario, Timing, Turn, TurnExpect, load_scenario

ROOT = conversation.ROOT
SUITE = ROOT / "benchmarks/suites/bikeshop.yaml"  # the dialplan and the SIP user
CATHY = ROOT.parent / "shared/speech/utterances/cathy"
VOICES = conversation.VOICES  # en-us, festival:kal_diphone, festival:cmu_us_slt_arctic_hts
DELAYS = (0.8, 1.0, 1.2, 1.4, 1.6)  # after the agent's voice starts; rotated over the items
CONTROL_CALLS = 2
CUT_TOLERANCE_S = 0.4  # agent speech ending this much before the greeting's natural end: it went silent
RESUME_TOLERANCE_S = 0.35  # the greeting played in full, to this much (Piper's length varies ±0.07 s)
MAX_PAUSE_S = 3.0  # a longer silence is not a pause the agent goes on from (callers hang up after 3.5 s)
MIN_LEFT_S = 1.0  # the caller must act at least this long before the greeting's natural end
PAUSED_LOG = "caller talks over the agent: paused"
RATE = 16000  # of the sound files

Kind = Literal["backchannel", "interruption", "control"]

BACKCHANNELS = [  # (label, what the engines are given)
    ("uh huh", "uh huh"),
    ("mm-hm", "um hum"),  # "mm-hm" is spelled out by espeak-ng and festival
    ("yeah", "yeah"),
    ("okay", "okay"),
    ("right", "right"),
    ("sure", "sure"),
    ("yep", "yep"),
    ("I see", "I see"),
]
INTERRUPTIONS = [
    "Sorry, wait.",
    "Hold on, what are your hours on Saturday?",
    "Excuse me, how much is a tune-up?",
    "No, no, I need to talk to a mechanic.",  # a transfer phrase of the dialplan: a real interruption
    "Actually, do you repair e-bikes?",
    "Wait, where is the shop?",
    "Sorry, can I pay by card?",
]
RECORDED = [  # ../shared/speech/utterances/cathy (CC0 1.0)
    ("arctic_a0207_1592712443.wav", "How much was it."),
    ("arctic_a0158_1592713801.wav", "Does that look good."),
    ("arctic_a0230_1592711917.wav", "Do you know any good land around here."),
]
LINE_HISS_DB = (20.0, 10.0)


@dataclass(frozen=True)
class Item:
    id: str
    kind: Kind
    group: str  # speech | recorded | sound | line | control
    label: str
    voice: str  # the caller's voice, or what the audio is
    delay_s: float
    say: str | None = None
    wav: Path | None = None
    snr_db: float | None = None  # steady line noise, with a silent caller turn


# --- the sounds ---------------------------------------------------------------------------
def _t(dur_s: float) -> np.ndarray:
    return np.arange(int(dur_s * RATE)) / RATE


def _band(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / RATE)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, len(x))


def _fade(x: np.ndarray, ms: float = 5.0) -> np.ndarray:
    n = min(int(ms * RATE / 1000), len(x) // 2)
    w = np.ones(len(x))
    w[:n], w[len(x) - n :] = np.linspace(0, 1, n), np.linspace(1, 0, n)
    return x * w


def cough(rng: np.random.Generator, dur_s: float) -> np.ndarray:
    """A sharp broadband burst that dies away: a cough of `dur_s`."""
    t = _t(dur_s)
    x = _band(rng.standard_normal(len(t)), 200, 3000) + 0.6 * _band(rng.standard_normal(len(t)), 400, 900)
    return _fade(x * np.minimum(t / 0.008, 1) * np.exp(-t / (dur_s / 3)))


def throat_clear(rng: np.random.Generator, dur_s: float = 0.3) -> np.ndarray:
    """Low raspy noise, swelling and fading, rattling at 32 Hz."""
    t = _t(dur_s)
    env = np.sin(np.pi * t / dur_s) ** 2 * (1 + 0.7 * np.sin(2 * np.pi * 32 * t))
    return _band(rng.standard_normal(len(t)), 150, 1200) * env


def door_slam(rng: np.random.Generator, near: bool) -> np.ndarray:
    """An impulse (the crack), a low thud and decaying noise; `near` or through a wall."""
    dur_s, tau = (0.4, 0.06) if near else (0.7, 0.15)
    t = _t(dur_s)
    x = _band(rng.standard_normal(len(t)), 40, 1500 if near else 700) * np.exp(-t / tau)
    x += 2.0 * np.sin(2 * np.pi * 70 * t) * np.exp(-t / 0.05)
    crack = int(0.003 * RATE)
    x[:crack] += 8.0 * rng.standard_normal(crack)
    return _fade(x if near else _band(x, 30, 900), 1.0)


def breath(rng: np.random.Generator, dur_s: float = 0.5) -> np.ndarray:
    """Slow band-limited noise swelling and fading: an exhale."""
    t = _t(dur_s)
    return _band(rng.standard_normal(len(t)), 300, 2200) * np.sin(np.pi * t / dur_s) ** 2


def laugh(rng: np.random.Generator, syllables: int) -> np.ndarray:
    """A laugh, "ha-ha-...": each syllable an aspirated onset and a voiced /a/ (harmonics
    weighted by two formants), falling in pitch and level, 70 ms apart."""

    def formants(f: np.ndarray) -> np.ndarray:
        return np.exp(-(((f - 750) / 180) ** 2)) + 0.7 * np.exp(-(((f - 1150) / 220) ** 2)) + 0.05

    parts = []
    for k in range(syllables):
        f0, t = 240.0 - 12 * k, _t(0.12)
        h = np.arange(1, int(3500 / f0) + 1)
        voiced = ((formants(h * f0) / h)[:, None] * np.sin(2 * np.pi * f0 * h[:, None] * t)).sum(axis=0)
        voiced *= np.clip((t - 0.02) / 0.02, 0, 1)
        aspiration = 0.6 * _band(rng.standard_normal(len(t)), 500, 3000) * np.exp(-t / 0.03)
        parts += [(voiced + aspiration) * np.sin(np.pi * t / 0.12) * 0.85**k, np.zeros(int(0.07 * RATE))]
    return np.concatenate(parts[:-1])


def static_burst(rng: np.random.Generator, dur_s: float = 0.25) -> np.ndarray:
    return _fade(rng.standard_normal(len(_t(dur_s))))


def crackle(rng: np.random.Generator, dur_s: float = 0.4) -> np.ndarray:
    """Sparse clicks of random sign and size over faint noise."""
    n = len(_t(dur_s))
    x = 0.03 * rng.standard_normal(n)
    at = rng.choice(n - 2, 70, replace=False)
    amp = rng.choice([-1.0, 1.0], 70) * rng.uniform(0.3, 1.0, 70)
    x[at] += amp
    x[at + 1] += 0.5 * amp
    return x


SOUNDS: dict[str, tuple[str, Callable[[np.random.Generator], np.ndarray]]] = {
    "cough-short": ("short cough (150 ms)", lambda r: cough(r, 0.15)),
    "cough": ("cough (250 ms)", lambda r: cough(r, 0.25)),
    "throat-clear": ("throat clear (300 ms)", throat_clear),
    "door-slam-near": ("door slam, near", lambda r: door_slam(r, True)),
    "door-slam-far": ("door slam, through a wall", lambda r: door_slam(r, False)),
    "breath": ("breath into the mouthpiece (0.5 s, at speech level)", breath),
    "laugh-short": ("short laugh (ha-ha)", lambda r: laugh(r, 2)),
    "laugh": ("laugh (ha-ha-ha-ha)", lambda r: laugh(r, 4)),
    "static-burst": ("line static burst (250 ms)", static_burst),
    "crackle": ("line crackle (400 ms)", crackle),
}


def write_sounds(folder: Path) -> dict[str, Path]:
    """The synthetic sounds as 16 kHz WAVs (peak at half scale: callsim sets the level)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, (name, (_, make)) in enumerate(SOUNDS.items()):
        x = make(np.random.default_rng(1000 + k))
        pcm = np.round(x / max(float(np.abs(x).max()), 1e-9) * 16000).astype(np.int16)
        write_wav(path := folder / f"{name}.wav", pcm, RATE)
        out[name] = path
    return out


# --- the items and their calls --------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _voice_tag(voice: str) -> str:
    return {"en-us": "espeak", "festival:kal_diphone": "kal", "festival:cmu_us_slt_arctic_hts": "slt"}.get(
        voice, _slug(voice)
    )


def build_items(sounds: dict[str, Path]) -> list[Item]:
    """Controls, backchannels, interruptions; delays rotate over all of them in this order."""
    raw: list[dict[str, Any]] = [
        {"id": f"control-{k}", "kind": "control", "group": "control", "label": "(silent caller)",
         "voice": "none"} for k in range(CONTROL_CALLS)
    ]  # fmt: skip
    for label, text in BACKCHANNELS:
        for v in VOICES:
            raw.append({"id": f"bc-{_slug(label)}-{_voice_tag(v)}", "kind": "backchannel", "group": "speech",
                        "label": label, "voice": v, "say": text})  # fmt: skip
    for name, path in sounds.items():
        raw.append({"id": f"bc-{name}", "kind": "backchannel", "group": "sound", "label": SOUNDS[name][0],
                    "voice": "synthetic sound", "wav": path})  # fmt: skip
    for db in LINE_HISS_DB:
        label = f"steady line hiss {db:g} dB below speech"
        raw.append({"id": f"bc-line-hiss-{db:g}db", "kind": "backchannel", "group": "line",
                    "label": label, "voice": "line", "snr_db": db})  # fmt: skip
    for text in INTERRUPTIONS:
        for v in VOICES:
            raw.append({"id": f"int-{_slug(text)[:40]}-{_voice_tag(v)}", "kind": "interruption",
                        "group": "speech", "label": text, "voice": v, "say": text})  # fmt: skip
    if CATHY.is_dir():
        for name, text in RECORDED:
            raw.append({"id": f"int-cathy-{name.split('_')[1]}", "kind": "interruption", "group": "recorded",
                        "label": text, "voice": "recorded (cathy)", "wav": CATHY / name})  # fmt: skip
    else:
        print(f"warning: {CATHY} not found: the recorded interruptions are left out", file=sys.stderr)
    return [Item(delay_s=DELAYS[k % len(DELAYS)], **r) for k, r in enumerate(raw)]


def scenario(item: Item) -> Scenario:
    """One call: the caller acts `delay_s` into the greeting, then waits for the agent."""
    expect = TurnExpect()  # a silent turn is not a barge-in to callsim: no `stops` there
    if item.say is not None or item.wav is not None:
        expect.stops = {"backchannel": False, "interruption": True}.get(item.kind)
    action: dict[str, Any] = (
        {"say": item.say} if item.say is not None
        else {"wav": str(item.wav)} if item.wav is not None
        else {"silence_s": 0.5}  # the line's noise alone (or nothing: the controls)
    )  # fmt: skip
    turn = Turn(wait="agent_speaking", delay_s=item.delay_s, expect=expect, **action)
    if item.kind == "interruption":  # the answer can take a while on a busy machine
        timing = Timing(quiet_s=1.5, linger_s=0.5, answer_timeout_s=20, max_duration_s=45)
    else:  # hang up once the greeting (or a reply) is over; the agent may pause ~1 s on the way
        timing = Timing(quiet_s=3.0, linger_s=0.5, answer_timeout_s=6, max_duration_s=30)
    return Scenario(
        name=f"bargein-{item.id}",
        description=f"{item.kind}: {item.label} ({item.voice}), {item.delay_s:g} s into the greeting",
        voice=item.voice if item.say is not None else "en-us",
        line=Line(codec="PCMU", snr_db=item.snr_db),
        timing=timing,
        turns=[turn],
    )


# --- measuring --------------------------------------------------------------------------------
def greeting_length(segs: list[list[float]]) -> float | None:
    """A control call's greeting on the wire: its first speech to the end of the stretch, the
    pause after "Hello," (~0.3 s) included."""
    if not segs:
        return None
    start, end = segs[0]
    for s, e in segs[1:]:
        if s - end > 0.6:
            break
        end = e
    return round(end - start, 3)


def greeting_words(text: str, vocab: set[str]) -> bool | None:
    """Is what the agent said after the caller the rest of its greeting? None: nothing heard.
    Lenient: the first word, cut in the middle where the agent paused, may be misheard."""
    words = normalize(text)
    if not words:
        return None
    return sum(w in vocab for w in words) >= 0.6 * len(words)


def agent_view(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The agent's log lines of this call: barge-ins, ignored short sounds, its turns."""
    ids = [e.get("call_id") for e in entries if e.get("event") == "call started"]
    if len(ids) == 1:  # lines of the previous call, logged late, are not this call's
        entries = [e for e in entries if e.get("call_id") in (ids[0], None)]
    keys = ("event", "turn", "heard", "dropped_ms", "timestamp")
    lines = [
        {k: e[k] for k in keys if k in e}
        for e in entries
        if any(w in str(e.get("event")) for w in ("barge-in", "paused", "backchannel", "short sound ignored"))
    ]
    events = {e.get("event") for e in entries}
    turns = [
        {"heard": e.get("user_text", ""), "said": e.get("reply_text", ""), "action": e.get("action", ""),
         "interrupted": e.get("interrupted")}
        for e in entries if e.get("event") == "turn record"
    ]  # fmt: skip
    outcome = "stopped" if "barge-in" in events else "paused" if PAUSED_LOG in events else "kept talking"
    return {
        "agent_outcome": outcome,  # what the agent says it did (its log)
        "agent_log": lines,
        "agent_turns": turns,
    }


def measure(item: Item, result: dict[str, Any], ref_s: float | None, vocab: set[str]) -> dict[str, Any]:
    """What the caller heard the agent do (see the module docstring): kept talking, paused and
    finished the greeting, or stopped; when it went silent and for how long."""
    turn = result["turns"][0] if result["turns"] else {}
    start = turn.get("start_s")
    segs = result["agent_segments"]
    g0 = segs[0][0] if segs else None
    talking = next((k for k, (s, e) in enumerate(segs) if s < (start or -1) < e), None)
    row: dict[str, Any] = {
        "outcome": None,  # kept talking | paused | stopped
        "stopped": None,
        "stop_ms": None,  # the caller's first sample -> the agent falls silent, on the wire
        "pause_ms": None,  # how long it stayed silent before going on with the greeting
        "caller_start_s": start,
        "caller_end_s": turn.get("end_s"),
        "greeting_start_s": g0,
        "agent_after": turn.get("transcript", ""),  # callsim's transcript, from the caller's end
        "valid": False,
        "invalid": "",
    }
    if result["error"]:
        row["invalid"] = f"call failed: {result['error']}"
    elif start is None:
        row["invalid"] = f"the caller's turn did not play: {turn.get('skipped') or 'unknown'}"
    elif turn.get("waited_out") or g0 is None:
        row["invalid"] = "the agent did not speak"
    elif ref_s is None:
        row["invalid"] = "no greeting reference: the control calls failed"
    elif not g0 < start < g0 + ref_s - MIN_LEFT_S:
        row["invalid"] = f"the caller acted {start - g0:.2f} s into the greeting: too early or late"
    elif talking is None:
        row["invalid"] = "the agent was not talking when the caller started (a gap in its audio)"
    else:
        row["valid"] = True
        quiet_at = segs[talking][1]
        if quiet_at >= g0 + ref_s - CUT_TOLERANCE_S:
            row["outcome"] = "kept talking"
        else:
            row["stop_ms"] = round((quiet_at - start) * 1000, 1)
            played, pause, end, resumed = quiet_at - g0, 0.0, quiet_at, False
            for s, e in segs[talking + 1 :]:  # the rest of the greeting, after one pause or more?
                if s - end > MAX_PAUSE_S or played > ref_s + RESUME_TOLERANCE_S:
                    break
                played, pause, end = played + e - s, pause + s - end, e
                if abs(played - ref_s) <= RESUME_TOLERANCE_S:
                    resumed = greeting_words(row["agent_after"], vocab) is not False
                    break
            row["outcome"] = "paused" if resumed else "stopped"
            if resumed:
                row["pause_ms"] = round(pause * 1000, 1)
        row["stopped"] = row["outcome"] == "stopped"
    if item.kind == "interruption" and row["stopped"]:
        row["reply_after_ms"] = turn.get("voice_to_voice_ms")  # the caller's last word -> the answer
    row["callsim"] = {k: turn.get(k) for k in ("agent_stopped", "barge_in_stop_ms", "talk_over_ms")}
    return row


async def call(
    item: Item, n: int, target: str, work: Path, meters: Meters, log: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Place the item's call; its callsim result and the agent's view of it."""
    seen = len(conversation.read_log(log))
    folder = work / "calls" / f"{n:03d}-{item.id}"
    result, _ = await run_one(scenario(item), target, folder, meters)
    await asyncio.sleep(0.5)  # the agent logs the turn record as the call ends
    view = agent_view(conversation.read_log(log, seen))
    return result, {**view, "call_dir": str(folder)}


def row_of(
    item: Item, result: dict[str, Any], view: dict[str, Any], ref_s: float | None, vocab: set[str]
) -> dict[str, Any]:
    m = measure(item, result, ref_s, vocab)
    return {
        "id": item.id,
        "kind": item.kind,
        "group": item.group,
        "label": item.label,
        "voice": item.voice,
        "delay_s": item.delay_s,
        **({"said": item.say} if item.say not in (None, item.label) else {}),
        **m,
        "transfers": result.get("transfers", []),
        "ended_by": result.get("ended_by"),
        **view,
    }


def greeting_vocab(suite: conversation.Suite) -> set[str]:
    """The words of the agent's greeting (and "north side", as Whisper may write it)."""
    greeting = yaml.safe_load((ROOT / suite.dialplan).read_text()).get("greeting") or ""
    return set(normalize(greeting)) | {"north", "side"}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    suite = conversation.load_model(conversation.Suite, SUITE)
    vocab = greeting_vocab(suite)
    work = Path(tempfile.mkdtemp(prefix="bargein-"))  # kept: calls, sounds, agent.log
    print(f"calls, sounds and the agent's log: {work}", flush=True)
    items = select(build_items(write_sounds(work / "sounds")), args.only, args.limit)
    meters = Meters.load(args.judge_stt)
    proc, port, log = conversation.start_agent(work, [suite], args.llm, args.stt)
    target = f"sip:{suite.user}@127.0.0.1:{port}"
    done: list[tuple[Item, dict[str, Any], dict[str, Any]]] = []
    ref_s: float | None = None
    try:
        for n, item in enumerate(items):  # the controls come first
            result, view = await call(item, n, target, work, meters, log)
            done.append((item, result, view))
            if item.kind == "control":
                print(f"control {item.id}: greeting {greeting_length(result['agent_segments'])} s "
                      f"{result['error']}", flush=True)  # fmt: skip
                continue
            if ref_s is None:
                lengths, ref_s = reference(done)
                if ref_s is None:
                    raise SystemExit("no control call measured the greeting: nothing can be classified")
                if max(lengths) - min(lengths) > 0.25:
                    print(f"warning: the control greetings differ: {lengths} s (the longest is used)")
            r = row_of(item, result, view, ref_s, vocab)
            print(f"{item.kind}: {item.label!r} ({item.voice}, {item.delay_s:g} s): "
                  f"{r['outcome'] or r['invalid']} stop={r['stop_ms']} pause={r['pause_ms']} ms "
                  f"(agent's log: {r['agent_outcome']}) after: {r['agent_after']!r}", flush=True)  # fmt: skip
    finally:
        conversation.stop_agent(proc)
    return summarize(done, args, work, vocab)


def select(items: list[Item], only: str | None, limit: int) -> list[Item]:
    """The controls, then the chosen kinds, at most `limit` of each (0: all)."""
    out = [i for i in items if i.kind == "control"]
    for kind in ("backchannel", "interruption"):
        if only in (None, kind):
            out += [i for i in items if i.kind == kind][: limit or None]
    return out


def reference(done: list[tuple[Item, dict[str, Any], dict[str, Any]]]) -> tuple[list[float], float | None]:
    """The uninterrupted greeting's length on the wire: the longest of the control calls' (a gap
    in the agent's audio can only shorten one)."""
    lengths = [
        g
        for item, result, _ in done
        if item.kind == "control" and not result["error"]
        if (g := greeting_length(result["agent_segments"])) is not None
    ]
    return lengths, max(lengths) if lengths else None


OUTCOMES = ("kept talking", "paused", "stopped")


def summarize(
    done: list[tuple[Item, dict[str, Any], dict[str, Any]]],
    args: argparse.Namespace,
    work: Path,
    vocab: set[str],
) -> dict[str, Any]:
    lengths, ref_s = reference(done)
    rows = [row_of(i, r, v, ref_s, vocab) for i, r, v in done if i.kind != "control"]

    def brief(r: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "label", "voice", "outcome", "stop_ms", "pause_ms", "agent_outcome", "agent_after")
        return {k: r[k] for k in keys}

    def rate(sel: list[dict[str, Any]], outcomes: tuple[str, ...]) -> dict[str, Any]:
        k = sum(r["outcome"] in outcomes for r in sel)
        return {"n": len(sel), "count": k, "rate": round(k / len(sel), 3) if sel else None}

    def ms(values: list[float]) -> dict[str, Any]:
        return {"p50": conversation.pct(values, 0.5), "p95": conversation.pct(values, 0.95),
                "max": max(values, default=None), "n": len(values)}  # fmt: skip

    def by(sel: list[dict[str, Any]], field: str) -> dict[str, Any]:
        groups = {str(v): [r for r in sel if r[field] == v] for v in dict.fromkeys(r[field] for r in sel)}
        return {v: {"n": len(g), **{o: sum(r["outcome"] == o for r in g) for o in OUTCOMES}}
                for v, g in groups.items()}  # fmt: skip

    out: dict[str, Any] = {
        "benchmark": "bargein",
        "command": " ".join(["benchmarks/bargein.py", *sys.argv[1:]]),
        "llm": args.llm,
        "stt": args.stt,
        "judge_stt": args.judge_stt,
        "dialplan": "dialplans/examples/bikeshop.yaml (acknowledgements off)",
        "codec": "PCMU",
        "work_dir": str(work),
        "method": (
            "The caller acts 0.8-1.6 s into the agent's greeting. On the wire, caller side: 'kept "
            "talking' = the agent's speech in progress at the caller's start runs to the greeting's "
            f"natural end (control calls; {CUT_TOLERANCE_S:g} s tolerance); else it went silent "
            "(stop_ms = the caller's first sample -> the end of that speech, callsim's "
            "barge_in_stop_ms) and 'paused' = its next speech completes the greeting (played length "
            f"within {RESUME_TOLERANCE_S:g} s of the control's, words of the greeting), 'stopped' = "
            "not. False barge-in = a backchannel 'stopped'; miss = an interruption not 'stopped'. "
            "callsim's own agent_stopped (3 s window, longer than the rest of the greeting) is kept "
            "under 'callsim', unused; agent_outcome is the agent's log: barge-in / paused / neither."
        ),
        "greeting_reference": {"control_lengths_s": lengths, "length_s": ref_s},
    }
    backs = [r for r in rows if r["kind"] == "backchannel"]
    if backs:
        ok = [r for r in backs if r["valid"]]
        out["backchannel"] = {
            "false_barge_in": rate(ok, ("stopped",)),
            "paused_then_went_on": rate(ok, ("paused",)),
            "kept_talking": rate(ok, ("kept talking",)),
            "false_barge_ins": [brief(r) for r in ok if r["outcome"] == "stopped"],
            "pauses": [brief(r) for r in ok if r["outcome"] == "paused"],
            "went_silent_after_ms": ms([r["stop_ms"] for r in ok if r["stop_ms"] is not None]),
            "pause_ms": ms([r["pause_ms"] for r in ok if r["pause_ms"] is not None]),
            "by_group": by(ok, "group"),
            "by_voice": by(ok, "voice"),
            "by_label": by(ok, "label"),
            "left_out": [{"id": r["id"], "why": r["invalid"]} for r in backs if not r["valid"]],
        }
    ints = [r for r in rows if r["kind"] == "interruption"]
    if ints:
        ok = [r for r in ints if r["valid"]]
        stops = [r["stop_ms"] for r in ok if r["stopped"]]
        out["interruption"] = {
            "miss": rate(ok, ("kept talking", "paused")),
            "misses": [brief(r) for r in ok if not r["stopped"]],
            "stop_ms": {**ms(stops), "mean": round(float(np.mean(stops)), 1) if stops else None},
            "by_group": by(ok, "group"),
            "by_voice": by(ok, "voice"),
            "left_out": [{"id": r["id"], "why": r["invalid"]} for r in ints if not r["valid"]],
        }
    out["wire_vs_agent_log"] = [
        {"id": r["id"], "on_the_wire": r["outcome"], "agent_log": r["agent_outcome"]}
        for r in rows
        if r["valid"] and r["outcome"] != r["agent_outcome"]
    ]
    out["items"] = rows
    return out


def dump(folder: Path) -> None:
    """Write the sounds and every call's scenario YAML, load them back, print the counts."""
    items = build_items(write_sounds(folder / "sounds"))
    (folder / "scenarios").mkdir(parents=True, exist_ok=True)
    for item in items:
        path = folder / "scenarios" / f"bargein-{item.id}.yaml"
        data = scenario(item).model_dump(mode="json", exclude_defaults=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        load_scenario(path)  # validates; the WAVs must exist
    counts: dict[str, int] = {}
    for item in items:
        counts[f"{item.kind}/{item.group}"] = counts.get(f"{item.kind}/{item.group}", 0) + 1
    print(json.dumps(counts, indent=1))
    print(f"{len(items)} scenarios written and loaded back: {folder / 'scenarios'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--only", choices=["backchannel", "interruption"], help="only this kind (and the controls)"
    )
    p.add_argument("--limit", type=int, default=0, help="at most N items of each kind")
    p.add_argument("--llm", default="qwen2.5-coder-0.5b", help="the agent's llm.model")
    p.add_argument("--stt", default="tiny.en", help="the agent's stt.model")
    p.add_argument("--judge-stt", default="tiny.en", help="callsim's transcriber (transcripts only)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/bargein.json")
    p.add_argument("--dump", type=Path, metavar="DIR", help="write the scenarios and sounds to DIR and exit")
    args = p.parse_args()
    if args.dump:
        dump(args.dump)
        return
    summary = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    keys = ("greeting_reference", "backchannel", "interruption", "wire_vs_agent_log")
    brief = {k: summary[k] for k in keys if k in summary}
    for kind in ("backchannel", "interruption"):
        if kind in brief:
            brief[kind] = {k: v for k, v in brief[kind].items() if not k.startswith("by_")}
    print(json.dumps(brief, indent=1))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
