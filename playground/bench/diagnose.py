"""`playground diagnose` on a 200-turn trace, target under 2 s (issue 12), rerunnable by anyone.

    python -m playground.bench.diagnose [--turns 200] [--runs 5] [--json PATH]

The trace is built by the export benchmark's `synthetic_session` from the recorded turns of
playground/bench/data/session.jsonl (five turns, one cancelled mid-playback) and the shipped
seed-turn4 (a run-on over a REST fallback, so every sixth turn runs compare's five strategies
and the oracle bound), each turn on its own time scale. Each run is the whole command as a
user runs it, reading the file included, the report written to a file: Markdown, then JSON.
Prints the median, min and max of `--runs`; exits 1 if a median misses the target.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from msgspec import structs

from playground.bench.export import TEMPLATE, synthetic_session
from playground.bench.harness import argument_parser, markdown_table, report
from playground.bench.trace_tools import playground
from playground.core.metrics import percentile
from playground.core.tracefile import read_trace
from playground.data import find
from playground.export.jsonl import write_trace_jsonl

TARGET_S = 2.0


def long_trace(path: Path, turns: int) -> tuple[int, int]:
    """Writes a `turns`-turn trace; returns (events, turns with findings the seed's way)."""
    header, events = read_trace(TEMPLATE)
    _, seed = read_trace(find("trace", "seed-turn4"))
    run_on = max(e.turn for e in events) + 1
    events = events + [structs.replace(e, turn=run_on) for e in seed]
    header, long_events = synthetic_session(header, events, turns)
    write_trace_jsonl(path, header, long_events)
    return len(long_events), turns // run_on


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("diagnose", __doc__)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    rows, numbers, missed = [], {}, []
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "long.jsonl"
        events, seed_turns = long_trace(trace, args.turns)
        for fmt in ("md", "json"):
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                assert playground(["diagnose", str(trace), "--format", fmt, "-o", str(Path(folder) / f"report.{fmt}")]) == 0
                times.append(time.perf_counter() - started)
            median = percentile(times, 50)
            rows.append([fmt, f"{median:.3f}", f"{min(times):.3f}", f"{max(times):.3f}"])
            numbers[fmt] = {"median_s": median, "min_s": min(times), "max_s": max(times)}
            if median >= TARGET_S:
                missed.append(fmt)
    lines = [f"## Diagnose: a {args.turns}-turn trace, {events:,} events ({seed_turns} of them the seed's run-on "
             f"over REST); {args.runs} runs each, target < {TARGET_S:.0f} s", ""]
    lines += markdown_table(["format", "median s", "min s", "max s"], rows)
    if missed:
        lines += ["", f"over the {TARGET_S:.0f} s target: {', '.join(missed)}"]
    report("diagnose", args, lines, {"turns": args.turns, "events": events, "formats": numbers, "over_target": missed})
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
