"""What the loopback TTS servers share: one port serving the provider's WebSocket endpoint
and its REST endpoint, the handshake checks, fault injection, and Piper speech streamed
out of a worker thread in frames.

websockets parses only GET handshakes (a POST with a body is refused before any hook
runs), so the connection class sniffs the first request line: a POST is answered here
with h11, anything else goes to websockets as usual. A provider module subclasses
`LoopbackTTSServer` and implements `check_request`, `serve_socket` and `serve_rest`.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import wave
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11
import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from playground.servers.voice import LoopbackVoice

SPOKEN_CACHE_ENTRIES = 256
# A REST reply (the whole synthesis) must finish within this time, like a handshake.
HTTP_TIMEOUT_S = 120.0


@dataclass
class Faults:
    """Faults a test (or a user trying a client) injects. The reply faults fire once, on the
    next reply that sends audio, then clear themselves, so the turn after a fault is clean."""

    # the next N handshakes (WebSocket or REST) are refused with this HTTP status
    reject_handshakes: int = 0
    reject_status: int = 401
    # close the socket after this many audio frames of the next reply: 1006 drops the TCP
    # connection with no close frame; any other code is a close frame with `close_reason`
    close_code: int | None = None
    close_reason: str = ""
    close_after_frames: int = 2
    # no audio for `stall_s` seconds after `stall_after_frames` frames of the next reply
    stall_s: float = 0.0
    stall_after_frames: int = 1
    # the next reply starts with a text frame that is not JSON / a message of an unknown type
    malformed_json: bool = False
    unknown_message: bool = False
    # the next reply's first audio frame is a WAV file instead of the raw PCM asked for
    wrong_audio_format: bool = False


@dataclass
class HttpRequest:
    """A handshake or REST request, as the server's checks see it."""

    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes = b""

    @classmethod
    def from_target(cls, method: str, target: str, headers: Headers, body: bytes = b"") -> HttpRequest:
        parts = urlsplit(target)
        return cls(method, parts.path, dict(parse_qsl(parts.query)), headers, body)

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class HttpReply:
    """A REST answer or a refused handshake: a JSON error, or audio streamed as it is made."""

    status: int
    body: bytes | AsyncIterator[bytes] = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, status: int, payload: dict[str, Any]) -> HttpReply:
        return cls(status, json.dumps(payload).encode())


