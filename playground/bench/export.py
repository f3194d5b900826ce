"""Export benchmark: a 200-turn session in every format, target < 2 s each (issue 6).

    python -m playground.bench.export                 # 200 turns, 5 runs per format
    python -m playground.bench.export --turns 245 --runs 3 --json export.json

The session is built by `synthetic_session` from a real recorded one
(playground/bench/data/session.jsonl): its turns replayed in turn, each on a time scale drawn
between 0.8x and 1.25x (as on a faster or slower machine), their summaries recomputed by
`compute_metrics`. Each run is a whole `export()` call: scrub, layout, write. Prints the
median, min and max per format; exits 1 if a median misses the target.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from msgspec import structs

from playground.bench.harness import DATA, argument_parser, markdown_table, note, report
from playground.core import events as ev
from playground.core.metrics import budget_misses, compute_metrics, percentile
from playground.core.tracefile import read_trace
from playground.export.formats import FORMATS, export, export_all
from playground.export.layout import budgets_of

TARGET_S = 2.0
TEMPLATE = DATA / "session.jsonl"
# Chunk fields that are times on the turn's clock, scaled with the event times.
_TIME_FIELDS = ("start_ms", "input_ms")


def synthetic_session(header: dict[str, Any], events: list[ev.TraceEvent], turns: int, seed: int = 7
                      ) -> tuple[dict[str, Any], list[ev.TraceEvent]]:
    """A `turns`-turn session replaying the recorded turns of `events` in turn, each on its own time scale."""
    recorded: dict[int, list[ev.TraceEvent]] = {}
    for e in events:
        if e.turn != ev.SESSION_TURN and not isinstance(e, ev.TurnSummary):
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
        turn: list[ev.TraceEvent] = []
        for e in templates[(number - 1) % len(templates)]:
            times: dict[str, float] = {}
            if isinstance(e, ev.Chunk):
                times = {name: round(getattr(e, name) * scale, 3) for name in _TIME_FIELDS}
            turn.append(structs.replace(e, turn=number, t_ms=round(e.t_ms * scale, 3), **times))
        metrics = compute_metrics(turn)
        end = max(e.t_ms for e in turn)
        turn.append(ev.TurnSummary(turn=number, t_ms=end + 0.3, metrics=metrics.to_json(), budget_misses={
            k: v for k, (v, _) in budget_misses(metrics, budgets).items()}))
        out.extend(turn)
        clock += end + 0.3 - min(e.t_ms for e in turn)
    out.extend(structs.replace(e, t_ms=clock + 1.0) for e in closing)
    return header, out


def _timed(run: Any, *args: Any) -> float:
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("export", __doc__)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="the recorded session the turns come from")
    args = parser.parse_args(argv)
    try:
        header, recorded = read_trace(args.template)
    except OSError as exc:
        note(f"error: {args.template}: {exc.strerror or exc} (give --template a recorded JSONL trace)")
        return 2
    header, events = synthetic_session(header, recorded, args.turns)
    rows, numbers, missed = [], {}, []
    with tempfile.TemporaryDirectory() as folder:
        for name, spec in FORMATS.items():
            path = Path(folder) / f"bench{spec.suffix}"
            times = [_timed(export, name, path, header, events) for _ in range(args.runs)]
            median = percentile(times, 50)
            size = path.stat().st_size
            rows.append([name, f"{median:.3f}", f"{min(times):.3f}", f"{max(times):.3f}", f"{size / 1e6:.1f} MB"])
            numbers[name] = {"median_s": median, "min_s": min(times), "max_s": max(times), "bytes": size}
            if median >= TARGET_S:
                missed.append(name)
        times = [_timed(export_all, folder, "all", header, events) for _ in range(args.runs)]
        rows.append(["all five (one scrub and layout shared)", f"{percentile(times, 50):.3f}", f"{min(times):.3f}",
                     f"{max(times):.3f}", "-"])
        numbers["all"] = {"median_s": percentile(times, 50), "min_s": min(times), "max_s": max(times)}
    lines = [f"## Export: a {args.turns}-turn session, {len(events):,} events (from {args.template.name}); "
             f"{args.runs} runs each, target < {TARGET_S:.0f} s", ""]
    lines += markdown_table(["format", "median s", "min s", "max s", "size"], rows)
    if missed:
        lines += ["", f"over the {TARGET_S:.0f} s target: {', '.join(missed)}"]
    report("export", args, lines, {"turns": args.turns, "events": len(events), "formats": numbers,
                                   "over_target": missed})
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
