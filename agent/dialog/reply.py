"""One agent reply, streamed: STT → LLM tokens → chunker → TTS → the leg, chunk by chunk.

A reply may start speculatively (before the end of turn is certain): it then does all its
work but plays nothing until `commit()`; `cancel()` drops it wherever it is. Two tasks run
side by side so the LLM keeps generating while earlier sentences are synthesised and played.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import structlog

from agent.dialog.chunker import Chunker
from agent.dialog.dialplan import Dialplan
from agent.dialog.history import History
from agent.dialog.playout import Playout
from agent.dialog.services import Services
from agent.dialog.timing import TurnTiming
from agent.dialog.tools import Action, Hangup, Transfer, action_from_phrase
from agent.engines.base import CancelToken, EngineError
from agent.engines.tts import SpeechChunk
from agent.telephony.call import CallLeg

log = structlog.get_logger("reply")


@dataclass(frozen=True)
class Script:
    """A fixed line to say (greeting, reprompt, goodbye), with what to do after it."""

    text: str
    actions: tuple[Action, ...] = ()


class Reply:
    def __init__(
        self,
        services: Services,
        plan: Dialplan,
        history: History,
        leg: CallLeg,
        timing: TurnTiming | None,
        *,
        audio: np.ndarray | None = None,
        script: Script | None = None,
        committed: bool = True,
        filler: SpeechChunk | None = None,
    ) -> None:
        self._s = services
        self._plan = plan
        self._history = history
        self.timing = timing
        self.playout = Playout(leg)
        self.user_text = ""
        self.actions: list[Action] = list(script.actions) if script else []
        self.failed = False  # an engine failed; the caller heard the fallback
        self._cancel = CancelToken()
        self._committed = asyncio.Event()
        if committed:
            self._committed.set()
        self._chunks: asyncio.Queue[str | None] = asyncio.Queue()
        self._filler = filler
        self._filler_task: asyncio.Future[None] | None = None
        self._speaker = asyncio.ensure_future(self._speak_chunks())
        self.task = asyncio.ensure_future(self._run(audio, script))
        for task in (self._speaker, self.task):
            task.add_done_callback(_log_failure)

    # --- control (session side) ---------------------------------------------------------
    @property
    def committed(self) -> bool:
        return self._committed.is_set()

    def commit(self) -> None:
        self._committed.set()

    def cancel(self) -> None:
        """Stop generating and synthesising (the caller's flush drops queued audio)."""
        self._cancel.cancel()
        self.task.cancel()
        self._speaker.cancel()
        if self._filler_task is not None:
            self._filler_task.cancel()

    @property
    def finished(self) -> bool:
        """Everything generated has been played."""
        filler_done = self._filler_task is None or self._filler_task.done()
        return self.task.done() and self._speaker.done() and filler_done and self.playout.done

    # --- work -------------------------------------------------------------------------------
    async def _run(self, audio: np.ndarray | None, script: Script | None) -> None:
        try:
            if script is not None:
                self._chunks.put_nowait(script.text)
                return
            assert audio is not None
            text = await self._transcribe(audio)
            if not text:
                return
            action = action_from_phrase(text, self._plan.tools)
            if action is not None:
                self.actions.append(action)
                self._chunks.put_nowait(self._action_line(action))
                return
            if self._filler is not None:  # words known, the answer needs the LLM: acknowledge
                self._filler_task = asyncio.ensure_future(self._acknowledge(self._filler))
            await self._generate(text)
        finally:
            self._chunks.put_nowait(None)

    async def _transcribe(self, audio: np.ndarray) -> str:
        hints = self._plan.stt
        try:
            transcript = await self._s.transcribe(audio, hints.prompt, hints.hotwords)
        except EngineError as exc:
            self._s.failed("stt", exc)
            self._fail()
            return ""
        self._stamp("stt_done")
        self.user_text = transcript.text
        if self.timing:
            self.timing.user_text = transcript.text
        log.info(
            "heard",
            text=transcript.text,
            confidence=round(transcript.confidence, 2),
            audio_s=round(transcript.audio_s, 2),
            stt_s=round(transcript.processing_s, 3),
        )
        return transcript.text

    async def _generate(self, text: str) -> None:
        llm = self._plan.llm
        chunker = Chunker(self._plan.tools)
        messages = self._history.messages(pending_user=text)
        spoken = 0
        try:
            async with self._s.chat(
                messages, self._cancel, llm.max_tokens, llm.temperature, llm.timeout_s
            ) as tokens:
                async for piece in tokens:
                    self._stamp("llm_first_token")
                    for chunk in chunker.feed(piece):
                        self._chunks.put_nowait(chunk)
                        spoken += 1
        except EngineError as exc:
            self._s.failed("llm", exc)
            if spoken == 0:
                self._fail()
            return
        for chunk in chunker.finish():
            self._chunks.put_nowait(chunk)
            spoken += 1
        self.actions.extend(chunker.actions)
        if spoken == 0:  # the model gave a bare tag (or nothing): say the tool's line
            line = self._action_line(self.actions[0]) if self.actions else self._plan.fallback
            self._chunks.put_nowait(line)

    async def _acknowledge(self, filler: SpeechChunk) -> None:
        await self._committed.wait()
        if not self.playout.placed:  # the answer is not there yet
            self.playout.play_filler(filler.pcm, filler.sample_rate)

    def _action_line(self, action: Action) -> str:
        tools = self._plan.tools
        if isinstance(action, Hangup) and tools.hangup:
            return tools.hangup.goodbye
        if isinstance(action, Transfer) and tools.transfer:
            return tools.transfer.say.format(target=action.spoken or action.target)
        return ""

    def _fail(self) -> None:
        self.failed = True
        self._chunks.put_nowait(self._plan.fallback)

    async def _speak_chunks(self) -> None:
        voice = self._plan.voice
        while (text := await self._chunks.get()) is not None:
            if not text:
                continue
            cancel = CancelToken()
            try:
                async with self._s.speak(text, voice, cancel) as pieces:
                    async for piece in pieces:
                        self._stamp("tts_first_chunk")
                        await self._committed.wait()
                        self.playout.play(piece.text, piece.pcm, piece.sample_rate)
            except Exception as exc:  # any TTS crash loses this chunk; the rest may still be spoken
                self._s.failed("tts", exc)
            finally:
                cancel.cancel()

    def _stamp(self, name: str) -> None:
        if self.timing is not None and getattr(self.timing, name) is None:
            setattr(self.timing, name, time.monotonic())


def _log_failure(task: asyncio.Future[None]) -> None:
    """A bug in a reply must not pass silently (the session goes on without that reply)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("reply failed", error=repr(exc), exc_info=exc)
