"""The CLI's console: where `playground run` and every subcommand write, on rich.

Rows go to stdout, progress and warnings to stderr. Colour (rich styles) only on a terminal
and never with NO_COLOR set; rows are never wrapped or cut, so piped output keeps its
columns. Text that came from a user, a model or a trace is shown, never obeyed: control
characters and escape sequences are written visibly escaped (`core.formatting.visible`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console as RichConsole
from rich.text import Text

from playground.core import events as ev
from playground.core.formatting import format_ms, visible
from playground.core.metrics import METRIC_LABELS, TurnMetrics, budget_misses, percentile
from playground.engine.session import InputRefused, Session

TABLE_METRICS = ("llm_ttft", "ttfs", "ttft_tts", "ttfa", "first_play", "llm_total", "tts_total", "e2e_total")
# Spoken turns (--mic) also show how long end of speech took to detect and transcribe, and what the caller waited.
VOICE_TABLE_METRICS = ("vad_end", "stt", *TABLE_METRICS, "user_latency")
USER_TEXT_SHOWN = 200  # characters of a typed turn echoed on its `you:` line
EXIT_FAILED_TURNS = 1  # `run` and `replay` when a turn failed
FAILED_TURNS_SHOWN = 3

Printable = str | Text  # a Text is built by `Console.red` or `styled`: its parts are already escaped


def styled(*parts: str | tuple[str, str]) -> Text:
    """One line from plain parts and (text, rich style) parts, each escaped like any printed text."""
    return Text.assemble(*((visible(p[0]), p[1]) if isinstance(p, tuple) else visible(p) for p in parts))


def _rich_console(stream: TextIO) -> RichConsole:
    color = stream.isatty() and "NO_COLOR" not in os.environ
    return RichConsole(file=stream, force_terminal=color, color_system="standard" if color else None,
                       soft_wrap=True, markup=False, highlight=False, emoji=False)


class Console:
    """Where the CLI writes: rows to stdout, progress and warnings to stderr."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.out = out
        self.err = err
        self._out = _rich_console(out)
        self._err = _rich_console(err)
        self._noted: set[str] = set()

    @staticmethod
    def red(text: str) -> Text:
        return styled((text, "red"))

    def print(self, text: Printable = "") -> None:
        self._out.print(styled(text) if isinstance(text, str) else text)

    def note(self, text: Printable) -> None:
        self._err.print(styled(text) if isinstance(text, str) else text)

    def note_once(self, text: str) -> None:
        """`note`, unless the same text was noted already (a warning each new session repeats)."""
        if text not in self._noted:
            self._noted.add(text)
            self.note(text)

    def write_data(self, text: str) -> None:
        """An export's content on stdout: verbatim into a pipe or file, shown escaped on a terminal."""
        self.out.write(visible(text) if self.out.isatty() else text)
        self.out.flush()

    def progress(self, message: str, fraction: float | None = None) -> None:
        """A `Progress` callback: "… message" on stderr."""
        self.note(f"… {message}" + ("" if fraction is None else f" {fraction:.0%}"))


def _cell(value: float | None, missed: bool) -> str:
    return format_ms(value) + ("!" if missed else "")


def _width(key: str) -> int:
    return max(10, len(METRIC_LABELS[key]))


def table_header(keys: Sequence[str] = TABLE_METRICS) -> str:
    return "turn " + " ".join(f"{METRIC_LABELS[k]:>{_width(k)}}" for k in keys) + "  chunks  tts"


def table_row(m: TurnMetrics, budgets: dict[str, float], keys: Sequence[str] = TABLE_METRICS) -> Text:
    """A turn's row under `table_header`: metrics over budget and a faulty TTS path in red."""
    misses = budget_misses(m, budgets)
    parts: list[str | tuple[str, str]] = [f"{m.turn:>4}"]
    for key in keys:
        cell = f"{_cell(m.value(key), key in misses):>{_width(key)}}"
        parts += [" ", (cell, "red") if key in misses else cell]
    path = m.tts_path or "-"
    if m.tts_path_reason:
        path += f" ({m.tts_path_reason})"
    parts += [f"  {f'{m.spoken_chunks}/{m.chunks}':>6}  ", (path, "red") if m.tts_path_fault else path]
    if m.status != "ok":
        parts += ["  ", (m.status.upper(), "red")]
    return styled(*parts)


