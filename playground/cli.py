"""Headless commands. They drive exactly the same engine as the TUI.

    playground run --preset local --say "Hi, who is this?" --trace turns.jsonl
    playground run --set chunker.strategy=sentence --no-audio      # REPL: one turn per line
    playground presets
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TextIO

from playground import __version__
from playground.commands import discover
from playground.core import events as ev
from playground.core.metrics import METRIC_LABELS, TurnMetrics, budget_misses, percentile
from playground.core.presets import Preset, PresetError, available_presets, load_preset, preset_schema_text
from playground.engine.session import InputRefused, Session
from playground.llm.base import LLMError
from playground.tts.base import TTSError

if TYPE_CHECKING:
    from playground.engine.voice import VoiceLoop

TABLE_METRICS = ("llm_ttft", "ttfs", "ttft_tts", "ttfa", "first_play", "llm_total", "tts_total", "e2e_total")
# Spoken turns (--mic) also show how long end of speech took to detect and transcribe, and what the caller waited.
VOICE_TABLE_METRICS = ("vad_end", "stt", *TABLE_METRICS, "user_latency")
EXIT_USAGE = 2


class Console:
    """Where the CLI writes: rows to stdout, progress and warnings to stderr."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.out = out
        self.err = err
        self.color = out.isatty() and "NO_COLOR" not in os.environ

    def red(self, text: str) -> str:
        return f"\033[31m{text}\033[0m" if self.color else text

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)


def _cell(value: float | None, missed: bool) -> str:
    text = "-" if value is None else f"{value:.0f}"
    return text + ("!" if missed else "")


def _width(key: str) -> int:
    return max(10, len(METRIC_LABELS[key]))


def table_header(keys: Sequence[str] = TABLE_METRICS) -> str:
    return "turn " + " ".join(f"{METRIC_LABELS[k]:>{_width(k)}}" for k in keys) + "  chunks  tts"


def table_row(m: TurnMetrics, budgets: dict[str, float], console: Console,
              keys: Sequence[str] = TABLE_METRICS) -> str:
    misses = budget_misses(m, budgets)
    cells = []
    for key in keys:
        cell = f"{_cell(m.value(key), key in misses):>{_width(key)}}"
        cells.append(console.red(cell) if key in misses else cell)
    path = m.tts_path or "-"
    if m.tts_path_reason:
        path += f" ({m.tts_path_reason})"
    if m.tts_path_fault:
        path = console.red(path)
    chunks = f"{m.spoken_chunks}/{m.chunks}"
    status = "" if m.status == "ok" else f"  {console.red(m.status.upper())}"
    return f"{m.turn:>4} " + " ".join(cells) + f"  {chunks:>6}  {path}{status}"


def summary_rows(metrics: Sequence[TurnMetrics], keys: Sequence[str] = TABLE_METRICS) -> list[str]:
    rows = []
    for p in (50, 90):
        values = [percentile([v for m in metrics if (v := m.value(k)) is not None], p) for k in keys]
        rows.append(f" p{p:<3}" + " ".join(f"{'-' if v is None else f'{v:.0f}':>{_width(k)}}"
                                           for k, v in zip(keys, values)))
    return rows


def budget_line(m: TurnMetrics, budgets: dict[str, float]) -> str | None:
    misses = budget_misses(m, budgets)
    if not misses:
        return None
    parts = [f"{METRIC_LABELS.get(k, k)} {v:.0f} > {limit:.0f} ms" for k, (v, limit) in misses.items()]
    return "      over budget: " + ", ".join(parts)


class TurnPrinter:
    """Prints what a user needs while turns run: the reply, fallbacks, errors, then the row."""

    def __init__(self, session: Session, console: Console, keys: Sequence[str] = TABLE_METRICS) -> None:
        self.session = session
        self.console = console
        self.keys = keys
        self.metrics: list[TurnMetrics] = []
        self._header_printed = False
        session.trace.subscribe(self._on_event)

    def _on_event(self, event: ev.TraceEvent) -> None:
        c = self.console
        if event.type == ev.LLM_DONE:
            c.print(f"agent: {event.get('text', '').strip()}")
        elif event.type == ev.TTS_SESSION and event.get("action") in ("fallback", "reconnect", "warning"):
            detail = event.get("reason") or event.get("message") or "no reason given"
            c.note(c.red(f"tts {event.get('provider', '')}: {event.get('action')} ({detail})"))
        elif event.type == ev.ERROR:
            c.note(c.red(f"error in turn {event.turn}: {event.get('where')}: {event.get('message')}"))
        elif event.type == ev.TURN_CANCELLED:
            c.note(f"turn {event.turn} cancelled after {event.t_ms:.0f} ms ({event.get('reason')}; "
                   f"stopped in {event.get('stop_ms', 0):.1f} ms)")

    def turn_done(self, m: TurnMetrics) -> None:
        budgets = self.session.preset.budgets
        if not self._header_printed:
            self.console.print(table_header(self.keys))
            self._header_printed = True
        self.console.print(table_row(m, budgets, self.console, self.keys))
        line = budget_line(m, budgets)
        if line:
            self.console.print(self.console.red(line))
        self.metrics.append(m)

    def finish(self) -> None:
        if len(self.metrics) > 1:
            for row in summary_rows(self.metrics, self.keys):
                self.console.print(row)


