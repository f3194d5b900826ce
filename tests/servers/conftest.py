"""The loopback servers' test fixtures: `start_server` starts any server on a free port of
127.0.0.1 and stops it after the test; `server` is the module's own server, made by
`SERVER` (a class) with the module's `API_KEY`, the TTS servers on the shared voice."""

from __future__ import annotations

import pytest

from playground.servers.base import LoopbackServer, LoopbackTTSServer


@pytest.fixture
async def start_server():
    started: list[LoopbackServer] = []

    async def start(server: LoopbackServer) -> LoopbackServer:
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def server(request, start_server):
    make = request.module.SERVER
    if isinstance(make, type) and issubclass(make, LoopbackTTSServer):
        voice = request.getfixturevalue("loopback_voice")
        return await start_server(make(api_key=getattr(request.module, "API_KEY", None), voice=voice))
    return await start_server(make())
