"""Every benchmark in turn, each in its own process: what `make bench` runs.

    python -m playground.bench [--only pipeline,tui] [--json-dir bench-results]

Prints each benchmark's Markdown report to stdout (progress goes to stderr), with the
arguments the numbers in docs/benchmarks.md were measured with. A process each: peak memory, startup and
the benchmarks' own child processes are measured as when run alone. With --json-dir, each
writes its numbers to DIR/NAME.json. Exits 1 when a benchmark did (a target missed, a run
failed), once all have run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

# name -> the arguments the numbers in docs/benchmarks.md were measured with
BENCHMARKS: dict[str, list[str]] = {
    "pipeline": ["--overlap"],
    "chunker": ["--strategies", "adaptive,clause,sentence"],
    "tui": ["--turns", "10"],
    "soak": [],
    "voice": [],
    "tts_ws": [],
    "llm_http": [],
    "export": [],
    "export_long": [],
    "trace_tools": ["--replays", "20"],
    "diagnose": [],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", metavar="NAME,...", help=f"these benchmarks only ({', '.join(BENCHMARKS)})")
    parser.add_argument("--json-dir", type=Path, metavar="DIR", help="each benchmark's numbers to DIR/NAME.json")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(BENCHMARKS)
    if unknown := [n for n in names if n not in BENCHMARKS]:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    failed = []
    for index, name in enumerate(names):
        if index:
            print(flush=True)
        command = [sys.executable, "-m", f"playground.bench.{name}", *BENCHMARKS[name]]
        if args.json_dir is not None:
            command += ["--json", str(args.json_dir / f"{name}.json")]
        print(f"bench: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        status = subprocess.run(command, check=False).returncode
        print(f"bench: {name} exited {status} after {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        if status:
            failed.append(f"{name} ({status})")
    if failed:
        print(f"bench: not every benchmark passed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
