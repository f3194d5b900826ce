"""Atomic writes, the native JSONL round trip (live and at once), and the synthetic long session's fidelity."""

from __future__ import annotations

import json
import stat

import pytest

from playground.core import events as ev
from playground.core.metrics import compute_metrics
from playground.core.tracefile import read_trace
from playground.export.atomic import atomic_open
from playground.export.jsonl import open_trace_writer, write_trace_jsonl
from tests.events import event
from tests.export.conftest import SESSION, TWO_TURNS, load, long_session


def test_jsonl_round_trip(tmp_path):
    header, events = load(TWO_TURNS)
    path = write_trace_jsonl(tmp_path / "copy.jsonl", header, events)
    assert read_trace(path) == (header, events)
    assert path.read_text(encoding="utf-8").splitlines()[0].startswith('{"type": "session", "version": 1')
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_writer_round_trip_and_flush_points(tmp_path):
    path = tmp_path / "t.jsonl"
    trace = ev.Trace()
    writer = open_trace_writer(path, {"preset": {"name": "local"}})
    trace.subscribe(writer)
    clock = ev.TurnClock(trace, 1, t0_mono_ms=1000.0)
    clock.emit(ev.TurnStart, 1000.0, text="Hi ✓ مرحبا", input="typed", strategy="adaptive", chunker={})
    clock.emit(ev.LlmToken, 1080.25, i=0, text="Hello")
    # Tokens are buffered (no file write per token on the event loop) ...
    assert len(path.read_text().splitlines()) == 1
    clock.emit(ev.TurnSummary, 1500.0, metrics={}, budget_misses={})
    # ... and written when the turn ends.
    assert len(path.read_text().splitlines()) == 4
    clock.emit(ev.Error, 1600.0, where="tts", message="late")
    writer.close()
    header, events = read_trace(path)
    assert header["type"] == "session" and header["version"] == ev.TRACE_VERSION
    assert [e.type for e in events] == ["turn.start", "llm.token", "turn.summary", "error"]
    assert events[0].text == "Hi ✓ مرحبا"
    assert events[1].t_ms == 80.25 and events[1].turn == 1
    assert json.loads(path.read_text().splitlines()[2]) == {"turn": 1, "t_ms": 80.25, "type": "llm.token", "i": 0, "text": "Hello"}


def test_text_that_was_never_valid_unicode_is_kept_not_fatal(tmp_path):
    """A lone surrogate (undecodable bytes let through by a provider or an old trace) is
    written as its JSON escape and reads back the same, live and at once."""
    text = "caf\udce9"
    start = event(ev.TurnStart, 1, 1.0, text=text)
    live = open_trace_writer(tmp_path / "live.jsonl", {})
    live(start)
    live.close()
    whole = write_trace_jsonl(tmp_path / "whole.jsonl", {}, [start])
    for path in (tmp_path / "live.jsonl", whole):
        assert read_trace(path)[1][0].text == text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    header, events = load(TWO_TURNS)
    path = write_trace_jsonl(tmp_path / "trace.jsonl", header, events)
    before = path.read_bytes()

    def broken_events():
        yield from events[:10]
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        write_trace_jsonl(path, header, broken_events())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["trace.jsonl"]


def test_atomic_open_names_the_target_when_its_folder_is_missing(tmp_path):
    with pytest.raises(OSError, match=f"cannot write {tmp_path}/nowhere/x.csv: No such file"), \
            atomic_open(tmp_path / "nowhere" / "x.csv"):
        pass


def test_the_long_session_replays_real_turns():
    _, recorded = load(SESSION)
    _, events = long_session()
    turns = {}
    for e in events:
        turns.setdefault(e.turn, []).append(e)
    assert len(turns) - 1 == 200 and 30_000 < len(events) < 45_000
    templates = [[e.type for e in recorded if e.turn == n and not isinstance(e, ev.TurnSummary)] for n in range(1, 6)]
    for number in range(1, 201):
        turn = turns[number]
        # The recorded turn's events in order, then a summary that compute_metrics agrees with.
        assert [e.type for e in turn[:-1]] == templates[(number - 1) % 5]
        assert isinstance(turn[-1], ev.TurnSummary)
        assert turn[-1].metrics == compute_metrics(turn).to_json()
    # The session's own events keep their places: opened first, closed last.
    assert isinstance(events[0], ev.TtsSession) and events[0].action == "open"
    assert isinstance(events[-1], ev.TtsSession) and events[-1].action == "close"
