"""One call's record keeping: its row in the call store, its recording and its transcript.

The server opens a `CallRecord` when a call is answered, hands its recorder to the call leg
(which feeds it every frame heard and sent), its `turn` to the session (each caller turn is
stored as soon as it is over, so a crash loses none), and finishes it when the call is over.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agent.dialog.timing import TurnTiming
from agent.metrics import Metrics
from agent.records.recording import Recorder, RecordingInfo
from agent.records.store import CallStore, Turn
from agent.telephony.call import CallInfo

if TYPE_CHECKING:
    from agent.records.store import Result

log = structlog.get_logger("records")


class CallRecord:
    """The record of one call in progress."""

    def __init__(
        self,
        store: CallStore,
        info: CallInfo,
        dialplan: str,
        recordings_dir: Path | None,
        metrics: Metrics | None = None,
        direction: str = "inbound",
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.started = time.monotonic()  # turn times are stored relative to the answer
        self.id = store.start(
            sip_call_id=info.call_id,
            transport=info.transport,
            from_uri=info.from_uri,
            to_uri=info.to_uri,
            dialplan=dialplan,
            offered=info.started_at,
            direction=direction,
        )
        self.recorder: Recorder | None = None
        self._writing: asyncio.Task[None] | None = None
        self.folder = call_folder(recordings_dir, info.started_at) if recordings_dir is not None else None
        if self.folder is not None and recordings_dir is not None:
            wav = self.folder / f"{self.id}.wav"
            self.recorder = Recorder(wav)
            self._writing = asyncio.ensure_future(self.recorder.run())
            store.set_files(self.id, recording=str(wav))
        self._finished = False

    def turn(self, timing: TurnTiming) -> None:
        """A caller turn is over (what was said, what the caller heard of the answer)."""
        at = timing.speech_start - self.started if timing.speech_start is not None else None
        intervals = {k: round(v, 3) for k, v in timing.intervals().items()}
        turn = Turn(
            timing.index,
            at,
            timing.user_text,
            timing.reply_text,
            timing.interrupted,
            timing.action,
            intervals,
        )
        try:
            self.store.add_turn(self.id, turn)
        except Exception:  # the call goes on without its record rather than failing
            log.exception("storing a turn failed", call=self.id)

    def ringing(self, sip_call_id: str = "") -> None:
        """An outgoing call rings."""
        try:
            self.store.progress(self.id, sip_call_id=sip_call_id)
        except Exception:
            log.exception("storing call progress failed", call=self.id)

    def answered(self, by: str, info: CallInfo | None = None) -> None:
        """An outgoing call was answered, by a human, a machine or we do not know."""
        self.started = time.monotonic()
        try:
            sip_id, ours = (info.call_id, info.from_uri) if info is not None else ("", "")
            self.store.progress(self.id, sip_call_id=sip_id, from_uri=ours, answered_by=by)
        except Exception:
            log.exception("storing call progress failed", call=self.id)

    def collected(self, name: str, value: str | None) -> None:
        """A value the caller gave on the keypad: kept in the record's fields at once."""
        try:
            self.store.set_field(self.id, name, value)
        except Exception:  # the call goes on without it rather than failing
            log.exception("storing a collected field failed", call=self.id)

    def transferred(self, target: str, uri: str, ok: bool, mode: str = "blind", outcome: str = "") -> None:
        """A transfer's outcome: `connected`, or why not (`busy`, `no_answer`, `declined`,
        `failed`, `caller_left`)."""
        outcome = outcome or ("connected" if ok else "failed")
        try:
            self.store.transferred(self.id, target, uri, ok, mode, outcome)
        except Exception:
            log.exception("storing a transfer failed", call=self.id)
        if self.metrics is not None:
            self.metrics.transfers.labels(mode, outcome).inc()

    async def finish(self, result: Result, greeting: str = "", announce: bool = True) -> None:
        """The call is over: close the recording, write the transcript, end the record (and
        raise call.ended, unless a post-call summary will: `announce=False`)."""
        if self._finished:
            return
        self._finished = True
        recording: RecordingInfo | None = None
        if self.recorder is not None:
            recording = await self.recorder.close()
            if self._writing is not None:
                await self._writing
        transcript = self.folder / f"{self.id}.json" if self.folder is not None else None
        if transcript is not None:  # named in the record (and call.ended) before it is written
            self.store.set_files(self.id, transcript=str(transcript))
        self.store.end(self.id, result, announce=announce)
        if self.metrics is not None:
            self.metrics.call_results.labels(result).inc()
        if transcript is not None:
            await asyncio.to_thread(write_transcript, self.store, self.id, transcript, greeting)
        if recording is not None:
            self.store.recording_ready(self.id, str(recording.path), recording.seconds, recording.bytes)
            if self.metrics is not None:
                self.metrics.recordings.labels("written").inc()
        log.info(
            "call recorded", call=self.id, result=result, recording=str(recording.path) if recording else None
        )


def call_folder(recordings_dir: Path, offered: float) -> Path:
    """Recordings go in one folder per day (UTC): listing and expiring stay cheap."""
    return recordings_dir / time.strftime("%Y-%m-%d", time.gmtime(offered))


def transcript_of(record: dict[str, Any], greeting: str = "") -> dict[str, Any]:
    """Who said what, in order, with times: the greeting, then each caller turn and what the
    caller heard of its answer (`cut_off`: the caller interrupted it there)."""
    lines: list[dict[str, Any]] = []
    if greeting:
        lines.append({"who": "agent", "at_s": 0.0, "text": greeting})
    for t in record.get("turns", []):
        at = t["at_s"]
        lines.append({"who": "caller", "at_s": at, "text": t["caller"]})
        answer_at = None
        if at is not None and "voice_to_answer" in t["timing"]:
            answer_at = round(at + t["timing"].get("voice_to_answer", 0.0), 3)
        lines.append(
            {
                "who": "agent",
                "at_s": answer_at,
                "text": t["agent"],
                "cut_off": t["interrupted"],
                "action": t["action"],
                "timing": t["timing"],
            }
        )
    keys = (
        "id",
        "transport",
        "from_uri",
        "to_uri",
        "dialplan",
        "offered",
        "answered",
        "ended",
        "result",
        "cut_off",
    )
    return {**{k: record.get(k) for k in keys}, "lines": lines}


def write_transcript(store: CallStore, call_id: str, path: Path, greeting: str = "") -> None:
    record = store.get(call_id)
    if record is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(transcript_of(record, greeting), indent=1, allow_nan=False))
    tmp.replace(path)  # a reader never sees half a file
