"""Long-trace export benchmark: a 2,000-turn trace on disk exported to every format, each by
`playground export` in a process of its own, with its wall time and peak memory (RSS).

    python -m playground.bench.export_long                  # 2,000 turns, every format, then all at once
    python -m playground.bench.export_long --turns 500 --json export_long.json

The trace is built by `synthetic_session` (playground.bench.export) from a real recorded session
(playground/bench/data/session.jsonl) and written as `run --trace` writes one. An export reads
it a turn at a time and writes each format as it goes, so its memory should stay near what
the process needs to start (the first row, `playground --help`), whatever the trace's length:
nothing is held whole, let alone twice. Exits 1 when an export fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playground.bench.export import TEMPLATE, synthetic_session
from playground.bench.harness import argument_parser, markdown_table, note, report
from playground.core.tracefile import read_trace
from playground.export.formats import FORMATS
from playground.export.jsonl import write_trace_jsonl


def measured(command: list[str], log: Path) -> tuple[int, float, float]:
    """(exit status, wall seconds, peak RSS in MB) of `command` run in a process of its own."""
    with log.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, wall, usage.ru_maxrss / 1024  # Linux reports kB


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("export_long", __doc__)
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="the recorded session the turns come from")
    args = parser.parse_args(argv)
    header, recorded = read_trace(args.template)
    header, events = synthetic_session(header, recorded, args.turns)
    playground = [sys.executable, "-m", "playground.cli"]
    rows, numbers, failed = [], {}, []
    with tempfile.TemporaryDirectory() as folder:
        trace = write_trace_jsonl(Path(folder) / "long.jsonl", header, events)
        size_mb = trace.stat().st_size / 1e6
        del events, recorded  # the benchmark's own copy is not what is measured
        runs = [("startup (`playground --help`)", [*playground, "--help"])]
        runs += [(name, [*playground, "export", str(trace), "-f", name, "-o", str(Path(folder) / f"out{spec.suffix}")])
                 for name, spec in FORMATS.items()]
        runs.append(("all five", [*playground, "export", str(trace), "-f", "all", "-o", str(Path(folder) / "all")]))
        for label, command in runs:
            note(f"… {label}")
            status, wall, rss = measured(command, Path(folder) / "stderr.txt")
            if status:
                failed.append(label)
                note(f"{label} exited {status}: {(Path(folder) / 'stderr.txt').read_text(errors='replace')[-500:]}")
            rows.append([label, f"{wall:.2f}", f"{rss:.0f}"])
            numbers[label] = {"wall_s": round(wall, 3), "peak_rss_mb": round(rss, 1), "exit": status}
    lines = [f"## Export of a long trace: {args.turns:,} turns, {size_mb:.0f} MB of JSONL (from {args.template.name}); "
             f"one process per export", ""]
    lines += markdown_table(["export", "wall s", "peak RSS MB"], rows)
    if failed:
        lines += ["", f"failed: {', '.join(failed)}"]
    report("export_long", args, lines, {"turns": args.turns, "trace_mb": round(size_mb, 1), "runs": numbers,
                                        "failed": failed})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
