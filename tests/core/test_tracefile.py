"""Reading a trace file: what it cannot read is one line naming the file (and line), never a
traceback; what it skips (a last line cut off mid-write, events of a newer type) is said."""

from __future__ import annotations

import io
import json

import pytest

from playground import cli
from playground.cli import main
from playground.console import Console
from playground.core import events as ev
from playground.core.tracefile import TraceError, TraceFile, encode_event, read_trace
from playground.data import find
from playground.bench.harness import DATA as BENCH_DATA

TWO_TURNS = BENCH_DATA / "two-turns.jsonl"


def lines_of(path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_every_shipped_trace_reads_and_writes_back_line_for_line():
    # The old traces read, and each event is written back exactly as it was read (turn, t_ms and
    # type first, spaces after separators) where its fields are in their declared order.
    for path in (*BENCH_DATA.glob("*.jsonl"), find("trace", "seed-turn4")):
        header, events = read_trace(path)
        assert header["version"] == ev.TRACE_VERSION and events
        written = [encode_event(e) + b"\n" for e in events]
        same = sum(a == b for a, b in zip(written, lines_of(path)[1:], strict=True))
        assert same / len(events) > 0.95, path
        assert all(json.loads(a) == json.loads(b) for a, b in zip(written, lines_of(path)[1:], strict=True))
    assert [encode_event(e) for e in read_trace(find("trace", "seed-turn4"))[1]] == \
        [line.rstrip(b"\n") for line in lines_of(find("trace", "seed-turn4"))[1:]]


def test_a_binary_file(tmp_path):
    path = tmp_path / "audio.jsonl"
    path.write_bytes(b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\xff\xfe")
    with pytest.raises(TraceError, match=rf"^{path}:1: not UTF-8 text \(byte 0xff at column 23\): not a trace"):
        read_trace(path)


def test_a_folder_and_an_empty_file(tmp_path):
    with pytest.raises(TraceError, match=rf"^{tmp_path}: a folder, not a trace file$"):
        read_trace(tmp_path)
    (tmp_path / "empty.jsonl").write_bytes(b"\n\n")
    with pytest.raises(TraceError, match=r"empty\.jsonl: empty, not a trace$"):
        read_trace(tmp_path / "empty.jsonl")


def test_a_file_that_does_not_start_with_the_session_header(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(lines_of(TWO_TURNS)[1:]))
    with pytest.raises(TraceError, match=rf"^{path}:1: not a trace: it starts with a 'tts.session' event, not the "
                                         r"session header$"):
        read_trace(path)


@pytest.mark.parametrize("version, complaint", [
    (2, "trace version 2, this playground reads version 1 (written by playground 9.0: upgrade to read it)"),
    (0, "trace version 0, this playground reads version 1"),
    (None, "trace version None, this playground reads version 1"),
])
def test_a_trace_version_it_does_not_read(tmp_path, version, complaint):
    header = json.loads(lines_of(TWO_TURNS)[0])
    header.update(version=version, playground="9.0")
    if version is None:
        del header["version"]
    path = tmp_path / "other.jsonl"
    path.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(lines_of(TWO_TURNS)[1:]))
    with pytest.raises(TraceError) as raised:
        read_trace(path)
    assert str(raised.value) == f"{path}: {complaint}"


def test_a_last_line_cut_off_mid_write_drops_its_incomplete_turn(tmp_path):
    # A crash while turn 2 was written: turn 1 and the session's events read, turn 2 is said to be skipped.
    lines = lines_of(TWO_TURNS)
    cut_at = next(i for i, line in enumerate(lines) if b'"turn": 2' in line and b"llm.token" in line)
    path = tmp_path / "crashed.jsonl"
    path.write_bytes(b"".join(lines[:cut_at]) + lines[cut_at][:25])
    said: list[str] = []
    _, events = read_trace(path, said.append)
    assert said == [f"{path}:{cut_at + 1}: the last line is cut off (the trace was not closed: a crash while "
                    f"writing?); skipped it and turn 2, which it left incomplete; every complete turn is read"]
    _, whole = read_trace(TWO_TURNS)
    assert events == [e for e in whole[:cut_at - 1] if e.turn != 2]
    with pytest.raises(TraceError, match=rf"^{path}:{cut_at + 1}: the last line is cut off"):
        read_trace(path)  # with no one to tell, nothing is skipped silently


def test_a_cut_line_after_a_complete_turn_loses_nothing_else(tmp_path):
    lines = lines_of(TWO_TURNS)
    path = tmp_path / "cut.jsonl"
    path.write_bytes(b"".join(lines) + b'{"turn": 0, "t_ms": 9')
    said: list[str] = []
    assert read_trace(path, said.append) == read_trace(TWO_TURNS)
    assert said == [f"{path}:{len(lines) + 1}: the last line is cut off (the trace was not closed: a crash while "
                    f"writing?); skipped it"]


def test_events_of_a_newer_type_are_skipped_and_counted(tmp_path):
    lines = lines_of(TWO_TURNS)
    newer = [b'{"turn": 1, "t_ms": 5.0, "type": "call.ring", "number": "+1 555 0100"}\n',
             b'{"turn": 0, "t_ms": 6.0, "type": "call.ring", "number": "+1 555 0101"}\n',
             b'{"turn": 1, "t_ms": 7.0, "type": "llm.thought", "text": "hm"}\n']
    path = tmp_path / "newer.jsonl"
    path.write_bytes(lines[0] + b"".join(newer) + b"".join(lines[1:]))
    said: list[str] = []
    trace = TraceFile(path, said.append)
    assert list(trace) == read_trace(TWO_TURNS)[1]
    assert list(trace) == read_trace(TWO_TURNS)[1]  # read again: said once
    assert said == [f"{path}: skipped 3 event(s) of types this playground does not know (call.ring x2, "
                    f"llm.thought x1): written by a newer playground?"]
    with pytest.raises(TraceError, match=r"skipped 3 event\(s\)"):
        read_trace(path)


@pytest.mark.parametrize("line, complaint", [
    (b'{"turn": 1, "t_ms": 5.0, "type": "llm.token", "i": 0}', r"Object missing required field `text`"),
    (b'{"turn": 1, "t_ms": 5.0, "type": "chunk", "index": "one"}', r"Expected `int`, got `str` - at `\$.index`"),
    (b'{"turn": 1, "t_ms": 5.0, "type": "session", "version": 1}', r"not a trace event"),
    (b'["not", "an", "event"]', r"not a trace event"),
    (b'{"turn": 1, "t_ms": 5.0, "type": "llm.token", "i": 0, "text": "\xff"}', r"not UTF-8 text \(byte 0xff"),
])
def test_an_event_line_that_is_not_its_declared_type_names_the_line(tmp_path, line, complaint):
    lines = lines_of(TWO_TURNS)
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"".join(lines[:3]) + line + b"\n" + b"".join(lines[3:]))
    with pytest.raises(TraceError, match=rf"^{path}:4: .*{complaint}"):
        read_trace(path, warn=lambda _: None)  # not skipped, even with someone to tell


def test_commands_say_what_they_cannot_read_in_one_line(tmp_path, monkeypatch):
    binary = tmp_path / "audio.jsonl"
    binary.write_bytes(b"\x00\x01RIFF\xff")
    header = json.loads(lines_of(TWO_TURNS)[0])
    newer = tmp_path / "newer.jsonl"
    newer.write_text(json.dumps({**header, "version": 2}) + "\n")
    for argv, complaint in (
            (["export", str(binary), "-f", "csv", "-o", str(tmp_path / "out.csv")], f"{binary}:1: not UTF-8 text"),
            (["export", str(tmp_path), "-f", "csv"], f"{tmp_path}: a folder, not a trace file"),
            (["replay", str(newer), "--no-audio"], f"{newer}: trace version 2, this playground reads version 1"),
            (["compare", str(binary)], f"{binary}:1: not UTF-8 text"),
            (["view", str(newer)], f"{newer}: trace version 2")):
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(cli, "Console", lambda: Console(out, err))
        assert main(argv) == 1, argv
        out, err = out.getvalue(), err.getvalue()
        assert out == "" and err.count("\n") == 1 and err.startswith(f"error: {complaint}"), (argv, err)
        assert "Traceback" not in err
