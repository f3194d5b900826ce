"""One scanner finds subcommands, providers and loopback servers, in any list of packages."""

from __future__ import annotations

import sys

import pytest

from playground.commands import COMMAND_PACKAGES, Command, discover
from playground.core.plugins import find_plugins


@pytest.fixture
def packages(tmp_path, monkeypatch):
    """Two real packages on the path: `extra` with a command, `broken` failing on import."""
    extra = tmp_path / "extra_commands"
    extra.mkdir()
    (extra / "__init__.py").write_text("")
    (extra / "greet.py").write_text(
        "from playground.commands import Command\n"
        "COMMAND = Command('greet', 'say hello', lambda parser: None, lambda args, console: 0)\n")
    (extra / "helpers.py").write_text("VALUE = 1\n")  # no COMMAND: not a command
    broken = tmp_path / "broken_commands"
    broken.mkdir()
    (broken / "__init__.py").write_text("import no_such_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m.startswith(("extra_commands", "broken_commands"))]:
        del sys.modules[name]


def test_commands_are_found_in_every_package_listed_and_a_missing_one_is_skipped(packages, monkeypatch):
    monkeypatch.setattr("playground.commands.COMMAND_PACKAGES", (*COMMAND_PACKAGES, "extra_commands", "not_installed"))
    names = [command.name for command in discover()]
    assert "greet" in names and "export" in names and names == sorted(names)
    assert all(isinstance(command, Command) for command in discover())


def test_a_package_that_fails_to_import_is_an_error_not_skipped(packages):
    with pytest.raises(ModuleNotFoundError, match="no_such_module_anywhere"):
        find_plugins("COMMAND", "broken_commands")


def test_providers_and_servers_come_from_the_same_scanner():
    from playground.commands.serve_tts import tts_servers
    from playground.engine.build import providers

    assert {"local", "openai", "replay"} <= set(providers("llm"))
    assert "piper" in providers("tts")
    assert {"elevenlabs", "cartesia", "deepgram"} <= set(tts_servers())
    assert list(find_plugins("PROVIDER", "playground.llm")) == [f"playground.llm.{n}" for n in sorted(providers("llm"))]
