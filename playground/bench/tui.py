"""Does the TUI slow the pipeline? Rerunnable: `python -m playground.bench.tui [--turns 10] [--json PATH]`.

The same replayed LLM stream (300 tokens/s) runs through the same engine (chunker,
Piper, null output) turn after turn, alternately with no UI and with the TUI running
headless (`App.run_test`), all in one run. For every spoken chunk it measures the
hand-off from the arrival of the token that made the chunker emit it to the chunk's
text being given to TTS (token -> chunk -> TTS), and it samples how late 1 ms timers fire on the
engine's loop and on the UI's loop (the longest stall of each).
"""

from __future__ import annotations

import asyncio
import sys

from playground.bench.harness import abba, argument_parser, markdown_table, percentiles, report
from playground.core import events as ev
from playground.core.clock import now_ms
from playground.core.presets import load_preset
from playground.llm.replay import ReplayLLM, ReplayLLMConfig

REPLY = ("Sure, I can help with that. Your order shipped on Monday, and it should arrive by Thursday; "
         "if it doesn't, call us at 1-800-555-0199 and we'll send a new one right away. "
         "Is there anything else I can do for you today?")
TOKENS_PER_S = 300.0


def replay_tokens() -> list[tuple[float, str]]:
    words = REPLY.replace(" ", "\x00 ").split("\x00")
    return [(30.0 + i * 1000.0 / TOKENS_PER_S, w) for i, w in enumerate(words)]


class LoopLag:
    """Samples how late a 1 ms sleep wakes up on the loop it runs on: the loop's stalls."""

    def __init__(self) -> None:
        self.worst_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = now_ms()
            await asyncio.sleep(0.001)
            self.worst_ms = max(self.worst_ms, now_ms() - before - 1.0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def handoffs(events: list[ev.TraceEvent]) -> list[float]:
    """Per spoken chunk: tts.send time - arrival of the token (or deadline) that made the
    chunker emit it. The chunker's own wait for a boundary is not in it: that is TTFS."""
    emitted_by = {(e.turn, e.index): e.input_ms for e in events if isinstance(e, ev.Chunk)}
    return [e.t_ms - emitted_by[key] for e in events
            if isinstance(e, ev.TtsSend) and (key := (e.turn, e.chunk)) in emitted_by]


async def run(turns: int) -> dict[str, dict[str, float]]:
    from playground.audio.output import open_output
    from playground.engine.runner import EngineThread
    from playground.engine.session import Session
    from playground.tts.piper import PiperSession
    from playground.ui.app import PlaygroundApp

    preset = load_preset("local")
    tokens = replay_tokens()
    results: dict[str, dict[str, list[float] | float]] = {
        mode: {"handoffs": [], "engine_lag": 0.0, "ui_lag": 0.0} for mode in ("headless", "tui")}

    async def open_replay_session() -> Session:
        output = await open_output("null")
        llm = ReplayLLM(ReplayLLMConfig(), turns=[tokens])
        session = Session(preset, llm, PiperSession(preset.tts), output)
        await session.open()
        return session

    engine = EngineThread().start()
    session = await asyncio.wrap_future(engine.submit(open_replay_session()))
    engine_lag = LoopLag()
    engine.call(engine_lag.start)
    ui_lag = LoopLag()

    async def one_turn(mode: str, text: str) -> None:
        engine_lag.worst_ms = 0.0
        first = len(session.trace.events)
        await asyncio.wrap_future(engine.submit(session.run_turn(text)))
        data = results[mode]
        data["handoffs"] += handoffs(session.trace.events[first:])
        data["engine_lag"] = max(data["engine_lag"], engine_lag.worst_ms)

    for i in range(turns):
        for mode in abba(i, ("headless", "tui")):
            if mode == "headless":  # no app at all
                await one_turn(mode, f"turn {i}")
                continue
            app = PlaygroundApp(preset, audio="null", attach=(engine, session))
            async with app.run_test(size=(160, 48)) as pilot:
                await pilot.pause(0.1)
                ui_lag.worst_ms = 0.0
                ui_lag.start()
                await one_turn(mode, f"turn {i}")
                await pilot.pause(0.1)
                ui_lag.stop()
                results[mode]["ui_lag"] = max(results[mode]["ui_lag"], ui_lag.worst_ms)
    engine.call(engine_lag.stop)
    await asyncio.wrap_future(engine.submit(session.close()))
    engine.stop()
    return {mode: {**percentiles(d["handoffs"], (50, 99)), "engine_lag": d["engine_lag"], "ui_lag": d["ui_lag"]}
            for mode, d in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("tui", __doc__)
    parser.add_argument("--turns", type=int, default=10, help="turns per mode (default 10)")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.turns))
    lines = [f"## TUI overhead: replayed LLM at {TOKENS_PER_S:.0f} tokens/s, {args.turns} turns per mode, alternating", ""]
    lines += markdown_table(
        ["mode", "hand-off p50 ms", "hand-off p99 ms", "chunks", "worst engine-loop stall ms", "worst UI-loop stall ms"],
        [[mode, f"{r['p50']:.3f}", f"{r['p99']:.3f}", r["n"], f"{r['engine_lag']:.1f}",
          f"{r['ui_lag']:.1f}" if mode == "tui" else "-"] for mode, r in results.items()])
    delta = results["tui"]["p99"] - results["headless"]["p99"]
    lines += ["", f"hand-off p99 with the TUI minus without: {delta:+.3f} ms (target: within 1 ms)"]
    report("tui", args, lines, {"modes": results, "handoff_p99_delta_ms": delta, "tokens_per_s": TOKENS_PER_S})
    return 0


if __name__ == "__main__":
    sys.exit(main())
