"""What every loopback server shares: one aiohttp.web application on one port serving the
provider's HTTP and WebSocket endpoints, the provider's error shape for every refusal
(unknown paths and methods too), the fault control endpoint, and the counters the tests
read. `LoopbackTTSServer` adds what the TTS servers share: Piper speech cached per text,
streamed in frames from a worker thread, and the faults applied to WebSocket audio.

A provider module subclasses `LoopbackServer` (or `LoopbackTTSServer`) and implements
`add_routes` and `error_response`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from playground.servers.audio import mp3_bytes, wav_bytes
from playground.servers.faults import (
    FAULTS_PATH,
    TTS_FAULTS,
    Fault,
    FaultError,
    Faults,
    ReplyFaults,
    fault_from_request_body,
)
from playground.servers.voice import LoopbackVoice

_PREPARED_STATUS = web.RequestKey("loopback_prepared_status", int)
SPOKEN_CACHE_ENTRIES = 512
# Handlers still running when the server stops get this long to finish before they are cancelled.
_SHUTDOWN_TIMEOUT_S = 1.0
_KEEPALIVE_S = 3600.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SocketGone(Exception):
    """The WebSocket was closed (by the client, or by a fault): the reply stops."""


class LoopbackServer:
    """A provider's endpoints on 127.0.0.1 (port 0 picks a free one).

    `api_key`: when set, requests must carry it the way the provider expects.
    For tests and users: `faults` (arm them with `inject`), `connections` (TCP
    connections accepted), `handshakes` (WebSocket connections accepted), `received`
    (every WebSocket message or chat request, parsed), `rest_requests`
    (the bodies of the REST requests served), `requests` ((method, path, status) of
    every request; `on_request` is called with each as it is answered), `listening` (set
    while the server accepts connections: an `outage` clears it until the server is back).
    """

    name = "loopback"
    default_port = 0  # where `playground serve-*` listens unless told otherwise
    fault_kinds: frozenset[str] = frozenset()

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.faults = Faults(self.fault_kinds)
        self.url = ""
        self.connections = 0
        self.handshakes = 0
        self.received: list[Any] = []
        self.rest_requests: list[Any] = []
        self.requests: list[tuple[str, str, int]] = []
        self.on_request: Callable[[str, str, int], None] | None = None
        self._transports: weakref.WeakSet[Any] = weakref.WeakSet()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._address: tuple[str, int] | None = None  # where it listened: an outage comes back there
        self._outage: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    # -- what a provider implements -------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def error_response(self, status: int, message: str, code: str | None = None,
                       headers: dict[str, str] | None = None) -> web.Response:
        """An HTTP error in the provider's documented shape."""
        raise NotImplementedError

    async def load(self) -> None:
        """Loads what the server speaks with (a voice, a model) before it listens."""

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Loads, listens, and returns the base URL (http://host:port)."""
        await self.load()
        app = web.Application(middlewares=[self._middleware], client_max_size=8 * 1024 * 1024)
        app.on_response_prepare.append(self._prepared)
        app.router.add_post(FAULTS_PATH, self._inject_request)
        self.add_routes(app.router)
        # handler_cancellation: a client that hangs up stops its reply at once, not at the next write.
        # An idle keep-alive connection stays open as long as the client keeps it (the openai provider: 300 s).
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True,
                                     shutdown_timeout=_SHUTDOWN_TIMEOUT_S, keepalive_timeout=_KEEPALIVE_S)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        bound_host, bound_port = self._runner.addresses[0][:2]
        self._address = (bound_host, bound_port)
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        self.listening.set()
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1]) if self.url else 0

    async def stop(self) -> None:
        """Stops listening and drops every open connection (clients see them close)."""
        self.listening.clear()
        if self._outage is not None and self._outage is not asyncio.current_task():
            self._outage.cancel()  # stopped for good: an outage under way does not come back
        for task in list(self._handlers):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def outage(self, seconds: float) -> None:
        """The server is gone for `seconds`: it stops listening and drops every connection, then
        listens again on the same address (a provider's outage, on real sockets)."""
        assert self._address is not None, "start() the server first"
        host, port = self._address
        await self.stop()
        await asyncio.sleep(seconds)
        await self.start(host, port)

    def begin_outage(self, seconds: float) -> None:
        """Starts an `outage` from inside a handler (which the outage itself ends)."""
        self._outage = asyncio.get_running_loop().create_task(self.outage(seconds), name=f"{self.name}-outage")

    def inject(self, *faults: Fault) -> None:
        """Arms faults (see `playground.servers.faults`); each strikes once."""
        self.faults.inject(*faults)

    def log(self, message: str, exc_info: bool = False) -> None:
        logging.getLogger(f"playground.servers.{self.name}").warning(message, exc_info=exc_info)

    # -- every request ----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.transport is not None and request.transport not in self._transports:
            self._transports.add(request.transport)
            self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        response: web.StreamResponse | None = None
        try:
            try:
                response = await handler(request)
            except web.HTTPMethodNotAllowed as exc:
                allowed = ", ".join(sorted(exc.allowed_methods))
                response = self.error_response(405, f"{request.method} {request.path}: method not allowed (use "
                                                    f"{allowed})", "method_not_allowed")
            except web.HTTPNotFound:
                response = self.not_found(request)
            return response
        finally:
            if task is not None:
                self._handlers.discard(task)
            # a stream that ended early (a fault, the client gone) was prepared with its status
            status = response.status if response is not None else request.get(_PREPARED_STATUS, 500)
            self.requests.append((request.method, request.path, status))
            if self.on_request is not None:
                self.on_request(request.method, request.path, status)

    @staticmethod
    async def _prepared(request: web.Request, response: web.StreamResponse) -> None:
        request[_PREPARED_STATUS] = response.status

    def not_found(self, request: web.Request) -> web.Response:
        """The answer to a path this server does not serve, in the provider's error shape."""
        return self.error_response(404, f"{request.method} {request.path}: no such endpoint on this {self.name} "
                                        "loopback server", "not_found")

    async def _inject_request(self, request: web.Request) -> web.Response:
        """`POST /loopback/faults`: arms a fault while the server runs (a SPEC or a JSON object)."""
        try:
            fault = fault_from_request_body(await request.read())
            self.inject(fault)
        except (FaultError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"armed": [vars(f) for f in self.faults.armed]})

    def reject_response(self, fault: Fault) -> web.Response:
        """The answer to a handshake or request an injected `reject` refuses."""
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return self.error_response(fault.status, f"{HTTPStatus(fault.status).phrase} (injected by the loopback "
                                                 "server)", None, headers)

    def refuse(self, request: web.Request) -> web.Response | None:
        """The injected refusal of this request, if one is armed."""
        fault = self.faults.take_reject()
        return self.reject_response(fault) if fault is not None else None