async def _read_lines(stream: TextIO) -> "asyncio.Queue[str | None]":
    """Lines of `stream` read in a thread (None at EOF), so turns can run meanwhile."""
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def reader() -> None:
        for line in stream:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    loop.run_in_executor(None, reader)
    return lines


async def _next_line(lines: asyncio.Queue[str | None], interrupted: asyncio.Event) -> str | None:
    """The next line, or None at EOF or when the session is interrupted."""
    get = asyncio.ensure_future(lines.get())
    stop = asyncio.ensure_future(interrupted.wait())
    await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not get.done():
        get.cancel()
        return None
    return get.result()


async def _open_voice(session: Session, printer: TurnPrinter, mode: str | None, mic_file: str | None) -> VoiceLoop | None:
    """Starts listening (microphone or --mic-file); None, after saying why, when there is no mic."""
    from playground.engine.voice import VoiceLoop

    console = printer.console

    def spoken_turn(text: str, task: asyncio.Task[TurnMetrics]) -> None:
        console.print(f"you (spoken): {text}")
        task.add_done_callback(lambda done: printer.turn_done(done.result()))

    voice = VoiceLoop(session, session.preset.input, mode=mode, mic_file=mic_file, on_turn=spoken_turn)
    if not await voice.open():
        console.note(console.red(f"mic unavailable ({voice.state.reason}); typed input still works"))
        return None
    gate = ", echo gate on" if voice.meter is not None else ""
    console.note(f"mic: {voice.state.device}, {voice.mode}{gate}")
    return voice


