"""Benchmarks for `playground compare` and `playground replay` (issue 6 targets), rerunnable by anyone.

    python -m playground.bench.trace_tools [--compare-turns 100 | --no-compare] [--replays 3] [--set key=value]
                                           [--json PATH]

1. compare: a trace of 100 turns, each the recorded turns of playground/bench/data/two-turns.jsonl and
   the shipped seed-turn4 played back to back (about 100 tokens a turn, like the offline
   preset's max_tokens=96 replies), through the 5 strategies: wall time of the whole
   command (reading the file included), median of 5 runs. Target: under 1 s.
2. replay: two-turns.jsonl (a real recorded session) replayed through the real
   chunker and Piper voice with the null output, several times, each a fresh `playground
   replay` process (`--set` overrides pass through): replayed - recorded token
   time (after the LLM request) p50 / p99 / worst, also split into the session's first turn
   (its first synthesis runs on a cold Piper voice) and the later ones. Target: 2 ms at p99.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playground.bench.harness import DATA, argument_parser, note, percentiles, report
from playground.chunking.compare import recorded_turns
from playground.commands import discover
from playground.console import Console
from playground.commands.replay import timing_errors
from playground.core import events as ev
from playground.core.metrics import percentile
from playground.core.tracefile import read_trace
from playground.data import find
from playground.export.jsonl import write_trace_jsonl

RECORDED = DATA / "two-turns.jsonl"


def long_trace(path: Path, turns: int) -> int:
    """Writes a `turns`-turn trace of recorded tokens; returns how many tokens it holds."""
    header, _ = read_trace(RECORDED)
    sources = [t for trace in (RECORDED, find("trace", "seed-turn4")) for t in recorded_turns(read_trace(trace)[1])]
    events: list[ev.TraceEvent] = []
    tokens = 0
    for n in range(1, turns + 1):
        events.append(ev.TurnStart(turn=n, t_ms=0.0, text=f"turn {n}", input="typed", strategy="adaptive", chunker={}))
        offset = 0.0
        reply = []
        for source in sources:
            for t, text in source.tokens:
                events.append(ev.LlmToken(turn=n, t_ms=offset + t, i=tokens, text=text))
                reply.append(text)
                tokens += 1
            offset += source.tokens[-1][0] + 50.0
        events.append(ev.LlmDone(turn=n, t_ms=offset, tokens=len(reply), finish_reason="stop", usage=ev.Usage(),
                                 text="".join(reply)))
    write_trace_jsonl(path, header, events)
    return tokens


def playground(argv: list[str]) -> int:
    """A subcommand (`compare`, `export`) run in this process, its output discarded."""
    command = next(c for c in discover() if c.name == argv[0])
    parser = argparse.ArgumentParser(prog=f"playground {command.name}")
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv[1:]), Console(io.StringIO(), io.StringIO()))


def bench_compare(turns: int) -> tuple[list[str], dict]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "long.jsonl"
        tokens = long_trace(path, turns)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            status = playground(["compare", str(path)])
            times.append((time.perf_counter() - started) * 1000)
            assert status == 0
    lines = [f"- compare: {turns} turns ({tokens} tokens) x 5 strategies: median {percentile(times, 50):.0f} ms "
             f"over 5 runs (min {min(times):.0f}, max {max(times):.0f}); target < 1000 ms"]
    return lines, {"turns": turns, "tokens": tokens, "median_ms": percentile(times, 50), "min_ms": min(times),
                   "max_ms": max(times)}


def _timing(errors: list[float]) -> str:
    return (f"{len(errors)} tokens, p50 {percentile(errors, 50):+.2f} ms, p99 {percentile(errors, 99):+.2f} ms, "
            f"worst {max(errors, key=abs):+.2f} ms")


def bench_replay(replays: int, settings: list[str]) -> tuple[list[str], dict]:
    _, recorded = read_trace(RECORDED)
    before = ev.events_by_turn(recorded)
    first_turn: list[float] = []  # the session's first synthesis runs on a cold voice meanwhile
    later_turns: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(replays):
            out = Path(folder) / f"replay-{i}.jsonl"
            # A process per replay, as a user runs it: a session closed earlier in the same
            # process could free its voice in the middle of the next one.
            subprocess.run([sys.executable, "-m", "playground.cli", "replay", str(RECORDED), "--no-audio",
                            "--trace", str(out), *[arg for setting in settings for arg in ("--set", setting)]],
                           check=True, capture_output=True)
            after = ev.events_by_turn(read_trace(out)[1])
            pairs = list(zip(sorted(t for t in before if t), sorted(t for t in after if t)))
            run_errors = [timing_errors(before[a], after[b]) for a, b in pairs]
            first_turn += run_errors[0]
            later_turns += [e for errors in run_errors[1:] for e in errors]
            flat = [e for errors in run_errors for e in errors]
            note(f"  replay {i + 1}: {len(flat)} tokens, p99 {percentile(flat, 99):+.2f} ms, "
                 f"worst {max(flat, key=abs):+.2f} ms")
    errors = first_turn + later_turns
    lines = [f"- replay timing, {replays} replays of {RECORDED.name}, replayed - recorded: {_timing(errors)}; "
             "target |p99| <= 2 ms"]
    numbers = {"replays": replays}
    for name, part in (("all", errors), ("first turn", first_turn), ("later turns", later_turns)):
        if part:
            if name != "all":
                lines.append(f"  - {name}: {_timing(part)}")
            numbers[name.replace(" ", "_") + "_ms"] = {**percentiles(part, (50, 99)), "worst": max(part, key=abs)}
    return lines, numbers


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("trace_tools", __doc__)
    parser.add_argument("--compare-turns", type=int, default=100)
    parser.add_argument("--replays", type=int, default=3, help="replays of the recorded session (0: skip)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a preset override for the replays")
    parser.add_argument("--no-compare", action="store_true", help="skip the compare benchmark")
    args = parser.parse_args(argv)
    lines, numbers = ["## Traces: compare and replay", ""], {}
    if not args.no_compare:
        part, numbers["compare"] = bench_compare(args.compare_turns)
        lines += part
    if args.replays:
        part, numbers["replay"] = bench_replay(args.replays, args.set)
        lines += part
    report("trace_tools", args, lines, numbers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
