"""Every export format behind one call, shared by `playground export` and the TUI.

    export("chrome", "turns.json", header, events)
    export_all("exports/", "session-1", header, events, progress=report)

The header and events are scrubbed of secrets first (`playground.core.scrub`) and laid
out once (`playground.export.timeline`) for all the formats written from them. Every file
is written atomically. `progress(stage, fraction)` is called as the work goes (from the
calling thread: a UI running this in a worker thread hands it over to its own loop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playground.core.events import TraceEvent
from playground.core.progress import Progress
from playground.core.scrub import scrub
from playground.diagnosis.session import SessionDiagnosis, diagnose_trace
from playground.export import chrome, otel, tables
from playground.export.jsonl import write_trace_jsonl
from playground.export.timeline import SessionLayout, budgets_of, layout


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
    """One trace on its way out: scrubbed, laid out on first use, shared by every format."""

    def __init__(self, header: dict[str, Any], events: Iterable[TraceEvent], progress: Progress | None = None,
                 otlp_endpoint: str | None = None) -> None:
        self.header, self.events = scrub(header, list(events))
        self.progress = progress
        self.otlp_endpoint = otlp_endpoint
        self._layout: SessionLayout | None = None
        self._diagnosis: SessionDiagnosis | None = None

    @property
    def layout(self) -> SessionLayout:
        if self._layout is None:
            self._layout = layout(self.header, self.events, self.progress)
        return self._layout

    @property
    def diagnosis(self) -> SessionDiagnosis:
        """Every turn's breakdown and findings (the CSV and Markdown tables show them)."""
        if self._diagnosis is None:
            self._diagnosis = diagnose_trace(self.header, self.events, budgets_of(self.header))
        return self._diagnosis

    def report(self, stage: str, fraction: float) -> None:
        if self.progress is not None:
            self.progress(stage, fraction)


def _jsonl(path: Path, job: ExportJob) -> None:
    write_trace_jsonl(path, job.header, job.events)


def _chrome(path: Path, job: ExportJob) -> None:
    chrome.write_chrome(path, job.header, job.layout, job.progress)


def _otel(path: Path, job: ExportJob) -> None:
    spans = otel.build_spans(job.header, job.layout, job.progress)
    otel.write_otlp_json(path, spans)
    if job.otlp_endpoint:
        otel.send_otlp(job.otlp_endpoint, spans, job.progress)


def _csv(path: Path, job: ExportJob) -> None:
    tables.write_csv(path, job.header, job.layout, job.diagnosis)


def _markdown(path: Path, job: ExportJob) -> None:
    tables.write_markdown(path, job.header, job.layout, job.diagnosis)


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
