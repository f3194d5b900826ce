"""Chrome Trace Event JSON: opens in ui.perfetto.dev and chrome://tracing.

One process per session; one track (thread) per lane: STT/VAD, turns, LLM, chunker, TTS,
playback. Spans are complete events (`ph: "X"`, `ts`/`dur` in microseconds on the session
clock), tokens, audio pieces and the seed's markers are thread-scoped instant events, and
cancels, errors, TTS fallbacks and config changes are process-scoped instants, drawn across
the whole session. Turn metrics are the args of each turn's span.

Viewers need the complete events of a track to nest; TTS requests overlap when chunks are
pipelined, so a lane whose spans overlap gets extra tracks ("TTS 2", ...) instead of
slices the viewer would misdraw or drop.

The file is written as the session is laid out, a turn at a time (`playground.export.layout`),
so a long session is never all in memory; each track is named where it is first used.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from playground.core.events import TRACE_VERSION
from playground.core.tracefile import encode_json
from playground.export.atomic import atomic_open
from playground.export.layout import LANE_TITLES, LANES, TTS, Mark, SessionPlan, Span, TurnLayout

PID = 1
# Track ids: a lane's first track is its base, overflow tracks follow it (and sort after it).
_LANE_BASE = {lane: (index + 1) * 100 for index, lane in enumerate(LANES)}


def _us(ms: float) -> float:
    return round(ms * 1000.0, 3)


class _Tracks:
    """Assigns each span a track of its lane on which it does not overlap another span, and
    names each track the first time it is used."""

    def __init__(self) -> None:
        self.ends: dict[str, list[float]] = {lane: [] for lane in LANES}
        self.named: set[int] = set()
        self.unnamed: list[int] = []  # tracks used since `names` was last called

    def _use(self, tid: int) -> int:
        if tid not in self.named:
            self.named.add(tid)
            self.unnamed.append(tid)
        return tid

    def place(self, lane: str, start_us: float, end_us: float) -> int:
        ends = self.ends[lane]
        for k, end in enumerate(ends):
            if end <= start_us:
                ends[k] = end_us
                return self._use(_LANE_BASE[lane] + k)
        ends.append(end_us)
        return self._use(_LANE_BASE[lane] + len(ends) - 1)

    def mark(self, lane: str) -> int:
        """The track of an instant on `lane`: its first one."""
        return self._use(_LANE_BASE[lane])

    def names(self) -> Iterator[dict[str, Any]]:
        """The metadata events that name (and order) the tracks used since the last call."""
        for tid in self.unnamed:
            lane = LANES[tid // 100 - 1]
            k = tid - _LANE_BASE[lane]
            title = LANE_TITLES[lane] if k == 0 else f"{LANE_TITLES[lane]} {k + 1}"
            yield {"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": title}}
            yield {"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid, "args": {"sort_index": tid}}
        self.unnamed.clear()


def _process_name(header: dict[str, Any]) -> str:
    started = header.get("started_at")
    preset = header.get("preset", {}).get("name", "?")
    return "playground session" + (f" {started}" if started else "") + f" (preset {preset})"


def _instant(mark: Mark, tid: int) -> dict[str, Any]:
    return {"name": mark.name, "cat": mark.lane, "ph": "i", "s": "p" if mark.alert else "t",
            "ts": _us(mark.t_ms), "pid": PID, "tid": tid, "args": mark.args}


def _turn_events(turn: TurnLayout, tracks: _Tracks) -> list[dict[str, Any]]:
    """The turn's complete and instant events, in time order."""
    # First-fit in start order uses the fewest overlap tracks (turns come in the order they start).
    spans: list[Span] = sorted([turn.span, *turn.children], key=lambda s: (s.start_ms, -s.end_ms))
    events: list[dict[str, Any]] = []
    audio_tracks: dict[Any, int] = {}  # a piece of audio goes on its chunk's TTS request's track
    for span in spans:
        ts, end = _us(span.start_ms), _us(span.end_ms)
        tid = tracks.place(span.lane, ts, end)
        if span.lane == TTS:
            audio_tracks[span.args.get("chunk")] = tid
        events.append({"name": span.name, "cat": span.lane, "ph": "X", "ts": ts, "dur": round(end - ts, 3),
                       "pid": PID, "tid": tid, "args": span.args})
    for mark in turn.marks:
        tid = audio_tracks.get(mark.args.get("chunk")) if mark.name == "audio" else None
        events.append(_instant(mark, tid if tid is not None else tracks.mark(mark.lane)))
    events.sort(key=lambda e: e["ts"])
    return events


def chrome_events(header: dict[str, Any], layouts: Iterable[TurnLayout | Mark]) -> Iterator[dict[str, Any]]:
    """The session's Trace Event Format events, a turn at a time: each track is named before
    its first event."""
    tracks = _Tracks()
    yield {"name": "process_name", "ph": "M", "pid": PID, "tid": 0, "args": {"name": _process_name(header)}}
    for item in layouts:
        events = [_instant(item, tracks.mark(item.lane))] if isinstance(item, Mark) else _turn_events(item, tracks)
        yield from tracks.names()
        yield from events


def write_chrome(path: Path, plan: SessionPlan, layouts: Iterable[TurnLayout | Mark]) -> None:
    """The trace as a Trace Event Format object (JSON Object Format), written as it is laid out."""
    header = plan.header
    other = {"trace_version": header.get("version", TRACE_VERSION), "playground": header.get("playground", ""),
             "started_at": header.get("started_at", ""), "preset": header.get("preset", {}).get("name", ""),
             "providers": header.get("providers", {})}
    with atomic_open(path, "wb") as f:
        f.write(b'{"traceEvents":[')
        _write_array(f, chrome_events(header, layouts))
        f.write(b'],"displayTimeUnit":"ms","otherData":' + encode_json(other, compact=True) + b"}")


def _write_array(f: IO[bytes], items: Iterable[Any]) -> None:
    """The items of a JSON array, comma-separated, written a few hundred at a time."""
    batch: list[bytes] = []
    first = True
    for item in items:
        batch.append(encode_json(item, compact=True))
        if len(batch) == 500:
            f.write((b"" if first else b",") + b",".join(batch))
            batch.clear()
            first = False
    if batch:
        f.write((b"" if first else b",") + b",".join(batch))
