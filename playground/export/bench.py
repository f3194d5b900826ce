"""Export benchmark: a 200-turn session in every format, target < 2 s each (issue 6).

    .venv/bin/python -m playground.export.bench                 # 200 turns, 5 runs per format
    .venv/bin/python -m playground.export.bench --turns 245 --runs 3

The session is built by `synthetic_session` from a real recorded one
(tests/export/data/session.jsonl): its turns replayed in turn, each on a time scale drawn
between 0.8x and 1.25x (as on a faster or slower machine), their summaries recomputed by
`compute_metrics`. Each run is a whole `export()` call: scrub, layout, write. Prints the
median, min and max per format; exits 1 if a median misses the target.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playground.core import events as ev
from playground.core.metrics import budget_misses, compute_metrics
from playground.export.formats import FORMATS, export, export_all
from playground.export.timeline import budgets_of

TARGET_S = 2.0
TEMPLATE = Path(__file__).resolve().parents[2] / "tests" / "export" / "data" / "session.jsonl"
# Chunk fields that are times on the turn's clock, scaled with the event times.
_TIME_FIELDS = ("start_ms", "input_ms")


def synthetic_session(header: dict[str, Any], events: list[ev.TraceEvent], turns: int, seed: int = 7
                      ) -> tuple[dict[str, Any], list[ev.TraceEvent]]:
    """A `turns`-turn session replaying the recorded turns of `events` in turn, each on its own time scale."""
    recorded: dict[int, list[ev.TraceEvent]] = {}
    for e in events:
        if e.turn != ev.SESSION_TURN and e.type != ev.TURN_SUMMARY:
            recorded.setdefault(e.turn, []).append(e)
    if not recorded:
        raise ValueError("the template trace has no turns to replay")
    first = next(i for i, e in enumerate(events) if e.turn != ev.SESSION_TURN)
    last = max(i for i, e in enumerate(events) if e.turn != ev.SESSION_TURN)
    opening = events[:first]
    closing = [e for e in events[last + 1:] if e.turn == ev.SESSION_TURN]

    rng = random.Random(seed)
    budgets = budgets_of(header)
    templates = list(recorded.values())
    out = list(opening)
    clock = max((e.t_ms for e in opening), default=0.0)  # the session clock, for the closing events
    for number in range(1, turns + 1):
        scale = rng.uniform(0.8, 1.25)
        turn = []
        for e in templates[(number - 1) % len(templates)]:
            data = e.data
            if e.type == ev.CHUNK:
                data = {**data, **{k: round(data[k] * scale, 3) for k in _TIME_FIELDS if k in data}}
            turn.append(ev.TraceEvent(number, round(e.t_ms * scale, 3), e.type, data))
        metrics = compute_metrics(turn)
        end = max(e.t_ms for e in turn)
        turn.append(ev.TraceEvent(number, end + 0.3, ev.TURN_SUMMARY, {
            "metrics": metrics.to_json(),
            "budget_misses": {k: v for k, (v, _) in budget_misses(metrics, budgets).items()}}))
        out.extend(turn)
        clock += end + 0.3 - min(e.t_ms for e in turn)
    out.extend(ev.TraceEvent(e.turn, clock + 1.0, e.type, e.data) for e in closing)
    return header, out


def _timed(run: Any, *args: Any) -> float:
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.export.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="the recorded session the turns come from")
    args = parser.parse_args(argv)
    try:
        header, recorded = ev.read_trace(args.template)
    except OSError as exc:
        print(f"error: {args.template}: {exc.strerror or exc} (run from a checkout, or give --template)",
              file=sys.stderr)
        return 2
    header, events = synthetic_session(header, recorded, args.turns)
    print(f"session: {args.turns} turns, {len(events):,} events (from {args.template.name}); "
          f"{args.runs} runs each, target < {TARGET_S:.0f} s")
    print(f"{'format':<10} {'median s':>9} {'min s':>7} {'max s':>7} {'size':>9}")
    missed = []
    with tempfile.TemporaryDirectory() as folder:
        for name, spec in FORMATS.items():
            path = Path(folder) / f"bench{spec.suffix}"
            times = [_timed(export, name, path, header, events) for _ in range(args.runs)]
            median = statistics.median(times)
            size = path.stat().st_size
            print(f"{name:<10} {median:>9.3f} {min(times):>7.3f} {max(times):>7.3f} {size / 1e6:>7.1f} MB")
            if median >= TARGET_S:
                missed.append(name)
        times = [_timed(export_all, folder, "all", header, events) for _ in range(args.runs)]
        print(f"{'all five':<10} {statistics.median(times):>9.3f} {min(times):>7.3f} {max(times):>7.3f}"
              "   (one scrub and layout shared)")
    if missed:
        print(f"over the {TARGET_S:.0f} s target: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
