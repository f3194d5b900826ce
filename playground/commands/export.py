"""`playground export TRACE`: a recorded trace in the formats other tools read.

    playground export turns.jsonl --format chrome              # turns.chrome.json, for ui.perfetto.dev
    playground export turns.jsonl --format all -o exports/     # every format into exports/
    playground export turns.jsonl --format otel --otlp-endpoint http://127.0.0.1:4318
    playground export turns.jsonl --format markdown -o -       # the summary table on stdout

Secrets are scrubbed from every format; each file is written atomically. The paths written
go to stdout, progress and errors to stderr.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from playground.commands import Command
from playground.core.formatting import visible
from playground.core.tracefile import TraceFile
from playground.export.formats import FORMATS, ExportJob, write

if TYPE_CHECKING:
    from playground.console import Console

ALL = "all"
# Progress is shown once an export has taken this long: short ones stay quiet.
PROGRESS_AFTER_S = 0.3


class ProgressLine:
    """Progress on stderr: one line redrawn in place on a terminal, a line per stage otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.err = console.err
        self.tty = self.err.isatty()
        self.started = time.monotonic()
        self.stage = ""
        self.drawn = False

    def __call__(self, stage: str, fraction: float | None = None) -> None:
        if time.monotonic() - self.started < PROGRESS_AFTER_S:
            return
        if self.tty:
            done = "" if fraction is None else f" {fraction:4.0%}"
            self.err.write(f"\r\033[Kexporting: {visible(stage)}{done}")  # a stage names a file: shown escaped
            self.err.flush()
            self.drawn = True
        elif stage != self.stage:
            self.console.note(f"exporting: {stage}")
        self.stage = stage

    def done(self) -> None:
        if self.drawn:
            self.err.write("\r\033[K")
            self.err.flush()


def targets(trace: Path, format_name: str, output: str | None) -> list[tuple[str, Path]]:
    """(format, path) to write: -o is a file for one format, a folder for `all` or when it is one."""
    names = list(FORMATS) if format_name == ALL else [format_name]
    stem = trace.name.removesuffix(".jsonl")
    out = Path(output) if output else trace.parent
    if format_name != ALL and output and not out.is_dir() and not output.endswith(("/", "\\")):
        return [(format_name, out)]
    return [(name, out / f"{stem}{FORMATS[name].suffix}") for name in names]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace_file", metavar="TRACE", help="a JSONL trace (run --trace, the TUI's save, bench)")
    parser.add_argument("--format", "-f", default=ALL, choices=[*FORMATS, ALL],
                        help="; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()) + "; all: every one "
                             "(default: all)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="the file to write (one format; - for stdout) or the folder (all); default: beside TRACE, "
                             "named TRACE's stem + the format's suffix")
    parser.add_argument("--otlp-endpoint", metavar="URL",
                        help="also send the OpenTelemetry spans to this OTLP/HTTP collector "
                             "(e.g. http://127.0.0.1:4318; /v1/traces is added to a bare address)")


def run(args: argparse.Namespace, console: Console) -> int:
    trace = Path(args.trace_file)
    if args.otlp_endpoint and args.format not in ("otel", ALL):
        console.note(f"error: --otlp-endpoint sends OpenTelemetry spans: use it with --format otel or all, "
                     f"not {args.format}")
        return 2
    to_stdout = args.output == "-"
    if to_stdout and args.format == ALL:
        console.note("error: -o - writes one format to stdout: choose it with --format")
        return 2
    progress = ProgressLine(console)
    try:
        # read from disk on each pass, never held whole
        source = TraceFile(trace, console.note)
        job = ExportJob(source.header, source, progress, args.otlp_endpoint)
        if to_stdout:
            return _to_stdout(args.format, job, console)
        planned = targets(trace, args.format, args.output)
        planned[0][1].parent.mkdir(parents=True, exist_ok=True)
        for name, path in planned:
            if path.resolve() == trace.resolve():
                console.note(f"{name}: not written, {path} is the trace itself (give -o for a scrubbed copy)")
                continue
            written = write(name, path, job)
            progress.done()
            console.print(str(written))
    except (OSError, ValueError, RuntimeError) as exc:  # each names its file (or the collector)
        progress.done()
        filename, strerror = getattr(exc, "filename", None), getattr(exc, "strerror", None)
        console.note(f"error: {filename}: {strerror}" if filename and strerror else f"error: {exc}")
        return 1
    if args.otlp_endpoint:
        console.note(f"spans sent to {args.otlp_endpoint}")
    return 0


def _to_stdout(format_name: str, job: ExportJob, console: Console) -> int:
    """Writes one format to stdout (through a temporary file: every writer writes files)."""
    with tempfile.TemporaryDirectory() as folder:
        path = write(format_name, Path(folder) / f"export{FORMATS[format_name].suffix}", job)
        console.write_data(path.read_text(encoding="utf-8"))
    return 0


COMMAND = Command(
    name="export",
    help="write a trace as Chrome/Perfetto JSON, OpenTelemetry (file or collector), CSV, Markdown or JSONL",
    add_arguments=add_arguments,
    run=run,
)
