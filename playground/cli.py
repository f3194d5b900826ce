"""Headless commands. They drive exactly the same engine as the TUI.

    playground run --preset local --say "Hi, who is this?" --trace turns.jsonl
    playground run --set chunker.strategy=sentence --no-audio      # REPL: one turn per line
    playground presets
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from playground import __version__
from playground.commands import discover
from playground.console import TABLE_METRICS, VOICE_TABLE_METRICS, Console, TurnPrinter
from playground.core.formatting import visible
from playground.core.metrics import TurnMetrics
from playground.core.presets import Preset, PresetError, available_presets, load_preset, preset_schema_text
from playground.engine.interrupts import Interrupts
from playground.engine.session import Session
from playground.llm.base import LLMError
from playground.tts.base import TTSError

if TYPE_CHECKING:
    from playground.engine.voice import VoiceLoop

EXIT_USAGE = 2
# What argv holds where the command line had bytes that were not text (PEP 383).
_UNDECODED_ARGUMENT = re.compile(r"[\udc80-\udcff]")


def _decoded(raw: bytes, encoding: str, source: str) -> tuple[str, str | None]:
    """`raw` as text, and a note naming `source` when it was not valid `encoding`: the bytes
    that were not are replaced (U+FFFD), and the line is still a turn."""
    try:
        return raw.decode(encoding), None
    except UnicodeDecodeError as exc:
        return (raw.decode(encoding, errors="replace"),
                f"{source}: not valid {encoding} (byte {exc.start + 1}); the undecodable bytes are shown as \ufffd")


def _say_text(text: str, number: int, console: Console) -> str:
    """A --say argument as text: bytes that were not valid in the locale's encoding are replaced."""
    if not _UNDECODED_ARGUMENT.search(text):
        return text
    decoded, note = _decoded(os.fsencode(text), sys.getfilesystemencoding(), f"--say #{number}")
    if note:
        console.note(note)
    return decoded


def _stdin_lines(stream: TextIO) -> Iterator[tuple[str, str | None]]:
    """Each line of `stream` (no line end) and a note when it was not valid text in the stream's
    encoding. Bytes are decoded line by line, so one bad line never ends the session."""
    raw = getattr(stream, "buffer", None)
    if raw is None:  # already text (a test's StringIO)
        yield from ((line.rstrip("\n"), None) for line in stream)
        return
    encoding = stream.encoding or "utf-8"
    for number, line in enumerate(raw, 1):
        text, note = _decoded(line, encoding, f"stdin line {number}")
        yield text.removesuffix("\n").removesuffix("\r"), note


async def _read_lines(stream: TextIO, console: Console) -> "asyncio.Queue[str | None]":
    """Lines of `stream` read in a thread (None at EOF), so turns can run meanwhile. The thread
    is a daemon: a session that ends while it waits for a line (Ctrl-C) does not wait for one."""
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def deliver(*call: Any) -> None:
        try:
            loop.call_soon_threadsafe(*call)
        except RuntimeError:
            pass  # the session ended and its loop closed while a line was being read

    def reader() -> None:
        for line, note in _stdin_lines(stream):
            if note:
                deliver(console.note, note)
            deliver(lines.put_nowait, line)
        deliver(lines.put_nowait, None)

    threading.Thread(target=reader, name="stdin-lines", daemon=True).start()
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
    # The preset's push-to-talk does not apply to a file: it would never produce a turn.
    why = " (a mic file cannot press the push-to-talk key)" if mic_file and session.preset.input.mode == "push_to_talk" else ""
    console.note(f"mic: {voice.state.device}, {voice.mode}{gate}{why}")
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
    lines = await _read_lines(stdin, printer.console)
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
        task = asyncio.ensure_future(printer.run_turn(line))  # Enter must stay free for the key
        typed.add(task)
        task.add_done_callback(typed.discard)
    await asyncio.gather(*typed, return_exceptions=True)


