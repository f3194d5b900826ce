"""The loopback ElevenLabs server the diagnosis tests record their sessions against."""

from __future__ import annotations

import pytest

from playground.servers.elevenlabs import ElevenLabsServer


@pytest.fixture
async def server(loopback_voice):
    server = ElevenLabsServer(voice=loopback_voice)
    await server.start()
    yield server
    await server.stop()


from tests.phone.conftest import caller_voice  # noqa: E402,F401 - the phone caller's voice, loaded once
