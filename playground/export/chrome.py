"""Chrome Trace Event JSON: opens in ui.perfetto.dev and chrome://tracing.

One process per session; one track (thread) per lane: STT/VAD, turns, LLM, chunker, TTS,
playback. Spans are complete events (`ph: "X"`, `ts`/`dur` in microseconds on the session
clock), tokens, audio pieces and the seed's markers are thread-scoped instant events, and
cancels, errors, TTS fallbacks and config changes are process-scoped instants, drawn across
the whole session. Turn metrics are the args of each turn's span.

Viewers need the complete events of a track to nest; TTS requests overlap when chunks are
pipelined, so a lane whose spans overlap gets extra tracks ("TTS 2", ...) instead of
slices the viewer would misdraw or drop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playground.core.events import TRACE_VERSION
from playground.core.progress import Progress
from playground.export.atomic import atomic_open
from playground.export.timeline import (
    LANE_TITLES,
    LANES,
    TTS,
    Mark,
    SessionLayout,
    Span,
)

PID = 1
# Track ids: a lane's first track is its base, overflow tracks follow it.
_LANE_BASE = {lane: (index + 1) * 100 for index, lane in enumerate(LANES)}


def _us(ms: float) -> float:
    return round(ms * 1000.0, 3)


class _Tracks:
    """Assigns each span a track of its lane on which it does not overlap another span."""

    def __init__(self) -> None:
        self.ends: dict[str, list[float]] = {lane: [] for lane in LANES}
        self.marked: set[str] = set()

    def place(self, lane: str, start_us: float, end_us: float) -> int:
        ends = self.ends[lane]
        for k, end in enumerate(ends):
            if end <= start_us:
                ends[k] = end_us
                return _LANE_BASE[lane] + k
        ends.append(end_us)
        return _LANE_BASE[lane] + len(ends) - 1

    def mark(self, lane: str) -> int:
        """The track of an instant on `lane`: its first one."""
        self.marked.add(lane)
        return _LANE_BASE[lane]

    def used(self) -> list[tuple[int, str]]:
        """(tid, track name) of every track that received a span or a mark."""
        tracks = []
        for lane in LANES:
            for k in range(max(len(self.ends[lane]), lane in self.marked)):
                title = LANE_TITLES[lane] if k == 0 else f"{LANE_TITLES[lane]} {k + 1}"
                tracks.append((_LANE_BASE[lane] + k, title))
        return tracks


def _process_name(header: dict[str, Any]) -> str:
    started = header.get("started_at")
    preset = header.get("preset", {}).get("name", "?")
    return "playground session" + (f" {started}" if started else "") + f" (preset {preset})"


def chrome_trace(header: dict[str, Any], layout: SessionLayout, progress: Progress | None = None) -> dict[str, Any]:
    """The trace as a Trace Event Format object (JSON Object Format)."""
    tracks = _Tracks()
    spans: list[Span] = []
    for turn in layout.turns:
        spans.append(turn.span)
        spans.extend(turn.children)
    # First-fit in start order uses the fewest overlap tracks.
    spans.sort(key=lambda s: (s.start_ms, -s.end_ms))
    trace_events: list[dict[str, Any]] = []
    placed: dict[int, int] = {}  # id(span) -> its track
    for i, span in enumerate(spans):
        ts, end = _us(span.start_ms), _us(span.end_ms)
        tid = placed[id(span)] = tracks.place(span.lane, ts, end)
        trace_events.append({"name": span.name, "cat": span.lane, "ph": "X", "ts": ts, "dur": round(end - ts, 3),
                             "pid": PID, "tid": tid, "args": span.args})
        if progress is not None and i % 2000 == 1999:
            progress("chrome: spans", (i + 1) / len(spans))
    def instant(mark: Mark, tid: int) -> dict[str, Any]:
        return {"name": mark.name, "cat": mark.lane, "ph": "i", "s": "p" if mark.alert else "t",
                "ts": _us(mark.t_ms), "pid": PID, "tid": tid, "args": mark.args}

    trace_events.extend(instant(mark, tracks.mark(mark.lane)) for mark in layout.marks)
    for turn in layout.turns:
        # A piece of audio goes on the track of its chunk's TTS request (an overlap track or not).
        audio_tracks = {s.args.get("chunk"): placed[id(s)] for s in turn.children if s.lane == TTS}
        for mark in turn.marks:
            tid = audio_tracks.get(mark.args.get("chunk")) if mark.name == "audio" else None
            trace_events.append(instant(mark, tid if tid is not None else tracks.mark(mark.lane)))
    trace_events.sort(key=lambda e: e["ts"])

    metadata: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": PID, "tid": 0, "args": {"name": _process_name(header)}}]
    for order, (tid, title) in enumerate(tracks.used()):
        metadata.append({"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": title}})
        metadata.append({"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid,
                         "args": {"sort_index": order}})
    return {
        "traceEvents": metadata + trace_events,
        "displayTimeUnit": "ms",
        "otherData": {
            "trace_version": header.get("version", TRACE_VERSION),
            "playground": header.get("playground", ""),
            "started_at": header.get("started_at", ""),
            "preset": header.get("preset", {}).get("name", ""),
            "providers": header.get("providers", {}),
        },
    }


def write_chrome(path: Path, header: dict[str, Any], layout: SessionLayout, progress: Progress | None = None) -> None:
    # json.dumps, not json.dump: only the one-shot encoder is the C one (3x faster here)
    text = json.dumps(chrome_trace(header, layout, progress), ensure_ascii=False, separators=(",", ":"))
    with atomic_open(path) as f:
        f.write(text)
