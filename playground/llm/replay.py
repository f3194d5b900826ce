"""The `replay` provider: re-emits the `llm.token` events of a recorded trace at their
recorded times, so the same LLM behaviour can be run through another chunker or TTS.

Token times are kept relative to the recorded `llm.request` (or t0 when the trace has
none): the replayed LLM_TTFT and gaps between tokens match the recording.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from playground.core import events as ev
from playground.core.clock import now_ms
from playground.core.presets import LLMConfig, settings
from playground.core.tracefile import read_trace
from playground.core.progress import Progress
from playground.llm.base import LLMError, Message, StreamInfo, Token
from playground.llm.threaded import stream_from_thread

RecordedToken = tuple[float, str]  # (ms after the recorded request, text)


@settings
class ReplayLLMConfig(LLMConfig):
    provider: Literal["replay"] = "replay"
    trace: str = Field("", description="the trace (JSONL) whose llm.token events are replayed")
    replay_turn: int = Field(0, ge=0, description="the turn replayed (0: every turn, one per input)")


def recorded_tokens(turn_events: Sequence[ev.TraceEvent]) -> list[RecordedToken]:
    request = ev.first(turn_events, ev.LlmRequest)
    start = request.t_ms if request else 0.0
    return [(e.t_ms - start, e.text) for e in turn_events if isinstance(e, ev.LlmToken) and e.text]


# A thread woken from a long sleep on an idle core was up to 4 ms late while Piper kept the
# other core busy (2-core VMs): the last few milliseconds are slept in short steps instead.
WAKE_EARLY_MS = 5.0
SHORT_SLEEP_S = 0.0002


def paced(tokens: Sequence[RecordedToken], start_ms: float, stop: threading.Event) -> Iterator[str]:
    """The tokens' texts, each released at `start_ms` + its recorded offset (or at once when late).

    Runs in a worker thread, like a real provider's reader: the token is stamped where it is
    released, and an event loop that is busy then (TTS audio, playback reports) no longer
    delays it. `stop` (the stream closed: a cancelled turn) ends the wait at once.
    """
    for offset, text in tokens:
        if not sleep_until(start_ms + offset, stop):
            return
        yield text


def sleep_until(due_ms: float, stop: threading.Event) -> bool:
    """Sleeps until `due_ms` (now_ms clock); False when `stop` is set first."""
    long_sleep_ms = due_ms - WAKE_EARLY_MS - now_ms()
    if long_sleep_ms > 0 and stop.wait(long_sleep_ms / 1000.0):
        return False
    while (left_ms := due_ms - now_ms()) > 0:
        if stop.is_set():
            return False
        time.sleep(min(SHORT_SLEEP_S, left_ms / 1000.0))  # releases the GIL: the engine loop runs meanwhile
    return True


class ReplayLLM:
    name = "replay"

    def __init__(self, config: ReplayLLMConfig, turns: list[list[RecordedToken]] | None = None) -> None:
        self.config = config
        self.model = f"replay:{Path(config.trace).name}" if config.trace else "replay"
        self.info = StreamInfo()
        self._turns = turns
        self._next = 0

    async def load(self, progress: Progress | None = None) -> None:
        if self._turns is not None:
            return
        if not self.config.trace:
            raise LLMError("replay LLM: no trace given (set llm.trace to a JSONL trace file)")
        try:
            _, events = read_trace(self.config.trace, warn=progress)
        except OSError as exc:
            raise LLMError(f"replay LLM: cannot read {self.config.trace}: {exc.strerror}") from None
        except ValueError as exc:
            raise LLMError(f"replay LLM: {exc}") from None
        by_turn = ev.events_by_turn(events)
        turns = {n: recorded_tokens(es) for n, es in sorted(by_turn.items()) if n != ev.SESSION_TURN}
        turns = {n: toks for n, toks in turns.items() if toks}
        if self.config.replay_turn:
            if self.config.replay_turn not in turns:
                raise LLMError(f"replay LLM: {self.config.trace} has no tokens for turn {self.config.replay_turn} (turns with tokens: {sorted(turns)})")
            turns = {self.config.replay_turn: turns[self.config.replay_turn]}
        if not turns:
            raise LLMError(f"replay LLM: {self.config.trace} holds no llm.token events")
        self._turns = list(turns.values())
        if progress:
            progress(f"replaying {len(self._turns)} recorded turn(s) from {self.config.trace}")

    async def stream(self, messages: list[Message]) -> AsyncIterator[Token]:
        if not self._turns:
            raise LLMError("replay LLM: stream() before load()")
        tokens = self._turns[self._next % len(self._turns)]
        self._next += 1
        self.info = StreamInfo(finish_reason="stop")
        start = now_ms()
        async for token in stream_from_thread(lambda stop: paced(tokens, start, stop), "replay-llm"):
            yield token

    async def close(self) -> None:
        return None
PROVIDER = ReplayLLM
SETTINGS = ReplayLLMConfig
