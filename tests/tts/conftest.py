"""The loopback ElevenLabs server the session tests run against (the Cartesia and Deepgram
contract tests bring their own `server`)."""

from __future__ import annotations

import pytest

from playground.servers.elevenlabs import ElevenLabsServer


@pytest.fixture
async def server(loopback_voice):
    server = ElevenLabsServer(voice=loopback_voice)
    await server.start()
    yield server
    await server.stop()
