"""A session's turns on one clock, as the Chrome and OpenTelemetry exports draw them: each
turn's timeline (`playground.core.timeline`) as spans on lanes, its other events as marks.

Turn events count milliseconds from their turn's t0 and session events (turn 0) from the
session's start. `turn.start` records where its t0 falls on the session's clock
(`session_ms`); traces written before it was recorded place turns in file order, each
right after everything written before it (exact for turns run back to back; idle time
between typed turns does not appear).

Two passes over the events, so a long trace is never all in memory: `plan_session` reads
what the whole session needs before its first turn is drawn (where each turn goes, the
secrets to scrub, the preset changes); `laid_out` then yields each turn, laid out, as its
last event is read, and the session's own events as marks in between.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from playground.core import events as ev
from playground.core.metrics import TurnMetrics, budget_misses, compute_metrics
from playground.core.presets import DEFAULT_BUDGETS
from playground.core.progress import Progress
from playground.core.scrub import Scrubber, known_secrets
from playground.core.timeline import TurnTimeline, turn_timeline

# Lanes, in pipeline order: one Chrome track and one OpenTelemetry span family each.
STT, TURN, LLM, CHUNKER, TTS, PLAYBACK = "stt", "turn", "llm", "chunker", "tts", "playback"
LANES = (STT, TURN, LLM, CHUNKER, TTS, PLAYBACK)
LANE_TITLES = {STT: "STT/VAD", TURN: "turns", LLM: "LLM", CHUNKER: "chunker", TTS: "TTS", PLAYBACK: "playback"}

# The seed's markers, each on the lane where it happens.
MARKERS = (("stt", "STT", STT), ("llm_ttft", "LLM_TTFT", LLM), ("ttfs", "TTFS", CHUNKER),
           ("ttft_tts", "TTFT_TTS", TTS), ("ttfa", "TTFA", TTS), ("first_play", "FIRST_PLAY", PLAYBACK))

# Event types that open or close a span, or carry the turn's summary: not drawn as marks.
_SPAN_EVENTS = (ev.TurnStart, ev.LlmRequest, ev.LlmDone, ev.Chunk, ev.TtsSend, ev.PlayStart, ev.PlayEnd, ev.TurnSummary)
# Where an `error` event's `where` puts it.
_ERROR_LANES = {"llm": LLM, "tts": TTS, "audio": PLAYBACK, "stt": STT, "vad": STT, "mic": STT}
# Turns laid out between two progress reports.
_PROGRESS_EVERY = 20


@dataclass(slots=True)
class Span:
    lane: str
    name: str
    start_ms: float  # session clock
    end_ms: float
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Mark:
    lane: str
    name: str
    t_ms: float  # session clock
    args: dict[str, Any] = field(default_factory=dict)
    # cancels, errors, TTS fallbacks/reconnects/warnings, config changes: drawn across the whole session
    alert: bool = False


@dataclass
class TurnLayout:
    number: int
    offset_ms: float  # where the turn's t0 is on the session clock
    metrics: TurnMetrics
    # metric key -> value over budget: as recorded (the budgets then in force), else against the header's
    misses: dict[str, float]
    text: str
    span: Span  # the whole turn, lane TURN
    children: list[Span]  # LLM stream, STT, chunks, TTS and playback per chunk
    marks: list[Mark]
    events: list[ev.TraceEvent]  # the turn's own (scrubbed), for what reads more of it (the diagnosis)


@dataclass
class SessionPlan:
    """What drawing the session needs before its first turn: the first pass over its events."""

    header: dict[str, Any]  # scrubbed
    scrubber: Scrubber  # for the events, as they are read again
    budgets: dict[str, float]
    offsets: dict[int, float]  # turn -> where its t0 falls on the session clock
    end_ms: float  # the session's last moment on that clock
    session_events: list[ev.TraceEvent]  # the session's own (turn 0), scrubbed, in trace order
    # A trace whose turns interleave is laid out from memory: its events, each turn's together.
    in_memory: list[ev.TraceEvent] | None = None

    @property
    def turns(self) -> int:
        return len(self.offsets)

    @property
    def config_changes(self) -> list[ev.ConfigChange]:
        return [e for e in self.session_events if isinstance(e, ev.ConfigChange)]


def budgets_of(header: dict[str, Any]) -> dict[str, float]:
    """The budgets the session ran with (its preset's), else the defaults."""
    budgets = header.get("preset", {}).get("budgets")
    return dict(budgets) if isinstance(budgets, dict) and budgets else dict(DEFAULT_BUDGETS)


def _runs(events: Iterable[ev.TraceEvent]) -> Iterator[ev.TraceEvent | list[ev.TraceEvent]]:
    """The trace in order: each session event, and each turn's events (a list) once its last one was read."""
    turn: list[ev.TraceEvent] = []
    for event in events:
        if event.turn == ev.SESSION_TURN:
            yield event
        elif turn and event.turn != turn[0].turn:
            yield turn
            turn = [event]
        else:
            turn.append(event)
    if turn:
        yield turn


def runs(plan: SessionPlan, events: Iterable[ev.TraceEvent]) -> Iterator[ev.TraceEvent | list[ev.TraceEvent]]:
    """The second pass over what the plan read: each session event, and each turn's events (a
    list) once its last one is read, scrubbed. A trace still being written yields what the plan read."""
    scrub = plan.scrubber.event
    for run in _runs(plan.in_memory if plan.in_memory is not None else events):
        if isinstance(run, ev.TraceEvent):
            yield scrub(run)
        elif run[0].turn in plan.offsets:
            yield [scrub(e) for e in run]


@dataclass
class _TurnSpan:
    """What placing a turn needs of it."""

    cursor_at_start: float  # the latest moment placed when its first event was read
    first_ms: float
    last_ms: float
    session_ms: float | None = None
    # session events read while it was read: placed once it is
    session_after: list[float] = field(default_factory=list)


def plan_session(header: dict[str, Any], events: Iterable[ev.TraceEvent]) -> SessionPlan:
    """The first pass: secrets, preset changes and where every turn goes, with one turn in memory at a time.

    A turn goes where its `turn.start` recorded (`session_ms`), else right after everything
    read before its first event (the latest moment placed so far). A trace whose turns
    interleave (the engine never writes one) is laid out from memory, each turn's events
    brought together where the turn first appears."""
    plan = _plan(header, events)
    if plan is not None:
        return plan
    grouped: dict[int, list[ev.TraceEvent]] = {}
    ordered: list[ev.TraceEvent | list[ev.TraceEvent]] = []
    for event in events:
        if event.turn == ev.SESSION_TURN:
            ordered.append(event)
        elif event.turn in grouped:
            grouped[event.turn].append(event)
        else:
            ordered.append(grouped.setdefault(event.turn, [event]))
    in_memory = [e for item in ordered for e in (item if isinstance(item, list) else (item,))]
    plan = _plan(header, in_memory)
    assert plan is not None
    plan.in_memory = in_memory
    return plan


def _plan(header: dict[str, Any], events: Iterable[ev.TraceEvent]) -> SessionPlan | None:
    """The plan, or None when a turn's events are not all together."""
    session_events: list[ev.TraceEvent] = []
    offsets: dict[int, float] = {}
    cursor = 0.0
    current: _TurnSpan | None = None
    number = ev.SESSION_TURN

    def place() -> float:
        assert current is not None
        at = current.session_ms if current.session_ms is not None else current.cursor_at_start - current.first_ms
        offsets[number] = at
        return max(current.cursor_at_start, at + current.last_ms, *current.session_after)

    for event in events:
        if event.turn == ev.SESSION_TURN:
            session_events.append(event)
            if current is None:
                cursor = max(cursor, event.t_ms)
            else:
                current.session_after.append(event.t_ms)
            continue
        if event.turn != number:
            if current is not None:
                cursor = place()
            if event.turn in offsets:
                return None
            # the turn.start that opens a turn says where it goes
            number, current = event.turn, _TurnSpan(cursor, event.t_ms, event.t_ms,
                                                    event.session_ms if isinstance(event, ev.TurnStart) else None)
        current.first_ms = min(current.first_ms, event.t_ms)
        current.last_ms = max(current.last_ms, event.t_ms)
    if current is not None:
        cursor = place()
    scrubber = Scrubber(known_secrets(header, session_events))
    return SessionPlan(scrubber.value(header), scrubber, budgets_of(header), offsets, cursor,
                       [scrubber.event(e) for e in session_events])


def _mark_for(event: ev.TraceEvent, t_ms: float) -> Mark:
    if isinstance(event, ev.LlmToken):
        return Mark(LLM, "token", t_ms, {"i": event.i, "text": event.text})
    fields = ev.event_fields(event)
    if isinstance(event, ev.TtsAudio):
        return Mark(TTS, "audio", t_ms, fields)
    if isinstance(event, ev.TtsSession):
        return Mark(TTS, f"tts.session {event.action}", t_ms, fields, alert=event.action in ("fallback", "reconnect",
                                                                                            "warning"))
    if isinstance(event, ev.Error):
        return Mark(_ERROR_LANES.get(event.where, TURN), f"error ({event.where})", t_ms, fields, alert=True)
    kind = event.type
    if isinstance(event, (ev.TurnCancelled, ev.ConfigChange)):
        return Mark(TURN, kind, t_ms, fields, alert=True)
    lane = STT if kind.startswith(("stt.", "vad.")) or isinstance(event, ev.Mic) else LLM if kind.startswith("llm.") \
        else TTS if kind.startswith("tts.") else PLAYBACK if kind.startswith("play.") else TURN
    return Mark(lane, kind, t_ms, fields)


def session_mark(event: ev.TraceEvent) -> Mark:
    """A session event (turn 0) as the exports draw it; its time is already on the session clock."""
    return _mark_for(event, event.t_ms)


def _spans(turn: TurnTimeline, metrics: TurnMetrics, offset: float, first_ms: float, last_ms: float) -> list[Span]:
    """The turn's LLM stream, speech and STT, chunks, TTS requests and playback, on the session clock
    (`first_ms`, `last_ms`: its first and last event)."""
    children: list[Span] = []
    # a cancel or an error ends what was still running, else the turn's last event
    cut_at = turn.stopped_ms if turn.stopped_ms is not None else last_ms
    last_token = turn.last_token_ms
    if turn.request is not None or last_token is not None:
        start = turn.request.t_ms if turn.request is not None else first_ms
        args = ev.event_fields(turn.request) if turn.request is not None else {}
        if turn.done is not None:
            end = turn.done.t_ms
            args.update({k: v for k, v in ev.event_fields(turn.done).items() if k != "text"}, completed=True)
        else:
            end = max(cut_at, last_token or start)
            args.update(tokens=metrics.tokens, completed=False)
        children.append(Span(LLM, "llm", offset + start, offset + end, args))

    # Spoken turns: the user's speech (VAD start -> end, before t0), then STT (t0 -> final transcript).
    speech_start, speech_end = turn.speech_start, turn.speech_end
    if speech_start is not None and speech_end is not None:
        children.append(Span(STT, "speech", offset + speech_start.t_ms, offset + max(speech_start.t_ms, speech_end.t_ms),
                             {**ev.event_fields(speech_start), **ev.event_fields(speech_end)}))
    if metrics.stt is not None:
        children.append(Span(STT, "stt", offset + (speech_end.t_ms if speech_end else 0.0), offset + metrics.stt))

    tracks = list(turn.chunks.values())
    # A chunk's pending text can begin a fraction of a millisecond before the previous chunk
    # is emitted (start_ms is the chunker's token time, t_ms the emission): the chunker is one
    # buffer, so its spans are kept in sequence; the exact times stay in the args.
    previous_emit = float("-inf")
    for track in tracks:
        c = track.emitted
        if c is None:
            continue
        start = max(c.start_ms, previous_emit)
        previous_emit = c.t_ms
        args = {k: v for k, v in ev.event_fields(c).items() if k != "raw"}
        children.append(Span(CHUNKER, f"chunk {c.index}", offset + min(start, c.t_ms), offset + c.t_ms, args))

    def until(lane: str, name: str, start: float, end: float | None, args: dict[str, Any]) -> None:
        """A span to `end`, or, still running (None), to where the turn stopped."""
        children.append(Span(lane, name, offset + start, offset + (end if end is not None else max(cut_at, start)),
                             args))

    for track in tracks:
        if track.send_ms is not None:
            until(TTS, f"tts {track.index}", track.send_ms, track.last_audio_ms,
                  {"chunk": track.index, "audio": track.last_audio_ms is not None})
    for track in tracks:
        if track.play_start_ms is not None:
            until(PLAYBACK, f"play {track.index}", track.play_start_ms, track.play_end_ms,
                  {"chunk": track.index, "cut": track.cut if track.play_end_ms is not None else True})
    return children


def turn_layout(events: list[ev.TraceEvent], offset: float, budgets: dict[str, float]) -> TurnLayout:
    """One turn (its events), drawn at `offset` on the session clock."""
    turn = turn_timeline(events)
    metrics = compute_metrics(events)
    first_ms, last_ms = min(e.t_ms for e in events), max(e.t_ms for e in events)
    children = _spans(turn, metrics, offset, first_ms, last_ms)
    marks = [_mark_for(e, offset + e.t_ms) for e in events if not isinstance(e, _SPAN_EVENTS)]
    for key, label, lane in MARKERS:
        value = metrics.value(key)
        if value is not None:
            marks.append(Mark(lane, label, offset + value, {"ms": round(value, 3)}))

    recorded = turn.summary.budget_misses if turn.summary is not None else None
    misses = recorded if recorded is not None else {k: v for k, (v, _) in budget_misses(metrics, budgets).items()}
    number = turn.turn
    turn_args = {"turn": number, "text": turn.text, "status": metrics.status, "strategy": metrics.strategy,
                 "tts_path": metrics.tts_path, "metrics": metrics.to_json(), "budget_misses": misses}
    span = Span(TURN, f"turn {number}", offset + first_ms, offset + last_ms, turn_args)
    return TurnLayout(number, offset, metrics, misses, turn.text, span, children, marks, events)


def laid_out(plan: SessionPlan, events: Iterable[ev.TraceEvent], progress: Progress | None = None,
             stage: str = "laying out turns") -> Iterator[TurnLayout | Mark]:
    """Each turn laid out once its events are read, the session's events as marks in between
    (`runs`). `progress(stage, fraction)` every few turns."""
    done = 0
    for run in runs(plan, events):
        if isinstance(run, ev.TraceEvent):
            yield session_mark(run)
            continue
        yield turn_layout(run, plan.offsets[run[0].turn], plan.budgets)
        done += 1
        if progress is not None and done % _PROGRESS_EVERY == 0:
            progress(stage, done / plan.turns)
