"""The JSONL trace: header first, every event, nothing lost at close, readable back."""

import json

import pytest

from playground.core import events as ev


def test_writer_round_trip_and_flush_points(tmp_path):
    path = tmp_path / "t.jsonl"
    trace = ev.Trace()
    writer = ev.JsonlTraceWriter(path, {"preset": {"name": "local"}})
    trace.subscribe(writer)
    clock = ev.TurnClock(trace, 1, t0_mono_ms=1000.0)
    clock.emit(ev.TURN_START, 1000.0, text="Hi ✓ مرحبا")
    clock.emit(ev.LLM_TOKEN, 1080.25, i=0, text="Hello")
    # Tokens are buffered (no file write per token on the event loop) ...
    assert len(path.read_text().splitlines()) == 1
    clock.emit(ev.TURN_SUMMARY, 1500.0, metrics={})
    # ... and written when the turn ends.
    assert len(path.read_text().splitlines()) == 4
    clock.emit(ev.ERROR, 1600.0, where="tts", message="late")
    writer.close()
    header, events = ev.read_trace(path)
    assert header["type"] == "session" and header["version"] == ev.TRACE_VERSION
    assert [e.type for e in events] == ["turn.start", "llm.token", "turn.summary", "error"]
    assert events[0].get("text") == "Hi ✓ مرحبا"
    assert events[1].t_ms == 80.25 and events[1].turn == 1
    assert json.loads(path.read_text().splitlines()[2]) == {"turn": 1, "t_ms": 80.25, "type": "llm.token", "i": 0, "text": "Hello"}


def test_reading_a_broken_trace_names_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"type": "session", "version": 1}\n{"turn": 1, "t_ms": 1, "type": "llm.token"}\nnot json\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:3: not a trace event"):
        ev.read_trace(path)
