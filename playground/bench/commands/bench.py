"""`playground bench`: a scripted conversation run N times, percentiles per metric, a budget gate.

    playground bench --preset local --script phone-call --runs 5
    playground bench --script calls/support.txt --runs 10 --vs 'chunker.strategy=sentence' --out bench/

Each run is a fresh session (a new "call": models loaded, TTS session opened) that speaks
the script's lines as turns, one per line. Warm-up runs come first and are not counted.
With --vs, variant B (the preset with those settings) runs alternately with A in ABBA
order, so both see the same machine state, and the B/A ratios are printed.

Every run's trace is written to --out as its turns end. The exit status is 1 when a p50
misses its budget (or a turn failed), so the command is a latency regression gate for CI.
Ctrl-C cancels the running turn (a cancelled turn is not counted); a second one ends the
bench at once (exit status 130, no report).

With --oracle, every counted turn's measured TTFA is set against its oracle bound, the
earliest first audio its recorded tokens allowed (playground.chunking.oracle).

Progress goes to stderr, one line per step: a session opening, each turn, each run's end with
its TTFA p50. On a device or the null output (--no-audio) every reply plays out in real time,
so a run lasts as long as its replies; `--audio unpaced` measures the metrics without that
(UNPACED_NOTE says what it leaves out).
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from playground.bench.harness import abba, metric_percentile, read_script
from playground.chunking.oracle import TARGET_RATIO, OracleBound, median_ratios, oracle_bound
from playground.commands import Command
from playground.core import events as ev
from playground.core.formatting import format_ms, format_ratio, shorten
from playground.core.metrics import METRIC_LABELS, TurnMetrics
from playground.core.presets import Preset, PresetError, apply_overrides, load_preset
from playground.core.tracefile import read_trace
from playground.engine.interrupts import Interrupts

if TYPE_CHECKING:
    from playground.console import Console

BENCH_METRICS = ("llm_ttft", "ttfs", "ttft_tts", "ttfa", "first_play", "llm_total", "tts_total", "e2e_total",
                 "chunker_wait", "handoff")
PERCENTILES = (50, 90, 99)
EXIT_OVER_BUDGET = 1
ORACLE_CHUNK_CHARS = 40
UNPACED_NOTE = (
    "On the unpaced output (--audio unpaced) no reply is played in real time: its audio is taken as fast as it "
    "is synthesized. Measured as on a device: every metric in the table, LLM_TTFT to FIRST_PLAY and E2E_TOTAL "
    "(synthesis never waits for playback). Not measured: what follows a reply's first played sample, i.e. when "
    "each chunk finished playing (play.end), playback gaps (a chunk whose audio came after the previous one had "
    "played out) and how long each reply takes to hear.")


@dataclass
class Variant:
    name: str  # A or B
    preset: Preset
    description: str
    metrics: list[TurnMetrics] = field(default_factory=list)
    unpaced: bool = False  # some turn ran on an output that does not play in real time

    def p(self, key: str, q: float) -> float | None:
        return metric_percentile(self.metrics, key, q)


@dataclass(frozen=True)
class Run:
    variant: Variant
    label: str  # A-run01, B-warmup1
    measured: bool


def schedule(variants: list[Variant], runs: int, warmup: int) -> list[Run]:
    order: list[Run] = []
    for i in range(warmup):
        order += [Run(v, f"{v.name}-warmup{i + 1}", False) for v in variants]
    by_name = {v.name: v for v in variants}
    for i in range(runs):
        order += [Run(by_name[n], f"{n}-run{i + 1:02d}", True) for n in abba(i, list(by_name))]
    return order


def percentile_table(variant: Variant, console: Console) -> list[str]:
    budgets = variant.preset.budgets
    lines = [f"{'metric':<15}" + "".join(f"{f'p{q}':>8}" for q in PERCENTILES) + f"{'budget':>8}  over budget"]
    for key in BENCH_METRICS:
        values = [v for m in variant.metrics if (v := m.value(key)) is not None]
        if not values:
            continue
        cells = "".join(f"{format_ms(variant.p(key, q)):>8}" for q in PERCENTILES)
        limit = budgets.get(key)
        over = ""
        if limit is not None:
            misses = sum(1 for v in values if v > limit)
            over = f"{misses}/{len(values)} turns"
            if (variant.p(key, 50) or 0) > limit:
                over = console.red(over + "  p50 OVER BUDGET")
        lines.append(f"{METRIC_LABELS[key]:<15}{cells}{format_ms(limit):>8}  {over}")
    return lines


def ratio_table(a: Variant, b: Variant) -> list[str]:
    lines = [f"{'metric':<15}{'A p50':>8}{'B p50':>8}{'B/A':>8}{'A p90':>8}{'B p90':>8}{'B/A':>8}"]
    for key in BENCH_METRICS:
        cells = ""
        for q in (50, 90):
            va, vb = a.p(key, q), b.p(key, q)
            ratio = f"x{vb / va:.2f}" if va and vb is not None else "-"
            cells += f"{format_ms(va):>8}{format_ms(vb):>8}{ratio:>8}"
        if cells.strip(" -x."):
            lines.append(f"{METRIC_LABELS[key]:<15}{cells}")
    return lines


def gaps_summary(variant: Variant) -> str:
    """Playback running dry after the first sample, over the variant's turns: what a chunker that
    saves first-audio time by cutting short may cost in how the reply sounds."""
    measured = [m for m in variant.metrics if m.gaps is not None]
    if not measured:
        return "not measured (the output did not play in real time)"
    with_gaps = [m for m in measured if m.gaps]
    total = sum(m.gaps_ms or 0.0 for m in measured)
    worst = max((m.gaps_ms or 0.0 for m in measured), default=0.0)
    return (f"{sum(m.gaps for m in measured)} in {len(with_gaps)} of {len(measured)} turns, {format_ms(total)} ms "
            f"in all, worst turn {format_ms(worst)} ms")


def oracle_row(label: str, turn: int, bound: OracleBound) -> str:
    text = f"({bound.unknown})" if bound.best_chunk_text is None else shorten(bound.best_chunk_text, ORACLE_CHUNK_CHARS)
    return (f"{label:<11}{turn:>5}{format_ms(bound.measured_ttfa):>7}{format_ms(bound.own_bound):>11}"
            f"{format_ratio(bound.own_ratio):>10}{format_ms(bound.best_bound):>12}{format_ratio(bound.best_ratio):>11}"
            f"  {text}")


def oracle_table(variant: Variant, runs: list[Run], out: Path, console: Console) -> list[str]:
    """Each counted turn of `variant` against its oracle bound, from the traces its runs wrote to `out`."""
    header = f"{'run':<11}{'turn':>5}{'TTFA':>7}{'own bound':>11}{'TTFA/own':>10}{'best bound':>12}{'TTFA/best':>11}"
    lines = [header + "  best first chunk"]
    bounds = []
    for run in runs:
        if not run.measured or run.variant is not variant:
            continue
        _, events = read_trace(out / f"{run.label}.jsonl")
        for turn, turn_events in sorted(ev.events_by_turn(events).items()):
            if turn == ev.SESSION_TURN:
                continue
            bound = oracle_bound(turn_events, variant.preset.chunker)
            bounds.append(bound)
            lines.append(oracle_row(run.label, turn, bound))
    own, best = median_ratios(bounds)
    counted = sum(1 for b in bounds if b.own_ratio is not None)
    if own is None:
        verdict = console.red("no turn has a bound")
    elif own <= TARGET_RATIO:
        verdict = f"within the {TARGET_RATIO:.2f}x target"
    else:
        verdict = console.red(f"NOT within the {TARGET_RATIO:.2f}x target")
    lines.append(f"median over {counted} turn(s): TTFA/own bound {format_ratio(own)}, "
                 f"TTFA/best bound {format_ratio(best)}: {verdict}")
    return lines


def gate(variants: list[Variant]) -> list[str]:
    """What fails the gate: p50s over budget and turns that did not finish."""
    failures = []
    for v in variants:
        for key, limit in v.preset.budgets.items():
            p50 = v.p(key, 50)
            if p50 is not None and p50 > limit:
                failures.append(f"{v.name}: {METRIC_LABELS.get(key, key)} p50 {p50:.0f} ms > budget {limit:.0f} ms")
        failed = [m for m in v.metrics if m.status != "ok"]
        if failed:
            failures.append(f"{v.name}: {len(failed)} of {len(v.metrics)} turns did not finish "
                            f"({'; '.join(sorted({e for m in failed for e in m.errors} or {m.status for m in failed}))})")
    return failures


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


async def run_all(runs: list[Run], lines: list[str], audio: str | None, out: Path, console: Console,
                  interrupts: Interrupts | None = None) -> None:
    """Every run in order, each a fresh session; progress on stderr, a line per step; each trace
    written as its turns end, so an interrupted bench keeps what it measured."""
    from playground.engine.build import open_session
    from playground.export.jsonl import open_trace_writer

    interrupts = interrupts or Interrupts()
    started = time.perf_counter()
    for number, run in enumerate(runs, 1):
        if interrupts.ending:
            return
        prefix = f"[{number}/{len(runs)}] {run.label}"
        console.note(f"{prefix}: opening a session (preset {run.variant.preset.name})")
        run_started = time.perf_counter()
        session = await open_session(run.variant.preset, audio=audio, warn=console.note_once)
        console.note(f"{prefix}: session open in {time.perf_counter() - run_started:.1f} s "
                     f"(audio: {session.output.name})")
        writer = open_trace_writer(out / f"{run.label}.jsonl", session.trace.header)
        writer.follow(session.trace)
        interrupts.attach(session)
        metrics: list[TurnMetrics] = []
        try:
            for index, line in enumerate(lines, 1):
                if interrupts.ending:
                    break
                turn_started = time.perf_counter()
                m = await session.run_turn(line)
                if m.status != "cancelled":
                    metrics.append(m)
                status = "" if m.status == "ok" else f", {m.status.upper()}"
                console.note(f"{prefix} turn {index}/{len(lines)}: TTFA {format_ms(m.ttfa)} ms, "
                             f"E2E_TOTAL {format_ms(m.e2e_total)} ms, turn {time.perf_counter() - turn_started:.1f} s"
                             f"{status}")
        finally:
            await session.close()
            writer.close()
        if run.measured:
            run.variant.metrics += metrics
        if any(isinstance(e, ev.TurnStart) and e.unpaced for e in session.trace.events):
            run.variant.unpaced = True
        elapsed = time.perf_counter() - started
        left = elapsed / number * (len(runs) - number)
        console.note(f"{prefix} finished in {time.perf_counter() - run_started:.1f} s: TTFA p50 "
                     f"{format_ms(metric_percentile(metrics, 'ttfa', 50))} ms"
                     f"{'' if run.measured else ' (warm-up, not counted)'}; {number}/{len(runs)} runs in "
                     f"{_minutes(elapsed)}" + (f", about {_minutes(left)} left" if left else ""))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "\n".join(textwrap.wrap(
        "On a device or the null output (--no-audio) every reply is played in real time, so a run lasts as long "
        "as its replies take to hear. " + UNPACED_NOTE, 100))
    parser.add_argument("--preset", default="local", help="preset name or .toml path (default: local)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a preset field for every run, e.g. --set budgets.ttfa=1200 (repeatable)")
    parser.add_argument("--script", required=True, metavar="FILE",
                        help="the conversation: one user line per turn (# comments), or a shipped script (phone-call)")
    parser.add_argument("--runs", type=int, default=5, metavar="N", help="measured runs per variant (default 5)")
    parser.add_argument("--warmup", type=int, default=1, metavar="K", help="uncounted runs first (default 1)")
    parser.add_argument("--vs", metavar="'SECTION.KEY=VALUE ...'",
                        help="variant B: the preset with these settings, run alternately with A (ABBA)")
    parser.add_argument("--out", metavar="DIR", help="folder for every run's trace (default: bench-DATE-TIME)")
    parser.add_argument("--no-audio", action="store_true", help="use the null output (real-time paced, no device)")
    parser.add_argument("--audio", metavar="DEVICE", help="output device name or index, or `unpaced`: no device "
                        "and no real-time playback, for the metrics without the wait (see below)")
    parser.add_argument("--oracle", action="store_true",
                        help="per turn: measured TTFA against the earliest first audio its recorded tokens allowed")


def run(args: argparse.Namespace, console: Console) -> int:
    if args.runs < 1 or args.warmup < 0:
        raise PresetError(f"--runs must be at least 1 and --warmup 0 or more (got {args.runs} and {args.warmup})")
    lines = read_script(args.script)
    preset = load_preset(args.preset, args.overrides)
    variants = [Variant("A", preset, f"preset {preset.name}" + "".join(f", {o}" for o in args.overrides))]
    if args.vs:
        settings = shlex.split(args.vs)
        variants.append(Variant("B", apply_overrides(preset, settings), "A with " + ", ".join(settings)))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"bench-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    runs = schedule(variants, args.runs, args.warmup)
    console.note(f"bench: {len(lines)} turns x {args.runs} runs per variant (+{args.warmup} warm-up), "
                 f"{len(runs)} sessions; traces to {out}/")
    audio = "null" if args.no_audio else args.audio
    if audio == "null":
        console.note("bench: the null output plays every reply in real time; --audio unpaced measures the same "
                     "metrics without that wait (playground bench --help)")
    with Interrupts(console.note) as interrupts:
        interrupts.run(lambda: run_all(runs, lines, audio, out, console, interrupts))
    if interrupts.ending:
        console.note(f"bench interrupted (Ctrl-C); the traces so far are in {out}/")
        return interrupts.status(0)

    for v in variants:
        console.print(f"{v.name}: {v.description} ({len(v.metrics)} turns)")
        for line in percentile_table(v, console):
            console.print(line)
        console.print(f"playback gaps after the first sample: {gaps_summary(v)}")
        fallbacks = sum(1 for m in v.metrics if m.tts_path not in (None, "persistent"))
        if fallbacks:
            console.print(console.red(f"TTS was not the persistent session in {fallbacks} turn(s)"))
        console.print()
    if any(v.unpaced for v in variants):
        console.print(textwrap.fill(UNPACED_NOTE, 100))
        console.print()
    if len(variants) == 2:
        console.print("B/A ratios")
        for line in ratio_table(*variants):
            console.print(line)
        for v in variants:
            console.print(f"{v.name} playback gaps: {gaps_summary(v)}")
        console.print()
    if args.oracle:
        for v in variants:
            console.print(f"{v.name}: oracle bound (earliest possible first audio: arrival of the token ending a first "
                          "chunk + the TTS time to first audio for it)")
            for line in oracle_table(v, runs, out, console):
                console.print(line)
            console.print()
        console.print("own bound: the strategy's own first chunk, with the TTS time measured for it. best bound: the "
                      "acceptable first chunk (a boundary the chunker recognizes, a weak one with at least "
                      "chunker.first_min_chars characters) heard first, its TTS time at the recorded ms per character "
                      "as in `playground compare`.")
        console.print()
    console.print(f"traces: {out}/ ({len(runs)} files)")
    failures = gate(variants)
    if failures:
        for failure in failures:
            console.print(console.red(f"FAIL {failure}"))
        return EXIT_OVER_BUDGET
    console.print("PASS: every p50 within its budget")
    return 0


COMMAND = Command(name="bench", help="run a scripted conversation N times: percentiles, budgets, A/B (a CI gate)",
                  add_arguments=add_arguments, run=run)
