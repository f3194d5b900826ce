"""`playground compare TRACE`: what-if chunking over every recorded turn, no TTS called.

    playground compare seed-turn4
    playground compare turns.jsonl --strategies sentence,adaptive --set chunker.deadline_ms=250

Each recorded turn's tokens go, at their recorded times, through every strategy (with the
recorded chunker parameters) and every `--set` variant. TTFA is estimated from the TTS
speed the trace recorded: TTFS + the first chunk's characters x (send -> first audio of
the recorded first chunk, per character).

The table is a list of columns, so another per-outcome number is one more `Column`.
"vs oracle" is each variant's TTFA est. over the turn's oracle bound: the earliest first
audio the recorded tokens allowed (playground.chunking.oracle).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from playground.chunking.compare import Outcome, TurnComparison, Variant, compare_turns
from playground.chunking.oracle import OracleBound, oracle_bound, ratio
from playground.commands import Command
from playground.commands.replay import read_recorded, recorded_preset
from playground.core.events import events_by_turn
from playground.core.formatting import format_ms, format_ratio, shorten
from playground.core.metrics import percentile
from playground.core.presets import STRATEGIES, ChunkerConfig, Preset, PresetError, apply_overrides

if TYPE_CHECKING:
    from playground.console import Console


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


@dataclass(frozen=True)
class Column:
    label: str
    width: int
    cell: Callable[[Outcome, TurnComparison], str]


COLUMNS = (
    Column("TTFS", 6, lambda o, c: format_ms(o.result.ttfs)),
    Column("chunker wait", 12, lambda o, c: format_ms(o.result.chunker_wait)),
    Column("chunks", 6, lambda o, c: str(len(o.result.chunks))),
    Column("shortest", 8, lambda o, c: _count(o.result.shortest)),
    Column("longest", 7, lambda o, c: _count(o.result.longest)),
    Column("TTFA est.", 9, lambda o, c: format_ms(o.ttfa_estimate)),
)
FIRST_CHUNK_CHARS = 48


def variants(strategies: list[str], sets: list[str]) -> list[Variant]:
    """One variant per strategy, then one per `--set` ("a=1,b=2": several settings in one variant).
    A variant without a strategy keeps the one each turn was recorded with."""
    found = [Variant(s, {"strategy": s}) for s in strategies]
    for expr in sets:
        parts = [p.strip() for p in expr.split(",") if p.strip()]
        if not parts or any(not p.startswith("chunker.") for p in parts):
            raise PresetError(f"--set {expr}: compare only re-runs the chunker, so a variant sets chunker.* "
                              f"fields (e.g. --set chunker.deadline_ms=250,chunker.first_min_chars=6)")
        config = apply_overrides(Preset(), parts).chunker  # validated like any --set
        keys = [p.partition("=")[0].strip().removeprefix("chunker.") for p in parts]
        settings = {k: getattr(config, k) for k in keys}
        label = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items()
                         if k != "strategy")
        found.append(Variant(f"{settings['strategy']} {label}" if "strategy" in settings else f"+{label}", settings))
    return found


def base_chunker(header: dict, source: str) -> ChunkerConfig:
    """The chunker of the trace's recorded preset: parameters for turns that did not record theirs."""
    preset = recorded_preset(header, source)
    return preset.chunker if preset else ChunkerConfig()


def oracle_line(bound: OracleBound) -> str:
    if bound.best_bound is None:
        return f"  oracle bound -: {bound.unknown}"
    return (f"  oracle bound {format_ms(bound.best_bound)} ms (recorded TTFA {format_ratio(bound.best_ratio)}),"
            f" first chunk: {shorten(bound.best_chunk_text or '', FIRST_CHUNK_CHARS)}")


def turn_lines(c: TurnComparison, bound: OracleBound, label_width: int) -> list[str]:
    t = c.turn
    recorded = (f"turn {t.turn}  \"{shorten(t.user_text, 60)}\"  recorded with {t.strategy or '?'}: "
                f"LLM_TTFT {format_ms(t.tokens[0][0])}, TTFS {format_ms(t.ttfs)}, TTFA {format_ms(t.ttfa)}, "
                f"LLM_TOTAL {format_ms(t.tokens[-1][0])} ms")
    lines = [recorded, oracle_line(bound)]
    columns = (*COLUMNS, Column("vs oracle", 9, lambda o, _: format_ratio(ratio(o.ttfa_estimate, bound.best_bound))))
    header = f"  {'':1} {'variant':<{label_width}}" + "".join(f" {col.label:>{col.width}}" for col in columns)
    lines.append(header + "  first chunk")
    winners = c.winners
    for o in c.outcomes:
        mark = "*" if any(o is w for w in winners) else " "
        cells = "".join(f" {col.cell(o, c):>{col.width}}" for col in columns)
        lines.append(f"  {mark} {o.variant.label:<{label_width}}{cells}  {shorten(o.first_text, FIRST_CHUNK_CHARS)}")
    if winners:
        by = "estimated TTFA" if c.ms_per_char is not None else "TTFS"
        names = " = ".join(o.variant.label for o in winners) + (" (tie)" if len(winners) > 1 else "")
        lines.append(f"  winner: {names}, earliest {by}: {format_ms(c.score(winners[0]))} ms")
    return lines