async def _listen(voice: VoiceLoop, session: Session, printer: TurnPrinter, stdin: TextIO,
                  interrupted: asyncio.Event) -> None:
    """Spoken turns (typed lines work too) until a mic file has played out, or Ctrl-C / end of input."""
    if voice.mic_file is not None:
        done = asyncio.ensure_future(voice.wait_input_end())
        stop = asyncio.ensure_future(interrupted.wait())
        await asyncio.wait({done, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        return
    push_to_talk = voice.mode == "push_to_talk"
    printer.console.note("push-to-talk: press Enter to start speaking and Enter again when done" if push_to_talk
                         else "hands-free: just speak (a pause ends what you say)")
    printer.console.note("type a message and Enter for a typed turn; Ctrl-C stops a reply, Ctrl-C at rest quits")
    lines = await _read_lines(stdin)
    typed: set[asyncio.Task[None]] = set()
    while (line := await _next_line(lines, interrupted)) is not None or not (stdin.isatty() or interrupted.is_set()):
        if line is None:  # no terminal to type on (stdin closed): listen until Ctrl-C
            await interrupted.wait()
            break
        if push_to_talk and not line.strip():
            voice.toggle_listening()
            printer.console.note("… listening" if voice.state.key_down else "… heard you")
            continue
        session.cancel_turn("barge-in: new message")
        await session.wait_idle()
        task = asyncio.ensure_future(_run_one(session, printer, line))  # Enter must stay free for the key
        typed.add(task)
        task.add_done_callback(typed.discard)
    await asyncio.gather(*typed, return_exceptions=True)


async def _run_one(session: Session, printer: TurnPrinter, text: str) -> None:
    try:
        task = session.start_turn(text)
    except InputRefused as exc:
        printer.console.note(f"refused: {exc}")
        return
    printer.console.print(f"you: {text.strip()[:200]}{'…' if len(text.strip()) > 200 else ''}")
    printer.turn_done(await task)


async def run_session(preset: Preset, says: list[str], trace_path: str | None, audio: str | None,
                      wav_path: str | None, console: Console, stdin: TextIO = sys.stdin,
                      mic: bool = False, mic_file: str | None = None, mode: str | None = None) -> int:
    from playground.engine.build import open_session

    warned: set[str] = set()

    def warn(message: str) -> None:
        if message not in warned:
            warned.add(message)
            console.note(message)

    def progress(message: str) -> None:
        console.note(f"… {message}")

    session = await open_session(preset, audio=audio, wav_path=wav_path, warn=warn, progress=progress)
    writer = ev.JsonlTraceWriter(trace_path, session.trace.header) if trace_path else None
    if writer:
        for event in session.trace.events:  # what opening the session recorded
            writer(event)
        session.trace.subscribe(writer)
    listening = mic or mic_file is not None
    printer = TurnPrinter(session, console, VOICE_TABLE_METRICS if listening else TABLE_METRICS)
    console.note(f"ready: preset {preset.name}, llm {session.llm.name} ({session.llm.model}), "
                 f"tts {session.tts.name} ({session.tts.path}), chunker {preset.chunker.strategy}, "
                 f"audio: {session.output.name}")

    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()

    def on_interrupt() -> None:
        # Ctrl-C cancels the running turn; at the prompt it ends the session.
        if not session.cancel_turn("interrupted (Ctrl-C)"):
            interrupted.set()

    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    except (NotImplementedError, RuntimeError):
        pass
    voice = None
    try:
        if listening:
            voice = await _open_voice(session, printer, mode, mic_file)
        if says:
            for text in says:
                if interrupted.is_set():
                    break
                await _run_one(session, printer, text)
        if voice is not None:
            await _listen(voice, session, printer, stdin, interrupted)
        elif not says:
            if stdin.isatty():
                console.note("type a message and press Enter (Ctrl-C stops a reply, Ctrl-D or Ctrl-C at the prompt quits)")
            lines = await _read_lines(stdin)
            while (line := await _next_line(lines, interrupted)) is not None:
                await _run_one(session, printer, line)
        printer.finish()
    finally:
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass
        if voice is not None:
            await voice.close()
        await session.close()
        if writer:
            writer.close()
            console.note(f"trace written to {trace_path}")
    return 0


def _add_session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="local", help="preset name or .toml path (default: local)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a preset field, e.g. --set chunker.strategy=sentence (repeatable)")
    parser.add_argument("--trace", metavar="FILE", help="write the JSON Lines trace to FILE")
    parser.add_argument("--no-audio", action="store_true", help="use the null output (real-time paced, no device)")
    parser.add_argument("--audio", metavar="DEVICE", help="output device name or index (see the preset's [audio] output)")
    parser.add_argument("--wav", metavar="FILE", help="also save exactly what was played to a WAV file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="playground",
        description="Voice-agent playground: LLM -> chunker -> TTS -> playback, with per-turn latency. "
                    "Without a command it starts the TUI.")
    parser.add_argument("--version", action="version", version=f"playground {__version__}")
    _add_session_options(parser)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run turns headless and print their metrics")
    _add_session_options(run)
    run.add_argument("--say", action="append", default=[], metavar="TEXT",
                     help="a user turn (repeatable); without it, turns are read from stdin, one per line")
    run.add_argument("--mic", action="store_true",
                     help="spoken turns from the microphone ([input] device; `playground devices` lists them)")
    run.add_argument("--mic-file", metavar="WAV", help="spoken turns from a 16-bit WAV file played in real time "
                     "instead of the microphone; the session ends when it has played out")
    run.add_argument("--mode", choices=("hands_free", "push_to_talk"),
                     help="hands_free: a pause ends what you say; push_to_talk: Enter starts and ends it "
                          "(default: the preset's [input] mode)")
    presets = sub.add_parser("presets", help="list the presets (built-in and user)")
    presets.add_argument("--schema", nargs="?", const="-", metavar="FILE",
                         help="write the JSON Schema of preset files (for editors) to FILE, or print it")
    view = sub.add_parser("view", help="show a recorded trace in the TUI, read-only")
    view.add_argument("trace_file", metavar="TRACE", help="a JSONL trace written with --trace or exported (F9)")
    for command in discover():
        command_parser = sub.add_parser(command.name, help=command.help)
        if command.session_options:
            _add_session_options(command_parser)
        command.add_arguments(command_parser)
        command_parser.set_defaults(plugin=command)
    return parser


def write_schema(target: str, console: Console) -> int:
    """The presets' JSON Schema, to `target` ("-": stdout); presets/schema.json is its committed copy."""
    text = preset_schema_text()
    if target == "-":
        console.out.write(text)
        return 0
    from playground.export.atomic import atomic_open

    try:
        with atomic_open(target) as f:
            f.write(text)
    except OSError as exc:
        console.note(f"error: {exc}")
        return 1
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    console = Console()
    if args.command == "presets":
        if args.schema:
            return write_schema(args.schema, console)
        for name, path in available_presets().items():
            console.print(f"{name:<16} {path}")
        return 0
    try:
        plugin = getattr(args, "plugin", None)
        if plugin is not None:
            return plugin.run(args, console)
        preset = load_preset(args.preset, args.overrides)
        audio = "null" if args.no_audio else args.audio
        if args.command == "view":
            from playground.core.events import read_trace
            from playground.ui.app import view_trace

            read_trace(args.trace_file)  # a broken file: one clear line, before the screen opens
            view_trace(args.trace_file, preset)
            return 0
        if args.command is None:
            from playground.ui.app import run_app

            run_app(preset, audio=audio, wav_path=args.wav, trace_path=args.trace)
            return 0
        return asyncio.run(run_session(preset, args.say, args.trace, audio, args.wav, console,
                                       mic=args.mic, mic_file=args.mic_file, mode=args.mode))
    except PresetError as exc:
        console.note(f"error: {exc}")
        return EXIT_USAGE
    except (LLMError, TTSError) as exc:
        console.note(f"error: {exc}")
        return 1
    except OSError as exc:
        console.note(f"error: {exc.filename}: {exc.strerror}")
        return 1
    except ValueError as exc:  # an unreadable trace names its file and line
        console.note(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
