"""One agent reply, streamed: STT → LLM tokens → chunker → TTS → the leg, chunk by chunk.

A reply does the engine work of one StartReply or Say command and reports every step as an
event (Transcribed, FirstToken, ChunkSynthesised, ReplyDone; its Playout adds ChunkStarted). It
decides nothing about the turn: a speculative reply does all its work but plays nothing until
`commit()`; `cancel()` drops it wherever it is. Two tasks run side by side so the LLM keeps
generating while earlier chunks are synthesised and played.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import structlog

from agent.dialog.chunker import Chunker
from agent.dialog.dialplan import Dialplan
from agent.dialog.events import ChunkSynthesised, Event, FirstToken, ReplyDone, Transcribed
from agent.dialog.playout import Playout
from agent.dialog.prompt import Prompt, readback
from agent.dialog.services import Services
from agent.dialog.tools import Action, Hangup, Transfer, accepted, action_from_phrase, declined
from agent.engines.base import CancelToken, EngineError
from agent.engines.tts import SpeechChunk
from agent.telephony.call import CallLeg

log = structlog.get_logger("reply")


class Reply:
    def __init__(
        self,
        reply_id: int,
        services: Services,
        plan: Dialplan,
        prompt: Prompt,
        leg: CallLeg,
        post: Callable[[Event], None],
        *,
        audio: np.ndarray | None = None,
        script: tuple[str, tuple[Action, ...]] | None = None,
        committed: bool = True,
        ack: SpeechChunk | None = None,
        fallback: SpeechChunk | None = None,
        message: bool = False,
    ) -> None:
        self.id = reply_id
        self._services = services
        self._plan = plan
        self._prompt = prompt
        self._post = post
        self.playout = Playout(leg, reply_id, post)
        self._actions: list[Action] = list(script[1]) if script else []
        self._failed = False  # an engine failed; the caller hears the fallback
        self._cancel = CancelToken()
        self._committed = asyncio.Event()
        if committed:
            self._committed.set()
        # Text to synthesise, or speech ready to play (the fallback line), or None: the end.
        self._chunks: asyncio.Queue[str | SpeechChunk | None] = asyncio.Queue()
        self._ack = ack
        self._fallback = fallback
        self._message = message  # the caller's words are a message (see StartReply)
        self._tasks = [
            asyncio.ensure_future(self._produce(audio, script[0] if script else None)),
            asyncio.ensure_future(self._speak_chunks()),
        ]
        self._done = asyncio.ensure_future(self._report_done())
        for task in (*self._tasks, self._done):
            task.add_done_callback(_log_failure)

    def commit(self) -> None:
        self._committed.set()

    def cancel(self) -> None:
        """Stop generating and synthesising (a Flush drops the audio already queued)."""
        self._cancel.cancel()
        for task in (*self._tasks, self._done):
            task.cancel()

    # --- work -------------------------------------------------------------------------------
    async def _produce(self, audio: np.ndarray | None, script: str | None) -> None:
        try:
            if script is not None:
                self._say(script)
                return
            assert audio is not None
            text = await self._transcribe(audio)
            if not text:
                return
            transfer = self._plan.tools.transfer
            if self._message and transfer is not None and not declined(text):  # kept, not acted on
                self._say(transfer.message_prompt if accepted(text) else transfer.message_taken)
                return
            action = action_from_phrase(text, self._plan.tools)
            if action is not None:
                self._actions.append(action)
                self._say(self._action_line(action))
                return
            if (number := readback(text)) is not None:  # a number is confirmed, not interpreted
                self._say(number)
                return
            if self._ack is not None:  # words known, the answer needs the LLM: acknowledge
                self._tasks.append(asyncio.ensure_future(self._acknowledge(self._ack)))
            await self._generate(text)
        finally:
            self._chunks.put_nowait(None)

    def _say(self, text: str) -> None:
        """A fixed line, cut where the LLM's text would be (the chunker is the one splitter)."""
        chunker = Chunker(self._plan.tools)
        for chunk in [*chunker.feed(text), *chunker.finish()]:
            self._chunks.put_nowait(chunk)

    async def _transcribe(self, audio: np.ndarray) -> str:
        try:
            transcript = await self._services.transcribe(
                audio, self._prompt.stt_prompt, self._plan.stt.hotwords
            )
        except EngineError as exc:
            self._services.failed("stt", exc)
            # No words: a turn held open for them (at a pause) may end now.
            self._post(Transcribed(self.id, time.monotonic(), ""))
            self._fail()
            return ""
        self._post(Transcribed(self.id, time.monotonic(), transcript.text))
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
        messages = self._prompt.for_turn(text)
        spoken = 0
        first = True
        try:
            async with self._services.chat(
                messages, self._cancel, llm.max_tokens, llm.temperature, llm.timeout_s
            ) as tokens:
                async for piece in tokens:
                    if first:
                        self._post(FirstToken(self.id, time.monotonic()))
                        first = False
                    for chunk in chunker.feed(piece):
                        self._chunks.put_nowait(chunk)
                        spoken += 1
        except EngineError as exc:
            self._services.failed("llm", exc)
            if spoken == 0:
                self._fail()
            return
        for chunk in chunker.finish():
            self._chunks.put_nowait(chunk)
            spoken += 1
        self._actions.extend(chunker.actions)
        if spoken == 0:  # the model gave a bare tag (or nothing): say the tool's line
            self._say(self._action_line(self._actions[0]) if self._actions else self._plan.fallback)

    async def _acknowledge(self, ack: SpeechChunk) -> None:
        await self._committed.wait()
        if not self.playout.placed:  # the answer is not there yet
            self.playout.play(ack.text, ack.pcm, ack.sample_rate, ack=True)

    def _action_line(self, action: Action) -> str:
        tools = self._plan.tools
        if isinstance(action, Hangup) and tools.hangup:
            return tools.hangup.goodbye
        if isinstance(action, Transfer) and tools.transfer:
            return tools.transfer.say.format(target=action.spoken or action.target)
        return ""

    def _fail(self) -> None:
        self._failed = True
        if self._fallback is not None:  # synthesised at the start of the call: no TTS needed now
            self._chunks.put_nowait(self._fallback)
        else:
            self._say(self._plan.fallback)

    async def _speak_chunks(self) -> None:
        voice = self._plan.voice
        first = True
        while (text := await self._chunks.get()) is not None:
            if isinstance(text, SpeechChunk):
                await self._committed.wait()
                self.playout.play(text.text, text.pcm, text.sample_rate)
                continue
            cancel = CancelToken()
            try:
                async with self._services.speak(text, voice, cancel) as pieces:
                    async for piece in pieces:
                        if first:
                            self._post(ChunkSynthesised(self.id, time.monotonic()))
                            first = False
                        await self._committed.wait()
                        self.playout.play(piece.text, piece.pcm, piece.sample_rate)
            except Exception as exc:  # any TTS crash loses this chunk; the rest may still be spoken
                self._services.failed("tts", exc)
            finally:
                cancel.cancel()

    async def _report_done(self) -> None:
        # asyncio.wait, not gather: a task that failed (logged) must not keep the turn open.
        await asyncio.wait(self._tasks[:2])
        if len(self._tasks) > 2:  # the acknowledgement
            await asyncio.wait(self._tasks[2:])
        await self._committed.wait()  # a speculative reply reports only once it counts
        self.playout.close()
        await self.playout.drained()
        text = self.playout.text()
        self._post(ReplyDone(self.id, time.monotonic(), text, tuple(self._actions), self._failed))


def _log_failure(task: asyncio.Future[None]) -> None:
    """A bug in a reply must not pass silently (the session goes on without that reply)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("reply failed", error=repr(exc), exc_info=exc)
