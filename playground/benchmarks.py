"""Benchmarks for the foundation's targets, rerunnable by anyone: `make bench`.

    python -m playground.benchmarks [--turns 10] [--audio null] [--set section.key=value ...]

1. Pipeline: one warm offline session; short questions, strategies alternating turn by
   turn in ABBA order so both see the same machine state and prompt cache; medians
   of TTFA and FIRST_PLAY per strategy and their ratio; chunk -> TTS hand-off p50/p99.
2. Chunker: microseconds per pushed token, p50/p99, per strategy, over replies streamed
   as the real SmolLM2 tokenizer splits them.
3. Memory: peak RSS of the process after the session (LLM + voice loaded) ran its turns.

Replies are capped (llm.max_tokens=40 unless --set says otherwise): the null output plays
every reply in real time, and TTFA / FIRST_PLAY are decided by the first chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time

from playground.chunking import Chunker
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


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


async def pipeline(turns: int, audio: str, overrides: list[str]) -> tuple[dict[str, list[TurnMetrics]], float, list[list[str]]]:
    from playground.engine.build import open_session

    base = load_preset("local", ["llm.max_tokens=40", *overrides])
    session = await open_session(base, audio=audio, warn=lambda m: print(m, file=sys.stderr),
                                 progress=lambda m: print(f"… {m}", file=sys.stderr))
    results: dict[str, list[TurnMetrics]] = {"adaptive": [], "sentence": []}
    try:
        session.history.clear()
        await session.run_turn("Hello?")  # warm-up: first evaluation of the system prompt
        for i in range(turns):
            # ABBA order: neither strategy always runs second on an identical, fully cached prompt.
            order = list(results) if i % 2 == 0 else list(reversed(results))
            for strategy in order:
                session.preset = apply_overrides(base, [f"chunker.strategy={strategy}"])
                session.history.clear()  # same short context every turn: a warm session, a short question
                m = await session.run_turn(QUESTIONS[i % len(QUESTIONS)])
                results[strategy].append(m)
                print(f"  turn {session.turn_count:>3} {strategy:<9} TTFA {_ms(m.ttfa):>5} ms  "
                      f"FIRST_PLAY {_ms(m.first_play):>5} ms  ({m.status})", file=sys.stderr)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tokenize = session.llm._llama.tokenize  # the model's own tokenizer, for the chunker benchmark
        detokenize = session.llm._llama.detokenize
        fragments = [
            [detokenize([t]).decode("utf-8", "replace") for t in tokenize(text.encode(), add_bos=False)]
            for text in CHUNKER_TEXTS
        ]
    finally:
        await session.close()
    return results, rss_mb, fragments


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


def report(results: dict[str, list[TurnMetrics]], rss_mb: float, costs: dict[str, tuple[float, float, int]], turns: int) -> str:
    lines = [f"## Pipeline: offline preset, warm session, {turns} short questions per strategy (alternating)", "",
             "| strategy | LLM_TTFT p50 | TTFS p50 | TTFA p50 | FIRST_PLAY p50 | E2E_TOTAL p50 | turns ok |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    medians: dict[str, dict[str, float | None]] = {}
    for strategy, ms in results.items():
        ok = [m for m in ms if m.status == "ok"]
        medians[strategy] = {k: percentile([v for m in ok if (v := m.value(k)) is not None], 50)
                             for k in ("llm_ttft", "ttfs", "ttfa", "first_play", "e2e_total")}
        med = medians[strategy]
        lines.append(f"| {strategy} | {_ms(med['llm_ttft'])} | {_ms(med['ttfs'])} | {_ms(med['ttfa'])} | "
                     f"{_ms(med['first_play'])} | {_ms(med['e2e_total'])} | {len(ok)}/{len(ms)} |")
    a, s = medians["adaptive"], medians["sentence"]
    if a["ttfa"] and s["ttfa"] and a["first_play"] and s["first_play"]:
        lines += ["", f"adaptive / sentence: TTFA x{a['ttfa'] / s['ttfa']:.2f}, FIRST_PLAY x{a['first_play'] / s['first_play']:.2f}"]
    handoffs = [h for ms in results.values() for m in ms for h in m.handoffs]
    lines += ["", f"Hand-off (chunk emitted -> text given to TTS), {len(handoffs)} chunks: "
              f"p50 {percentile(handoffs, 50) * 1000:.0f} µs, p99 {percentile(handoffs, 99) * 1000:.0f} µs", "",
              "## Chunker cost per pushed token (SmolLM2 tokens of 20 replies, 5 passes)", "",
              "| strategy | p50 µs | p99 µs | tokens |", "| --- | ---: | ---: | ---: |"]
    for strategy, (p50, p99, n) in costs.items():
        lines.append(f"| {strategy} | {p50:.1f} | {p99:.1f} | {n} |")
    lines += ["", f"## Memory: peak RSS of the session (SmolLM2 + Piper loaded, {2 * turns + 1} turns run): {rss_mb:.0f} MB"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=10, help="turns per strategy (default 10)")
    parser.add_argument("--audio", default="null", help="output: null (default) or a device")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    results, rss_mb, fragments = asyncio.run(pipeline(args.turns, args.audio, args.overrides))
    print(report(results, rss_mb, chunker_cost(fragments), args.turns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
