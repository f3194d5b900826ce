"""What every benchmark runs on: its command line, the ABBA order, percentiles of turn metrics,
the Markdown report and the JSON results.

A benchmark module builds its parser with `argument_parser` (which adds `--json PATH`), prints
its report as Markdown (`markdown_table` for the tables) and hands its numbers to `report`,
which prints the Markdown and, with --json, writes one JSON object a script can compare
between runs:

    {"benchmark": "pipeline", "playground": "0.1.0", "started_at": "...", "finished_at": "...",
     "machine": {"cpus": 2, "platform": "...", "python": "3.11.9"}, "arguments": {...},
     "results": {...}}

Progress goes to stderr, the report to stdout, so `make bench > bench.md` keeps only the report.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from playground import __version__
from playground.core.metrics import TurnMetrics, percentile

if TYPE_CHECKING:
    from playground.core.presets import Preset
    from playground.engine.session import Session

T = TypeVar("T")
DATA = Path(__file__).resolve().parent / "data"
_STARTED_AT = datetime.datetime.now(datetime.timezone.utc)


def argument_parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of `python -m playground.bench.<name>`, with the options every benchmark has."""
    parser = argparse.ArgumentParser(prog=f"python -m playground.bench.{name}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the numbers to this JSON file, to compare runs with a script")
    return parser


def abba(index: int, items: Sequence[T]) -> list[T]:
    """The order of round `index`: A B, then B A, then A B ... so that, over every two rounds,
    each variant runs as often first as last and all see the same machine state."""
    return list(items) if index % 2 == 0 else list(items)[::-1]


def ok_turns(metrics: Iterable[TurnMetrics]) -> list[TurnMetrics]:
    return [m for m in metrics if m.status == "ok"]


def metric_percentile(metrics: Iterable[TurnMetrics], key: str, q: float) -> float | None:
    """Percentile `q` of metric `key` over the turns that measured it; None when none did."""
    return percentile([v for m in metrics if (v := m.value(key)) is not None], q)


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 90, 99)) -> dict[str, float | None]:
    """{"n": count, "p50": ..., ...}: how a benchmark's JSON results give a distribution."""
    return {"n": len(values), **{f"p{q:g}": percentile(values, q) for q in qs}}


def metric_percentiles(metrics: Sequence[TurnMetrics], keys: Iterable[str],
                       qs: Sequence[float] = (50, 90)) -> dict[str, dict[str, float | None]]:
    """Metric key -> its percentiles over `metrics` (JSON results of a set of turns)."""
    return {key: {f"p{q:g}": metric_percentile(metrics, key, q) for q in qs} for key in keys}


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table: the first column left-aligned, the others (numbers) right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def report(name: str, args: argparse.Namespace, lines: Sequence[str], results: Mapping[str, Any]) -> None:
    """Prints the Markdown report; with --json, also writes `results` (JSON values) to that file."""
    print("\n".join(lines), flush=True)
    if getattr(args, "json", None) is not None:
        write_results(args.json, name, args, results)
        note(f"results: {args.json}")


def write_results(path: Path, name: str, args: argparse.Namespace, results: Mapping[str, Any]) -> None:
    from playground.export.atomic import atomic_open

    document = {
        "benchmark": name,
        "playground": __version__,
        "started_at": _STARTED_AT.isoformat(timespec="seconds"),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"},
        "results": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        json.dump(document, f, indent=1, allow_nan=False)
        f.write("\n")


def read_script(name_or_path: str) -> list[str]:
    """The user lines of a conversation script (a file, or a shipped script by name), one turn each."""
    from playground.data import find

    path = find("script", name_or_path)
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    turns = [line for line in lines if line and not line.startswith("#")]
    if not turns:
        raise ValueError(f"{path}: no turns (one user line per turn; lines starting with # are comments)")
    return turns


def note(message: str) -> None:
    """Progress and warnings: stderr, so stdout holds the report alone."""
    print(message, file=sys.stderr, flush=True)


async def open_bench_session(preset: Preset, audio: str) -> Session:
    """An opened session on `preset` and the output `audio`, its loading shown on stderr."""
    from playground.engine.build import open_session

    return await open_session(preset, audio=audio, warn=note, progress=lambda message: note(f"… {message}"))
