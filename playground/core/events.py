"""Trace events: the single record of what happened in a session.

Everything the CLI prints and the UI draws is computed from these events, so an
event is taken at the moment its data arrives and never changed afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRACE_VERSION = 1

# Event types (docs/traces.md, "The trace file").
SESSION = "session"
TURN_START = "turn.start"
LLM_REQUEST = "llm.request"
LLM_TOKEN = "llm.token"
LLM_DONE = "llm.done"
CHUNK = "chunk"
TTS_SEND = "tts.send"
TTS_AUDIO = "tts.audio"
TTS_DONE = "tts.done"
TTS_SESSION = "tts.session"
PLAY_START = "play.start"
PLAY_END = "play.end"
# Playback ran dry between two pieces of a reply (at the start of the piece after the gap).
PLAY_GAP = "play.gap"
# The first audible sample reached the listener (FIRST_SOUND): the piece's start on the device,
# plus its leading silence, plus the output latency the device reports.
PLAY_SOUND = "play.sound"
ERROR = "error"
TURN_CANCELLED = "turn.cancelled"
TURN_SUMMARY = "turn.summary"
CONFIG_CHANGE = "config.change"
# Opening a session (session level): a component (llm, tts, stt) loading / ready / failed.
SESSION_LOAD = "session.load"
# Spoken input: the VAD's speech start / end, interim and final transcripts (in the turn they
# started, t_ms relative to its t0 = end of speech detected), and the mic's state (session).
VAD_SPEECH_START = "vad.speech_start"
VAD_SPEECH_END = "vad.speech_end"
STT_INTERIM = "stt.interim"
STT_FINAL = "stt.final"
MIC = "mic"

# Turn number used for events that belong to the session, not to a turn
# (opening the TTS session, a reconnect between turns). Their t_ms counts from
# the session's start.
SESSION_TURN = 0


@dataclass(slots=True)
class TraceEvent:
    turn: int
    t_ms: float
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"turn": self.turn, "t_ms": round(self.t_ms, 3), "type": self.type, **self.data}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "TraceEvent":
        data = {k: v for k, v in obj.items() if k not in ("turn", "t_ms", "type")}
        return cls(turn=int(obj["turn"]), t_ms=float(obj["t_ms"]), type=str(obj["type"]), data=data)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


Listener = Callable[[TraceEvent], None]


class Trace:
    """The ordered events of a session, with listeners (trace writer, UI model).

    Only the event loop's thread appends; producers on other threads hand their
    timestamps over to it. Listeners must be cheap: they run on the hot path.
    """

    def __init__(self, header: dict[str, Any] | None = None) -> None:
        self.header: dict[str, Any] = header or {}
        self.events: list[TraceEvent] = []
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def add(self, event: TraceEvent) -> TraceEvent:
        self.events.append(event)
        for listener in self._listeners:
            listener(event)
        return event

    def turn_events(self, turn: int) -> list[TraceEvent]:
        return [e for e in self.events if e.turn == turn]

    def turns(self) -> list[int]:
        return sorted({e.turn for e in self.events if e.turn != SESSION_TURN})


class TurnClock:
    """Converts monotonic timestamps to a turn's t_ms (milliseconds after t0)."""

    def __init__(self, trace: Trace, turn: int, t0_mono_ms: float) -> None:
        self.trace = trace
        self.turn = turn
        self.t0 = t0_mono_ms

    def emit(self, type_: str, t_mono_ms: float, **data: Any) -> TraceEvent:
        return self.trace.add(TraceEvent(self.turn, t_mono_ms - self.t0, type_, data))


def events_by_turn(events: Iterable[TraceEvent]) -> dict[int, list[TraceEvent]]:
    """Each turn's events in trace order, by turn number (the session's own under SESSION_TURN)."""
    by_turn: dict[int, list[TraceEvent]] = {}
    for e in events:
        by_turn.setdefault(e.turn, []).append(e)
    return by_turn


def header_line(header: dict[str, Any]) -> dict[str, Any]:
    return {"type": SESSION, "version": TRACE_VERSION, **header}


def read_trace(path: str | Path) -> tuple[dict[str, Any], list[TraceEvent]]:
    """Reads a JSONL trace: (session header, events). Errors name the file and line."""
    header: dict[str, Any] = {}
    events: list[TraceEvent] = []
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if obj.get("type") == SESSION:
                    header = obj
                else:
                    events.append(TraceEvent.from_json(obj))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a trace event ({exc})") from None
    return header, events


def events_of_type(events: Iterable[TraceEvent], type_: str) -> Iterator[TraceEvent]:
    return (e for e in events if e.type == type_)
