"""`playground replay TRACE`: recorded turns rerun through the current chunker and TTS.

    playground replay turns.jsonl --set chunker.strategy=clause --no-audio
    playground replay seed-turn4 --turn 4 --tts local --trace replayed.jsonl

The `replay` LLM provider emits each recorded turn's tokens at their recorded times
(relative to the LLM request), so a chunker or TTS change is measured on exactly the
same LLM behaviour. Each turn runs with the chunker parameters it was recorded with
(unless `--preset` is given), then `--set` overrides. The turns print as in `run`,
then each recorded turn's metrics beside its replay's, and how close the replayed
token times came to the recorded ones. `--trace` is written as each turn ends.

Ctrl-C cancels the turn being replayed (the next one starts); a second one ends the
replay (exit status 130). The exit status is 1 when a replayed turn failed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from playground.chunking.compare import RecordedTurn, recorded_turns
from playground.commands import Command
from playground.core import events as ev
from playground.core.metrics import compute_metrics, percentile
from playground.core.presets import LLMConfig, Preset, PresetError, apply_overrides, load_preset, preset_from_dict
from playground.core.tracefile import Warn, read_trace
from playground.console import Console, TurnPrinter, styled, table_header, table_row
from playground.data import find
from playground.engine.interrupts import Interrupts

TIMING_TARGET_MS = 2.0  # replayed token time - recorded, at p99


def recorded_preset(header: dict[str, Any], source: str) -> Preset | None:
    """The preset a trace was recorded with (its header), or None when the trace has none."""
    data = header.get("preset")
    if not isinstance(data, dict):
        return None
    sections = {k: v for k, v in data.items() if k != "name"}
    return preset_from_dict(sections, name=str(data.get("name", "recorded")), source=f"{source}: recorded preset",
                            recorded=True)


def base_preset(args: argparse.Namespace, source: str, header: dict[str, Any]) -> Preset:
    """The preset the replay runs: --preset or the recorded one, its TTS per --tts, the replay LLM."""
    preset = load_preset(args.preset) if args.preset else recorded_preset(header, source) or load_preset("local")
    if args.tts == "local":
        preset.tts = load_preset("local").tts
    else:
        from playground.engine.build import providers

        known = providers("tts")
        if preset.tts.provider not in known:
            raise PresetError(f"{preset.origin('tts', 'provider')}: TTS provider {preset.tts.provider!r} is not "
                              f"available here (available: {', '.join(known)}); replay with --tts local")
    from playground.llm.replay import ReplayLLMConfig

    shared = {f.name: getattr(preset.llm, f.name) for f in fields(LLMConfig) if f.name != "provider"}
    preset.llm = ReplayLLMConfig(**shared, trace=source, replay_turn=args.turn)
    return apply_overrides(preset, args.overrides)  # checked now, before anything loads


def turn_preset(base: Preset, turn: RecordedTurn, recorded_chunker: bool, overrides: list[str]) -> Preset:
    """The preset one turn replays with: its recorded chunker parameters (when asked), then --set."""
    if not recorded_chunker:
        return base
    return apply_overrides(replace(base, chunker=turn.chunker_config(base.chunker)), overrides)


def timing_errors(recorded: Sequence[ev.TraceEvent], replayed: Sequence[ev.TraceEvent]) -> list[float]:
    """Per token: replayed time - recorded time (ms), both after their turn's LLM request."""
    from playground.llm.replay import recorded_tokens

    return [b[0] - a[0] for a, b in zip(recorded_tokens(recorded), recorded_tokens(replayed))]


async def replay_turns(turns: list[RecordedTurn], preset_for: Callable[[RecordedTurn], Preset], audio: str | None,
                       wav_path: str | None, console: Console, trace_path: str | None = None,
                       interrupts: Interrupts | None = None) -> tuple[ev.Trace, int]:
    """Runs the recorded turns, in order, on one session, writing `trace_path` as they end; returns
    the session's trace and the exit status (1 when a turn failed)."""
    from playground.engine.build import open_session
    from playground.export.jsonl import open_trace_writer

    interrupts = interrupts or Interrupts()
    session = await open_session(preset_for(turns[0]), audio=audio, wav_path=wav_path, warn=console.note,
                                 progress=console.progress)
    writer = open_trace_writer(trace_path, session.trace.header) if trace_path else None
    if writer is not None:
        writer.follow(session.trace)
    interrupts.attach(session)
    printer = TurnPrinter(session, console)
    console.note(f"ready: replaying {len(turns)} turn(s) with tts {session.tts.name} ({session.tts.path}), "
                 f"audio: {session.output.name}")
    try:
        for turn in turns:
            if interrupts.ending:
                break
            preset = preset_for(turn)
            if preset.to_json() != session.preset.to_json():
                session.change_preset(preset, f"replay of recorded turn {turn.turn}")
            await printer.run_turn(turn.user_text or f"(recorded turn {turn.turn})")
        status = printer.finish()
    finally:
        await session.close()
        if writer is not None:
            writer.close()
            console.note(f"trace written to {trace_path}")
    return session.trace, status