class ReplyFaults:
    """Applies the server's one-shot reply faults to one reply's audio frames."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.frames = 0

    async def before_frame(self, ws: ServerConnection) -> bool:
        """Runs the faults due before the next audio frame; False when the socket was closed."""
        faults = self.faults
        if self.frames == 0 and faults.malformed_json:
            faults.malformed_json = False
            await ws.send('{"type": "chunk", "data": ')
        if self.frames == 0 and faults.unknown_message:
            faults.unknown_message = False
            await ws.send(json.dumps({"type": "loopback_unknown", "note": "a message type no client knows"}))
        if faults.stall_s and self.frames == faults.stall_after_frames:
            stall, faults.stall_s = faults.stall_s, 0.0
            await asyncio.sleep(stall)
        if faults.close_code is not None and self.frames == faults.close_after_frames:
            code, faults.close_code = faults.close_code, None
            if code == 1006:
                ws.transport.abort()
            else:
                await ws.close(code, faults.close_reason)
            return False
        self.frames += 1
        return True

    def payload(self, pcm: bytes, sample_rate: int) -> bytes:
        if self.faults.wrong_audio_format:
            self.faults.wrong_audio_format = False
            return wav_bytes(pcm, sample_rate)
        return pcm


class _Connection(ServerConnection):
    """A WebSocket connection that answers a plain HTTP POST itself (the REST endpoints)."""

    def __init__(self, *args: Any, loopback: LoopbackTTSServer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loopback = loopback
        self._sniffed = b""
        self._http: h11.Connection | None = None
        self._http_request: h11.Request | None = None
        self._http_body = bytearray()
        self.loopback_request: HttpRequest | None = None  # the handshake, as the provider's checks saw it

    def data_received(self, data: bytes) -> None:
        if self._http is None and self._sniffed is not None:
            self._sniffed += data
            if len(self._sniffed) < 5:
                return
            data, self._sniffed = self._sniffed, None
            if data.startswith(b"POST "):
                self._http = h11.Connection(h11.SERVER)
        if self._http is None:
            super().data_received(data)
            return
        self._http.receive_data(data)
        self._read_http()

    def _read_http(self) -> None:
        assert self._http is not None
        while True:
            try:
                event = self._http.next_event()
            except h11.RemoteProtocolError as exc:
                self._write_http(HttpReply.error(400, {"error": f"bad HTTP request: {exc}"}))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._http_request = event
            elif isinstance(event, h11.Data):
                self._http_body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert self._http_request is not None
                headers = Headers((k.decode(), v.decode("latin-1")) for k, v in self._http_request.headers)
                request = HttpRequest.from_target("POST", self._http_request.target.decode(), headers,
                                                  bytes(self._http_body))
                task = self.loop.create_task(self._answer_http(request))
                self.server.handler_tasks.add(task)
                task.add_done_callback(self.server.handler_tasks.discard)
                return

    async def _answer_http(self, request: HttpRequest) -> None:
        try:
            async with asyncio.timeout(HTTP_TIMEOUT_S):
                reply = self._loopback.refuse(request) or await self._loopback.serve_rest(request)
                await self._write_http_async(reply)
        except Exception:  # the client sees the connection drop mid-reply, as with a real server fault
            self._loopback.log(f"REST {request.path} failed", exc_info=True)
            self.transport.abort()

    def _write_http(self, reply: HttpReply) -> None:
        assert self._http is not None and isinstance(reply.body, bytes)
        headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body))),
                   ("Connection", "close"), *reply.headers.items()]
        self.transport.write(self._http.send(h11.Response(status_code=reply.status, headers=headers)))
        self.transport.write(self._http.send(h11.Data(data=reply.body)))
        self.transport.write(self._http.send(h11.EndOfMessage()))
        self.transport.close()

    async def _write_http_async(self, reply: HttpReply) -> None:
        if isinstance(reply.body, bytes):
            self._write_http(reply)
            return
        assert self._http is not None
        headers = [("Content-Type", reply.content_type), ("Transfer-Encoding", "chunked"),
                   ("Connection", "close"), *reply.headers.items()]
        self.transport.write(self._http.send(h11.Response(status_code=reply.status, headers=headers)))
        async for piece in reply.body:
            if self.transport.is_closing():
                return
            self.transport.write(self._http.send(h11.Data(data=piece)))
        self.transport.write(self._http.send(h11.EndOfMessage()))
        self.transport.close()


class LoopbackTTSServer:
    """A provider's TTS endpoints on 127.0.0.1, backed by the local Piper voice.

    `api_key`: when set, requests must carry it the way the provider expects.
    `idle_timeout_s`: a socket with no traffic either way for this long is closed.
    `frame_ms`: audio is sent in frames of this duration, as it is synthesized.
    `faults`: knobs the fault tests turn (see `Faults`); `received` keeps every client
    message and `handshakes` counts accepted WebSocket connections, for the tests.
    """

    name = "loopback"
    default_port = 0  # where `playground serve-tts` listens unless told otherwise

    def __init__(self, api_key: str | None = None, voice: LoopbackVoice | None = None,
                 idle_timeout_s: float = 300.0, frame_ms: float = 40.0) -> None:
        self.api_key = api_key
        self.voice = voice
        self.idle_timeout_s = idle_timeout_s
        self.frame_ms = frame_ms
        self.faults = Faults()
        self.received: list[Any] = []
        self.handshakes = 0
        self.url = ""
        self._server: Server | None = None
        self._spoken: OrderedDict[tuple[str, int], _Speech] = OrderedDict()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Loads the voice (unless one was given), listens, and returns the base URL."""
        if self.voice is None:
            self.voice = await asyncio.to_thread(LoopbackVoice)
        self._server = await serve(
            self._serve_socket, host, port,
            process_request=self._process_handshake,
            create_connection=functools.partial(_Connection, loopback=self),
            open_timeout=HTTP_TIMEOUT_S,
            ping_interval=None,  # the providers don't ping; the client decides about keep-alives
            max_size=2**22,
        )
        bound_host, bound_port = self._server.sockets[0].getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def log(self, message: str, exc_info: bool = False) -> None:
        logging.getLogger(f"playground.servers.{self.name}").warning(message, exc_info=exc_info)

    # -- what a provider implements -------------------------------------------------------

    def check_request(self, request: HttpRequest) -> HttpReply | None:
        """The provider's answer to a request it refuses (auth, path, parameters), else None."""
        raise NotImplementedError

    async def serve_socket(self, ws: ServerConnection, request: HttpRequest) -> None:
        raise NotImplementedError

    async def serve_rest(self, request: HttpRequest) -> HttpReply:
        raise NotImplementedError

    # -- handshakes -----------------------------------------------------------------------

    def refuse(self, request: HttpRequest) -> HttpReply | None:
        """The injected handshake fault, or the provider's own refusal."""
        if self.faults.reject_handshakes > 0:
            self.faults.reject_handshakes -= 1
            status = self.faults.reject_status
            return HttpReply.error(status, {"error": f"{HTTPStatus(status).phrase} (injected by the loopback server)"})
        return self.check_request(request)

    def _process_handshake(self, connection: _Connection, ws_request: Request) -> Response | None:
        request = HttpRequest.from_target("GET", ws_request.path, ws_request.headers)
        connection.loopback_request = request
        reply = self.refuse(request)
        if reply is None:
            self.handshakes += 1
            return None
        assert isinstance(reply.body, bytes)
        response = connection.respond(reply.status, reply.body.decode())
        response.headers["Content-Type"] = reply.content_type
        return response

    async def _serve_socket(self, ws: _Connection) -> None:
        assert ws.loopback_request is not None
        await self.serve_socket(ws, ws.loopback_request)

    # -- helpers for the providers --------------------------------------------------------

    async def receive(self, ws: ServerConnection, last_activity: list[float]) -> str | bytes | None:
        """The next client message, or None once the socket was idle for `idle_timeout_s`
        (then it has been closed). `last_activity[0]` is the loop time of the last traffic."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = last_activity[0] + self.idle_timeout_s - loop.time()
            if remaining <= 0:
                await ws.close(1000, f"connection idle for {self.idle_timeout_s:g} s")
                return None
            try:
                async with asyncio.timeout(remaining):
                    message = await ws.recv()
            except TimeoutError:
                continue  # audio may have been sent meanwhile: re-check the idle time
            last_activity[0] = loop.time()
            self.received.append(message if isinstance(message, bytes) else _as_json(message))
            return message

    def speech(self, text: str, sample_rate: int) -> np.ndarray | None:
        """The audio this server speaks for `text` at `sample_rate`, once fully synthesized."""
        entry = self._spoken.get((text, sample_rate))
        if entry is None or not entry.done or entry.error is not None:
            return None
        return np.concatenate(entry.pieces) if entry.pieces else np.zeros(0, dtype="<i2")

    async def speech_frames(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        """Real Piper speech of `text` at `sample_rate`, as int16 little-endian frames of
        `frame_ms`, each yielded as soon as its sentence is synthesized (in a worker thread).

        A text is spoken the same way every time (Piper alone varies a little): one synthesis
        per text is kept and shared, also while it runs, so audio a client has synthesized
        again after a reconnect is the very same samples."""
        key = (text, sample_rate)
        entry = self._spoken.get(key)
        if entry is None:
            entry = self._spoken[key] = self._start_speech(text, sample_rate)
            if len(self._spoken) > SPOKEN_CACHE_ENTRIES:
                self._spoken.popitem(last=False)
        self._spoken.move_to_end(key)
        frame = max(1, int(sample_rate * self.frame_ms / 1000))
        loop = asyncio.get_running_loop()
        started = loop.time()
        index = 0
        while True:
            if index < len(entry.pieces):
                # a text spoken before comes no faster than its synthesis did: latency stays real
                wait = entry.ready_s[index] - (loop.time() - started)
                if wait > 0:
                    await asyncio.sleep(wait)
                data = entry.pieces[index]
                index += 1
                for start in range(0, len(data), frame):
                    yield data[start:start + frame].tobytes()
            elif entry.done:
                if entry.error is not None:
                    self._spoken.pop(key, None)
                    raise entry.error
                return
            else:
                entry.changed.clear()
                await entry.changed.wait()

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


def _as_json(message: str) -> Any:
    try:
        return json.loads(message)
    except ValueError:
        return message


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """16-bit mono PCM as a WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


def audio_duration_s(pcm_bytes: int, sample_rate: int) -> float:
    return pcm_bytes / 2 / sample_rate


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
