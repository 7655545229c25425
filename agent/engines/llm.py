"""Chat LLM: messages in, tokens streamed out, cancellable between tokens."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypedDict, cast

from agent.engines.base import CancelToken, EngineError, ModelError, Preempted

SLICE_TOKENS = 16  # background prompts are evaluated this many at a time (~0.15 s on 2 cores)


class Message(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


class LLMEngine(Protocol):
    name: str

    def stream_chat(
        self,
        messages: Sequence[Message],
        *,
        cancel: CancelToken | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as generated; stop early when `cancel` is set.

        Blocking: iterate it in a worker thread. Raises EngineTimeout when the token's
        deadline passes, EngineError when generation fails.
        """
        ...

    def prime(self, messages: Sequence[Message]) -> None:
        """Evaluate a prompt prefix (the system prompt) now, so the first turn reuses it."""
        ...

    def background_chat(
        self,
        messages: Sequence[Message],
        *,
        give_way: Callable[[], bool],
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str]:
        """Like `stream_chat`, for work no caller waits on (a post-call summary): checks
        `give_way` often (between small slices of the prompt and between tokens) and raises
        `Preempted` when it is true; leaves the live calls' cached prompt as it found it."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` takes (the history's budget is counted in them)."""
        ...


class LlamaLLM:
    """llama.cpp through llama-cpp-python, one model shared by every call.

    A llama context is not thread-safe and holds one KV cache, so generations are
    serialised by a lock (calls queue; with 2 cores two parallel generations would only
    halve each other's speed). llama-cpp-python reuses the longest common token prefix
    of the previous prompt, so a conversation's system prompt and earlier turns are not
    evaluated again; `prefix_cache_mb` adds a RAM cache of KV states for when several
    calls with different system prompts interleave.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        name: str = "llama",
        n_ctx: int = 2048,
        n_threads: int = 2,
        n_batch: int = 256,
        max_tokens: int = 120,
        temperature: float = 0.3,
        prefix_cache_mb: int = 0,
        seed: int = 1234,
    ) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_cache import LlamaRAMCache

        self.name = name
        try:
            self._llm = Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_batch=n_batch,
                seed=seed,
                verbose=False,
            )
        except Exception as exc:  # llama-cpp-python raises ValueError on a bad file
            raise ModelError(
                f"cannot load GGUF model {model_path}: {exc}",
                hint="check the file is a complete GGUF; for packaged models run `voice-agent models`",
            ) from exc
        if prefix_cache_mb > 0:
            self._llm.set_cache(LlamaRAMCache(capacity_bytes=prefix_cache_mb << 20))
        self._lock = threading.Lock()
        self._max_tokens = max_tokens
        self._temperature = temperature

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` (for history budgets)."""
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=True))

    def stream_chat(
        self,
        messages: Sequence[Message],
        *,
        cancel: CancelToken | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str]:
        cancel = cancel or CancelToken()
        with self._lock:
            if cancel.check():  # cancelled or timed out while queued
                return
            try:
                stream = self._llm.create_chat_completion(
                    # Message is the {role, content} subset of llama-cpp's message TypedDicts.
                    messages=cast(Any, list(messages)),
                    stream=True,
                    max_tokens=max_tokens or self._max_tokens,
                    temperature=self._temperature if temperature is None else temperature,
                )
            except ValueError as exc:  # e.g. prompt longer than the context
                raise EngineError(f"LLM rejected the prompt: {exc}") from exc
            if not isinstance(stream, Generator):  # stream=True always gives one
                raise EngineError("the LLM did not stream its reply")
            try:
                for chunk in stream:
                    if cancel.check():
                        return
                    piece: object = chunk["choices"][0]["delta"].get("content")
                    if isinstance(piece, str) and piece:
                        yield piece
            finally:
                stream.close()  # stops llama.cpp between tokens

    def prime(self, messages: Sequence[Message]) -> None:
        for _ in self.stream_chat(messages, max_tokens=1):
            pass

    def background_chat(
        self,
        messages: Sequence[Message],
        *,
        give_way: Callable[[], bool],
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str]:
        """See LLMEngine. The prompt is laid out in ChatML (the template of the Qwen models
        this project ships) and evaluated in slices; the KV cache of the live prompt is saved
        before and put back after, so the next live turn still finds its prefix."""
        llm = self._llm
        with self._lock:
            saved = self._save_kv()
            try:
                tokens = llm.tokenize(_chatml(messages).encode(), add_bos=False, special=True)
                if len(tokens) >= llm.n_ctx():
                    raise EngineError(f"background prompt too long ({len(tokens)} tokens)")
                llm.n_tokens = 0  # evaluate from the start (eval clears the cache above n_tokens)
                for i in range(0, len(tokens) - 1, SLICE_TOKENS):
                    if give_way():
                        raise Preempted()
                    llm.eval(tokens[i : min(i + SLICE_TOKENS, len(tokens) - 1)])
                stream = llm.create_completion(
                    prompt=tokens,  # all but the last token are cached: generation starts at once
                    stream=True,
                    max_tokens=max_tokens or self._max_tokens,
                    temperature=self._temperature if temperature is None else temperature,
                    stop=["<|im_end|>", "<|endoftext|>"],
                )
                if not isinstance(stream, Generator):
                    raise EngineError("the LLM did not stream its reply")
                try:
                    for chunk in stream:
                        if give_way():
                            raise Preempted()
                        piece = chunk["choices"][0]["text"]
                        if piece:
                            yield piece
                finally:
                    stream.close()
            finally:
                self._restore_kv(saved)

    def _save_kv(self) -> tuple[bytes, list[int]]:
        """The KV cache of sequence 0 (the live prompt) and its tokens: a few MB, a few ms."""
        import llama_cpp

        ctx = self._llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
        return bytes(buf)[:n], list(self._llm.input_ids[: self._llm.n_tokens])

    def _restore_kv(self, saved: tuple[bytes, list[int]]) -> None:
        import llama_cpp

        data, ids = saved
        llm = self._llm
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        ok = bool(ids) and llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buf, len(data), 0) == len(data)
        llm.n_tokens = len(ids) if ok else 0  # not restored: the next prompt is evaluated afresh
        llm.input_ids[: len(ids)] = ids
        llm._requires_eval = True


def _chatml(messages: Sequence[Message]) -> str:
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"
