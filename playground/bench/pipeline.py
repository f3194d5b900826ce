"""Benchmarks for the latency targets, rerunnable by anyone: `make bench`.

    python -m playground.bench.pipeline [--turns 20] [--strategies adaptive,clause,sentence,words]
                                        [--overlap] [--no-startup] [--set section.key=value ...] [--json PATH]

1. Pipeline: one warm offline session; short questions, the strategies taking turns in
   ABBA order so all see the same machine state and prompt cache; p50/p90 of LLM_TTFT,
   TTFS, TTFA, FIRST_PLAY and E2E_TOTAL per strategy with the ratio to `sentence`;
   chunk -> TTS hand-off p50/p99; the oracle bound (measured TTFA / earliest possible).
2. Chunker: microseconds per pushed token, p50/p99, per strategy, and the chunker wait
   (emission - arrival of the token that brought the boundary) per boundary kind, over
   replies streamed as the real SmolLM2 tokenizer splits them.
3. Memory: peak RSS of the session (LLM + voice), then with the STT model loaded too.
4. Startup: `playground` launched in a child process, the time to an interactive TUI and
   to the first turn being accepted (models loaded), median of 3 launches.
5. With --overlap: the offline preset's ways of sharing 2 cores between llama.cpp and
   Piper (llm.threads, tts.threads, llm.pause_until_first_audio), each in fresh sessions, in
   ABBA blocks; TTFA and FIRST_PLAY p50/p90 per configuration.

Replies are capped (llm.max_tokens=40 unless --set says otherwise): the null output plays
every reply in real time, and TTFA / FIRST_PLAY are decided by the first chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

from playground.bench.harness import (abba, argument_parser, markdown_table, metric_percentile, metric_percentiles,
                                      note, ok_turns, open_bench_session, percentiles, report)
from playground.chunking import Chunker
from playground.chunking.oracle import TARGET_RATIO, median_ratios, oracle_bound
from playground.core.formatting import format_ms
from playground.core.memory import peak_rss_mb
from playground.core.metrics import TurnMetrics, percentile
from playground.core.presets import STRATEGIES, apply_overrides, load_preset

QUESTIONS = [
    "Hi, who is this?",
    "How so?",
    "What time do you open tomorrow?",
    "Can you help me with my order?",
    "Where are you located?",
    "Is there a fee for delivery?",
    "Can I talk to a person?",
    "What do you recommend?",
    "How long will it take?",
    "Thanks, anything else I should know?",
]

CHUNKER_TEXTS = [
    "You filled out a Facebook ad about creating passive income without adding more hours to your day—that's how we got your info.",
    "Sure! Dr. Smith can see you at 3:30 p.m. on Friday, Nov. 27. The visit costs $1,250.00, and you can pay online at pay.example.com or call 1-800-555-0199.",
    "Well... I think so. Let me check: your order No. 4521 shipped on Monday, e.g. it should arrive by Thursday. Is there anything else I can help you with today?",
    "Here is what I found:\n1. The basic plan is $9.99 a month.\n2. The pro plan is $19.99 a month.\n3. Both include support at support@example.com. Which one sounds better to you?",
    "I understand how frustrating that must be, and I'm sorry for the trouble; I'll make sure someone from our team gets back to you within 24 hours, okay?",
] * 4


PIPELINE_METRICS = ("llm_ttft", "ttfs", "ttfa", "first_play", "e2e_total")
# How llama.cpp and Piper share the cores (--overlap): name -> preset overrides
OVERLAP_CONFIGS = {
    "both on all cores": [],
    "llm.threads=1": ["llm.threads=1"],
    "tts.threads=1": ["tts.threads=1"],
    "pause LLM until first audio": ["llm.pause_until_first_audio=true"],
}
STARTUP_LAUNCHES = 3


def _p(metrics: list[TurnMetrics], key: str, q: float) -> float | None:
    return metric_percentile(ok_turns(metrics), key, q)


def _p50_p90(metrics: list[TurnMetrics], key: str) -> str:
    return f"{format_ms(_p(metrics, key, 50))} / {format_ms(_p(metrics, key, 90))}"


async def warm_session(overrides: list[str]):
    session = await open_bench_session(load_preset("local", ["llm.max_tokens=40", *overrides]), "null")
    session.history.clear()
    await session.run_turn("Hello?")  # warm-up: first evaluation of the system prompt
    return session


async def run_alternating(session, variants: dict[str, list[str]], turns: int,
                          results: dict[str, list[TurnMetrics]], first_question: int = 0) -> None:
    """`turns` turns per variant (preset overrides applied per turn), in ABBA order."""
    base = session.preset
    for i in range(turns):
        for name in abba(i, list(variants)):
            session.preset = apply_overrides(base, variants[name])
            session.history.clear()  # same short context every turn: a warm session, a short question
            m = await session.run_turn(QUESTIONS[(first_question + i) % len(QUESTIONS)])
            results[name].append(m)
            note(f"  turn {session.turn_count:>3} {name:<28} TTFA {format_ms(m.ttfa):>5} ms  "
                 f"FIRST_PLAY {format_ms(m.first_play):>5} ms  ({m.status})")
    session.preset = base


async def pipeline(turns: int, strategies: list[str], overrides: list[str]):
    """Per-strategy metrics, oracle bounds of the default strategy, RSS with and without STT, fragments."""
    session = await warm_session(overrides)
    results: dict[str, list[TurnMetrics]] = {name: [] for name in strategies}
    try:
        await run_alternating(session, {name: [f"chunker.strategy={name}"] for name in strategies}, turns, results)
        bounds = [oracle_bound(session.trace.turn_events(m.turn), session.preset.chunker) for m in results[strategies[0]]]
        rss_mb = peak_rss_mb()
        llm = session.llm  # the model's own tokenizer, for the chunker benchmark
        fragments = [[llm.detokenize([t]).decode("utf-8", "replace") for t in llm.tokenize(text)]
                     for text in CHUNKER_TEXTS]
        from playground.stt.whisper import WhisperSTT

        # loaded beside the open session, as a spoken-input session has it (load includes a warm-up pass)
        stt = WhisperSTT(session.preset.input.stt_model, session.preset.input.stt_threads)
        await asyncio.to_thread(stt.load)
        rss_stt_mb = peak_rss_mb()
    finally:
        await session.close()
    return results, bounds, (rss_mb, rss_stt_mb), fragments


async def overlap(turns: int, overrides: list[str]) -> dict[str, list[TurnMetrics]]:
    """Each configuration in fresh sessions, blocks of turns in ABBA order (threads are fixed at load)."""
    results: dict[str, list[TurnMetrics]] = {name: [] for name in OVERLAP_CONFIGS}
    block = max(1, turns // 2)
    for round_ in range(2):
        for name in abba(round_, list(OVERLAP_CONFIGS)):
            session = await warm_session([*overrides, *OVERLAP_CONFIGS[name]])
            try:
                await run_alternating(session, {name: []}, block, results, first_question=round_ * block)
            finally:
                await session.close()
    return results


def chunker_cost(fragments: list[list[str]]) -> dict[str, tuple[float, float, int]]:
    """strategy -> (p50 µs, p99 µs, tokens) per pushed token."""
    costs: dict[str, tuple[float, float, int]] = {}
    for strategy in STRATEGIES:
        config = load_preset("local", [f"chunker.strategy={strategy}"]).chunker
        samples: list[float] = []
        for _ in range(5):
            for reply in fragments:
                chunker = Chunker(config)
                t = 0.0
                for fragment in reply:
                    t += 8.0
                    start = time.perf_counter_ns()
                    chunker.push(fragment, t)
                    samples.append((time.perf_counter_ns() - start) / 1000.0)
                chunker.flush(t)
        costs[strategy] = (percentile(samples, 50), percentile(samples, 99), len(samples))
    return costs


def boundary_kind(chunk_raw: str, boundary_fragment: str, offset_in_fragment: int) -> str:
    """How a strong/weak cut's boundary could be known: `unambiguous` when its character alone
    decides (? ! ; — , after a word) or what confirms it came in the same token (". "),
    `next token` when only the next token could tell ("example" "." "com", "3,000", "/a,b",
    a quoted "Stop!" whose sentence may go on after the closing quote)."""
    stripped = chunk_raw.rstrip("\"”’)]»")
    mark = stripped[-1:]
    word = stripped.split()[-1] if stripped.split() else ""
    url_like = "/" in word or "@" in word or word.lower().startswith("www.")
    if (mark in "?!" and stripped == chunk_raw) or mark in ";—" or (mark == "," and not word[-2:-1].isdigit() and not url_like):
        return "unambiguous"
    return "unambiguous" if offset_in_fragment < len(boundary_fragment) else "next token"


def chunker_waits(fragments: list[list[str]], gap_ms: float = 30.0) -> dict[str, list[float]]:
    """Boundary kind -> chunker waits (ms) over the replies pushed `gap_ms` apart (adaptive, strong and weak cuts)."""
    waits: dict[str, list[float]] = {"unambiguous": [], "next token": []}
    config = load_preset("local").chunker
    for reply in fragments:
        chunker = Chunker(config)
        arrivals = [i * gap_ms for i in range(len(reply))]
        chunks = [c for i, fragment in enumerate(reply) for c in chunker.push(fragment, arrivals[i])]
        position = 0
        for chunk in chunks:
            end = position + len(chunk.raw)  # the chunk's last character, in the reply
            position = end
            if chunk.reason not in ("strong", "weak"):
                continue
            upto = 0
            for i, fragment in enumerate(reply):
                if upto + len(fragment) >= end:
                    kind = boundary_kind(chunk.raw, fragment, end - upto)
                    waits[kind].append(chunk.end_ms - arrivals[i])
                    break
                upto += len(fragment)
    return waits


def startup_times() -> tuple[float, float]:
    """Medians over launches of `playground` (child process): seconds to an interactive TUI and to the first turn accepted."""
    interactive, accepted = [], []
    for _ in range(STARTUP_LAUNCHES):
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "playground.bench.pipeline", "--startup-child"],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("interactive"):
                interactive.append(time.perf_counter() - started)
            elif line.startswith("accepted"):
                accepted.append(time.perf_counter() - started)
        child.wait()
    return percentile(interactive, 50), percentile(accepted, 50)


async def startup_child() -> None:
    """Runs the TUI headless on the offline preset; prints when it is interactive and when a turn is accepted."""
    from playground.ui.app import PlaygroundApp

    app = PlaygroundApp(load_preset("local"), audio="null")
    async with app.run_test(size=(120, 40)):
        print("interactive", flush=True)  # mounted: keys are handled (typed text is queued until the models load)
        while app.session is None:  # set once the models are loaded
            await asyncio.sleep(0.005)  # not pilot.pause(): it would wait for the loading to end
        print("accepted", flush=True)


def turn_results(metrics: list[TurnMetrics], keys: tuple[str, ...]) -> dict:
    return {"metrics": metric_percentiles(ok_turns(metrics), keys), "turns_ok": len(ok_turns(metrics)),
            "turns": len(metrics)}


def pipeline_report(results: dict[str, list[TurnMetrics]], bounds, rss: tuple[float, float],
                    costs: dict[str, tuple[float, float, int]], waits: dict[str, list[float]],
                    startup: tuple[float, float] | None, turns: int) -> tuple[list[str], dict]:
    """The Markdown report and the JSON results of everything but the overlap study."""
    default = next(iter(results))
    lines = [f"## Pipeline: offline preset, warm session, {turns} short questions per strategy (alternating)", ""]
    lines += markdown_table(["strategy", *(f"{k.upper()} p50 / p90" for k in PIPELINE_METRICS), "turns ok"],
                            [[strategy, *(_p50_p90(ms, k) for k in PIPELINE_METRICS),
                              f"{len(ok_turns(ms))}/{len(ms)}"] for strategy, ms in results.items()])
    if "sentence" in results:
        lines += ["", "p50 ratio to `sentence`:", ""]
        for strategy, ms in results.items():
            ratios = []
            for k in PIPELINE_METRICS:
                mine, theirs = _p(ms, k, 50), _p(results["sentence"], k, 50)
                ratios.append(f"{k.upper()} x{mine / theirs:.2f}" if mine and theirs else f"{k.upper()} -")
            lines.append(f"- {strategy}: " + ", ".join(ratios))
    own, best = median_ratios(bounds)
    verdict = "within" if own is not None and own <= TARGET_RATIO else "NOT within"
    lines += ["", f"Oracle bound, {default} ({len(bounds)} turns): measured TTFA / own bound median "
              f"x{own or 0:.3f} ({verdict} the x{TARGET_RATIO} target); / best acceptable first chunk x{best or 0:.3f}"]
    handoffs = [h for ms in results.values() for m in ms for h in m.handoffs]
    lines += ["", f"Hand-off (chunk emitted -> text given to TTS), {len(handoffs)} chunks: "
              f"p50 {percentile(handoffs, 50) * 1000:.0f} µs, p99 {percentile(handoffs, 99) * 1000:.0f} µs", "",
              "## Chunker cost per pushed token (SmolLM2 tokens of 20 replies, 5 passes)", ""]
    lines += markdown_table(["strategy", "p50 µs", "p99 µs", "tokens"],
                            [[strategy, f"{p50:.1f}", f"{p99:.1f}", n] for strategy, (p50, p99, n) in costs.items()])
    lines += ["", "## Chunker wait (emission - arrival of the boundary's token), adaptive, tokens 30 ms apart", ""]
    for kind, values in waits.items():
        if values:
            lines.append(f"- {kind}: {len(values)} boundaries, p50 {percentile(values, 50):.1f} ms, "
                         f"p99 {percentile(values, 99):.1f} ms")
    lines += ["", f"## Memory: peak RSS {rss[0]:.0f} MB (SmolLM2 + Piper, {len(results) * turns + 1} turns run); "
              f"{rss[1]:.0f} MB with faster-whisper tiny.en loaded too"]
    if startup:
        lines += ["", f"## Startup (median of {STARTUP_LAUNCHES} launches): interactive TUI in {startup[0]:.2f} s, "
                  f"first turn accepted (models loaded) in {startup[1]:.2f} s"]
    numbers = {
        "strategies": {strategy: turn_results(ms, PIPELINE_METRICS) for strategy, ms in results.items()},
        "oracle": {"strategy": default, "turns": len(bounds), "ttfa_over_own_bound_median": own,
                   "ttfa_over_best_bound_median": best, "target": TARGET_RATIO},
        "handoff_ms": percentiles(handoffs, (50, 99)),
        "chunker_cost_us": {strategy: {"p50": p50, "p99": p99, "tokens": n} for strategy, (p50, p99, n) in costs.items()},
        "chunker_wait_ms": {kind: percentiles(values, (50, 99)) for kind, values in waits.items()},
        "peak_rss_mb": {"session": rss[0], "with_stt": rss[1]},
        "startup_s": None if startup is None else {"interactive": startup[0], "accepted": startup[1],
                                                   "launches": STARTUP_LAUNCHES},
    }
    return lines, numbers


def overlap_report(results: dict[str, list[TurnMetrics]]) -> tuple[list[str], dict]:
    lines = ["## Overlap: sharing the cores between llama.cpp and Piper (adaptive, fresh sessions, ABBA blocks)", ""]
    lines += markdown_table(
        ["configuration", "TTFA p50 / p90", "FIRST_PLAY p50 / p90", "E2E_TOTAL p50", "turns ok"],
        [[name, _p50_p90(ms, "ttfa"), _p50_p90(ms, "first_play"), format_ms(_p(ms, "e2e_total", 50)),
          f"{len(ok_turns(ms))}/{len(ms)}"] for name, ms in results.items()])
    return lines, {name: turn_results(ms, ("ttfa", "first_play", "e2e_total")) for name, ms in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("pipeline", __doc__)
    parser.add_argument("--turns", type=int, default=20, help="turns per strategy (default 20)")
    parser.add_argument("--strategies", default="adaptive,clause,sentence,words",
                        help="comma-separated, the first is the one the oracle bound is computed for")
    parser.add_argument("--overlap", action="store_true", help="also compare the ways of sharing the cores")
    parser.add_argument("--no-startup", action="store_true", help="skip the startup launches")
    parser.add_argument("--startup-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    if args.startup_child:
        asyncio.run(startup_child())
        return 0
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategy {', '.join(unknown)} (choose from {', '.join(STRATEGIES)})")
    startup = None if args.no_startup else startup_times()
    results, bounds, rss, fragments = asyncio.run(pipeline(args.turns, strategies, args.overrides))
    lines, numbers = pipeline_report(results, bounds, rss, chunker_cost(fragments), chunker_waits(fragments),
                                     startup, args.turns)
    if args.overlap:
        print("\n".join(lines) + "\n", flush=True)  # the overlap study takes as long again
        lines, numbers["overlap"] = overlap_report(asyncio.run(overlap(args.turns, args.overrides)))
    report("pipeline", args, lines, numbers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
