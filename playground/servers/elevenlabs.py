"""A loopback ElevenLabs TTS server: the documented WebSocket and REST messages, spoken by Piper.

    playground serve-tts elevenlabs --port 8765

Endpoints (as api.elevenlabs.io serves them, on one host and port):
- `GET /v1/text-to-speech/{voice_id}/multi-stream-input` (WebSocket): up to 5 contexts per
  connection; `{"text": " ", "context_id", "voice_settings", "generation_config"}` opens a
  context, text messages are buffered and spoken on `flush: true` (or, without auto_mode,
  once the buffer reaches the next `chunk_length_schedule` size), `close_context` speaks
  what is left and answers `{"isFinal": true, "contextId"}`. A closed context holds its
  slot until that final message (it goes on speaking what it was given). A message without
  `context_id` goes to the default context (`"default"`), as documented: `{"text": ""}`
  alone opens it, and nothing ever closes it. `{"text": "", "context_id"}` keeps an open
  context alive; sent as a context's first message it opens the context, and the
  context's later init (or text) fails with 1008. A sixth open context fails with
  `max_active_conversations`; `close_socket` closes.
- `GET /v1/text-to-speech/{voice_id}/stream-input` (WebSocket): one stream per connection;
  `{"text": " "}` is a keep-alive, `{"text": ""}` ends it (final message, then close).
- Both close with 1008 when no text arrived for `inactivity_timeout` seconds (query
  parameter, default 20, at most 180): the documented `input_timeout_exceeded` message,
  then a close frame whose reason states the limit.
- `POST /v1/text-to-speech/{voice_id}` and `.../stream`: the body's `text` as audio bytes.

`inactivity_limit_s`: the server's own limit, when shorter than the one asked for (a server
that does not honour `inactivity_timeout`); its close message states the limit it applied.
`generation_speed`: audio is generated this many times faster than real time (None: as
fast as Piper synthesizes it), so a reply's messages arrive over time, as from the service.

Query: `output_format` (default `mp3_44100_128`, as documented): `pcm_<rate>` is raw s16le
PCM, `mp3_<rate>_<kbps>` MP3 encoded by LAME; the formats the playground cannot play
(`ulaw_8000`, `alaw_8000`, `opus_*`) are refused with ElevenLabs' error shape
`{"detail": {"status", "message"}}`, as is every unserved path. Also `model_id`,
`inactivity_timeout`, `auto_mode`, `sync_alignment`. Audio messages carry base64 audio
with `alignment` and `normalizedAlignment` (`chars`, `charStartTimesMs`, `charDurationsMs`,
relative to that message's audio). With an API key configured, `xi-api-key` must match:
a missing or a wrong key is refused with 401.

The same text is always spoken the same way (the speech is cached per text and sample
rate, like a fixed `seed`), so a test can compare the audio it got with `speech(text)`.
Faults: see `playground.servers.faults` (a reply is a context).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from playground.servers.audio import Mp3Encoder
from playground.servers.base import LoopbackTTSServer, SocketGone, b64
from playground.servers.faults import Fault, ReplyFaults

MAX_CONTEXTS = 5
DEFAULT_CONTEXT = "default"  # where a multi-context message without context_id goes
FRAME_S = 0.5  # audio per message
DEFAULT_INACTIVITY_S = 20.0
MAX_INACTIVITY_S = 180.0
DEFAULT_OUTPUT_FORMAT = "mp3_44100_128"
PCM_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
MP3_FORMATS = ("mp3_22050_32", "mp3_44100_32", "mp3_44100_64", "mp3_44100_96", "mp3_44100_128", "mp3_44100_192")
_TTS_PATH = "/v1/text-to-speech/{voice_id}"


@dataclass(frozen=True)
class _Format:
    """An `output_format`: raw PCM, or MP3 at `kbps`."""

    name: str
    rate: int
    kbps: int = 0  # 0: raw PCM

    @property
    def content_type(self) -> str:
        return "audio/mpeg" if self.kbps else "audio/pcm"

    def encoder(self) -> Mp3Encoder | None:
        return Mp3Encoder(self.rate, self.kbps) if self.kbps else None


def parse_output_format(name: str) -> _Format | None:
    pcm = re.fullmatch(r"pcm_(\d+)", name)
    if pcm and int(pcm.group(1)) in PCM_RATES:
        return _Format(name, int(pcm.group(1)))
    if name in MP3_FORMATS:
        _, rate, kbps = name.split("_")
        return _Format(name, int(rate), int(kbps))
    return None


def inactivity_message(seconds: float) -> str:
    return (f"Have not received a new text input within the timeout of {seconds:.1f} seconds. Streaming input "
            "terminated.")


@dataclass
class _Context:
    id: str
    buffer: str = ""
    schedule: list[int] = field(default_factory=list)
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    faults: ReplyFaults | None = None
    opened_by_keepalive: bool = False  # its first message was a keep-alive: it cannot be initialized
    closing: bool = False  # close_context received: it speaks what it has, then its final message
    speaking: bool = False


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    request: web.Request
    multi: bool
    format: _Format
    auto_mode: bool
    inactivity_s: float
    contexts: dict[str, _Context] = field(default_factory=dict)  # open ones, closing ones until their final
    last_text: float = 0.0


class ElevenLabsServer(LoopbackTTSServer):
    name = "elevenlabs"
    default_port = 8765

    def __init__(self, *args: Any, inactivity_limit_s: float | None = None, generation_speed: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inactivity_limit_s = inactivity_limit_s
        self.generation_speed = generation_speed
        self.most_contexts = 0  # the most contexts one connection ever held at once

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(f"{_TTS_PATH}/multi-stream-input", self._websocket)
        router.add_get(f"{_TTS_PATH}/stream-input", self._websocket)
        router.add_post(f"{_TTS_PATH}/stream", self._rest)
        router.add_post(_TTS_PATH, self._rest)

    def error_response(self, status: int, message: str, code: str | None = None,
                       headers: dict[str, str] | None = None) -> web.Response:
        status_name = code or {401: "invalid_api_key", 403: "forbidden", 404: "not_found",
                               429: "too_many_concurrent_requests"}.get(status, "invalid_request")
        return web.json_response({"detail": {"status": status_name, "message": message}}, status=status,
                                 headers=headers)

    # -- requests ---------------------------------------------------------------------------

    def _check(self, request: web.Request) -> _Format | web.Response:
        """The request's output format, or ElevenLabs' refusal of the request (auth, query)."""
        if self.api_key is not None:
            given = request.headers.get("xi-api-key") or request.query.get("xi_api_key")
            if not given:
                return self.error_response(401, "Missing xi-api-key header", "needs_authorization")
            if given != self.api_key:
                return self.error_response(401, "Invalid API key", "invalid_api_key")
        name = request.query.get("output_format", DEFAULT_OUTPUT_FORMAT)
        output = parse_output_format(name)
        if output is None:
            return self.error_response(400, f"output_format {name!r} is not served by this loopback server: use "
                                            f"pcm_<rate> ({', '.join(map(str, PCM_RATES))}) or one of "
                                            f"{', '.join(MP3_FORMATS)}", "invalid_output_format")
        return output

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        checked = self._check(request)
        try:
            inactivity = float(request.query.get("inactivity_timeout", DEFAULT_INACTIVITY_S))
        except ValueError:
            inactivity = -1.0
        if isinstance(checked, _Format) and not 0 < inactivity <= MAX_INACTIVITY_S:
            checked = self.error_response(400, f"inactivity_timeout must be a number of seconds from 1 to "
                                               f"{MAX_INACTIVITY_S:g}, got {request.query['inactivity_timeout']!r}",
                                          "invalid_inactivity_timeout")
        if self.inactivity_limit_s is not None:
            inactivity = min(inactivity, self.inactivity_limit_s)
        ws = await self.open_socket(request, checked if isinstance(checked, web.Response) else None)
        if not isinstance(ws, web.WebSocketResponse):
            return ws
        assert isinstance(checked, _Format)
        connection = _Connection(
            ws=ws, request=request, multi=request.path.endswith("multi-stream-input"), format=checked,
            auto_mode=request.query.get("auto_mode", "false").lower() == "true", inactivity_s=inactivity,
            last_text=asyncio.get_running_loop().time())
        try:
            await self._serve(connection)
        except (SocketGone, ConnectionError):
            pass
        finally:
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
                message = inactivity_message(c.inactivity_s)
                await self._fail(c, "input_timeout_exceeded", f"{message} Please make sure to send a text input at "
                                 f"least once every {c.inactivity_s:g} seconds.", reason=message)
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
                if not context.closing:
                    await self._finish(c, context)
            await c.ws.close()
            return
        context_id = str(data["context_id"]) if data.get("context_id") is not None else DEFAULT_CONTEXT
        context = c.contexts.get(context_id)
        keepalive = data.get("text") == "" and not ({"voice_settings", "generation_config"} & data.keys())
        if context is None:
            if data.get("close_context") or data.get("flush"):
                return  # closing or flushing a context that is already gone
            if len(c.contexts) >= MAX_CONTEXTS:
                await self._fail(c, "max_active_conversations", "Maximum simultaneous contexts per WebSocket "
                                 f"connection exceeded ({MAX_CONTEXTS}). Please close an existing context before "
                                 "opening a new one.")
                return
            context = self._open_context(c, context_id, data)
            context.opened_by_keepalive = keepalive
        elif context.closing:
            return  # closed: it only finishes what it was given
        elif context.opened_by_keepalive and not keepalive and not data.get("close_context") \
                and not (data.get("flush") and "text" not in data):
            await self._fail(c, "invalid_message", f"Context {context_id} received a keep-alive before its "
                             "initialization; it cannot be initialized now.")
            return
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
        self.most_contexts = max(self.most_contexts, len(c.contexts))
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
        """close_context: speak what is buffered, then the final message; the slot is free after it
        (at once when nothing is left to speak)."""
        self._generate(context)
        context.closing = True
        if context.queue.empty() and not context.speaking:
            self._release(c, context)
        context.queue.put_nowait(None)

    @staticmethod
    def _release(c: _Connection, context: _Context) -> None:
        if c.contexts.get(context.id) is context:
            del c.contexts[context.id]

    async def _speak(self, c: _Connection, context: _Context) -> None:
        """A context's generations, in order: audio messages, then the final message."""
        try:
            while True:
                text = await context.queue.get()
                if text is None:
                    await self.send_json(c.ws, {"isFinal": True, **self._context_field(c, context)})
                    self._release(c, context)
                    return
                context.speaking = True
                try:
                    await self._speak_text(c, context, text)
                finally:
                    context.speaking = False
        except (SocketGone, ConnectionError):
            pass  # the connection is gone (a fault, or the client left)

    async def _speak_text(self, c: _Connection, context: _Context, text: str) -> None:
        """One generation: the text's speech in messages of FRAME_S, each aligned to the characters it starts."""
        rate = c.format.rate
        audio = await self.whole_speech(text, rate)
        encoder = c.format.encoder()
        step = int(rate * FRAME_S)
        per_char_ms = len(audio) * 1000.0 / rate / max(1, len(text))
        for start in range(0, max(len(audio), 1), step):
            frame = audio[start:start + step]
            first_char = int(np.ceil(start * 1000.0 / rate / per_char_ms - 1e-9))
            last_char = int(np.ceil((start + len(frame)) * 1000.0 / rate / per_char_ms - 1e-9))
            last = start + step >= len(audio)
            if last:
                last_char = len(text)
            if context.faults is None:
                context.faults = self.faults.reply()
            await self.before_frame(c.ws, c.request, context.faults)
            if context.faults.wrong_audio:
                payload = self.wrong_audio(context.faults.wrong_audio, frame, rate)
            elif encoder is not None:
                payload = encoder.encode(frame) + (encoder.finish() if last else b"")
            else:
                payload = frame.astype("<i2").tobytes()
            offset_ms = start * 1000.0 / rate
            chars = range(first_char, last_char)
            alignment = {"chars": [text[i] for i in chars],
                         "charStartTimesMs": [round(i * per_char_ms - offset_ms) for i in chars],
                         "charDurationsMs": [round(per_char_ms) for _ in chars]} if chars else None
            await self.send_json(c.ws, {"audio": b64(payload), "isFinal": None, "normalizedAlignment": alignment,
                                        "alignment": alignment, **self._context_field(c, context)})
            if self.generation_speed:
                await asyncio.sleep(len(frame) / rate / self.generation_speed)

    # -- faults in ElevenLabs' own words ---------------------------------------------------

    def malformed_message(self) -> str:
        return '{"audio": "UklGR", "isFinal": nul'

    def unknown_message(self) -> dict[str, Any]:
        return {"type": "usage_report", "characters": 42}

    async def close_for_fault(self, ws: web.WebSocketResponse, request: web.Request, fault: Fault) -> None:
        """A 1008 close comes with ElevenLabs' error message first (the inactivity one unless a reason is given)."""
        if fault.code != 1008 or fault.reason:
            await super().close_for_fault(ws, request, fault)
            return
        message = f"{inactivity_message(DEFAULT_INACTIVITY_S)} (injected fault)"
        await ws.send_str(json.dumps({"message": message, "error": "input_timeout_exceeded", "code": 1008}))
        await ws.close(code=1008, message=message.encode())

    @staticmethod
    def _context_field(c: _Connection, context: _Context) -> dict[str, str]:
        return {"contextId": context.id} if c.multi else {}

    async def _fail(self, c: _Connection, error: str, message: str, reason: str | None = None) -> None:
        """The documented error shape: a JSON message, then close 1008 (the reason: `reason`, else the error)."""
        if not c.ws.closed:
            await c.ws.send_str(json.dumps({"message": message, "error": error, "code": 1008}))
            await c.ws.close(code=1008, message=(reason or error).encode()[:123])

    # -- REST ------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        checked = self.refuse(request) or self._check(request)
        if isinstance(checked, web.Response):
            return checked
        try:
            body = await request.json()
            text = body["text"]
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return self.error_response(422, "body must be JSON with a string `text`", "invalid_request")
        self.rest_requests.append(body)
        response = web.StreamResponse(headers={"Content-Type": checked.content_type})
        await response.prepare(request)
        audio = await self.whole_speech(text, checked.rate)
        encoder = checked.encoder()
        step = int(checked.rate * FRAME_S)
        for start in range(0, len(audio), step):
            frame = audio[start:start + step]
            await response.write(encoder.encode(frame) if encoder else frame.astype("<i2").tobytes())
        if encoder is not None:
            await response.write(encoder.finish())
        await response.write_eof()
        return response


TTS_SERVER = ElevenLabsServer
