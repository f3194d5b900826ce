"""Agents for the phone tests: small aiohttp agents that speak a carrier dialect on a real socket
on 127.0.0.1 and answer each caller line (found by its frames not being μ-law silence) with a
behaviour of the test's (well-formed audio and marks, or a fault), and `playground serve-agent`
started in a process of its own."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from playground.core.clock import now_ms
from playground.phone.codec import FRAME_BYTES, RATE, SILENT_FRAME, ulaw_encode
from playground.phone.dialects import Dialect

SILENT_FRAMES_ENDING_A_LINE = 10  # 200 ms of silence after speech: the caller has finished its line


def tone_ulaw(ms: float, freq: float = 440.0, level: float = 0.3) -> bytes:
    """`ms` of an audible tone, μ-law at 8 kHz."""
    t = np.arange(round(RATE * ms / 1000)) / RATE
    return ulaw_encode((np.sin(2 * np.pi * freq * t) * 32767 * level).astype(np.int16))


class AgentSide:
    """One call as a test agent sees it, with what a behaviour can do."""

    def __init__(self, ws: web.WebSocketResponse, dialect: Dialect) -> None:
        self.ws = ws
        self.dialect = dialect
        self.stream_id: str | None = None
        self.lines_heard = 0
        self.sent: list[tuple[float, dict[str, Any]]] = []  # (send time, message)

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append((now_ms(), message))
        await self.ws.send_str(json.dumps(message))

    async def audio(self, data: bytes, payload_bytes: int = FRAME_BYTES, paced: bool = False,
                    stream_id: Any = "call's") -> None:
        """Sends `data` as media messages of `payload_bytes` (real-time paced or all at once)."""
        for i in range(0, len(data), payload_bytes):
            message: dict[str, Any] = {"event": "media",
                                       "media": {"payload": base64.b64encode(data[i:i + payload_bytes]).decode()}}
            sid = self.stream_id if stream_id == "call's" else stream_id
            if sid is not None:
                message[self.dialect.stream_key] = sid
            await self.send(message)
            if paced:
                await asyncio.sleep(payload_bytes / RATE)

    async def mark(self, name: str) -> None:
        await self.send({"event": "mark", self.dialect.stream_key: self.stream_id, "mark": {"name": name}})

    async def clear(self) -> None:
        await self.send({"event": "clear", self.dialect.stream_key: self.stream_id})


Behaviour = Callable[[AgentSide], Awaitable[None]]


class FakeAgent:
    """Serves ws://127.0.0.1:PORT/; `on_line(side)` runs when a caller line has ended; `greeting`
    is sent as soon as the call starts."""

    def __init__(self, dialect: Dialect, on_line: Behaviour | None = None, greeting: bytes = b"") -> None:
        self.dialect = dialect
        self.on_line = on_line
        self.greeting = greeting
        self.received: list[tuple[float, dict[str, Any]]] = []  # (arrival, message) of every call
        self.sides: list[AgentSide] = []
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"ws://127.0.0.1:{self._runner.addresses[0][1]}/media"

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        side = AgentSide(ws, self.dialect)
        self.sides.append(side)
        speaking, silent = False, 0
        async for message in ws:
            data = json.loads(message.data)
            self.received.append((now_ms(), data))
            if data["event"] == "start":
                side.stream_id = data[self.dialect.stream_key]
                if self.greeting:
                    await side.audio(self.greeting)
            elif data["event"] == "media":
                if base64.b64decode(data["media"]["payload"]) != SILENT_FRAME:
                    speaking, silent = True, 0
                elif speaking:
                    silent += 1
                    if silent == SILENT_FRAMES_ENDING_A_LINE:
                        speaking = False
                        side.lines_heard += 1
                        if self.on_line is not None:
                            task = asyncio.create_task(self.on_line(side))
                            self._tasks.add(task)
                            task.add_done_callback(self._tasks.discard)
            elif data["event"] == "stop":
                break
        return ws

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for _t, m in self.received if m["event"] == name]


ROOT = Path(__file__).parent.parent.parent
START_TIMEOUT_S = 120.0  # serve-agent loads Whisper before it listens


def playground_process(*args: str) -> subprocess.Popen:
    """`playground ARGS` in a process of its own (this checkout first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "playground.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def serve_agent(*args: str) -> tuple[subprocess.Popen, str]:
    """`playground serve-agent --port 0 ARGS` in its own process (its own cores' worth of GIL, as
    in real life), and the URL it printed once listening."""
    server = playground_process("serve-agent", "--port", "0", *args)
    ready, _, _ = select.select([server.stdout], [], [], START_TIMEOUT_S)
    line = server.stdout.readline() if ready else ""
    match = re.search(r"ws://\S+", line)
    if match is None:
        server.kill()
        raise RuntimeError(f"serve-agent did not start: {line!r} {server.stderr.read()}")
    return server, match.group(0)


def stop(process: subprocess.Popen) -> str:
    """Ctrl-C to a server process; its stderr once it has exited."""
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=60)[1]
