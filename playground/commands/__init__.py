"""Subcommands, one module each: a module here (or in `playground.bench.commands`) exposing `COMMAND`
is a `playground` subcommand.

Adding a command is one new file, nothing to register (`playground.core.plugins`). `run`,
`presets` and `view` live in `playground.cli`; commands write through `playground.console`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from playground.core.plugins import find_plugins

if TYPE_CHECKING:
    from playground.console import Console

# `playground bench` is found by name with the benchmarks (nothing imports them; without them there
# is no `bench`); only its own small package is scanned, not every benchmark module.
COMMAND_PACKAGES = ("playground.commands", "playground.bench.commands")


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    # (parsed arguments, console) -> exit status. PresetError, LLMError, TTSError,
    # OSError and ValueError raised here are reported by `playground.cli.main` in one line.
    run: Callable[[argparse.Namespace, "Console"], int]
    # the command takes --preset/--set/--trace/--no-audio/--audio/--wav like `run`
    session_options: bool = False



async def until_stopped() -> None:
    """A server command's life: returns at Ctrl-C or SIGTERM, whichever comes first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def discover() -> list[Command]:
    """The commands of COMMAND_PACKAGES, by name; importing them must stay cheap (no models)."""
    found = find_plugins("COMMAND", *COMMAND_PACKAGES).values()
    return sorted((c for c in found if isinstance(c, Command)), key=lambda c: c.name)
