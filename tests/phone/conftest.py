"""Fixtures of the phone tests: the caller's shared voice (Piper), loaded once."""

from __future__ import annotations

import pytest

from playground.phone.caller import CallerResources


@pytest.fixture(scope="session")
def caller_voice() -> CallerResources:
    """The caller's voice without speech recognition (most tests do not need transcripts)."""
    resources = CallerResources(stt_model=None)
    yield resources
    resources.close()


@pytest.fixture(scope="session")
def caller_hearing() -> CallerResources:
    """The caller's voice and faster-whisper, to transcribe what the agent says."""
    resources = CallerResources()
    yield resources
    resources.close()
