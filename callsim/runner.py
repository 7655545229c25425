"""Run calls and turn them into results: one call, or a load of many (bounded in count and
time). Calls are recorded first and measured after, so the measuring never slows the agent."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from agent.engines.stt import STTEngine
from agent.engines.vad import VADEngine
from callsim.analysis import analyse
from callsim.call import CallRecording, TurnLog, place_call, turn_label
from callsim.report import write_report
from callsim.scenario import Scenario

log = structlog.get_logger("callsim")


@dataclass
class Meters:
    """callsim's own ears: a VAD (live turn-taking and segments) and an STT (transcripts)."""

    vad: VADEngine
    stt: STTEngine

    @classmethod
    def load(cls, stt_model: str = "tiny.en") -> Meters:
        from agent.config import Config, STTConfig
        from agent.engines.factory import load_stt, load_vad

        cfg = Config(stt=STTConfig(model=stt_model))
        return cls(load_vad(cfg), load_stt(cfg))


async def _safe_call(sc: Scenario, target: str, meters: Meters, seed: int, local: str) -> CallRecording:
    try:
        return await place_call(sc, target, meters.vad, seed=seed, local_host=local)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a callsim bug must not hide the other calls' results
        log.exception("call crashed", scenario=sc.name)
        return _failed(sc, target, f"callsim error: {type(exc).__name__}: {exc}")


def _failed(sc: Scenario, target: str, error: str) -> CallRecording:
    rec = CallRecording(
        sc.name, target, sc.line.codec, 8000, time.strftime("%Y-%m-%dT%H:%M:%S%z"), error=error
    )
    rec.turns = [TurnLog(i, t.kind, turn_label(t), t.wait, skipped=error) for i, t in enumerate(sc.turns)]
    return rec


def _measure(rec: CallRecording, sc: Scenario, meters: Meters, folder: Path, call: int) -> dict[str, Any]:
    rec.save(folder)
    result = analyse(rec, sc, meters.vad, meters.stt)
    result["call"] = call
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    return result


async def run_one(
    sc: Scenario, target: str, out: Path, meters: Meters, local: str = "127.0.0.1"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One call from address `local`; writes call.wav, result.json, summary.json and
    report.html into `out`."""
    rec = await _safe_call(sc, target, meters, 0, local)
    result = await asyncio.to_thread(_measure, rec, sc, meters, out, 0)
    summary = write_report(out, [result], f"callsim: {sc.name}")
    return result, summary


async def run_load(
    sc: Scenario,
    target: str,
    out: Path,
    meters: Meters,
    *,
    calls: int,
    concurrency: int,
    ramp_s: float = 0.0,
    max_time_s: float | None = None,
    local: str = "127.0.0.1",
) -> dict[str, Any]:
    """`calls` calls, at most `concurrency` at once; the first wave starts spread over `ramp_s`.

    Past `max_time_s` the calls still up are cut and the rest not started: all are counted as
    failed with the reason, never dropped from the report.
    """
    if max_time_s is None:
        waves = -(-calls // concurrency)
        max_time_s = ramp_s + waves * (sc.timing.max_duration_s + sc.timing.setup_timeout_s) + 30
    slots = asyncio.Semaphore(concurrency)
    recs: list[CallRecording | None] = [None] * calls

    async def one(k: int) -> None:
        if k < concurrency and ramp_s:
            await asyncio.sleep(ramp_s * k / concurrency)
        async with slots:
            log.info("call starting", call=k)
            recs[k] = await _safe_call(sc, target, meters, k, local)

    tasks = [asyncio.create_task(one(k)) for k in range(calls)]
    _, pending = await asyncio.wait(tasks, timeout=max_time_s)
    for t in pending:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    results = []
    for k, rec in enumerate(recs):
        rec = rec or _failed(sc, target, f"cut by the load's time limit ({max_time_s:.0f} s)")
        results.append(await asyncio.to_thread(_measure, rec, sc, meters, out / "calls" / f"{k:04d}", k))
    return write_report(out, results, f"callsim load: {sc.name} × {calls} (concurrency {concurrency})")
