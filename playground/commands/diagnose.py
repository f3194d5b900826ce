"""`playground diagnose TRACE`: the seed's latency analysis, written for every turn.

    playground diagnose seed-turn4
    playground diagnose turns.jsonl --turn 3 -o report.md
    playground diagnose call.jsonl --format json

Per turn: where the wait went (stages that add up to it, each with the setting that owns it)
and the findings (severity, evidence with the events it comes from, cause, setting, and a
what-if computed by compare, the oracle bound, a re-chunk or the session's own medians).
Then the session: p50/p90 of every metric and stage, and the settings that would save the
most. Reads traces written by `run`, the TUI, `replay`, `serve-agent` and `call`.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from playground.commands import Command
from playground.core.tracefile import read_trace
from playground.data import find
from playground.diagnosis.report import markdown
from playground.diagnosis.session import diagnose_trace
from playground.export.layout import budgets_of

if TYPE_CHECKING:
    from playground.console import Console


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace_file", metavar="TRACE", help="a JSONL trace, or the name of a shipped one (seed-turn4)")
    parser.add_argument("--turn", type=int, default=0, metavar="N", help="only turn N (compared with the whole session)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    parser.add_argument("--format", choices=("md", "json"), default="md", help="Markdown (default) or JSON")


def run(args: argparse.Namespace, console: Console) -> int:
    started = time.perf_counter()
    path = find("trace", args.trace_file)
    header, events = read_trace(path, console.note)
    diagnosis = diagnose_trace(header, events, budgets_of(header), only_turn=args.turn or None)
    if not diagnosis.turns:
        which = f"no turn {args.turn}" if args.turn else "no turns"
        raise ValueError(f"{path}: {which}, so there is nothing to diagnose")
    if args.format == "json":
        text = json.dumps({"trace": str(path), **diagnosis.to_json()}, indent=1, ensure_ascii=False)
    else:
        text = markdown(diagnosis, str(path))
    if args.output:
        from playground.export.atomic import atomic_open

        with atomic_open(args.output) as f:
            f.write(text + "\n")
        console.note(f"report written to {args.output}")
    else:
        console.write_data(text + "\n")
    console.note(f"diagnosed {len(diagnosis.turns)} turn(s) in {(time.perf_counter() - started) * 1000:.0f} ms")
    return 0


COMMAND = Command(name="diagnose", help="where each turn's latency went, what went wrong, and what would fix it",
                  add_arguments=add_arguments, run=run)
