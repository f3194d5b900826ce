"""Each turn's timeline, built from its trace events one at a time: the one layout the waterfall
draws live and the exports (Chrome/Perfetto, OpenTelemetry) write.

Per turn: each chunk's track (first token, emission, TTS send, first and last audio, playback
and whether it was cut), the LLM request and its end, the user's speech, the seed's markers,
playback gaps, where the turn stopped (cancel, error) and the context-window note. Times are
ms after the turn's t0.

Pure and incremental: `add` is O(1) per event, so the app feeds every event as it arrives
(300 tokens/s cost nothing) and the waterfall reads the result on its redraw timer; an export
feeds one turn's events and draws it. Each turn carries a `version` that changes whenever
the turn does, so a view can cache what it drew of a turn and redraw only the one streaming.

Where an event repeats (a second play.end for a chunk), the first one counts: the chunk
ended then, and what follows is cleanup; the turn stops at its first cancel or error.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from playground.core import events as ev
from playground.core.metrics import worse_tts_path

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
    emitted: ev.Chunk | None = None  # the chunker's `chunk` event (its text, reason, token range)
    start_ms: float | None = None  # its first visible token arrived
    emit_ms: float | None = None  # the chunker emitted it
    send_ms: float | None = None  # its text went to TTS ...
    sent_chars: int = 0  # ... this many characters of it
    first_audio_ms: float | None = None
    last_audio_ms: float | None = None
    play_start_ms: float | None = None
    play_end_ms: float | None = None
    cut: bool = False  # playback was interrupted (barge-in, cancel)

    @property
    def reason(self) -> str:
        return self.emitted.reason if self.emitted is not None else ""


class TurnTimeline:
    """One turn's tracks and markers; times are ms after the turn's t0."""

    def __init__(self, turn: int) -> None:
        self.turn = turn
        self.uid = next(_uids)
        self.version = 0
        self.text = ""
        self.strategy: str | None = None
        self.session_ms: float | None = None  # where t0 falls on the session clock, when recorded
        self.status = RUNNING
        self.status_detail = ""  # cancel reason or error message
        self.stopped_ms: float | None = None  # when it was cancelled or failed
        self.tts_path: str | None = None
        self.tts_path_reason: str | None = None
        self.request: ev.LlmRequest | None = None  # the LLM request ...
        self.done: ev.LlmDone | None = None  # ... and its end
        self.speech_start: ev.VadSpeechStart | None = None  # a spoken turn: the user's speech
        self.speech_end: ev.VadSpeechEnd | None = None
        self.summary: ev.TurnSummary | None = None
        self.token_ms: list[float] = []  # arrival of each token with text (the llm lane's ticks)
        self.chunks: dict[int, ChunkTrack] = {}
        # When the turn first reached llm_ttft, ttfs, ttfa, first_play, first_sound (`TurnMetrics` keys).
        self.markers: dict[str, float] = {}
        self.end_ms = 0.0  # latest event time seen: the "now" of a live turn
        self.gaps: list[tuple[float, float]] = []  # playback ran dry: (from, to) ms
        # The conversation outgrew the local model's context at this turn: (messages dropped, how)
        self.context_trim: tuple[int, str] | None = None
        # Arrival of every token by its index (empty ones too: chunk token ranges count them),
        # to know where the chunk that is still accumulating began.
        self.token_arrivals: list[float] = []
        self._chunked_tokens = 0

    @property
    def live(self) -> bool:
        return self.status == RUNNING

    @property
    def last_token_ms(self) -> float | None:
        """The last token's arrival, text or not."""
        return self.token_arrivals[-1] if self.token_arrivals else None

    @property
    def pending_chunk_start_ms(self) -> float | None:
        """When the text the chunker still holds began arriving (None if it holds none).

        After `llm.done` the chunker flushes at once, so nothing is pending any more.
        """
        if self.done is not None:
            return None
        if self._chunked_tokens < len(self.token_arrivals):
            return self.token_arrivals[self._chunked_tokens]
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
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)
        self.end_ms = max(self.end_ms, event.t_ms)
        self.version += 1

    def _mark(self, key: str, t_ms: float) -> None:
        # The first occurrence wins, as in `compute_metrics`.
        self.markers.setdefault(key, t_ms)

    def _on_start(self, event: ev.TurnStart) -> None:
        self.text = event.text
        self.strategy = event.strategy
        self.session_ms = event.session_ms

    def _on_request(self, event: ev.LlmRequest) -> None:
        self.request = event

    def _on_token(self, event: ev.LlmToken) -> None:
        self.token_arrivals.append(event.t_ms)
        if event.text:
            self.token_ms.append(event.t_ms)
            self._mark("llm_ttft", event.t_ms)

    def _on_llm_done(self, event: ev.LlmDone) -> None:
        self.done = event
        context = event.context
        if context is not None and context.trimmed:
            self.context_trim = (context.trimmed, context.how or "?")

    def _on_chunk(self, event: ev.Chunk) -> None:
        track = self.chunk(event.index)
        track.emitted = event
        track.emit_ms = event.t_ms
        track.start_ms = event.start_ms
        self._chunked_tokens = max(self._chunked_tokens, event.token_end + 1)
        self._mark("ttfs", event.t_ms)

    def _on_send(self, event: ev.TtsSend) -> None:
        track = self.chunk(event.chunk)
        if track.send_ms is None:
            track.send_ms, track.sent_chars = event.t_ms, event.chars

    def _on_audio(self, event: ev.TtsAudio) -> None:
        track = self.chunk(event.chunk)
        if track.first_audio_ms is None:
            track.first_audio_ms = event.t_ms
        track.last_audio_ms = event.t_ms
        self._mark("ttfa", event.t_ms)

    def _on_play_start(self, event: ev.PlayStart) -> None:
        track = self.chunk(event.chunk)
        if track.play_start_ms is None:
            track.play_start_ms = event.t_ms
        self._mark("first_play", event.t_ms)

    def _on_play_gap(self, event: ev.PlayGap) -> None:
        self.gaps.append((event.from_ms, event.t_ms))

    def _on_play_sound(self, event: ev.PlaySound) -> None:
        self._mark("first_sound", event.t_ms)

    def _on_play_end(self, event: ev.PlayEnd) -> None:
        track = self.chunk(event.chunk)
        if track.play_end_ms is None:
            track.play_end_ms, track.cut = event.t_ms, event.cut

    def _on_speech_start(self, event: ev.VadSpeechStart) -> None:
        self.speech_start = self.speech_start or event

    def _on_speech_end(self, event: ev.VadSpeechEnd) -> None:
        self.speech_end = self.speech_end or event

    def _on_tts_session(self, event: ev.TtsSession) -> None:
        # The worst path reached during the turn counts, as in `compute_metrics`.
        if worse_tts_path(self.tts_path, event):
            self.tts_path = event.path
            self.tts_path_reason = event.reason or self.tts_path_reason

    def _on_error(self, event: ev.Error) -> None:
        if self.status == RUNNING:  # a cancel explains the errors it causes; the first error, the others
            self._stop(ERROR, f"{event.where}: {event.message}", event.t_ms)

    def _on_cancelled(self, event: ev.TurnCancelled) -> None:
        self._stop(CANCELLED, event.reason, event.t_ms)

    def _stop(self, status: str, detail: str, t_ms: float) -> None:
        self.status, self.status_detail = status, detail
        if self.stopped_ms is not None:
            return
        self.stopped_ms = t_ms
        # Stopping a turn stops its playback: a chunk still playing was cut there, even
        # when the output reported no `play.end` for it.
        for track in self.chunks.values():
            if track.play_start_ms is not None and track.play_end_ms is None:
                track.play_end_ms, track.cut = t_ms, True

    def _on_summary(self, event: ev.TurnSummary) -> None:
        self.summary = event
        if self.status == RUNNING:
            self.status = OK


