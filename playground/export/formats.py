"""Every export format behind one call, shared by `playground export` and the TUI.

    export("chrome", "turns.json", header, events)
    export_all("exports/", "session-1", header, events, progress=report)

`events` is read once to plan the session (`playground.export.layout`: where each turn goes,
the secrets to scrub), then once per format, each turn laid out as its last event is read: a
long session is never held whole, neither its events (given a `TraceFile`, they are read
from disk on each pass) nor what is written of them. Everything written is scrubbed of
secrets (`playground.core.scrub`) and every file is written atomically. `progress(stage,
fraction)` is called as the work goes (from the calling thread: a UI running this in a
worker thread hands it over to its own loop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playground.core.events import TraceEvent
from playground.core.progress import Progress
from playground.diagnosis.session import Diagnoser
from playground.export import chrome, otel, tables
from playground.export.jsonl import write_trace_jsonl
from playground.export.layout import Mark, TurnLayout, laid_out, plan_session, runs


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str  # appended to a file stem by export_all
    description: str


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("jsonl", ".jsonl", "the native trace (JSON Lines, versioned; `playground view` and replay read it)"),
    ExportFormat("chrome", ".chrome.json", "Chrome Trace Event JSON for ui.perfetto.dev and chrome://tracing"),
    ExportFormat("otel", ".otlp.json", "OpenTelemetry spans as OTLP/JSON (and to a collector with an endpoint)"),
    ExportFormat("csv", ".csv", "per-turn metrics, breakdown stages and findings, one row per turn"),
    ExportFormat("markdown", ".md", "p50/p90/p99 and budget misses per metric, where the wait went, for a pull request"),
)}


class ExportJob:
    """One trace on its way out: planned once, then laid out again by each format as it writes.

    `events` is read once per format and once more to plan: a list, or a `TraceFile`."""

    def __init__(self, header: dict[str, Any], events: Iterable[TraceEvent], progress: Progress | None = None,
                 otlp_endpoint: str | None = None) -> None:
        if iter(events) is events:
            raise TypeError("an export reads the events more than once: give a list or a TraceFile, not an iterator")
        self.source_header = header
        self.events = events
        self.progress = progress
        self.otlp_endpoint = otlp_endpoint
        self.plan = plan_session(header, events)
        self._diagnoser: Diagnoser | None = None

    @property
    def header(self) -> dict[str, Any]:
        """The session header, scrubbed."""
        return self.plan.header

    def layouts(self, stage: str = "laying out turns") -> Iterator[TurnLayout | Mark]:
        """The session laid out anew: its turns, and its own events as marks, in trace order;
        progress is reported as `stage`."""
        return laid_out(self.plan, self.events, self.progress, stage)

    @property
    def diagnoser(self) -> Diagnoser:
        """The session's turns learned, one more pass over the events, so that the CSV and Markdown
        tables diagnose each turn (its breakdown and findings) as they lay it out."""
        if self._diagnoser is None:
            diagnoser = Diagnoser(self.header, self.plan.budgets, self.plan.session_events)
            for run in runs(self.plan, self.events):
                if isinstance(run, list):
                    diagnoser.add(run)
            self._diagnoser = diagnoser
        return self._diagnoser

    def report(self, stage: str, fraction: float) -> None:
        if self.progress is not None:
            self.progress(stage, fraction)


def _jsonl(path: Path, job: ExportJob) -> None:
    write_trace_jsonl(path, job.source_header, job.events)


def _chrome(path: Path, job: ExportJob) -> None:
    chrome.write_chrome(path, job.plan, job.layouts("chrome: spans"))


def _otel(path: Path, job: ExportJob) -> None:
    otel.write_otel(path, job.plan, job.layouts("otel: spans"), job.otlp_endpoint, job.progress)


def _csv(path: Path, job: ExportJob) -> None:
    tables.write_csv(path, job.layouts(), job.diagnoser)


def _markdown(path: Path, job: ExportJob) -> None:
    tables.write_markdown(path, job.plan, job.layouts(), job.diagnoser)


_WRITERS: dict[str, Callable[[Path, ExportJob], None]] = {
    "jsonl": _jsonl, "chrome": _chrome, "otel": _otel, "csv": _csv, "markdown": _markdown}


def _check(format_name: str) -> None:
    if format_name not in FORMATS:
        raise ValueError(f"unknown export format {format_name!r} (known: {', '.join(FORMATS)})")


def write(format_name: str, path: str | Path, job: ExportJob) -> Path:
    """Writes one format of a prepared job to `path`."""
    _check(format_name)
    path = Path(path)
    job.report(f"{format_name}: {path.name}", 0.0)
    _WRITERS[format_name](path, job)
    job.report(f"{format_name}: {path.name}", 1.0)
    return path


def export(format_name: str, path: str | Path, header: dict[str, Any], events: Iterable[TraceEvent],
           progress: Progress | None = None, *, otlp_endpoint: str | None = None) -> Path:
    """Writes the trace in one format to `path` (and sends it to a collector for otel with an endpoint)."""
    _check(format_name)
    return write(format_name, path, ExportJob(header, events, progress, otlp_endpoint))


def export_all(folder: str | Path, stem: str, header: dict[str, Any], events: Iterable[TraceEvent],
               formats: Sequence[str] = tuple(FORMATS), progress: Progress | None = None, *,
               otlp_endpoint: str | None = None) -> list[Path]:
    """Writes `folder/stem<suffix>` for each format (the folder is created); returns the paths written."""
    for name in formats:
        _check(name)
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create the export folder {folder}: {exc.strerror or exc}") from None
    job = ExportJob(header, events, progress, otlp_endpoint)
    return [write(name, folder / f"{stem}{FORMATS[name].suffix}", job) for name in formats]