async def run_session(preset: Preset, says: list[str], trace_path: str | None, audio: str | None,
                      wav_path: str | None, console: Console, stdin: TextIO = sys.stdin,
                      mic: bool = False, mic_file: str | None = None, mode: str | None = None,
                      interrupts: Interrupts | None = None) -> int:
    """Runs the session; 0, or 1 when a turn failed (`main` makes it 130 when Ctrl-C ended it)."""
    from playground.engine.build import open_session

    interrupts = interrupts or Interrupts()

    session = await open_session(preset, audio=audio, wav_path=wav_path, warn=console.note_once, progress=console.progress)
    writer = None
    if trace_path:
        from playground.export.jsonl import open_trace_writer

        writer = open_trace_writer(trace_path, session.trace.header)
        writer.follow(session.trace)  # from what opening the session recorded on
    listening = mic or mic_file is not None
    printer = TurnPrinter(session, console, VOICE_TABLE_METRICS if listening else TABLE_METRICS)
    console.note(f"ready: preset {preset.name}, llm {session.llm.name} ({session.llm.model}), "
                 f"tts {session.tts.name} ({session.tts.path}), chunker {preset.chunker.strategy}, "
                 f"audio: {session.output.name}")

    # Ctrl-C cancels the running turn; at the prompt, or twice, it ends the session.
    interrupts.attach(session)
    interrupted = interrupts.ended
    voice = None
    try:
        if listening:
            voice = await _open_voice(session, printer, mode, mic_file)
        if says:
            for number, text in enumerate(says, 1):
                if interrupted.is_set():
                    break
                await printer.run_turn(_say_text(text, number, console))
        if voice is not None:
            await _listen(voice, session, printer, stdin, interrupted)
        elif not says:
            if stdin.isatty():
                console.note("type a message and press Enter (Ctrl-C stops a reply, Ctrl-D or Ctrl-C at the prompt quits)")
            lines = await _read_lines(stdin, console)
            while (line := await _next_line(lines, interrupted)) is not None:
                await printer.run_turn(line)
        status = printer.finish()
    finally:
        if voice is not None:
            await voice.close()
        await session.close()
        if writer:
            writer.close()
            console.note(f"trace written to {trace_path}")
    return status


def _add_session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="local", help="preset name or .toml path (default: local)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a preset field, e.g. --set chunker.strategy=sentence (repeatable)")
    parser.add_argument("--trace", metavar="FILE", help="write the JSON Lines trace to FILE")
    parser.add_argument("--no-audio", action="store_true", help="use the null output (real-time paced, no device)")
    parser.add_argument("--audio", metavar="DEVICE", help="output device name or index (see the preset's [audio] output)")
    parser.add_argument("--wav", metavar="FILE", help="also save exactly what was played to a WAV file")


class _Parser(argparse.ArgumentParser):
    """argparse echoes unrecognized arguments as typed: its errors are shown escaped like any text."""

    def error(self, message: str) -> NoReturn:
        super().error(visible(message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
            from playground.core.tracefile import read_trace
            from playground.ui.app import view_trace

            # A broken file is one clear line, said before the screen opens; so is what is skipped.
            view_trace(args.trace_file, read_trace(args.trace_file, console.note), preset)
            return 0
        if args.command is None:
            from playground.ui.app import run_app

            run_app(preset, audio=audio, wav_path=args.wav, trace_path=args.trace)
            return 0
        if args.mic or args.mic_file is not None:
            from playground.engine.voice import listening_mode

            try:  # before any model loads: a mode that can never produce a turn is a usage error
                listening_mode(preset.input, args.mode, args.mic_file)
            except ValueError as exc:
                console.note(f"error: {exc}")
                return EXIT_USAGE
        with Interrupts(console.note) as interrupts:
            status = interrupts.run(lambda: run_session(preset, args.say, args.trace, audio, args.wav, console,
                                                        mic=args.mic, mic_file=args.mic_file, mode=args.mode,
                                                        interrupts=interrupts))
        return interrupts.status(status or 0)
    except PresetError as exc:
        console.note(f"error: {exc}")
        return EXIT_USAGE
    except (LLMError, TTSError) as exc:
        console.note(f"error: {exc}")
        return 1
    except OSError as exc:
        console.note(f"error: {exc.filename}: {exc.strerror}")
        return 1
    except ValueError as exc:  # an unreadable trace names its file and line (TraceError)
        console.note(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
