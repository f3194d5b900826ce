"""Atomic writes, the native JSONL round trip, and the synthetic long session's fidelity."""

from __future__ import annotations

import stat

import pytest

from playground.core import events as ev
from playground.core.metrics import compute_metrics
from playground.export.atomic import atomic_open
from playground.export.jsonl import write_trace_jsonl
from tests.export.conftest import SESSION, TWO_TURNS, load, long_session


def test_jsonl_round_trip(tmp_path):
    header, events = load(TWO_TURNS)
    path = write_trace_jsonl(tmp_path / "copy.jsonl", header, events)
    assert ev.read_trace(path) == (header, events)
    assert path.read_text(encoding="utf-8").splitlines()[0].startswith('{"type": "session", "version": 1')
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


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
    templates = [[e.type for e in recorded if e.turn == n and e.type != ev.TURN_SUMMARY] for n in range(1, 6)]
    for number in range(1, 201):
        turn = turns[number]
        # The recorded turn's events in order, then a summary that compute_metrics agrees with.
        assert [e.type for e in turn[:-1]] == templates[(number - 1) % 5]
        assert turn[-1].type == ev.TURN_SUMMARY
        assert turn[-1].get("metrics") == compute_metrics(turn).to_json()
    # The session's own events keep their places: opened first, closed last.
    assert events[0].type == ev.TTS_SESSION and events[0].get("action") == "open"
    assert events[-1].type == ev.TTS_SESSION and events[-1].get("action") == "close"
