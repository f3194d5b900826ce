"""Subcommands, one module each: a module here exposing `COMMAND` is a `playground` subcommand.

Adding a command is one new file, nothing to register (like providers in
`playground.engine.build`). `run`, `presets` and `view` live in `playground.cli`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playground.cli import Console


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


# Commands that live elsewhere, by module name: `playground bench` lives with the benchmarks
# (playground.bench), which no module imports directly.
ELSEWHERE = ("playground.bench.command",)


def discover() -> list[Command]:
    """The commands in this package (and ELSEWHERE), by name; importing them must stay cheap (no models)."""
    found = []
    for name in [f"{__name__}.{module.name}" for module in pkgutil.iter_modules(__path__)] + list(ELSEWHERE):
        command = getattr(importlib.import_module(name), "COMMAND", None)
        if isinstance(command, Command):
            found.append(command)
    return sorted(found, key=lambda c: c.name)
