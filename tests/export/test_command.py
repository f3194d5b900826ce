"""`playground export` as a user runs it: a real process, and the command's own paths in-process."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from playground.cli import build_parser
from playground.console import Console
from playground.commands import export as export_command
from playground.core.tracefile import read_trace
from playground.export.formats import FORMATS
from playground.export.jsonl import write_trace_jsonl
from tests.export.conftest import TWO_TURNS, long_session
from tests.export.test_otel import Collector
from tests.export.trace_event_format import validate


def playground(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "playground.cli", *args], check=False, capture_output=True,
                          text=True, timeout=timeout)


def run_export(*argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["export", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = export_command.COMMAND.run(args, Console(out, err))
    return status, out.getvalue(), err.getvalue()


def test_all_formats_into_a_folder_and_to_a_collector(tmp_path):
    with Collector() as collector:
        result = playground("export", str(TWO_TURNS), "--format", "all", "-o", str(tmp_path / "out"),
                            "--otlp-endpoint", collector.url)
    assert result.returncode == 0, result.stderr
    written = result.stdout.split()
    assert written == [str(tmp_path / "out" / f"two-turns{f.suffix}") for f in FORMATS.values()]
    validate((tmp_path / "out" / "two-turns.chrome.json").read_bytes())
    header, events = read_trace(tmp_path / "out" / "two-turns.jsonl")
    assert (header, events) == read_trace(TWO_TURNS)  # nothing secret in it: the same trace
    assert collector.spans() and f"spans sent to {collector.url}" in result.stderr


def test_one_format_beside_the_trace_or_to_stdout(tmp_path):
    trace = tmp_path / "turns.jsonl"
    trace.write_bytes(TWO_TURNS.read_bytes())
    status, out, _ = run_export(str(trace), "-f", "chrome")
    assert status == 0 and out.strip() == str(tmp_path / "turns.chrome.json")
    status, out, _ = run_export(str(trace), "-f", "csv", "-o", str(tmp_path / "metrics.csv"))
    assert status == 0 and (tmp_path / "metrics.csv").read_text().startswith("turn,status,strategy")
    status, out, _ = run_export(str(trace), "-f", "markdown", "-o", "-")
    assert status == 0 and "| TTFS | 2 |" in out
    # The native format beside its source would be the source itself: said, not overwritten.
    before = trace.read_bytes()
    status, out, err = run_export(str(trace), "-f", "jsonl")
    assert status == 0 and out == "" and "is the trace itself" in err and trace.read_bytes() == before


@pytest.mark.parametrize("argv, status, message", [
    (["missing.jsonl", "-f", "csv"], 1, "error: missing.jsonl: No such file or directory"),
    ([str(TWO_TURNS), "-f", "csv", "--otlp-endpoint", "http://127.0.0.1:4318"], 2, "use it with --format otel"),
    ([str(TWO_TURNS), "-o", "-"], 2, "choose it with --format"),
    ([str(TWO_TURNS), "-f", "otel", "--otlp-endpoint", "localhost:4318"], 1, "expected an http(s) URL"),
])
def test_errors_are_one_line(tmp_path, argv, status, message):
    argv = [a if a != "missing.jsonl" else str(tmp_path / a) for a in argv]
    got, out, err = run_export(*argv, *([] if "-o" in argv else ["-o", str(tmp_path)]))
    assert got == status and out == ""
    assert err.count("\n") == 1 and message in err.replace(str(tmp_path) + "/", "")


def test_broken_trace_names_its_line(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text(TWO_TURNS.read_text().splitlines()[0] + "\n{not json\n")
    status, _, err = run_export(str(broken), "-f", "csv")
    assert status == 1 and err.startswith(f"error: {broken}:2: not a trace event")


def test_long_export_shows_progress(tmp_path, monkeypatch):
    header, events = long_session()
    trace = write_trace_jsonl(tmp_path / "long.jsonl", header, events)
    monkeypatch.setattr(export_command, "PROGRESS_AFTER_S", 0.0)
    status, out, err = run_export(str(trace), "-f", "all", "-o", str(tmp_path / "out"))
    assert status == 0 and len(out.split()) == len(FORMATS)
    stages = err.splitlines()
    assert "exporting: laying out turns" in stages and "exporting: chrome: long.chrome.json" in stages
    assert "exporting: otel: spans" in stages
    assert json.loads((tmp_path / "out" / "long.otlp.json").read_bytes())["resourceSpans"]
