"""Chat LLM: messages in, tokens streamed out, cancellable between tokens."""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypedDict, cast

from agent.engines.base import CancelToken, EngineError, ModelError


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