class LoopbackTTSServer(LoopbackServer):
    """A TTS provider's endpoints backed by the local Piper voice.

    `idle_timeout_s`: a socket with no traffic either way for this long is closed (the
    providers' idle close; ElevenLabs has its own `inactivity_timeout`).
    `frame_ms`: streamed audio is sent in frames of this duration, as it is synthesized.
    """

    fault_kinds = TTS_FAULTS

    def __init__(self, api_key: str | None = None, voice: LoopbackVoice | None = None,
                 idle_timeout_s: float = 300.0, frame_ms: float = 40.0) -> None:
        super().__init__(api_key)
        self.voice = voice
        self.idle_timeout_s = idle_timeout_s
        self.frame_ms = frame_ms
        self._spoken: OrderedDict[tuple[str, int], _Speech] = OrderedDict()

    async def load(self) -> None:
        if self.voice is None:
            self.voice = await asyncio.to_thread(LoopbackVoice)

    # -- WebSocket plumbing ---------------------------------------------------------------

    async def open_socket(self, request: web.Request, refusal: web.Response | None) -> web.StreamResponse:
        """The handshake: an injected or the provider's refusal (`refusal`), else an open socket."""
        refused = self.refuse(request) or refusal
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        self.handshakes += 1
        return ws

    async def receive(self, ws: web.WebSocketResponse, activity: list[float]) -> str | bytes | None:
        """The next client message, or None once the socket closed or was idle for
        `idle_timeout_s` (then it is closed). `activity[0]` is the loop time of the last traffic."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = activity[0] + self.idle_timeout_s - loop.time()
            if remaining <= 0:
                await ws.close(code=1000, message=f"connection idle for {self.idle_timeout_s:g} s".encode())
                return None
            try:
                message = await ws.receive(timeout=remaining)
            except TimeoutError:
                continue  # audio may have been sent meanwhile: re-check the idle time
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return None  # a close, or the connection broke
            activity[0] = loop.time()
            self.received.append(message.data if message.type == WSMsgType.BINARY else _as_json(message.data))
            return message.data

    async def send_json(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        await self.send(ws, json.dumps(message))

    async def send(self, ws: web.WebSocketResponse, data: str | bytes) -> None:
        if ws.closed:
            raise SocketGone
        try:
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            else:
                await ws.send_str(data)
        except ConnectionError:
            raise SocketGone from None

    # -- faults on the audio of a reply ---------------------------------------------------

    def malformed_message(self) -> str:
        """A text frame that is not valid JSON (the `malformed` fault), in the provider's style."""
        return '{"type": "chunk", "data": '

    def unknown_message(self) -> dict[str, Any]:
        return {"type": "loopback_unknown", "note": "a message type no client knows"}

    async def close_for_fault(self, ws: web.WebSocketResponse, request: web.Request, fault: Fault) -> None:
        """The `close` fault: 1006 drops the TCP connection, any other code is a close frame."""
        if fault.code == 1006:
            if request.transport is not None:
                request.transport.abort()
        else:
            await ws.close(code=fault.code, message=fault.reason.encode())

    async def before_frame(self, ws: web.WebSocketResponse, request: web.Request, reply: ReplyFaults) -> None:
        """Runs the reply's faults due before its next audio frame; SocketGone once a fault closed it."""
        for fault in reply.due():
            if fault.kind == "malformed":
                await self.send(ws, self.malformed_message())
            elif fault.kind == "unknown":
                await self.send_json(ws, self.unknown_message())
            elif fault.kind == "stall":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "wrong_format":
                reply.wrong_audio = fault.audio
            elif fault.kind == "close":
                await self.close_for_fault(ws, request, fault)
                raise SocketGone
            elif fault.kind == "outage":
                self.begin_outage(fault.seconds)
                raise SocketGone
        reply.sent += 1

    @staticmethod
    def wrong_audio(kind: str, samples: np.ndarray, sample_rate: int) -> bytes:
        """A frame's audio in the wrong format (the `wrong_format` fault)."""
        if kind == "wav":
            return wav_bytes(samples.astype("<i2").tobytes(), sample_rate)
        if kind == "mp3":
            return mp3_bytes(samples, sample_rate)
        # the same sound at twice the rate: twice the samples for the same duration
        return np.repeat(samples, 2).astype("<i2").tobytes()

    # -- speech ---------------------------------------------------------------------------

    def speech(self, text: str, sample_rate: int) -> np.ndarray:
        """The audio this server speaks for `text` at `sample_rate` (int16): a text is spoken the
        same way every time (one synthesis per text is kept and shared, like a fixed seed).
        Synthesizes it here when no reply has yet (tests, a benchmark preparing its texts)."""
        entry = self._spoken.get((text, sample_rate))
        if entry is not None and entry.done and entry.error is None:
            return entry.audio()
        assert self.voice is not None, "start() loads the voice"
        pieces = [np.asarray(p, dtype="<i2") for p in self.voice.synthesize(text, sample_rate)]
        return self.set_speech(text, sample_rate, np.concatenate(pieces) if pieces else np.zeros(0, "<i2"))

    def set_speech(self, text: str, sample_rate: int, samples: np.ndarray) -> np.ndarray:
        """Makes `samples` what this server speaks for `text` from now on."""
        entry = _Speech(pieces=[np.asarray(samples, dtype="<i2")], ready_s=[0.0], done=True)
        self._remember((text, sample_rate), entry)
        return entry.audio()

    async def whole_speech(self, text: str, sample_rate: int) -> np.ndarray:
        """The speech of `text`, once all of it is synthesized."""
        entry = self._entry(text, sample_rate)
        while not entry.done:
            entry.changed.clear()
            await entry.changed.wait()
        if entry.error is not None:
            self._spoken.pop((text, sample_rate), None)
            raise entry.error
        return await asyncio.to_thread(entry.audio)  # joined off the loop, as it was synthesized

    async def speech_frames(self, text: str, sample_rate: int) -> AsyncIterator[np.ndarray]:
        """The speech of `text` in int16 frames of `frame_ms`, each yielded as soon as its sentence
        is synthesized. A text spoken before comes no faster than its synthesis did: latency stays real."""
        entry = self._entry(text, sample_rate)
        frame = max(1, int(sample_rate * self.frame_ms / 1000))
        loop = asyncio.get_running_loop()
        started = loop.time()
        index = 0
        while True:
            if index < len(entry.pieces):
                wait = entry.ready_s[index] - (loop.time() - started)
                if wait > 0:
                    await asyncio.sleep(wait)
                data = entry.pieces[index]
                index += 1
                for start in range(0, len(data), frame):
                    yield data[start:start + frame]
            elif entry.done:
                if entry.error is not None:
                    self._spoken.pop((text, sample_rate), None)
                    raise entry.error
                return
            else:
                entry.changed.clear()
                await entry.changed.wait()

    def _entry(self, text: str, sample_rate: int) -> _Speech:
        entry = self._spoken.get((text, sample_rate))
        if entry is None:
            entry = self._start_speech(text, sample_rate)
            self._remember((text, sample_rate), entry)
        self._spoken.move_to_end((text, sample_rate))
        return entry

    def _remember(self, key: tuple[str, int], entry: _Speech) -> None:
        self._spoken[key] = entry
        if len(self._spoken) > SPOKEN_CACHE_ENTRIES:
            self._spoken.popitem(last=False)

    def _start_speech(self, text: str, sample_rate: int) -> _Speech:
        """Synthesizes in a worker thread; the pieces are added to the entry on the loop."""
        assert self.voice is not None, "start() loads the voice"
        loop = asyncio.get_running_loop()
        entry = _Speech()
        voice = self.voice
        started = loop.time()

        def add(piece: np.ndarray | None, error: BaseException | None = None) -> None:
            if piece is None:
                entry.done, entry.error = True, error
            else:
                entry.pieces.append(np.asarray(piece, dtype="<i2"))
                entry.ready_s.append(loop.time() - started)
            entry.changed.set()

        def synthesize() -> None:
            error = None
            try:
                for piece in voice.synthesize(text, sample_rate):
                    loop.call_soon_threadsafe(add, piece)
            except Exception as exc:  # reaches the consumers, which fail their reply
                error = exc
            finally:
                try:
                    loop.call_soon_threadsafe(add, None, error)
                except RuntimeError:
                    pass  # the loop closed (server stopped) while the thread still ran

        loop.run_in_executor(None, synthesize)
        return entry


@dataclass(eq=False)
class _Speech:
    """One synthesis of a text, shared by every reply that speaks it."""

    pieces: list[np.ndarray] = field(default_factory=list)
    ready_s: list[float] = field(default_factory=list)  # when each piece was ready, after the start
    done: bool = False
    error: BaseException | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.pieces) if self.pieces else np.zeros(0, dtype="<i2")


def _as_json(message: str) -> Any:
    try:
        return json.loads(message)
    except ValueError:
        return message


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def request_id() -> str:
    return str(uuid.uuid4())


def audio_duration_s(samples: int, sample_rate: int) -> float:
    return samples / sample_rate


def word_timestamps(text: str, start_s: float, duration_s: float) -> dict[str, list[Any]]:
    """Word timings for `text` spoken over `duration_s` from `start_s`: Piper gives no word
    alignment, so each word gets a share of the real audio duration by its length."""
    words = text.split()
    total = sum(len(w) + 1 for w in words) or 1
    starts, ends, at = [], [], start_s
    for word in words:
        length = duration_s * (len(word) + 1) / total
        starts.append(round(at, 3))
        ends.append(round(at + length, 3))
        at += length
    return {"words": words, "start": starts, "end": ends}