def summary_rows(metrics: Sequence[TurnMetrics], keys: Sequence[str] = TABLE_METRICS) -> list[str]:
    rows = []
    for p in (50, 90):
        values = [percentile([v for m in metrics if (v := m.value(k)) is not None], p) for k in keys]
        rows.append(f" p{p:<3}" + " ".join(f"{format_ms(v):>{_width(k)}}" for k, v in zip(keys, values)))
    return rows


def budget_line(m: TurnMetrics, budgets: dict[str, float]) -> str | None:
    misses = budget_misses(m, budgets)
    if not misses:
        return None
    parts = [f"{METRIC_LABELS.get(k, k)} {v:.0f} > {limit:.0f} ms" for k, (v, limit) in misses.items()]
    return "      over budget: " + ", ".join(parts)


class TurnPrinter:
    """Runs typed turns and prints what a user needs meanwhile: the reply, fallbacks, errors, then the row."""

    def __init__(self, session: Session, console: Console, keys: Sequence[str] = TABLE_METRICS) -> None:
        self.session = session
        self.console = console
        self.keys = keys
        self.metrics: list[TurnMetrics] = []
        self._header_printed = False
        session.trace.subscribe(self._on_event)

    async def run_turn(self, text: str) -> None:
        """One typed turn, echoed and then tabled; an input the session refuses is one line on stderr."""
        try:
            task = self.session.start_turn(text)
        except InputRefused as exc:
            self.console.note(f"refused: {exc}")
            return
        shown = text.strip()
        self.console.print(f"you: {shown[:USER_TEXT_SHOWN]}{'…' if len(shown) > USER_TEXT_SHOWN else ''}")
        self.turn_done(await task)

    def _on_event(self, event: ev.TraceEvent) -> None:
        c = self.console
        if isinstance(event, ev.LlmDone):
            c.print(f"agent: {event.text.strip()}")
        elif isinstance(event, ev.TtsSession) and event.action in ("fallback", "reconnect", "warning"):
            detail = event.reason or event.message or "no reason given"
            c.note(c.red(f"tts {event.provider}: {event.action} ({detail})"))
        elif isinstance(event, ev.Error):
            c.note(c.red(f"error in turn {event.turn}: {event.where}: {event.message}"))
        elif isinstance(event, ev.TurnCancelled):
            c.note(f"turn {event.turn} cancelled after {event.t_ms:.0f} ms ({event.reason}; "
                   f"stopped in {event.stop_ms:.1f} ms)")

    def turn_done(self, m: TurnMetrics) -> None:
        budgets = self.session.preset.budgets
        if not self._header_printed:
            self.console.print(table_header(self.keys))
            self._header_printed = True
        self.console.print(table_row(m, budgets, self.keys))
        line = budget_line(m, budgets)
        if line:
            self.console.print(self.console.red(line))
        self.metrics.append(m)

    def finish(self) -> int:
        """The percentile rows, and a line naming the failed turns; the exit status: 1 when a turn failed."""
        if len(self.metrics) > 1:
            for row in summary_rows(self.metrics, self.keys):
                self.console.print(row)
        line = failure_line(self.metrics)
        if line is None:
            return 0
        self.console.note(self.console.red(line))
        return EXIT_FAILED_TURNS


def failure_line(metrics: Sequence[TurnMetrics]) -> str | None:
    """"2 of 3 turns failed: turn 1 (tts: ...), turn 2 (...)", or None when none did (a cancel is no failure)."""
    failed = [m for m in metrics if m.status == "error"]
    if not failed:
        return None
    shown = ", ".join(f"turn {m.turn} ({m.errors[0] if m.errors else 'error'})" for m in failed[:FAILED_TURNS_SHOWN])
    more = f", and {len(failed) - FAILED_TURNS_SHOWN} more" if len(failed) > FAILED_TURNS_SHOWN else ""
    return f"{len(failed)} of {len(metrics)} turns failed: {shown}{more}"
