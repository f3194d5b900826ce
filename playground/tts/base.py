"""The TTS session protocol and the audio it produces."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from playground.core.progress import Progress

# (action, data) -> a `tts.session` trace event; action is one of
# open | reuse | keepalive | disconnect | reconnect | fallback | warning | close.
SessionReporter = Callable[[str, dict[str, Any]], None]


@dataclass(slots=True)
class AudioChunk:
    samples: np.ndarray  # int16, mono
    sample_rate: int
    chunk: int  # index of the text chunk this audio speaks
    t_ms: float  # monotonic arrival time, taken where the audio was produced/received
    # what the audio speaks, when the service says: {"chars", "start_ms", "duration_ms"} relative to this audio
    alignment: dict[str, list] | None = None

    @property
    def duration_ms(self) -> float:
        return len(self.samples) * 1000.0 / self.sample_rate


class TTSError(RuntimeError):
    """A TTS failure, phrased for the user (which provider, what happened, what to do)."""


class TTSSession(Protocol):
    name: str
    # how this session reaches the service right now: persistent | reconnected | fallback_rest
    path: str

    async def open(self, report: SessionReporter, progress: Progress | None = None) -> None:
        """Opens the session before the first turn (loads the voice / connects)."""

    async def begin_turn(self, turn: int) -> None:
        """Starts a turn's reply on the open session (reports `reuse`)."""

    async def send(self, chunk: int, text: str) -> None:
        """Hands one chunk of text to the service; returns at once."""

    async def flush(self) -> None:
        """End of the reply: everything sent so far must be spoken."""

    def audio(self) -> AsyncIterator[AudioChunk]:
        """The turn's audio as it is produced; ends after `flush` once all of it arrived."""

    async def cancel(self) -> None:
        """Barge-in: drop the turn's pending text and audio; the session stays open."""

    async def close(self) -> None: ...
