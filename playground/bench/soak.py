"""The long-session soak: one offline session, many turns, does the latency stay flat?

    python -m playground.bench.soak [--turns 150] [--trim shift,block] [--set section.key=value ...] [--json PATH]

A prompt-tuning session is a long session. The conversation grows every turn until it no
longer fits the local model's context; from then on the oldest exchanges must leave the
prompt without making llama.cpp evaluate the whole prompt again (playground.llm.context).
This runs the shipped `long-session` script (150 caller questions) as turns of one session
on the offline preset at its own reply length, on the `unpaced` output (the first-audio
metrics are real; the replies are not played out in real time, so 150 turns take minutes,
not an hour), and reports per trim mode:

- TTFA and LLM_TTFT p50 of turns 2-20 against the last 20 turns (target: ratio <= 1.3);
- resident memory after turn 20 and at the end (target: growth < 10%);
- the turns where the window moved, how, and the slowest first token among them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field

from playground.bench.harness import (argument_parser, markdown_table, metric_percentile, note, ok_turns,
                                      open_bench_session, read_script, report)
from playground.core import events as ev
from playground.core.formatting import format_ms
from playground.core.memory import peak_rss_mb
from playground.core.metrics import TurnMetrics
from playground.core.presets import load_preset
from playground.llm.local import CONTEXT_TRIMS

TTFA_RATIO_TARGET = 1.3
RSS_GROWTH_TARGET = 0.10
EARLY = slice(1, 20)  # turns 2-20: warm, before the context fills


def rss_mb() -> float:
    """Resident memory now (Linux /proc), else the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


@dataclass
class Soak:
    trim: str
    metrics: list[TurnMetrics] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    trims: list[tuple[int, int, str, float | None]] = field(default_factory=list)  # turn, dropped, how, LLM_TTFT

    def p50(self, key: str, turns: slice) -> float | None:
        return metric_percentile(ok_turns(self.metrics[turns]), key, 50)


async def soak(trim: str, lines: list[str], overrides: list[str], audio: str) -> Soak:
    session = await open_bench_session(load_preset("local", [f"llm.context_trim={trim}", *overrides]), audio)
    result = Soak(trim)
    try:
        for i, line in enumerate(lines, 1):
            m = await session.run_turn(line)
            result.metrics.append(m)
            result.rss.append(rss_mb())
            done = ev.first(session.trace.turn_events(m.turn), ev.LlmDone)
            context = done.context if done else None
            moved = ""
            if context is not None and context.trimmed:
                result.trims.append((m.turn, context.trimmed, context.how or "?", m.llm_ttft))
                moved = f"  context -{context.trimmed} messages ({context.how})"
            note(f"  {trim} turn {i:>3}/{len(lines)}  LLM_TTFT {format_ms(m.llm_ttft):>6}  TTFA {format_ms(m.ttfa):>6}"
                 f"  RSS {result.rss[-1]:.0f} MB  ({m.status}){moved}")
    finally:
        await session.close()
    return result


def soak_report(results: list[Soak], turns: int) -> tuple[list[str], dict, bool]:
    rows, numbers, ok = [], {}, True
    last = slice(-20, None)
    for r in results:
        early_ttfa, late_ttfa = r.p50("ttfa", EARLY), r.p50("ttfa", last)
        ratio = late_ttfa / early_ttfa if early_ttfa and late_ttfa else None
        rss20, rss_end = r.rss[min(19, len(r.rss) - 1)], r.rss[-1]
        growth = rss_end / rss20 - 1
        slowest = max((t for *_, t in r.trims if t is not None), default=None)
        failed = sum(1 for m in r.metrics if m.status != "ok")
        ok &= ratio is not None and ratio <= TTFA_RATIO_TARGET and growth < RSS_GROWTH_TARGET and not failed
        hows = sorted({how for _, _, how, _ in r.trims})
        rows.append([r.trim, format_ms(early_ttfa), format_ms(late_ttfa), "-" if ratio is None else f"x{ratio:.2f}",
                     format_ms(r.p50("llm_ttft", EARLY)), format_ms(r.p50("llm_ttft", last)), f"{rss20:.0f} MB",
                     f"{rss_end:.0f} MB", f"{growth:+.1%}", f"{len(r.trims)} ({', '.join(hows) or '-'})",
                     format_ms(slowest), failed])
        numbers[r.trim] = {
            "ttfa_p50_early_ms": early_ttfa, "ttfa_p50_last20_ms": late_ttfa, "ttfa_ratio": ratio,
            "llm_ttft_p50_early_ms": r.p50("llm_ttft", EARLY), "llm_ttft_p50_last20_ms": r.p50("llm_ttft", last),
            "rss_after_turn20_mb": rss20, "rss_end_mb": rss_end, "rss_growth": growth,
            "window_moves": [{"turn": turn, "dropped": dropped, "how": how, "llm_ttft_ms": ttft}
                             for turn, dropped, how, ttft in r.trims],
            "turns_not_ok": failed}
    lines = [f"## Long session: {turns} turns, offline preset, one session per trim mode", ""]
    lines += markdown_table(["llm.context_trim", "TTFA p50 turns 2-20", "TTFA p50 last 20", "ratio",
                             "LLM_TTFT p50 2-20", "LLM_TTFT p50 last 20", "RSS after turn 20", "RSS at the end",
                             "growth", "window moves", "slowest LLM_TTFT at a move", "turns not ok"], rows)
    lines += ["", f"Targets: TTFA p50 of the last 20 turns within x{TTFA_RATIO_TARGET} of turns 2-20; RSS growth after "
              f"turn 20 under {RSS_GROWTH_TARGET:.0%}; every turn ok: {'PASS' if ok else 'FAIL'}"]
    return lines, {"turns": turns, "trims": numbers, "pass": ok}, ok


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("soak", __doc__)
    parser.add_argument("--turns", type=int, default=150, help="turns in the session (default 150)")
    parser.add_argument("--script", default="long-session", help="the questions (default: the shipped long-session)")
    parser.add_argument("--trim", default="shift", help=f"comma-separated llm.context_trim modes, each its own "
                        f"session in this run ({', '.join(CONTEXT_TRIMS)}; default shift)")
    parser.add_argument("--audio", default="unpaced", help="output (default unpaced; null plays in real time)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    trims = [t.strip() for t in args.trim.split(",") if t.strip()]
    if unknown := [t for t in trims if t not in CONTEXT_TRIMS]:
        parser.error(f"unknown trim mode {', '.join(unknown)} (choose from {', '.join(CONTEXT_TRIMS)})")
    questions = read_script(args.script)
    lines = [questions[i % len(questions)] for i in range(args.turns)]
    results = [asyncio.run(soak(trim, lines, args.overrides, args.audio)) for trim in trims]
    text, numbers, ok = soak_report(results, args.turns)
    report("soak", args, text, numbers)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
