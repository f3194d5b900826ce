"""Reading a JSONL trace back (the writer is `playground.export.jsonl`, tested in tests/export)."""

import pytest

from playground.core.tracefile import read_trace


def test_reading_a_broken_trace_names_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"type": "session", "version": 1}\n{"turn": 1, "t_ms": 1, "type": "llm.token", "i": 0, "text": "Hi"}\n'
                    'not json\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:3: not a trace event"):
        read_trace(path)