def side_by_side(recorded: list[RecordedTurn], recorded_events: Sequence[ev.TraceEvent], trace: ev.Trace,
                 budgets: dict[str, float], console: Console) -> list[float]:
    """Prints each recorded turn's row above its replay's; returns the token timing errors."""
    before = ev.events_by_turn(recorded_events)
    after = ev.events_by_turn(trace.events)
    errors: list[float] = []
    console.print()
    console.print("recorded vs replayed (the same tokens at the same times)")
    console.print(table_header())
    for turn, replayed_turn in zip(recorded, trace.turns()):
        old = compute_metrics(before[turn.turn])
        new = replace(compute_metrics(after[replayed_turn]), turn=turn.turn)
        console.print(table_row(old, budgets) + styled(f"   recorded, {old.strategy or '?'}"))
        console.print(table_row(new, budgets) + styled(f"   replayed, {new.strategy or '?'}"))
        errors += timing_errors(before[turn.turn], after[replayed_turn])
    return errors


def timing_line(errors: list[float]) -> str:
    if not errors:
        return "token timing: no tokens replayed"
    p50, p99 = percentile(errors, 50), percentile(errors, 99)
    worst = max(errors, key=abs)
    verdict = ("within" if p99 is not None and abs(p99) <= TIMING_TARGET_MS else "OVER") + \
        f" the {TIMING_TARGET_MS:g} ms target at p99"
    return (f"token timing, replayed - recorded (after the LLM request), {len(errors)} tokens: "
            f"p50 {p50:+.2f} ms, p99 {p99:+.2f} ms, worst {worst:+.2f} ms ({verdict})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace_file", metavar="TRACE", help="a JSONL trace, or the name of a shipped one (seed-turn4)")
    parser.add_argument("--turn", type=int, default=0, metavar="N", help="replay only recorded turn N")
    parser.add_argument("--tts", choices=("local", "preset"), default="local",
                        help="local: the offline Piper voice (default); preset: the preset's TTS "
                             "(the recorded one unless --preset), which may be a cloud service")
    # The session options' --preset says "default: local"; here no --preset means the recorded one.
    parser.set_defaults(preset=None)
    parser.description = ("Reruns recorded turns: the replay LLM emits their tokens at the recorded times into "
                          "the chunker and TTS. Runs under the recorded preset (each turn with the chunker it "
                          "was recorded with) unless --preset is given; --set overrides either.")


def read_recorded(trace_file: str, turn: int, purpose: str, warn: Warn
                  ) -> tuple[Path, dict[str, Any], list[ev.TraceEvent], list[RecordedTurn]]:
    """A trace (path or shipped name): its file, header, events and turns with tokens (only `turn` if given);
    what it has to skip is said through `warn`."""
    path = find("trace", trace_file)
    header, events = read_trace(path, warn)
    turns = recorded_turns(events)
    if turn:
        turns = [t for t in turns if t.turn == turn]
    if not turns:
        which = f"no tokens for turn {turn}" if turn else "no turn with llm.token events"
        raise ValueError(f"{path}: {which}, so there is nothing to {purpose}")
    return path, header, events, turns


def run(args: argparse.Namespace, console: Console) -> int:
    path, header, events, turns = read_recorded(args.trace_file, args.turn, "replay", console.note)
    base = base_preset(args, str(path), header)

    def preset_for(turn: RecordedTurn) -> Preset:
        return turn_preset(base, turn, recorded_chunker=not args.preset, overrides=args.overrides)

    console.note(f"replaying {path}: {len(turns)} turn(s), recorded with "
                 f"{header.get('providers', {}).get('tts', {}).get('name', '?')} TTS")
    audio = "null" if args.no_audio else args.audio
    with Interrupts(console.note) as interrupts:
        replayed = interrupts.run(lambda: replay_turns(turns, preset_for, audio, args.wav, console, args.trace,
                                                       interrupts))
        if replayed is None:  # Ctrl-C while the session opened
            return interrupts.status(0)
        trace, status = replayed
        errors = side_by_side(turns, events, trace, base.budgets, console)
        console.print(timing_line(errors))
    return interrupts.status(status)


COMMAND = Command(name="replay", help="rerun recorded turns (same tokens, same times) through the current chunker and TTS",
                  add_arguments=add_arguments, run=run, session_options=True)
