"""Place one scripted call: dial, play the caller's turns as the scenario says, record both ways.

The result is a `CallRecording`: the two tracks plus what happened when (call clock, seconds
from the answer). Measuring it is `analysis.py`'s job, after the call, so that transcription
never competes with the agent for the CPU while it is being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import structlog

from agent.audio.wav import write_wav
from agent.engines.vad import VADEngine
from callsim import sdp
from callsim.codecs import make_codec
from callsim.media import AgentListener, Track, Transmitter
from callsim.rtp import RtpEndpoint
from callsim.scenario import Scenario, Turn
from callsim.sipua import CallFailed, SipUA
from callsim.voice import PHONE_RMS, load_wavs, synthesize

log = structlog.get_logger("callsim")


@dataclass
class TurnLog:
    """What the caller did in one turn, on the call clock."""

    index: int
    kind: str
    text: str
    wait: str
    start_s: float | None = None
    end_s: float | None = None
    waited_out: bool = False  # the agent had not spoken (or stopped) within answer_timeout_s
    skipped: str = ""


@dataclass
class CallRecording:
    scenario: str
    target: str
    codec: str
    rate: int
    started_at: str  # wall clock, ISO 8601
    setup_s: float | None = None  # INVITE sent -> 200 OK
    ringing_s: float | None = None
    duration_s: float = 0.0
    ended_by: str = ""
    transfers: list[dict] = field(default_factory=list)
    error: str = ""
    turns: list[TurnLog] = field(default_factory=list)
    rtp: dict = field(default_factory=dict)
    keys_received: list[str] = field(default_factory=list)  # the agent's RFC 4733 key presses
    tx_late_max_ms: float = 0.0
    caller: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16), repr=False)
    agent: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16), repr=False)

    def save(self, folder: Path) -> None:
        """call.wav (stereo: caller left, agent right) and call.json."""
        folder.mkdir(parents=True, exist_ok=True)
        write_wav(folder / "call.wav", np.stack([self.caller, self.agent], axis=1), self.rate)
        meta = {k: v for k, v in asdict(self).items() if k not in ("caller", "agent")}
        (folder / "call.json").write_text(json.dumps(meta, indent=1))


def prepare_audio(sc: Scenario, rate: int) -> list[np.ndarray | None]:
    """Each speaking turn's audio at the line's rate (None for DTMF and silence)."""
    out: list[np.ndarray | None] = []
    for turn in sc.turns:
        if turn.say is not None:
            out.append(synthesize(turn.say, rate, sc.voice, sc.words_per_minute))
        elif turn.wav is not None:
            out.append(load_wavs(sc.wav_paths(turn), rate))
        else:
            out.append(None)
    return out


def turn_label(turn: Turn) -> str:
    """How a turn is shown in reports: its words, its WAV names, its digits or its silence."""
    if turn.say is not None:
        return turn.say
    if turn.wav is not None:
        return " + ".join(Path(w).name for w in turn.wav_list)
    return turn.dtmf or f"({turn.silence_s:g} s of silence)"


class _Caller:
    """One call in progress: the script runs against the live listener and transmitter."""

    def __init__(
        self,
        sc: Scenario,
        rec: CallRecording,
        ua: SipUA,
        listener: AgentListener,
        tx: Transmitter,
        audio: list[np.ndarray | None],
        origin: float,
    ) -> None:
        self.sc, self.rec, self.ua, self.listener, self.tx = sc, rec, ua, listener, tx
        self.audio = audio
        self.origin = origin

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self.origin

    async def agent_done(self, after: float, quiet_s: float | None = None) -> bool:
        """Until the agent has spoken after `after` and then been quiet for `quiet_s`."""
        t = self.sc.timing
        need = t.quiet_s if quiet_s is None else quiet_s
        if not await self.listener.wait_voice_after(after, t.answer_timeout_s):
            return False
        while (quiet := self.now() - self.listener.last_voice) < need:
            await asyncio.sleep(need - quiet)
        return True

    async def script(self) -> None:
        ref = 0.0
        for turn, tlog, pcm in zip(self.sc.turns, self.rec.turns, self.audio, strict=True):
            if turn.wait == "agent_done":
                tlog.waited_out = not await self.agent_done(ref)
            elif turn.wait == "agent_speaking":
                tlog.waited_out = not await self.listener.wait_voice_after(
                    ref, self.sc.timing.answer_timeout_s
                )
            if turn.delay_s:
                await asyncio.sleep(turn.delay_s)
            if turn.silence_s is not None:
                tlog.start_s = round(self.now(), 4)
                await asyncio.sleep(turn.silence_s)
                tlog.end_s = round(self.now(), 4)
            else:
                job = self.tx.dtmf(turn.dtmf) if turn.dtmf is not None else self.tx.say(pcm)
                start, end = await job
                tlog.start_s, tlog.end_s = round(start, 4), round(end, 4)
            ref = tlog.end_s
            log.debug("turn done", turn=tlog.index, start=tlog.start_s, end=tlog.end_s)
        if self.sc.expect.agent_hangs_up:
            await self.ua.ended.wait()
        else:  # hang up once the agent is really done: a pause after "Okay." is not the end
            await self.agent_done(ref, self.sc.timing.quiet_s + self.sc.timing.linger_s)


async def place_call(
    sc: Scenario, target: str, vad: VADEngine, *, seed: int = 0, local_host: str = "127.0.0.1"
) -> CallRecording:
    """Place one call of the scenario against `target`; never raises for call failures (they are
    in `rec.error`), so a load run always counts them."""
    codec = make_codec(sc.line.codec)
    rec = CallRecording(sc.name, target, codec.name, codec.rate, time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    rec.turns = [TurnLog(i, t.kind, turn_label(t), t.wait) for i, t in enumerate(sc.turns)]
    audio = await asyncio.to_thread(prepare_audio, sc, codec.rate)
    loop = asyncio.get_running_loop()
    ua = SipUA(target, local_host, refer=sc.line.refer)
    caller_track, agent_track = (
        Track(codec.rate, sc.timing.max_duration_s),
        Track(codec.rate, sc.timing.max_duration_s),
    )
    rtp = RtpEndpoint(
        codec,
        sdp.CODECS[codec.name][0],
        lambda *a: None,
        loss_pct=sc.line.loss_pct,
        jitter_ms=sc.line.jitter_ms,
        seed=seed,
    )
    tx_task: asyncio.Task | None = None
    tx: Transmitter | None = None
    try:
        await ua.bind()
        port = await rtp.bind(local_host)
        dialled = loop.time()
        answer = await ua.invite(sdp.offer(local_host, port, [codec.name]), sc.timing.setup_timeout_s)
        origin = ua.events.answered_at or loop.time()
        rec.setup_s = origin - dialled
        if ua.events.ringing_at is not None:
            rec.ringing_s = ua.events.ringing_at - dialled
        media = sdp.answer_media(answer.body, [codec.name])
        rtp.connect(media.host, media.port)
        rtp.pt, rtp.dtmf_pt = media.payload_type, media.dtmf_pt
        listener = AgentListener(agent_track, vad.stream(codec.rate), origin)
        rtp.on_audio = listener.on_audio
        noise = PHONE_RMS / 10 ** (sc.line.snr_db / 20) if sc.line.snr_db is not None else 0.0
        tx = Transmitter(rtp, caller_track, noise, seed)
        tx_task = asyncio.create_task(tx.run(origin))
        caller = _Caller(sc, rec, ua, listener, tx, audio, origin)
        await _run_until_over(caller, sc.timing.max_duration_s)
    except (CallFailed, sdp.SdpError, OSError) as exc:
        rec.error = str(exc)
    finally:
        if tx is not None:
            rec.tx_late_max_ms = round(tx.late_max_s * 1000, 1)
        if tx_task is not None:
            tx_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tx_task
        await ua.bye()
        rtp.close()
        ua.close()
    _finish(rec, ua, rtp, caller_track, agent_track, loop.time())
    return rec


async def _run_until_over(caller: _Caller, max_s: float) -> None:
    """The script, until it ends, the agent hangs up or transfers, or the time limit."""
    script = asyncio.create_task(caller.script())
    over = asyncio.create_task(caller.ua.over.wait())
    try:
        done, _ = await asyncio.wait({script, over}, timeout=max_s, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            caller.rec.error = f"the call ran past max_duration_s ({max_s:g} s)"
        elif script in done:
            script.result()  # re-raise a script failure
        elif caller.ua.events.transfers and not caller.ua.ended.is_set():
            with contextlib.suppress(TimeoutError):  # the agent hangs up once the REFER succeeded
                await asyncio.wait_for(caller.ua.ended.wait(), 5.0)
    finally:
        for t in (script, over):
            t.cancel()
        await asyncio.gather(script, over, return_exceptions=True)
    for tlog in caller.rec.turns:
        if tlog.end_s is None:
            tlog.skipped = "the call ended first" if caller.ua.over.is_set() else "time limit"


def _finish(rec: CallRecording, ua: SipUA, rtp: RtpEndpoint, caller: Track, agent: Track, now: float) -> None:
    ev = ua.events
    origin = ev.answered_at
    if origin is not None:
        rec.duration_s = round((ev.ended_at or now) - origin, 3)
        n = int(rec.duration_s * rec.rate)
        rec.caller, rec.agent = caller.audio(n), agent.audio(n)
        rec.transfers = [{"refer_to": t.refer_to, "at_s": round(t.at - origin, 3)} for t in ev.transfers]
    rec.ended_by = ev.ended_by
    rec.rtp = asdict(rtp.stats)
    rec.keys_received = list(rtp.keys)
