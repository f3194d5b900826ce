"""A loopback ElevenLabs TTS server: the documented WebSocket and REST messages, spoken by Piper.

    playground serve-tts elevenlabs --port 8765

Endpoints (as api.elevenlabs.io serves them, on one host and port):
- `GET /v1/text-to-speech/{voice_id}/multi-stream-input` (WebSocket): up to 5 contexts per
  connection; `{"text": " ", "context_id", "voice_settings", "generation_config"}` opens a
  context, text messages are buffered and spoken on `flush: true` (or, without auto_mode,
  once the buffer reaches the next `chunk_length_schedule` size), `close_context` speaks
  what is left and answers `{"isFinal": true, "contextId"}`; `{"text": ""}` (with or without
  a context) is a keep-alive; `close_socket` closes. A keep-alive sent as a context's first
  message makes that context's later init fail with 1008; a sixth open context fails with
  `max_active_conversations`.
- `GET /v1/text-to-speech/{voice_id}/stream-input` (WebSocket): one stream per connection;
  `{"text": ""}` ends it (final message, then close).
- Both close with 1008 and the documented `input_timeout_exceeded` message when no text
  arrived for `inactivity_timeout` seconds (query parameter, default 20, max 180).
- `POST /v1/text-to-speech/{voice_id}/stream`: the body's `text` as raw PCM bytes.

Query: `output_format=pcm_<rate>` (the only formats a loopback serves), `model_id`,
`inactivity_timeout`, `auto_mode`, `sync_alignment`. Audio messages carry base64 s16le PCM
with `alignment` and `normalizedAlignment` (`chars`, `charStartTimesMs`, `charDurationsMs`,
relative to that message's audio). With an API key configured, `xi-api-key` must match:
a missing key is refused with 401, a wrong one with 401 too (`invalid_api_key`).

The same text is always spoken the same way (the speech is cached per text and sample
rate, like a fixed `seed`), so a test can compare the audio it got with `speech(text)`.
Faults for the tests are injected with `inject(Fault(...))`: each strikes once, on the
handshake of the next connection ("reject") or after the next `after_frames` audio messages
of any connection (the others).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from playground.core.clock import now_ms
from playground.servers.voice import LoopbackVoice

MAX_CONTEXTS = 5
FRAME_S = 0.5  # audio per message
CACHE_ENTRIES = 512
DEFAULT_INACTIVITY_S = 20.0
# A silent MPEG-1 Layer III frame (128 kbit/s, 44.1 kHz): what a server ignoring pcm_* would send.
_MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)


@dataclass
class Fault:
    """A one-time fault. `kind`:
    - "reject": refuse the handshake with HTTP `status` (401 or 403)
    - "close": after `after_frames` audio messages, close with `code`: 1006 (the TCP connection
      drops, no close frame) or 1008 (the `input_timeout_exceeded` message, then a close frame)
    - "stall": after `after_frames` audio messages, send nothing for `seconds`
    - "malformed": after `after_frames` audio messages, one message that is not valid JSON
    - "unknown": after `after_frames` audio messages, one JSON message of an unknown kind
    - "wrong_format": from `after_frames` on, the context's audio as `audio` = "mp3" (MP3 frames)
      or "rate" (twice the sample rate asked for)
    """

    kind: str
    after_frames: int = 1
    code: int = 1006
    seconds: float = 5.0
    status: int = 401
    audio: str = "mp3"


@dataclass
class _Context:
    id: str
    buffer: str = ""
    schedule: list[int] = field(default_factory=list)
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    wrong_format: Fault | None = None


class _Closed(Exception):
    """The connection was closed by a fault; the handler stops."""


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    request: web.Request
    multi: bool
    rate: int
    auto_mode: bool
    inactivity_s: float
    contexts: dict[str, _Context] = field(default_factory=dict)
    keepalive_first: set[str] = field(default_factory=set)
    last_text: float = 0.0
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ElevenLabsServer:
    name = "elevenlabs"
    default_port = 8765

    def __init__(self, api_key: str | None = None, voice: str = "en_US-joe-medium") -> None:
        self.api_key = api_key
        self.voice_name = voice
        self.voice: LoopbackVoice | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._faults: list[Fault] = []
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._text_locks: dict[tuple[str, int], threading.Lock] = {}
        self._connections: set[_Connection] = set()
        # What clients did, for tests and for `serve-tts` users reading the log.
        self.connections = 0
        self.received: list[dict[str, Any]] = []
        self.rest_requests: list[dict[str, Any]] = []
        self.struck: list[tuple[str, float]] = []  # (fault kind, monotonic ms) as each fault struck

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Loads the voice, starts serving, and returns the base URL (http://host:port)."""
        if self.voice is None:
            self.voice = await asyncio.to_thread(LoopbackVoice, self.voice_name)
        app = web.Application()
        app.router.add_get("/v1/text-to-speech/{voice_id}/multi-stream-input", self._websocket)
        app.router.add_get("/v1/text-to-speech/{voice_id}/stream-input", self._websocket)
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream", self._rest)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        for connection in list(self._connections):
            for context in connection.contexts.values():
                if context.worker is not None:
                    context.worker.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def inject(self, fault: Fault) -> None:
        """Arms a fault for the next connection (faults strike in the order injected)."""
        self._faults.append(fault)

    def speech(self, text: str, rate: int) -> np.ndarray:
        """The audio this server speaks for `text` at `rate` (int16), always the same."""
        key = (text, rate)
        with self._cache_lock:
            lock = self._text_locks.setdefault(key, threading.Lock())
        with lock:  # two contexts asking for the same text at once get the same audio
            with self._cache_lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
            assert self.voice is not None
            pieces = list(self.voice.synthesize(text, rate))
            audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
            with self._cache_lock:
                self._cache[key] = audio
                if len(self._cache) > CACHE_ENTRIES:
                    evicted, _ = self._cache.popitem(last=False)
                    self._text_locks.pop(evicted, None)
            return audio

    # -- handshake -----------------------------------------------------------------------

    def _auth_error(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        given = request.headers.get("xi-api-key") or request.query.get("xi_api_key")
        if not given:
            return web.json_response({"detail": {"status": "needs_authorization",
                                                 "message": "Missing xi-api-key header"}}, status=401)
        if given != self.api_key:
            return web.json_response({"detail": {"status": "invalid_api_key",
                                                 "message": "Invalid API key"}}, status=401)
        return None

    def _sample_rate(self, request: web.Request) -> int | web.Response:
        output_format = request.query.get("output_format", "pcm_22050")
        match = re.fullmatch(r"pcm_(8000|16000|22050|24000|44100|48000)", output_format)
        if not match:
            return web.json_response({"detail": {"status": "invalid_output_format", "message":
                                                 f"output_format {output_format!r}: this loopback server speaks "
                                                 "raw PCM only (pcm_8000 ... pcm_48000)"}}, status=400)
        return int(match.group(1))

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        fault = next((f for f in self._faults if f.kind == "reject"), None)
        if fault is not None:
            self._faults.remove(fault)
            return web.json_response({"detail": {"status": "invalid_api_key" if fault.status == 401 else
                                                 "forbidden", "message": "refused (injected fault)"}},
                                     status=fault.status)
        refused = self._auth_error(request)
        if refused is not None:
            return refused
        rate = self._sample_rate(request)
        if isinstance(rate, web.Response):
            return rate
        try:
            inactivity = float(request.query.get("inactivity_timeout", DEFAULT_INACTIVITY_S))
        except ValueError:
            return web.json_response({"detail": {"message": "inactivity_timeout must be a number"}}, status=400)
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self.connections += 1
        connection = _Connection(
            ws=ws, request=request, multi=request.path.endswith("multi-stream-input"), rate=rate,
            auto_mode=request.query.get("auto_mode", "false").lower() == "true",
            inactivity_s=min(max(inactivity, 1.0), 180.0),
            last_text=asyncio.get_running_loop().time())
        self._connections.add(connection)
        try:
            await self._serve(connection)
        except (_Closed, ConnectionResetError):
            pass
        finally:
            self._connections.discard(connection)
            for context in connection.contexts.values():
                if context.worker is not None:
                    context.worker.cancel()
        return ws

    # -- WebSocket messages --------------------------------------------------------------

    async def _serve(self, c: _Connection) -> None:
        loop = asyncio.get_running_loop()
        while not c.ws.closed:
            remaining = c.inactivity_s - (loop.time() - c.last_text)
            if remaining <= 0:
                await self._fail(c, "input_timeout_exceeded",
                                 f"Have not received a new text input within the timeout of {c.inactivity_s:.1f} "
                                 f"seconds. Streaming input terminated. Please make sure to send a text input at "
                                 f"least once every {c.inactivity_s:g} seconds.")
                return
            try:
                message = await c.ws.receive(timeout=remaining)
            except TimeoutError:
                continue
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            if message.type != WSMsgType.TEXT:
                await self._fail(c, "invalid_message", "Binary messages are not accepted; send JSON text.")
                return
            try:
                data = json.loads(message.data)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                await self._fail(c, "invalid_message", f"Could not parse the message as JSON: {message.data[:80]!r}")
                return
            self.received.append(data)
            if "text" in data:
                c.last_text = loop.time()
            if c.multi:
                await self._on_multi(c, data)
            else:
                await self._on_single(c, data)

    async def _on_multi(self, c: _Connection, data: dict[str, Any]) -> None:
        if data.get("close_socket"):
            for context in list(c.contexts.values()):
                await self._finish(c, context)
            await c.ws.close()
            return
        context_id = data.get("context_id")
        if context_id is None:
            return  # a keep-alive before any context ({"text": ""}) or nothing this server acts on
        context_id = str(context_id)
        context = c.contexts.get(context_id)
        if context is None:
            if data.get("close_context") or data.get("flush"):
                return  # closing or flushing a context that is already gone
            if data.get("text") == "" and not ({"voice_settings", "generation_config"} & data.keys()):
                c.keepalive_first.add(context_id)
                return
            if context_id in c.keepalive_first:
                await self._fail(c, "invalid_message", f"Context {context_id} received a keep-alive before its "
                                 "initialization; it cannot be initialized now.")
                return
            if len(c.contexts) >= MAX_CONTEXTS:
                await self._fail(c, "max_active_conversations", f"Maximum number of active conversations "
                                 f"({MAX_CONTEXTS}) reached; close a context before opening another.")
                return
            context = self._open_context(c, context_id, data)
        await self._on_text(c, context, data)
        if data.get("close_context"):
            await self._finish(c, context)

    async def _on_single(self, c: _Connection, data: dict[str, Any]) -> None:
        context = c.contexts.get("") or self._open_context(c, "", data)
        if data.get("text") == "":
            await self._finish(c, context)
            if context.worker is not None:
                await asyncio.gather(context.worker, return_exceptions=True)
            await c.ws.close()
            return
        await self._on_text(c, context, data)

    def _open_context(self, c: _Connection, context_id: str, data: dict[str, Any]) -> _Context:
        schedule = (data.get("generation_config") or {}).get("chunk_length_schedule") or [120, 160, 250, 290]
        context = _Context(context_id, schedule=list(schedule))
        context.worker = asyncio.create_task(self._speak(c, context), name=f"elevenlabs-context-{context_id}")
        c.contexts[context_id] = context
        return context

    async def _on_text(self, c: _Connection, context: _Context, data: dict[str, Any]) -> None:
        text = data.get("text")
        if isinstance(text, str) and text.strip():
            context.buffer += text
        if data.get("flush") or data.get("try_trigger_generation") or self._schedule_due(c, context):
            self._generate(context)

    def _schedule_due(self, c: _Connection, context: _Context) -> bool:
        """Without auto_mode, text is spoken once the buffer reaches the next scheduled size."""
        if c.auto_mode:
            return bool(re.search(r"[.!?]\s$", context.buffer))
        limit = context.schedule[0] if context.schedule else 290
        return len(context.buffer) >= limit

    def _generate(self, context: _Context) -> None:
        if context.buffer.strip():
            context.queue.put_nowait(context.buffer)
            if len(context.schedule) > 1:
                context.schedule.pop(0)
        context.buffer = ""

    async def _finish(self, c: _Connection, context: _Context) -> None:
        """close_context: speak what is buffered, then the final message."""
        self._generate(context)
        context.queue.put_nowait(None)
        c.contexts.pop(context.id, None)

    async def _speak(self, c: _Connection, context: _Context) -> None:
        """A context's generations, in order: audio messages, then the final message."""
        try:
            await self._speak_queue(c, context)
        except (_Closed, ConnectionResetError):
            pass  # the connection is gone (a fault, or the client left)

    async def _speak_queue(self, c: _Connection, context: _Context) -> None:
        while True:
            text = await context.queue.get()
            if text is None:
                await self._send(c, {"isFinal": True, **self._context_field(c, context)})
                return
            audio = await asyncio.to_thread(self.speech, text, c.rate)
            step = int(c.rate * FRAME_S)
            per_char_ms = len(audio) * 1000.0 / c.rate / max(1, len(text))
            for start in range(0, max(len(audio), 1), step):
                frame = audio[start:start + step]
                first_char = int(np.ceil(start * 1000.0 / c.rate / per_char_ms - 1e-9))
                last_char = int(np.ceil((start + len(frame)) * 1000.0 / c.rate / per_char_ms - 1e-9))
                if start + step >= len(audio):
                    last_char = len(text)
                await self._send_audio(c, context, frame, text, range(first_char, last_char), start, per_char_ms)

    async def _send_audio(self, c: _Connection, context: _Context, frame: np.ndarray, text: str,
                          chars: range, start: int, per_char_ms: float) -> None:
        fault = next((f for f in self._faults if f.kind != "reject"), None)
        if fault is not None:
            if fault.after_frames <= 0:
                self._faults.remove(fault)
                await self._strike(c, context, fault)
            else:
                fault.after_frames -= 1
        offset_ms = start * 1000.0 / c.rate
        alignment = {"chars": [text[i] for i in chars],
                     "charStartTimesMs": [round(i * per_char_ms - offset_ms) for i in chars],
                     "charDurationsMs": [round(per_char_ms) for _ in chars]} if chars else None
        payload = frame.astype("<i2").tobytes()
        if context.wrong_format is not None:
            payload = self._wrong_audio(context.wrong_format, frame, c.rate)
        await self._send(c, {"audio": base64.b64encode(payload).decode("ascii"), "isFinal": None,
                             "normalizedAlignment": alignment, "alignment": alignment,
                             **self._context_field(c, context)})

    async def _strike(self, c: _Connection, context: _Context, fault: Fault) -> None:
        self.struck.append((fault.kind, now_ms()))
        if fault.kind == "close":
            if fault.code == 1006:
                if c.request.transport is not None:
                    c.request.transport.abort()
                raise _Closed
            await self._fail(c, "input_timeout_exceeded", "Have not received a new text input within the timeout "
                             f"of {c.inactivity_s:.1f} seconds. Streaming input terminated. (injected fault)")
            raise _Closed
        if fault.kind == "stall":
            await asyncio.sleep(fault.seconds)
        elif fault.kind == "malformed":
            await c.ws.send_str('{"audio": "UklGR", "isFinal": nul')
        elif fault.kind == "unknown":
            await self._send(c, {"type": "usage_report", "characters": 42})
        elif fault.kind == "wrong_format":
            context.wrong_format = fault

    @staticmethod
    def _wrong_audio(fault: Fault, frame: np.ndarray, rate: int) -> bytes:
        if fault.audio == "mp3":
            return _MP3_FRAME * max(1, len(frame) * 2 // len(_MP3_FRAME))
        # the same sound at twice the rate: twice the samples for the same alignment
        return np.repeat(frame, 2).astype("<i2").tobytes()

    @staticmethod
    def _context_field(c: _Connection, context: _Context) -> dict[str, str]:
        return {"contextId": context.id} if c.multi else {}

    async def _send(self, c: _Connection, message: dict[str, Any]) -> None:
        if c.ws.closed:
            raise _Closed
        async with c.send_lock:
            await c.ws.send_str(json.dumps(message))

    async def _fail(self, c: _Connection, error: str, message: str) -> None:
        """The documented error shape: a JSON message, then close 1008."""
        if not c.ws.closed:
            await c.ws.send_str(json.dumps({"message": message, "error": error, "code": 1008}))
            await c.ws.close(code=1008, message=error.encode())

    # -- REST ------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        refused = self._auth_error(request)
        if refused is not None:
            return refused
        rate = self._sample_rate(request)
        if isinstance(rate, web.Response):
            return rate
        try:
            body = await request.json()
            text = body["text"]
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return web.json_response({"detail": {"status": "invalid_request",
                                                 "message": "body must be JSON with a string `text`"}}, status=422)
        self.rest_requests.append({"text": text, "query": dict(request.query), "model_id": body.get("model_id")})
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        audio = await asyncio.to_thread(self.speech, text, rate)
        step = int(rate * FRAME_S)
        for start in range(0, len(audio), step):
            await response.write(audio[start:start + step].astype("<i2").tobytes())
        await response.write_eof()
        return response


TTS_SERVER = ElevenLabsServer
