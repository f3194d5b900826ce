"""Benchmark of the persistent WebSocket TTS session against the loopback ElevenLabs server.

    python -m playground.bench.tts_ws [--turns 5] [--closes 5] [--json PATH]

One session, one run, the issue's targets:
1. TTFA of turn 1 vs turn N (same LLM timing, same amount of speech): within 10% when no
   turn pays a handshake (the session connected before turn 1, every turn reuses it).
2. TTFT_TTS - TTFS at p99 over every spoken chunk: <= 2 ms (handing a chunk to the
   session returns at once).
3. A forced server close (1006, mid-chunk) -> the next new audio delivered: <= 1 s
   (reconnect with backoff, resume on a new context, the repeated samples skipped).

The LLM is the replay provider (fixed token times) and the loopback server's speech for
every chunk is synthesized before the run, so what differs between turns is the session
alone (a handshake, the transport), not Piper's compute on a shared machine. Each turn
still says a different order number: no turn reuses another's audio. Playback is the
real-time null output.
"""

from __future__ import annotations

import asyncio
import statistics
import sys

from playground.audio.output import open_output
from playground.bench.harness import argument_parser, markdown_table, report
from playground.chunking import Chunker
from playground.core import events as ev
from playground.core.clock import now_ms
from playground.core.metrics import percentile
from playground.core.presets import Preset, apply_overrides, load_preset
from playground.engine.session import Session
from playground.llm.replay import ReplayLLM, ReplayLLMConfig
from playground.servers.elevenlabs import ElevenLabsServer
from playground.servers.faults import Fault
from playground.tts.elevenlabs import ElevenLabsSession

REPLY = "Sure, order {n} ships today. It should arrive by Monday!"


def _tokens(text: str) -> list[tuple[float, str]]:
    return [(30.0 + i * 15.0, word + " ") for i, word in enumerate(text.split(" "))]


def _chunks(tokens: list[tuple[float, str]], preset: Preset) -> list[str]:
    chunker = Chunker(preset.chunker)
    chunks = [c for t_ms, text in tokens for c in chunker.push(text, t_ms)] + chunker.flush(tokens[-1][0])
    return [c.text for c in chunks if c.text]


async def run(turns: int, closes: int) -> dict[str, float]:
    server = ElevenLabsServer()
    url = await server.start()
    replies = [_tokens(REPLY.format(n=4521 + i)) for i in range(turns + closes)]
    preset = apply_overrides(load_preset("loopback-elevenlabs"), [f"tts.base_url={url}"])
    for reply in replies:  # the server's speech, synthesized beforehand (see the module docstring)
        for chunk in _chunks(reply, preset):
            server.speech(chunk.strip() + " ", 22050)
    session = Session(preset, ReplayLLM(ReplayLLMConfig(), turns=replies),
                      ElevenLabsSession(preset.tts), await open_output("null"))
    await session.open()
    results: dict[str, float] = {}
    try:
        metrics = []
        for _ in range(turns):
            m = await session.run_turn("Where is my order?")
            metrics.append(m)
            print(f"  turn {m.turn}: TTFA {m.ttfa:.1f} ms (TTS part {m.ttfa - m.ttft_tts:.1f} ms), "
                  f"path {m.tts_path}", file=sys.stderr)
        recoveries = []
        for _ in range(closes):
            server.inject(Fault("close", after=1, code=1006))
            t0 = now_ms()
            m = await session.run_turn("And the other one?", t0=t0)
            metrics.append(m)
            closed = server.struck[-1][1] - t0  # the close, in the turn's ms after t0
            events = session.trace.turn_events(m.turn)
            # audio already on its way when the server dropped the connection is not "next"
            reconnected = next(e.t_ms for e in events if isinstance(e, ev.TtsSession) and e.action == "reconnect")
            after = [e.t_ms for e in events if isinstance(e, ev.TtsAudio) and e.t_ms > reconnected]
            recoveries.append(after[0] - closed)
            print(f"  turn {m.turn}: forced close -> next audio {recoveries[-1]:.1f} ms, path {m.tts_path}",
                  file=sys.stderr)
        handoffs = [h for m in metrics for h in m.handoffs]
        results = {
            "ttfa_turn1_ms": metrics[0].ttfa,
            f"ttfa_turn{turns}_ms": metrics[turns - 1].ttfa,
            "ttfa_ratio": metrics[turns - 1].ttfa / metrics[0].ttfa,
            "handoff_p50_ms": percentile(handoffs, 50),
            "handoff_p99_ms": percentile(handoffs, 99),
            "handoff_chunks": len(handoffs),
            "close_to_audio_median_ms": statistics.median(recoveries),
            "close_to_audio_max_ms": max(recoveries),
            "connections": server.handshakes,
        }
    finally:
        await session.close()
        await server.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("tts_ws", __doc__)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--closes", type=int, default=5)
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.turns, args.closes))
    ok = (results["ttfa_ratio"] <= 1.10 and results["ttfa_ratio"] >= 1 / 1.10 and results["handoff_p99_ms"] <= 2.0
          and results["close_to_audio_max_ms"] <= 1000.0)
    lines = ["## Persistent WebSocket TTS session (ElevenLabs loopback)", ""]
    lines += markdown_table(["measure", "value"], [[key, f"{value:.2f}" if isinstance(value, float) else value]
                                                   for key, value in results.items()])
    lines += ["", "targets met" if ok else "targets NOT met"]
    report("tts_ws", args, lines, {**results, "targets_met": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
