"""The waterfall's model: per-turn spans and markers, built incrementally from trace events.

Pure (no Textual): the app feeds every trace event to `Timeline.add` as it arrives
(O(1) each, so 300 tokens/s costs nothing) and the waterfall reads the result on its
redraw timer. Each turn carries a `version` that changes whenever the turn does, so a
view can cache what it drew of a turn and redraw only the turn that is streaming.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from playground.core import events as ev
from playground.core.metrics import TTS_PATHS

RUNNING = "running"
OK = "ok"
CANCELLED = "cancelled"
ERROR = "error"

# Process-wide, so a turn's cache identity survives `Timeline.clear()` reusing turn numbers.
_uids = itertools.count(1)


@dataclass(slots=True)
class ChunkTrack:
    """Everything that happened to one chunk, from its first token to the end of its playback."""

    index: int
    reason: str = ""
    start_ms: float | None = None  # its first visible token arrived
    emit_ms: float | None = None  # the chunker emitted it
    send_ms: float | None = None  # its text went to TTS
    first_audio_ms: float | None = None
    last_audio_ms: float | None = None
    play_start_ms: float | None = None
    play_end_ms: float | None = None
    cut: bool = False  # playback was interrupted (barge-in, cancel)


class TurnTimeline:
    """One turn's spans and markers; times are ms after the turn's t0."""

    def __init__(self, turn: int) -> None:
        self.turn = turn
        self.uid = next(_uids)
        self.version = 0
        self.text = ""
        self.strategy: str | None = None
        self.status = RUNNING
        self.status_detail = ""  # cancel reason or error message
        self.stopped_ms: float | None = None  # when it was cancelled or failed
        self.tts_path: str | None = None
        self.tts_path_reason: str | None = None
        self.token_ms: list[float] = []  # arrival of each token with text (the llm lane's ticks)
        self.chunks: dict[int, ChunkTrack] = {}
        # When the turn first reached llm_ttft, ttfs, ttfa, first_play, first_sound (`TurnMetrics` keys).
        self.markers: dict[str, float] = {}
        self.end_ms = 0.0  # latest event time seen: the "now" of a live turn
        self.llm_done_ms: float | None = None
        self.gaps: list[tuple[float, float]] = []  # playback ran dry: (from, to) ms
        # The conversation outgrew the local model's context at this turn: (messages dropped, how)
        self.context_trim: tuple[int, str] | None = None
        # Arrival of every token by its index (empty ones too: chunk token ranges count them),
        # to know where the chunk that is still accumulating began.
        self._token_arrivals: list[float] = []
        self._chunked_tokens = 0

    @property
    def live(self) -> bool:
        return self.status == RUNNING

    @property
    def pending_chunk_start_ms(self) -> float | None:
        """When the text the chunker still holds began arriving (None if it holds none).

        After `llm.done` the chunker flushes at once, so nothing is pending any more.
        """
        if self.llm_done_ms is not None:
            return None
        if self._chunked_tokens < len(self._token_arrivals):
            return self._token_arrivals[self._chunked_tokens]
        return None

    def marker_items(self) -> list[tuple[str, float]]:
        """(metric key, ms) of the markers reached so far, in time order."""
        return sorted(self.markers.items(), key=lambda item: item[1])

    def chunk(self, index: int) -> ChunkTrack:
        track = self.chunks.get(index)
        if track is None:
            track = self.chunks[index] = ChunkTrack(index)
        return track

    def add(self, event: ev.TraceEvent) -> None:
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event)
        self.end_ms = max(self.end_ms, event.t_ms)
        self.version += 1

    def _mark(self, key: str, t_ms: float) -> None:
        # The first occurrence wins, as in `compute_metrics`.
        self.markers.setdefault(key, t_ms)

    def _on_start(self, event: ev.TraceEvent) -> None:
        self.text = event.get("text", "")
        self.strategy = event.get("strategy")

    def _on_token(self, event: ev.TraceEvent) -> None:
        self._token_arrivals.append(event.t_ms)
        if event.get("text"):
            self.token_ms.append(event.t_ms)
            self._mark("llm_ttft", event.t_ms)

    def _on_llm_done(self, event: ev.TraceEvent) -> None:
        self.llm_done_ms = event.t_ms
        context = event.get("context") or {}
        if context.get("trimmed"):
            self.context_trim = (context["trimmed"], context.get("how", "?"))

    def _on_chunk(self, event: ev.TraceEvent) -> None:
        track = self.chunk(event.get("index", len(self.chunks)))
        track.reason = event.get("reason", "")
        track.emit_ms = event.t_ms
        track.start_ms = event.get("start_ms", event.t_ms)
        token_end = event.get("token_end")
        if token_end is not None:
            self._chunked_tokens = max(self._chunked_tokens, token_end + 1)
        self._mark("ttfs", event.t_ms)

    def _on_send(self, event: ev.TraceEvent) -> None:
        self.chunk(event.get("chunk", 0)).send_ms = event.t_ms

    def _on_audio(self, event: ev.TraceEvent) -> None:
        track = self.chunk(event.get("chunk", 0))
        if track.first_audio_ms is None:
            track.first_audio_ms = event.t_ms
        track.last_audio_ms = event.t_ms
        self._mark("ttfa", event.t_ms)

    def _on_play_start(self, event: ev.TraceEvent) -> None:
        self.chunk(event.get("chunk", 0)).play_start_ms = event.t_ms
        self._mark("first_play", event.t_ms)

    def _on_play_gap(self, event: ev.TraceEvent) -> None:
        self.gaps.append((event.get("from_ms", event.t_ms), event.t_ms))

    def _on_play_sound(self, event: ev.TraceEvent) -> None:
        self._mark("first_sound", event.t_ms)

    def _on_play_end(self, event: ev.TraceEvent) -> None:
        track = self.chunk(event.get("chunk", 0))
        track.play_end_ms = event.t_ms
        track.cut = bool(event.get("cut", False))

    def _on_tts_session(self, event: ev.TraceEvent) -> None:
        # The worst path reached during the turn counts, as in `compute_metrics`.
        path = event.get("path")
        if path not in TTS_PATHS:
            return
        if self.tts_path is None or TTS_PATHS.index(path) >= TTS_PATHS.index(self.tts_path):
            self.tts_path = path
            self.tts_path_reason = event.get("reason") or self.tts_path_reason

    def _on_error(self, event: ev.TraceEvent) -> None:
        if self.status != CANCELLED:  # a cancel explains the errors it causes
            self._stop(ERROR, f"{event.get('where', '?')}: {event.get('message', '')}", event.t_ms)

    def _on_cancelled(self, event: ev.TraceEvent) -> None:
        self._stop(CANCELLED, event.get("reason", ""), event.t_ms)

    def _stop(self, status: str, detail: str, t_ms: float) -> None:
        self.status, self.status_detail, self.stopped_ms = status, detail, t_ms
        # Stopping a turn stops its playback: a chunk still playing was cut there, even
        # when the output reported no `play.end` for it.
        for track in self.chunks.values():
            if track.play_start_ms is not None and track.play_end_ms is None:
                track.play_end_ms, track.cut = t_ms, True

    def _on_summary(self, event: ev.TraceEvent) -> None:
        if self.status == RUNNING:
            self.status = OK


_HANDLERS = {
    ev.TURN_START: TurnTimeline._on_start,
    ev.LLM_TOKEN: TurnTimeline._on_token,
    ev.LLM_DONE: TurnTimeline._on_llm_done,
    ev.CHUNK: TurnTimeline._on_chunk,
    ev.TTS_SEND: TurnTimeline._on_send,
    ev.TTS_AUDIO: TurnTimeline._on_audio,
    ev.PLAY_START: TurnTimeline._on_play_start,
    ev.PLAY_END: TurnTimeline._on_play_end,
    ev.PLAY_GAP: TurnTimeline._on_play_gap,
    ev.PLAY_SOUND: TurnTimeline._on_play_sound,
    ev.TTS_SESSION: TurnTimeline._on_tts_session,
    ev.ERROR: TurnTimeline._on_error,
    ev.TURN_CANCELLED: TurnTimeline._on_cancelled,
    ev.TURN_SUMMARY: TurnTimeline._on_summary,
}


class Timeline:
    """All turns of a session, in the order they started. Session-level events are ignored."""

    def __init__(self) -> None:
        self.turns: dict[int, TurnTimeline] = {}
        self.version = 0
        self.max_end_ms = 0.0

    @classmethod
    def from_events(cls, events: Iterable[ev.TraceEvent]) -> "Timeline":
        timeline = cls()
        for event in events:
            timeline.add(event)
        return timeline

    def add(self, event: ev.TraceEvent) -> None:
        if event.turn == ev.SESSION_TURN:
            return
        turn = self.turns.get(event.turn)
        if turn is None:
            turn = self.turns[event.turn] = TurnTimeline(event.turn)
        turn.add(event)
        self.max_end_ms = max(self.max_end_ms, turn.end_ms)
        self.version += 1

    def clear(self) -> None:
        self.turns.clear()
        self.max_end_ms = 0.0
        self.version += 1
