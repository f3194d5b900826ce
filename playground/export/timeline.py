"""A session's trace laid out on one clock: the spans and marks that the Chrome and
OpenTelemetry exports draw, computed once from the events.

Turn events count milliseconds from their turn's t0 and session events (turn 0) from
the session's start. `turn.start` records where its t0 falls on the session's clock
(`session_ms`); traces written before it was recorded place turns in file order, each
right after everything written before it (exact for turns run back to back; idle time
between typed turns does not appear).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playground.core import events as ev
from playground.core.metrics import TurnMetrics, budget_misses, compute_metrics
from playground.core.presets import DEFAULT_BUDGETS
from playground.core.progress import Progress

# Lanes, in pipeline order: one Chrome track and one OpenTelemetry span family each.
STT, TURN, LLM, CHUNKER, TTS, PLAYBACK = "stt", "turn", "llm", "chunker", "tts", "playback"
LANES = (STT, TURN, LLM, CHUNKER, TTS, PLAYBACK)
LANE_TITLES = {STT: "STT/VAD", TURN: "turns", LLM: "LLM", CHUNKER: "chunker", TTS: "TTS", PLAYBACK: "playback"}

# The seed's markers, each on the lane where it happens.
MARKERS = (("stt", "STT", STT), ("llm_ttft", "LLM_TTFT", LLM), ("ttfs", "TTFS", CHUNKER),
           ("ttft_tts", "TTFT_TTS", TTS), ("ttfa", "TTFA", TTS), ("first_play", "FIRST_PLAY", PLAYBACK))

# Event types that open or close a span, or carry the turn's summary: not drawn as marks.
_SPAN_EVENTS = {ev.TURN_START, ev.LLM_REQUEST, ev.LLM_DONE, ev.CHUNK, ev.TTS_SEND, ev.PLAY_START, ev.PLAY_END,
                ev.TURN_SUMMARY}
# Where an `error` event's `where` puts it.
_ERROR_LANES = {"llm": LLM, "tts": TTS, "audio": PLAYBACK, "stt": STT, "vad": STT, "mic": STT}


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
    summary: dict[str, Any]  # the recorded turn.summary's data ({} if the turn has none)
    # metric key -> value over budget: as recorded (the budgets then in force), else against the header's
    misses: dict[str, float]
    text: str
    span: Span  # the whole turn, lane TURN
    children: list[Span]  # LLM stream, STT, chunks, TTS and playback per chunk
    marks: list[Mark]


@dataclass
class SessionLayout:
    turns: list[TurnLayout]
    marks: list[Mark]  # session events (turn 0)
    end_ms: float


def budgets_of(header: dict[str, Any]) -> dict[str, float]:
    """The budgets the session ran with (its preset's), else the defaults."""
    budgets = header.get("preset", {}).get("budgets")
    return dict(budgets) if isinstance(budgets, dict) and budgets else dict(DEFAULT_BUDGETS)


def _mark_for(event: ev.TraceEvent, t_ms: float) -> Mark:
    kind = event.type
    if kind == ev.LLM_TOKEN:
        return Mark(LLM, "token", t_ms, {"i": event.get("i"), "text": event.get("text")})
    if kind == ev.TTS_AUDIO:
        return Mark(TTS, "audio", t_ms, dict(event.data))
    if kind == ev.TTS_SESSION:
        action = event.get("action", "?")
        return Mark(TTS, f"tts.session {action}", t_ms, dict(event.data),
                    alert=action in ("fallback", "reconnect", "warning"))
    if kind == ev.ERROR:
        lane = _ERROR_LANES.get(event.get("where"), TURN)
        return Mark(lane, f"error ({event.get('where', '?')})", t_ms, dict(event.data), alert=True)
    if kind in (ev.TURN_CANCELLED, ev.CONFIG_CHANGE):
        return Mark(TURN, kind, t_ms, dict(event.data), alert=True)
    lane = STT if kind.startswith(("stt.", "vad.")) or kind == ev.MIC else LLM if kind.startswith("llm.") else \
        TTS if kind.startswith("tts.") else PLAYBACK if kind.startswith("play.") else TURN
    return Mark(lane, kind, t_ms, dict(event.data))


def _turn_layout(number: int, events: list[ev.TraceEvent], offset: float, budgets: dict[str, float]) -> TurnLayout:
    metrics = compute_metrics(events)
    summary: dict[str, Any] = {}
    text = ""
    children: list[Span] = []
    marks: list[Mark] = []
    llm_request: ev.TraceEvent | None = None
    llm_end: ev.TraceEvent | None = None
    last_token: float | None = None
    stopped: float | None = None  # a cancel or an error ends what was still running
    sends: dict[int, float] = {}
    last_audio: dict[int, float] = {}
    plays: dict[int, float] = {}
    play_ends: dict[int, ev.TraceEvent] = {}
    chunks: list[ev.TraceEvent] = []
    for e in events:
        kind = e.type
        if kind == ev.TURN_START:
            text = e.get("text", "")
        elif kind == ev.LLM_REQUEST:
            llm_request = e
        elif kind == ev.LLM_DONE:
            llm_end = e
        elif kind == ev.LLM_TOKEN:
            last_token = e.t_ms
        elif kind == ev.CHUNK:
            chunks.append(e)
        elif kind == ev.TTS_SEND:
            sends.setdefault(e.get("chunk"), e.t_ms)
        elif kind == ev.TTS_AUDIO:
            last_audio[e.get("chunk")] = e.t_ms
        elif kind == ev.PLAY_START:
            plays.setdefault(e.get("chunk"), e.t_ms)
        elif kind == ev.PLAY_END:
            play_ends.setdefault(e.get("chunk"), e)
        elif kind == ev.TURN_SUMMARY:
            summary = dict(e.data)
        elif kind in (ev.TURN_CANCELLED, ev.ERROR) and stopped is None:
            stopped = e.t_ms
        if kind not in _SPAN_EVENTS:
            marks.append(_mark_for(e, offset + e.t_ms))

    first = min(e.t_ms for e in events)
    last = max(e.t_ms for e in events)
    cut_at = stopped if stopped is not None else last

    if llm_request is not None or last_token is not None:
        start = llm_request.t_ms if llm_request is not None else first
        args = dict(llm_request.data) if llm_request is not None else {}
        if llm_end is not None:
            end = llm_end.t_ms
            args.update({k: v for k, v in llm_end.data.items() if k != "text"}, completed=True)
        else:
            end = max(cut_at, last_token or start)
            args.update(tokens=metrics.tokens, completed=False)
        children.append(Span(LLM, "llm", offset + start, offset + end, args))

    # Spoken turns: the user's speech (VAD start -> end, before t0), then STT (t0 -> final transcript).
    speech_start = next((e for e in events if e.type == ev.VAD_SPEECH_START), None)
    speech_end = next((e for e in events if e.type == ev.VAD_SPEECH_END), None)
    if speech_start is not None and speech_end is not None:
        children.append(Span(STT, "speech", offset + speech_start.t_ms, offset + max(speech_start.t_ms, speech_end.t_ms),
                             {**speech_start.data, **speech_end.data}))
    if metrics.stt is not None:
        children.append(Span(STT, "stt", offset + (speech_end.t_ms if speech_end else 0.0), offset + metrics.stt))

    # A chunk's pending text can begin a fraction of a millisecond before the previous chunk
    # is emitted (start_ms is the chunker's token time, t_ms the emission): the chunker is one
    # buffer, so its spans are kept in sequence; the exact times stay in the args.
    previous_emit = float("-inf")
    for c in chunks:
        start = max(c.get("start_ms", c.t_ms), previous_emit)
        previous_emit = c.t_ms
        args = {k: v for k, v in c.data.items() if k != "raw"}
        children.append(Span(CHUNKER, f"chunk {c.get('index')}", offset + min(start, c.t_ms), offset + c.t_ms, args))

    for chunk, sent in sends.items():
        done = chunk in last_audio
        end = last_audio[chunk] if done else max(cut_at, sent)
        children.append(Span(TTS, f"tts {chunk}", offset + sent, offset + end, {"chunk": chunk, "audio": done}))

    for chunk, started in plays.items():
        end_event = play_ends.get(chunk)
        end = end_event.t_ms if end_event else max(cut_at, started)
        args = {"chunk": chunk, "cut": bool(end_event.get("cut")) if end_event else True}
        children.append(Span(PLAYBACK, f"play {chunk}", offset + started, offset + end, args))

    for key, label, lane in MARKERS:
        value = metrics.value(key)
        if value is not None:
            marks.append(Mark(lane, label, offset + value, {"ms": round(value, 3)}))

    recorded = summary.get("budget_misses")
    misses = recorded if isinstance(recorded, dict) else {k: v for k, (v, _) in budget_misses(metrics, budgets).items()}
    turn_args = {"turn": number, "text": text, "status": metrics.status, "strategy": metrics.strategy,
                 "tts_path": metrics.tts_path, "metrics": metrics.to_json(), "budget_misses": misses}
    span = Span(TURN, f"turn {number}", offset + first, offset + last, turn_args)
    return TurnLayout(number, offset, metrics, summary, misses, text, span, children, marks)


def layout(header: dict[str, Any], events: list[ev.TraceEvent], progress: Progress | None = None) -> SessionLayout:
    """Places every turn on the session clock and computes its spans and marks."""
    budgets = budgets_of(header)
    by_turn: dict[int, list[ev.TraceEvent]] = {}
    session_marks: list[Mark] = []
    for e in events:
        if e.turn == ev.SESSION_TURN:
            session_marks.append(_mark_for(e, e.t_ms))
        else:
            by_turn.setdefault(e.turn, []).append(e)
    # The first pass grouped the turns; this one places them in the order they were written.
    offsets: dict[int, float] = {}
    first_t = {n: min(e.t_ms for e in turn_events) for n, turn_events in by_turn.items()}
    cursor = 0.0
    for e in events:
        if e.turn == ev.SESSION_TURN:
            cursor = max(cursor, e.t_ms)
            continue
        if e.turn not in offsets:
            recorded = e.get("session_ms") if e.type == ev.TURN_START else None
            offsets[e.turn] = recorded if recorded is not None else cursor - first_t[e.turn]
        cursor = max(cursor, offsets[e.turn] + e.t_ms)

    turns = []
    total = len(by_turn)
    for i, (number, turn_events) in enumerate(by_turn.items()):
        turns.append(_turn_layout(number, turn_events, offsets[number], budgets))
        if progress is not None and i % 20 == 19:
            progress("laying out turns", (i + 1) / total)
    return SessionLayout(turns, session_marks, cursor)
