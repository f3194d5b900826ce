"""The CLI's console: colour only on a terminal and never with NO_COLOR, the same columns
either way, and outside text shown escaped."""

from __future__ import annotations

import io

import pytest

from playground.console import Console, table_header, table_row
from playground.core.metrics import TurnMetrics

RED = "\x1b[31m"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def over_budget_turn() -> TurnMetrics:
    return TurnMetrics(turn=3, ttfs=612.4, ttfa=2000.0, chunks=4, spoken_chunks=3, status="error",
                       tts_path="persistent", tts_path_reason="ws\x1b[2J")


def printed(stream: io.StringIO) -> str:
    console = Console(stream, stream)
    console.print(table_header())
    console.print(table_row(over_budget_turn(), {"ttfs": 500.0, "ttfa": 1500.0}))
    console.note(console.red("error: boom\x07"))
    return stream.getvalue()


def test_colour_on_a_terminal_only_and_the_same_columns(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    plain = printed(io.StringIO())
    coloured = printed(Terminal())
    assert RED not in plain and RED in coloured
    assert coloured.replace(RED, "").replace("\x1b[0m", "") == plain
    header, row, error = plain.splitlines()
    assert row.index("612!") + len("612!") == header.index("TTFS") + len("TTFS")  # right-aligned under its label
    assert row.endswith("3/4  persistent (ws\\x1b[2J)  ERROR") and error == "error: boom\\x07"


@pytest.mark.parametrize("value", ["1", ""])
def test_no_color_turns_colour_off_on_a_terminal(monkeypatch, value):
    monkeypatch.setenv("NO_COLOR", value)
    assert "\x1b" not in printed(Terminal())


def test_an_export_on_stdout_is_verbatim_into_a_pipe_and_escaped_on_a_terminal():
    pipe, terminal = io.StringIO(), Terminal()
    Console(pipe, pipe).write_data("a,b\x1b[2J\n")
    Console(terminal, terminal).write_data("a,b\x1b[2J\n")
    assert pipe.getvalue() == "a,b\x1b[2J\n" and terminal.getvalue() == "a,b\\x1b[2J\n"
