"""Spoken-input benchmark: STT time, USER_LATENCY, barge-in stop, memory.

    python -m playground.bench.voice [--preset local] [--turns 6] [--barge-ins 3] [--json PATH]

Speech is made with the local Piper voice, then fed in real time through the same path as a
microphone (VoiceLoop: VAD -> STT -> session), on the null output (real-time paced). Each
question is spoken once the previous reply has finished; each barge-in speaks half a second
into a reply. Targets (issue 5, medians on 2 cores): STT for a 3 s utterance <= 600 ms,
USER_LATENCY p50 <= 1,500 ms (offline preset, adaptive chunker), barge-in stop <= 150 ms.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Sequence

import numpy as np

from playground.audio.input import SAMPLE_RATE, CuedInput
from playground.bench.harness import (argument_parser, metric_percentile, note, open_bench_session,
                                      percentiles, report)
from playground.core import events as ev
from playground.core.memory import peak_rss_mb
from playground.core.metrics import TurnMetrics, percentile
from playground.core.presets import apply_overrides, load_preset
from playground.engine.voice import VoiceLoop

QUESTIONS = (
    "What is the capital of France?",
    "How far away is the moon?",
    "Can you recommend a good book?",
    "What time does the bakery open?",
    "Why is the sky blue?",
    "How do I make a cup of tea?",
    "What is the weather like today?",
    "Who wrote Romeo and Juliet?",
)
INTERRUPT = "Stop, thank you, that is enough."
STT_SAMPLE = "Could you tell me which train goes to the airport this evening?"  # ~3 s in the Piper voice
REPLY_MS_BEFORE_BARGE_IN = 500.0


def _speak(voice_model, text: str, pause_s: float) -> np.ndarray:
    audio = np.concatenate(list(voice_model.synthesize(text, SAMPLE_RATE)))
    return np.concatenate([audio, np.zeros(round(pause_s * SAMPLE_RATE), dtype=np.int16)])


class _Cues:
    """Sets each part's cue from the trace: a question after every earlier turn's summary, a
    barge-in `REPLY_MS_BEFORE_BARGE_IN` after the reply it interrupts started playing."""

    def __init__(self, kinds: Sequence[str]) -> None:
        self.kinds = kinds
        self.events = [threading.Event() for _ in kinds]
        self.summaries = 0

    def __call__(self, event: ev.TraceEvent) -> None:
        if isinstance(event, ev.TurnSummary):
            self.summaries += 1
        for index, kind in enumerate(self.kinds):
            if index == 0 or self.events[index].is_set():
                continue
            if kind == "ask" and isinstance(event, ev.TurnSummary) and self.summaries == index:
                threading.Timer(0.3, self.events[index].set).start()
            elif kind == "interrupt" and isinstance(event, ev.PlayStart) and event.turn == index:
                threading.Timer(REPLY_MS_BEFORE_BARGE_IN / 1000, self.events[index].set).start()


def _median(values: Sequence[float]) -> str:
    return "-" if not values else f"{percentile(values, 50):,.1f} ms"


class Misheard(Exception):
    """The run did not go as scripted: its numbers would not mean what they say."""


async def bench(preset_name: str, turns: int, barge_ins: int, stt_runs: int) -> tuple[list[str], dict]:
    from playground.servers.voice import LoopbackVoice

    preset = apply_overrides(load_preset(preset_name), ["chunker.strategy=adaptive"])
    note(f"voice: preset {preset.name}, chunker adaptive, null output, {turns} questions, {barge_ins} barge-ins")
    speaker = LoopbackVoice(preset.tts.voice)  # the caller's voice
    kinds: list[str] = []
    audio: list[np.ndarray] = []
    for i in range(turns):
        kinds.append("ask")
        audio.append(_speak(speaker, QUESTIONS[i % len(QUESTIONS)], 1.0))
    for i in range(barge_ins):
        kinds += ["ask", "interrupt"]
        audio += [_speak(speaker, QUESTIONS[(turns + i) % len(QUESTIONS)], 1.0), _speak(speaker, INTERRUPT, 1.0)]
    cues = _Cues(kinds)
    audio[0] = np.concatenate([np.zeros(SAMPLE_RATE // 2, dtype=np.int16), audio[0]])

    session = await open_bench_session(preset, "null")
    session.trace.subscribe(cues)
    source = CuedInput([(None if i == 0 else cue, a) for i, (cue, a) in enumerate(zip(cues.events, audio))])
    started: list[asyncio.Task[TurnMetrics]] = []
    voice = VoiceLoop(session, preset.input, mode="hands_free", source=source,
                      on_turn=lambda text, task: started.append(task))
    try:
        if not await voice.open():
            raise Misheard(voice.state.reason)
        async with asyncio.timeout(60 + 30 * len(kinds)):
            await voice.wait_input_end()
        metrics = [await task for task in started]
        # STT alone on a 3 s utterance, the model warm, nothing else running
        sample = _speak(speaker, STT_SAMPLE, 0.0).astype(np.float32) / 32768.0
        stt_times = []
        for _ in range(stt_runs):
            t = time.perf_counter()
            await asyncio.to_thread(voice.stt.transcribe, sample)
            stt_times.append((time.perf_counter() - t) * 1000)
    finally:
        await voice.close()
        await session.close()
    if len(metrics) != len(kinds):
        raise Misheard(f"{len(kinds)} utterances made {len(metrics)} turns (misheard?)")

    asked = [m for m, kind in zip(metrics, kinds) if kind == "ask" and m.status == "ok"]
    cancelled = [e for e in session.trace.events if isinstance(e, ev.TurnCancelled)]
    stop_ms = [e.stop_ms for e in cancelled]
    audio_stop_ms = []
    for e in cancelled:
        requested = e.t_ms - e.stop_ms
        cuts = [c.t_ms for c in session.trace.turn_events(e.turn) if isinstance(c, ev.PlayEnd) and c.cut]
        audio_stop_ms += [min(cuts) - requested] if cuts else []
    detection = [e.t_ms - e.onset_ms for e in session.trace.events
                 if isinstance(e, ev.VadSpeechStart) and e.barge_in is not None]

    def p50(key: str) -> str:
        value = metric_percentile(asked, key, 50)
        return "-" if value is None else f"{value:,.0f} ms"

    rss_mb = peak_rss_mb()
    seconds = len(sample) / SAMPLE_RATE
    lines = ["## Spoken input: offline preset, adaptive chunker, null output", "",
             f"- STT, {seconds:.1f} s utterance, alone: median {_median(stt_times)} ({stt_runs} runs; target <= 600 ms)",
             f"- spoken turns ({len(asked)} answered): VAD_END p50 {p50('vad_end')}, STT p50 {p50('stt')}, "
             f"LLM_TTFT p50 {p50('llm_ttft')}, TTFA p50 {p50('ttfa')}, FIRST_PLAY p50 {p50('first_play')}",
             f"- USER_LATENCY p50 {p50('user_latency')} (end of speech -> first audio; target <= 1,500 ms)",
             f"- barge-in ({len(cancelled)}): speech confirmed -> playback cut median {_median(audio_stop_ms)}, "
             f"-> LLM, TTS and playback all stopped median {_median(stop_ms)} (target <= 150 ms); "
             f"speech onset -> confirmed median {_median(detection)}",
             f"- STT model load (with warm-up) {voice.stt.load_ms:,.0f} ms; peak RSS {rss_mb:,.0f} MB "
             "(LLM, TTS, VAD and STT loaded)"]
    numbers = {
        "stt_alone_ms": {"utterance_s": seconds, **percentiles(stt_times, (50,))},
        "spoken_turns": {"answered": len(asked), **{key: metric_percentile(asked, key, 50) for key in (
            "vad_end", "stt", "llm_ttft", "ttfa", "first_play", "user_latency")}},
        "barge_in_ms": {"count": len(cancelled), "playback_cut_median": percentile(audio_stop_ms, 50),
                        "all_stopped_median": percentile(stop_ms, 50), "detection_median": percentile(detection, 50)},
        "stt_load_ms": voice.stt.load_ms,
        "peak_rss_mb": rss_mb,
    }
    return lines, numbers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser("voice", __doc__)
    parser.add_argument("--preset", default="local")
    parser.add_argument("--turns", type=int, default=6, help="questions answered in full (USER_LATENCY)")
    parser.add_argument("--barge-ins", type=int, default=3, help="replies interrupted by speech")
    parser.add_argument("--stt-runs", type=int, default=10, help="timed STT passes on a 3 s utterance")
    args = parser.parse_args(argv)
    try:
        lines, numbers = asyncio.run(bench(args.preset, args.turns, args.barge_ins, args.stt_runs))
    except Misheard as exc:
        note(f"voice: {exc}")
        return 1
    report("voice", args, lines, numbers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