def summary_lines(comparisons: list[TurnComparison], labels: list[str], label_width: int) -> list[str]:
    lines = [f"over {len(comparisons)} turns: medians per variant",
             f"  {'variant':<{label_width}}{'TTFS':>8}{'chunker wait':>14}{'TTFA est.':>11}{'wins':>6}"]
    for i, label in enumerate(labels):
        outcomes = [c.outcomes[i] for c in comparisons]
        wins = sum(1 for c in comparisons if any(c.outcomes[i] is w for w in c.winners))
        lines.append(f"  {label:<{label_width}}{format_ms(percentile([o.result.ttfs for o in outcomes], 50)):>8}"
                     f"{format_ms(percentile([o.result.chunker_wait for o in outcomes], 50)):>14}"
                     f"{format_ms(percentile([o.ttfa_estimate for o in outcomes], 50)):>11}{wins:>6}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace_file", metavar="TRACE", help="a JSONL trace, or the name of a shipped one (seed-turn4)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), metavar="A,B,...",
                        help=f"strategies to compare (default: all: {','.join(STRATEGIES)})")
    parser.add_argument("--set", dest="variants", action="append", default=[], metavar="chunker.KEY=VALUE[,...]",
                        help="an extra variant: each turn's recorded chunker with these settings (repeatable)")
    parser.add_argument("--turn", type=int, default=0, metavar="N", help="only recorded turn N")


def run(args: argparse.Namespace, console: Console) -> int:
    started = time.perf_counter()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise PresetError(f"--strategies: unknown strategy {', '.join(map(repr, unknown))} "
                          f"(choose from: {', '.join(STRATEGIES)})")
    chosen = variants(strategies, args.variants)
    if not chosen:
        raise PresetError("--strategies: nothing to compare (give at least one strategy or a --set variant)")
    path, header, events, turns = read_recorded(args.trace_file, args.turn, "re-chunk", console.note)
    base = base_chunker(header, str(path))
    comparisons = compare_turns(turns, chosen, base)
    by_turn = events_by_turn(events)
    bounds = [oracle_bound(by_turn[t.turn], t.chunker_config(base)) for t in turns]
    elapsed = time.perf_counter() - started

    label_width = max(len("variant"), *(len(v.label) for v in chosen)) + 1
    console.print(f"{path}: {len(turns)} recorded turn(s) through {len(chosen)} chunker variant(s), "
                  "tokens at their recorded times, no TTS called")
    for c, bound in zip(comparisons, bounds):
        console.print()
        for line in turn_lines(c, bound, label_width):
            console.print(line)
    if len(comparisons) > 1:
        console.print()
        for line in summary_lines(comparisons, [v.label for v in chosen], label_width):
            console.print(line)
    console.print()
    console.print("* winner (earliest TTFA est.). TTFA est. = TTFS + the first chunk's characters x the recorded "
                  "TTS time to first audio per character (send -> first audio of the turn's first chunk; the trace's median for turns without).")
    console.print("oracle bound: the earliest first audio the recorded tokens allowed: arrival of the token ending the "
                  "acceptable first chunk heard first + its TTS time at the recorded ms per character. "
                  "vs oracle = TTFA est. / oracle bound (below x1.00: a first chunk that ends at no boundary).")
    if any(o.result.strategy == "passthrough" for o in comparisons[0].outcomes):
        console.print("passthrough hands every token to TTS and leaves chunking to the TTS server: no TTFA estimate, "
                      "never the winner.")
    unknown_ttfa = [str(c.turn.turn) for c in comparisons if c.ms_per_char is None]
    if unknown_ttfa:
        console.print(f"TTFA can't be estimated for turn(s) {', '.join(unknown_ttfa)}: the trace has no TTS audio "
                      "for a chunk it sent (TTFA was not measured, e.g. a REST fallback); the winner is by TTFS")
    console.note(f"compared {len(turns)} turn(s) x {len(chosen)} variant(s) in {elapsed * 1000:.0f} ms")
    return 0


COMMAND = Command(name="compare", help="re-chunk every recorded turn under every strategy (what-if, no TTS)",
                  add_arguments=add_arguments, run=run)
