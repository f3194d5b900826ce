"""Shared fixtures: sessions on the real offline models with the real-time null output."""

from __future__ import annotations

import functools
import inspect
import os
import re
from pathlib import Path

import pytest

from playground.audio.output import open_output
from playground.core.presets import Preset, apply_overrides, load_preset
from playground.engine.session import Session
from playground.llm.local import LocalLLM
from playground.tts.piper import PiperSession


# What makes a test need the offline models (or a child `playground` process, which loads them):
# fixtures that open them, and calls in the test's own body. `make test-fast` (-m "not models")
# leaves these out; the whole suite (`make test`) runs them.
MODEL_FIXTURES = {"session", "preset", "loopback_voice", "caller_voice", "caller_hearing", "server",
                  "openai_session", "app"}
MODEL_CALLS = re.compile(r"\b(open_test_session|local_preset|loopback_preset|LocalLLM|PiperSession|WhisperSTT|"
                         r"SileroVAD|LoopbackVoice|speech|playground|playground_process|serve_agent|Child|run_app|"
                         r"open_session|record|open_loopback_session|PlaygroundApp|subprocess)\(")


TESTS = str(Path(__file__).parent)


def pytest_configure(config) -> None:
    """Under xdist (`make test`), each worker and the processes it starts give the models one
    thread (`threads = 0` follows OMP_NUM_THREADS): 6 workers on 2 cores with 2 threads each
    would spin at every llama.cpp barrier (a SmolLM2 test beside two busy processes: 78 s on
    2 threads, 30 s on 1)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"


def needs_models(item: pytest.Item) -> bool:
    if item.get_closest_marker("models") or MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    function = getattr(item, "function", None)
    function = inspect.unwrap(function) if function is not None else None  # pytest-asyncio wraps coroutines
    return function is not None and any(MODEL_CALLS.search(source) for source in _sources(function, depth=3))


@functools.cache  # a parametrized test's items share one function, and helpers recur across tests
def _sources(function, depth: int) -> tuple[str, ...]:
    """The source of `function` and of the test helpers it calls by name, `depth` calls deep."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return ("playground(",)  # unknown: counted as needing the models
    found = [source]
    if depth > 0:
        names = set(re.findall(r"\b([a-z_][a-z0-9_]*)\(", source))
        for name in names - {function.__name__}:
            helper = function.__globals__.get(name)
            if inspect.isfunction(helper) and helper.__code__.co_filename.startswith(TESTS):
                found += _sources(helper, depth - 1)
    return tuple(found)


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if needs_models(item):
            item.add_marker(pytest.mark.models)
    # The model tests first (xdist hands tests out in this order): the long ones start at once,
    # and the thousand quick ones fill the workers in at the end instead of leaving one running.
    items.sort(key=lambda item: item.get_closest_marker("models") is None)


def pytest_terminal_summary(terminalreporter) -> None:
    """Said once, at the end of every run (also with -q): real-device tests skipped, and why."""
    from tests.audio.devices import device_skip_reason

    reason = device_skip_reason()
    if reason is not None:
        terminalreporter.write_line(f"real sound device tests SKIPPED: {reason}", yellow=True)


def local_preset(*overrides: str) -> Preset:
    # Short replies: the null output plays them in real time.
    return apply_overrides(load_preset("local"), ["llm.max_tokens=40", *overrides])


async def open_test_session(preset: Preset, llm=None, wav_path=None) -> Session:
    """A session on `preset` with the null output; `llm` replaces the local model when given."""
    output = await open_output("null", wav_path=wav_path)
    session = Session(preset, llm or LocalLLM(preset.llm), PiperSession(preset.tts), output)
    await session.open()
    return session


@pytest.fixture(scope="session")
def loopback_voice():
    """The Piper voice behind the loopback TTS servers: stateless, so loaded once for all tests."""
    from playground.servers.voice import LoopbackVoice

    return LoopbackVoice()


@pytest.fixture
def preset() -> Preset:
    return local_preset()
