"""Shared fixtures: sessions on the real offline models with the real-time null output."""

from __future__ import annotations

import pytest

from playground.audio.output import open_output
from playground.core.presets import Preset, apply_overrides, load_preset
from playground.engine.session import Session
from playground.llm.local import LocalLLM
from playground.tts.piper import PiperSession


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
