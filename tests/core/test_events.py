"""The declared event types: each one's line, and reading a JSONL trace back (the writer is
`playground.export.jsonl`, tested in tests/export; the reader in depth in test_tracefile.py)."""

import json

import msgspec
import pytest

from playground.core import events as ev
from playground.core.tracefile import decode_event, encode_event, read_trace
from tests.events import event


def test_reading_a_broken_trace_names_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"type": "session", "version": 1}\n{"turn": 1, "t_ms": 1, "type": "llm.token", "i": 0, "text": "Hi"}\n'
                    'not json\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:3: not a trace event"):
        read_trace(path)


@pytest.mark.parametrize("kind", list(ev.EVENT_TYPES.values()), ids=list(ev.EVENT_TYPES))
def test_every_declared_event_is_written_as_trace_lines_are_and_reads_back(kind):
    # The engine's, the phone leg's (call.*, phone.*): one declaration each, all read by any reader.
    written = event(kind, 3, 12.5)
    line = encode_event(written)
    assert line.startswith(b'{"turn": 3, "t_ms": 12.5, "type": "%s"' % kind.type.encode())
    assert decode_event(line) == written
    assert json.loads(line)["type"] == kind.type


def test_a_field_that_is_not_declared_fails_where_the_event_is_made():
    clock = ev.TurnClock(ev.Trace(), 1, 0.0)
    with pytest.raises(TypeError, match="Unexpected keyword argument 'txt'"):
        clock.emit(ev.LlmToken, 5.0, i=0, txt="Hi")
    with pytest.raises(TypeError, match="Missing required argument 'reason'"):
        clock.emit(ev.PhoneClear, 5.0)
    # a field named like emit's own parameters is still a field
    error = clock.emit(ev.CallError, 5.0, kind="no_answer", message="no reply in 8 s", count=2)
    assert (error.kind, error.count) == ("no_answer", 2)


def test_a_line_whose_field_has_the_wrong_type_is_refused():
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int`, got `str` - at `\$.chunk`"):
        decode_event(b'{"turn": 1, "t_ms": 2.0, "type": "tts.send", "chunk": "0", "chars": 5}')
