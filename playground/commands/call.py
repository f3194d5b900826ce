"""`playground call URL`: phone a voice agent over a carrier's media stream and measure it from outside.

    playground call ws://127.0.0.1:8780/ --say "Hi, who is this?" --say "What do you sell?"
    playground call wss://agent.example.com/media --dialect telnyx --script phone-call --network 4g
    playground call ws://127.0.0.1:8780/                  # type lines; each is spoken at once
    playground call ws://127.0.0.1:8780/ --calls 10 --script phone-call --agent-traces calls/

The playground plays the carrier (Twilio Media Streams or Telnyx media streaming: `connected`,
`start`, 20 ms μ-law `media`, `mark` echoes, `stop`) and the caller (each line spoken by the
local Piper voice, in real time, silence between lines). Per turn it prints FIRST_AUDIO and
REAL_LATENCY (the caller's end of speech -> the agent's first audio / first audible sound),
the agent's speech, barge-in stop times and faults; with --agent-traces (serve-agent's
--trace folder) it also cuts FIRST_AUDIO into the agent's own time, its end-of-speech
detection and the network.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from playground.commands import Command
from playground.core.memory import peak_rss_mb
from playground.phone.dialects import DIALECTS, dialect
from playground.phone.network import PROFILES, network_profile

if TYPE_CHECKING:
    from playground.console import Console
    from playground.phone.caller import CallResult, Line

MAX_CALLS = 200  # simultaneous calls from one process; more machines for more (docs/phone.md)
STAGGER_MS = 100.0  # calls of a batch are placed this far apart, not in one burst


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="the agent's media-stream WebSocket (ws:// or wss://)")
    parser.add_argument("--dialect", choices=sorted(DIALECTS), default="twilio",
                        help="the carrier protocol to speak (default: twilio)")
    parser.add_argument("--say", action="append", default=[], metavar="TEXT",
                        help="a line to say, one turn each (repeatable)")
    parser.add_argument("--script", metavar="FILE",
                        help="lines to say from a script like bench's (one per line, # comments; "
                             "'[barge-in 800ms] text' cuts into the reply after 800 ms of it); or a shipped name")
    parser.add_argument("--mic", action="store_true",
                        help="say what you say into the microphone (a pause of 500 ms ends a turn; use headphones)")
    parser.add_argument("--mic-device", default="default", metavar="DEVICE",
                        help="the microphone: an index or part of a name (`playground devices`)")
    parser.add_argument("--mic-file", metavar="WAV", help="a 16-bit WAV file played into the call in real time "
                        "instead of the microphone; the call ends when it has played out")
    parser.add_argument("--trace", metavar="PATH",
                        help="the caller's JSON Lines trace (with --calls: a folder, one call-NNN.jsonl per call)")
    parser.add_argument("--agent-traces", metavar="DIR",
                        help="serve-agent's --trace folder: cut each turn into the agent's stages from its trace")
    parser.add_argument("--no-audio", action="store_true", help="do not play the agent on the speaker")
    parser.add_argument("--audio", metavar="DEVICE", help="output device for the agent's voice (default: the default)")
    parser.add_argument("--network", choices=sorted(PROFILES),
                        help="simulate the network leg both ways: " + ", ".join(
                            f"{p.name} {p.latency_ms:g}±{p.jitter_ms:g} ms" for p in PROFILES.values()))
    parser.add_argument("--latency-ms", type=float, help="one-way network delay (with or without --network)")
    parser.add_argument("--jitter-ms", type=float, help="network delay variation, each way")
    parser.add_argument("--calls", default="1", metavar="N[,N...]",
                        help=f"simultaneous scripted calls (at most {MAX_CALLS}); a list (1,5,10) runs each count "
                             "in turn and reports latency against it")
    parser.add_argument("--no-transcribe", action="store_true", help="do not transcribe the agent's replies")
    parser.add_argument("--lead-in-ms", type=float, default=600.0,
                        help="silence after the call starts, before the first line (default 600)")
    parser.add_argument("--reply-silence-ms", type=float, default=1200.0,
                        help="the agent's reply is over after this long with nothing audible (default 1200)")
    parser.add_argument("--answer-timeout-ms", type=float, default=10_000.0,
                        help="no audio this long after a line: no_answer, and the next line (default 10000)")
    parser.add_argument("--max-duration", type=float, default=600.0, metavar="S",
                        help="hang up after this many seconds (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated network jitter")


def call_counts(spec: str) -> list[int]:
    try:
        counts = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(not 1 <= n <= MAX_CALLS for n in counts):
        raise ValueError(f"--calls {spec}: give counts from 1 to {MAX_CALLS}, e.g. 10 or 1,5,10")
    return counts


def run(args: argparse.Namespace, console: Console) -> int:
    from playground.phone.caller import CallOptions, Line, parse_line, read_script

    counts = call_counts(args.calls)
    network = network_profile(args.network, args.latency_ms, args.jitter_ms)
    lines: list[Line] | None = None
    if args.script:
        lines = read_script(args.script)
    elif args.say:
        lines = [line for text in args.say if (line := parse_line(text, "say")) is not None]
    speaking = args.mic or args.mic_file is not None
    if counts != [1] and lines is None:
        raise ValueError("--calls needs the lines to say: --say or --script")
    if speaking and lines is not None:
        raise ValueError("--mic / --mic-file and --say / --script are two ways to speak: choose one")
    if not args.url.startswith(("ws://", "wss://")):
        raise ValueError(f"{args.url}: the agent's URL is a WebSocket (ws:// or wss://)")
    options = CallOptions(args.url, dialect(args.dialect), network, args.seed, args.lead_in_ms,
                          args.reply_silence_ms, args.answer_timeout_ms, max_duration_s=args.max_duration,
                          agent_traces=Path(args.agent_traces) if args.agent_traces else None)
    return asyncio.run(_main(args, options, lines, counts, console))


async def _main(args: argparse.Namespace, options: Any, lines: list[Line] | None, counts: list[int],
                console: Console) -> int:
    from playground.phone.caller import CallerResources

    console.note("… loading the caller's voice" + ("" if args.no_transcribe else " and speech recognition"))
    resources = await asyncio.to_thread(CallerResources, stt_model=None if args.no_transcribe else "tiny.en")
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)  # Ctrl-C hangs up cleanly
    except (NotImplementedError, RuntimeError):
        pass
    try:
        if counts == [1]:
            return await _one_call(args, options, lines, resources, console)
        return await _many_calls(args, options, lines or [], counts, resources, console)
    except asyncio.CancelledError:
        console.note("interrupted: hung up")
        return 130
    finally:
        resources.close()


def _printer(console: Console, prefix: str = "") -> Any:
    def show(kind: str, text: str) -> None:
        if kind == "you":
            console.print(f"{prefix}you: {text}")
        elif kind == "agent":
            console.print(f"{prefix}agent: {text}")
        elif kind == "error":
            console.note(console.red(f"{prefix}{text}"))
        else:
            console.note(f"{prefix}{text}")
    return show


async def _stdin_lines(stream: TextIO) -> AsyncIterator[Line]:
    """Lines typed on stdin, each said as soon as it is typed. The reading thread is a daemon:
    hanging up must not wait for a line that is never typed."""
    from playground.phone.caller import parse_line

    loop = asyncio.get_running_loop()
    typed: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for text in stream:
            loop.call_soon_threadsafe(typed.put_nowait, text)
        loop.call_soon_threadsafe(typed.put_nowait, None)

    threading.Thread(target=read, name="stdin-lines", daemon=True).start()
    while (text := await typed.get()) is not None:
        line = parse_line(text, "stdin")
        if line is not None:
            yield line


async def _one_call(args: argparse.Namespace, options: Any, lines: list[Line] | None, resources: Any,
                    console: Console) -> int:
    import sys

    import aiohttp

    from playground.audio.output import open_output
    from playground.phone import report
    from playground.phone.caller import Call
    from playground.phone.codec import RATE

    player = None
    if not args.no_audio:
        player = await open_output(args.audio or "default", warn=console.note, preferred_rate=RATE)
    rows: list[Any] = []

    def on_turn(metrics: Any) -> None:
        if not rows:
            console.print(report.row_header())
        rows.append(metrics)
        console.print(report.row(metrics))

    source: Any = lines
    mic = None
    if args.mic or args.mic_file is not None:
        from playground.audio.input import MicUnavailable, open_input
        from playground.phone.caller import Microphone

        try:
            mic = Microphone(await asyncio.to_thread(open_input, args.mic_device, args.mic_file))
        except MicUnavailable as exc:
            console.note(console.red(f"mic unavailable ({exc})"))
            return 1
        console.note(f"speak: {mic.source.name} goes into the call; a pause ends what you say"
                     + ("" if args.mic_file else "; Ctrl-C hangs up"))
    elif lines is None:
        console.note("type a line and press Enter: it is said at once (over the agent, if it is speaking); "
                     "Ctrl-D hangs up")
        source = _stdin_lines(sys.stdin)
    try:
        async with aiohttp.ClientSession() as http:
            call = Call(options, resources, http, trace_path=args.trace, player=player,
                        printer=_printer(console), on_turn=on_turn)
            console.note(f"calling {options.url} ({options.dialect.name}, call {call.call_id}"
                         + (f", network {options.network.name}" if options.network else "") + ")")
            result = await call.run(source or (), mic=mic)
    finally:
        if mic is not None:
            await asyncio.to_thread(mic.close)
        if player is not None:
            await player.close()
    if len(rows) > 1:
        for line in report.percentile_rows(rows):
            console.print(line)
    _print_stages(result, console)
    console.note(f"call ended ({result.reason}); {report.tick_lateness(result.tick_late_ms)}"
                 + (f"; trace written to {args.trace}" if args.trace else ""))
    return 0 if result.reason == "done" and all(m.status == "ok" for m in result.turns) else 1


def _print_stages(result: CallResult, console: Console) -> None:
    from playground.phone import report

    if not result.stages:
        return
    console.print("where the time went (FIRST_AUDIO = AGENT + EOS+NET; EOS+NET = EOS + NET + rest; "
                  "the agent's metrics from its trace):")
    console.print(report.stage_header())
    for number, stage in enumerate(result.stages, 1):
        console.print(report.stage_row(number, stage))


async def _many_calls(args: argparse.Namespace, options: Any, lines: list[Line], counts: list[int], resources: Any,
                      console: Console) -> int:
    import aiohttp

    from playground.phone import report
    from playground.phone.caller import Call

    trace_dir = Path(args.trace) if args.trace else None
    if trace_dir is not None:
        trace_dir.mkdir(parents=True, exist_ok=True)
    levels = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for n in counts:
            console.note(f"… {n} simultaneous call(s), {len(lines)} line(s) each")

            async def place(index: int) -> CallResult:
                await asyncio.sleep(index * STAGGER_MS / 1000.0)
                label = f"{n}x{index + 1:03d}" if len(counts) > 1 else f"{index + 1:03d}"
                path = trace_dir / f"call-{label}.jsonl" if trace_dir else None
                call = Call(options, resources, http, trace_path=path, label=label,
                            printer=_printer(console, f"[{label}] ") if n == 1 else _errors_only(console, label))
                return await call.run(lines)

            results = await asyncio.gather(*(place(i) for i in range(n)))
            levels.append((n, list(results)))
            console.print(report.level_header())
            console.print(report.level_row(n, results))
    console.print()
    console.print("per-turn latency against the number of simultaneous calls (ms after the caller's end of speech):")
    console.print(report.level_header())
    for n, results in levels:
        console.print(report.level_row(n, results))
    if any(r.stages for _n, results in levels for r in results):
        console.print()
        console.print("where the agent's time went (p50 over every matched turn, from the agent's traces):")
        console.print(report.agent_level_header())
        for n, results in levels:
            console.print(report.agent_level_row(n, results))
    peak_mb = peak_rss_mb()
    console.print()
    console.print(f"caller process: peak RSS {peak_mb:.0f} MB; " + report.tick_lateness(
        [late for _n, results in levels for r in results for late in r.tick_late_ms]))
    if trace_dir is not None:
        console.note(f"traces written to {trace_dir}/")
    failed = sum(1 for _n, results in levels for r in results if r.reason != "done")
    return 0 if failed == 0 else 1


def _errors_only(console: Console, label: str) -> Any:
    def show(kind: str, text: str) -> None:
        if kind == "error":
            console.note(console.red(f"[{label}] {text}"))
    return show


COMMAND = Command(name="call", help="phone a voice agent over Twilio / Telnyx media streams and measure it as a "
                                    "caller hears it (one call or many)",
                  add_arguments=add_arguments, run=run)