_HANDLERS: dict[type[ev.TraceEvent], Callable[[TurnTimeline, Any], None]] = {
    ev.TurnStart: TurnTimeline._on_start,
    ev.LlmRequest: TurnTimeline._on_request,
    ev.LlmToken: TurnTimeline._on_token,
    ev.LlmDone: TurnTimeline._on_llm_done,
    ev.Chunk: TurnTimeline._on_chunk,
    ev.TtsSend: TurnTimeline._on_send,
    ev.TtsAudio: TurnTimeline._on_audio,
    ev.PlayStart: TurnTimeline._on_play_start,
    ev.PlayEnd: TurnTimeline._on_play_end,
    ev.PlayGap: TurnTimeline._on_play_gap,
    ev.PlaySound: TurnTimeline._on_play_sound,
    ev.VadSpeechStart: TurnTimeline._on_speech_start,
    ev.VadSpeechEnd: TurnTimeline._on_speech_end,
    ev.TtsSession: TurnTimeline._on_tts_session,
    ev.Error: TurnTimeline._on_error,
    ev.TurnCancelled: TurnTimeline._on_cancelled,
    ev.TurnSummary: TurnTimeline._on_summary,
}


def turn_timeline(events: Sequence[ev.TraceEvent]) -> TurnTimeline:
    """The timeline of one turn's events (all of the same turn; none: an empty timeline)."""
    timeline = TurnTimeline(events[0].turn if events else ev.SESSION_TURN)
    for event in events:
        timeline.add(event)
    return timeline


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
