"""The speech endpoints (scope `speech`): POST /v1/stt, POST /v1/tts, GET /v1/voices, GET /v1/models.

They share the engine workers with the calls, as background work: an upload is transcribed in
pieces of at most `PIECE_S` (cut where it is quietest) and a text is synthesised sentence by
sentence, each piece started only when no live call has engine work queued or running (of any
engine: they share the cores), so a live call's turn waits at most for one piece. At most
`MAX_PENDING` requests are in progress; past that: 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import time
import wave
from collections.abc import Callable
from typing import Any

import numpy as np
from aiohttp import BodyPartReader, web

from agent.api.keys import ApiKeys, error
from agent.audio.decode import AudioError, decode_audio, encode_audio
from agent.audio.levels import dbfs
from agent.dialog.chunker import Chunker
from agent.dialog.dialplan import Tools
from agent.dialog.services import Services
from agent.engines.base import CancelToken, EngineError

RATE = 16000
MAX_UPLOAD = 20 * 1024 * 1024
MAX_SECONDS = 600.0
MAX_TEXT = 2000
MAX_PENDING = 4
PIECE_S = 5.0


def finite(value: float | None, digits: int = 3) -> float | None:
    """JSON has no NaN or Infinity: such a number is null."""
    return round(value, digits) if value is not None and math.isfinite(value) else None


def pieces(pcm: np.ndarray, most_s: float = PIECE_S) -> list[np.ndarray]:
    """Cut long audio where it is quietest (a 100 ms window) in the last 40 % of each piece."""
    most, out, start = int(most_s * RATE), [], 0
    while len(pcm) - start > most:
        window = pcm[start + int(most * 0.6) : start + most].astype(np.float64)
        hop = RATE // 10
        energies = [float(np.mean(window[i : i + hop] ** 2)) for i in range(0, len(window) - hop + 1, hop)]
        cut = start + int(most * 0.6) + hop * int(np.argmin(energies)) + hop // 2
        out.append(pcm[start:cut])
        start = cut
    out.append(pcm[start:])
    return out


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype(np.int16).tobytes())
    return buf.getvalue()


class SpeechApi:
    def __init__(self, keys: ApiKeys, services: Callable[[], Services | None]) -> None:
        self.keys = keys
        self.services = services  # None until the engines are loaded
        self.pending = 0
        # One piece at a time over all requests: when a caller's turn comes, at most one is in
        # the engines' way (queued pieces would start while the call's LLM runs).
        self._piece = asyncio.Lock()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/stt", self._guard(self._stt)),
            web.post("/v1/tts", self._guard(self._tts)),
            web.get("/v1/voices", self._guard(self._voices)),
            web.get("/v1/models", self._guard(self._models)),
        ]

    def _guard(self, handler: Callable[[web.Request, Services], Any]) -> Callable[[web.Request], Any]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if (denied := self.keys.check(request, "speech")) is not None:
                return denied
            services = self.services()
            if services is None:
                return error(503, "the engines are still loading", **{"Retry-After": "10"})
            if self.pending >= MAX_PENDING:
                return error(503, "speech requests are queued to the limit", **{"Retry-After": "2"})
            self.pending += 1
            try:
                response: web.StreamResponse = await handler(request, services)
                return response
            finally:
                self.pending -= 1

        return guarded

    async def _upload(self, request: web.Request) -> bytes:
        """The raw body, or the first file of a multipart form; web.HTTPException on too much."""
        if request.content_length is not None and request.content_length > MAX_UPLOAD:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD, actual_size=request.content_length)
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and part.filename:
                    return await _read(part.read_chunk)
            return b""
        return await _read(request.content.read)

    async def _stt(self, request: web.Request, services: Services) -> web.Response:
        started = time.monotonic()
        try:
            data = await self._upload(request)
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"uploads are limited to {MAX_UPLOAD // 1024 // 1024} MB")
        except (ValueError, AssertionError, KeyError, RuntimeError) as exc:  # a broken multipart form
            return error(400, f"the multipart body could not be read ({type(exc).__name__})")
        try:
            pcm = await asyncio.to_thread(decode_audio, data, RATE, MAX_SECONDS)
        except AudioError as exc:
            status = 415 if exc.unsupported else 413 if "longer than" in str(exc) else 400
            return error(status, str(exc))
        if len(pcm) < RATE // 10 or dbfs(pcm) < -60:
            return error(400, "the audio is silent or too short to hold speech")
        prompt = request.query.get("prompt", "")[:500]
        texts, segments, confidences = [], [], []
        offset = 0.0
        try:
            hotwords = request.query.get("hotwords", "")[:500]
            for piece in pieces(pcm):
                async with self._piece:
                    await services.live_idle()
                    t = await services.transcribe(piece, prompt, hotwords, True)
                texts.append(t.text.strip())
                confidences.append(t.confidence)
                segments += [{"start": finite(offset + s.start, 2), "end": finite(offset + s.end, 2),
                              "text": s.text.strip()} for s in t.segments]  # fmt: skip
                offset += len(piece) / RATE
        except EngineError as exc:
            return error(503, f"speech recognition failed: {exc}", **{"Retry-After": "5"})
        body = {
            "text": " ".join(t for t in texts if t),
            "segments": segments,
            "language": "en",
            "duration_s": finite(len(pcm) / RATE, 2),
            "processing_s": finite(time.monotonic() - started),
            "confidence": finite(float(np.mean(confidences)) if confidences else None),
        }
        return web.Response(text=json.dumps(body, allow_nan=False), content_type="application/json")

    async def _tts(self, request: web.Request, services: Services) -> web.StreamResponse:
        started = time.monotonic()
        try:
            body = json.loads(await _read(request.content.read, 64 * 1024))
        except (ValueError, web.HTTPRequestEntityTooLarge):
            return error(400, 'the body must be JSON: {"text": ..., "voice": ..., "format": "wav"|"ogg"}')
        text, voice, fmt = body.get("text"), body.get("voice"), body.get("format", "wav")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            return error(400, f"`text` must be 1..{MAX_TEXT} characters")
        if voice is not None and voice not in services.voices:
            return error(400, f"unknown voice {voice!r}; GET /v1/voices lists them")
        if fmt not in ("wav", "ogg"):
            return error(400, "`format` must be wav or ogg")
        chunker = Chunker(Tools())  # the one sentence splitter (tags are only text here)
        sentences = [*chunker.feed(text), *chunker.finish()]
        engine = services.tts(voice)
        if fmt == "wav" and body.get("stream", False) is True:
            return await self._stream(request, services, sentences, voice, engine.sample_rate)
        audio: list[np.ndarray] = []
        first: float | None = None
        try:
            for sentence in sentences:
                async with self._piece:
                    await services.live_idle()
                    async with services.speak(sentence, voice, CancelToken(), background=True) as chunks:
                        audio += [c.pcm async for c in chunks]
                first = first if first is not None else time.monotonic() - started
        except EngineError as exc:
            return error(503, f"speech synthesis failed: {exc}", **{"Retry-After": "5"})
        pcm = np.concatenate(audio) if audio else np.zeros(0, np.int16)
        rate = engine.sample_rate
        data = (
            await asyncio.to_thread(encode_audio, pcm, rate, "ogg") if fmt == "ogg" else wav_bytes(pcm, rate)
        )
        headers = {"X-Duration": f"{len(pcm) / rate:.3f}", "X-Latency": f"{time.monotonic() - started:.3f}",
                   "X-First-Audio": f"{first or 0.0:.3f}"}  # fmt: skip
        return web.Response(
            body=data, content_type="audio/wav" if fmt == "wav" else "audio/ogg", headers=headers
        )

    async def _stream(
        self, request: web.Request, services: Services, sentences: list[str], voice: str | None, rate: int
    ) -> web.StreamResponse:
        """Chunked WAV: its header (open-ended length), then each sentence's audio as it is made."""
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        header = bytearray(wav_bytes(np.zeros(0, np.int16), rate))
        header[4:8] = header[40:44] = (0xFFFFFFFF).to_bytes(4, "little")  # length unknown: to the end
        await response.write(bytes(header))
        try:
            for sentence in sentences:
                async with self._piece:
                    await services.live_idle()
                    async with services.speak(sentence, voice, CancelToken(), background=True) as chunks:
                        speech = [c.pcm async for c in chunks]
                for pcm in speech:  # written outside the lock: a slow reader holds up nobody
                    await response.write(pcm.astype(np.int16).tobytes())
        except EngineError:
            pass  # the audio stops short; the status line has gone out already
        await response.write_eof()
        return response

    async def _voices(self, request: web.Request, services: Services) -> web.Response:
        voices = [{"name": n, "sample_rate": e.sample_rate, "default": n == services.default_voice}
                  for n, e in services.voices.items()]  # fmt: skip
        return web.json_response({"voices": voices})

    async def _models(self, request: web.Request, services: Services) -> web.Response:
        engines = {"vad": services.vad, "stt": services.stt, "llm": services.llm}
        return web.json_response(
            {"models": {k: getattr(v, "name", type(v).__name__) for k, v in engines.items()}}
        )


async def _read(read: Callable[..., Any], limit: int = MAX_UPLOAD) -> bytes:
    """Read a body in chunks, at most `limit` bytes (HTTPRequestEntityTooLarge past it)."""
    out = bytearray()
    while chunk := await read(65536):
        out += chunk
        if len(out) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(out))
    return bytes(out)
