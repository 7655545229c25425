"""What the records need besides the calls: recovery after a crash, and expiring recordings.

`recover` runs when a process starts: calls left open by a process that died (kill -9, a
crash, a power cut) get their WAV header repaired, their transcript written and their record
ended as cut off, which raises their `call.ended` and `recording.ready` like any other call's.
`Upkeep.run` deletes recordings older than their dialplan's retention, periodically.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Mapping
from pathlib import Path

import structlog

from agent.metrics import Metrics
from agent.records.callrecord import write_transcript
from agent.records.recording import repair
from agent.records.store import CallStore

log = structlog.get_logger("records")

DEFAULT_RETENTION_DAYS = 30.0  # for calls of a dialplan that is no longer configured


def recover(store: CallStore, metrics: Metrics | None = None) -> int:
    """End the calls of dead processes as cut off; returns how many."""
    count = 0
    for row in store.orphans():
        call_id = row["id"]
        ended = row["answered"] or row["offered"]
        seconds = size = 0.0
        wav = Path(row["recording"]) if row["recording"] else None
        if wav is not None and wav.exists():
            try:
                if repair(wav) and metrics is not None:
                    metrics.recordings.labels("repaired").inc()
                seconds, size = wav_seconds(wav), wav.stat().st_size
                ended += seconds  # the call lasted at least as long as its recording
            except (OSError, ValueError, EOFError, wave.Error) as exc:
                log.warning("recording of a cut-off call unreadable", call=call_id, error=str(exc))
                wav = None
        else:
            wav = None
            turns = store.turns(call_id)
            if turns and turns[-1].at_s is not None:
                ended += turns[-1].at_s
        store.end(call_id, "failed", cut_off=True, ended=ended)
        if row["transcript"]:
            try:
                write_transcript(store, call_id, Path(row["transcript"]))
            except OSError as exc:
                log.warning("transcript of a cut-off call not written", call=call_id, error=str(exc))
        if wav is not None:
            store.recording_ready(call_id, str(wav), seconds, int(size))
        log.warning("call was cut off by the process dying", call=call_id, recorded_s=round(seconds, 1))
        count += 1
    return count


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def expire(
    store: CallStore, retention_days: Mapping[str, float], now: float, metrics: Metrics | None = None
) -> int:
    """Delete recordings older than their dialplan's retention; returns how many."""
    count = 0
    for dialplan in store.dialplans_with_recordings():
        days = retention_days.get(dialplan, DEFAULT_RETENTION_DAYS)
        for call_id, path in store.recordings_before(dialplan, now - days * 86400):
            Path(path).unlink(missing_ok=True)
            store.forget_recording(call_id)
            count += 1
            if metrics is not None:
                metrics.recordings.labels("expired").inc()
    if count:
        log.info("recordings expired", count=count)
    return count


class Upkeep:
    """Recovery at start, then expiry every `every_s` seconds."""

    def __init__(
        self,
        store: CallStore,
        retention_days: Mapping[str, float],
        every_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.retention_days = dict(retention_days)
        self.every_s = every_s
        self.metrics = metrics

    async def run(self) -> None:
        # On the loop, not in a thread: the store wakes the webhook dispatcher, which lives here.
        # Both are short (a header rewrite per cut-off call; unlinking a day's recordings).
        recovered = recover(self.store, self.metrics)
        if recovered:
            log.warning("calls cut off by an earlier crash were closed", count=recovered)
        while True:
            try:
                expire(self.store, self.retention_days, time.time(), self.metrics)
            except Exception:  # a disk problem must not stop the next round
                log.exception("expiring recordings failed")
            await asyncio.sleep(self.every_s)
