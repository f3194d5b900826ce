"""Cartesia's TTS API on 127.0.0.1: `/tts/websocket` contexts, `POST /tts/bytes` and `POST /tts/sse`.

Messages follow Cartesia's documentation (docs.cartesia.ai, "TTS (WebSocket)"):
a request carries `model_id`, `transcript`, `voice`, `language`, `context_id`,
`output_format {container, encoding, sample_rate}`, `continue`, `max_buffer_delay_ms`
and `add_timestamps`; a context's transcripts are concatenated verbatim and every other
field must stay the same; `continue: false` ends it; `{"context_id", "cancel": true}`
drops it. Replies: `chunk`, `timestamps`, `flush_done`, `done`, `error`.

Versions (`Cartesia-Version` header, or the `cartesia_version` query parameter, which wins
on a WebSocket): every dated version from 2024-06-10 on is accepted. Before 2026-03-01
a voice is `{"mode": "id", "id": ...}`; from 2026-03-01 on (the SDK 4 sends 2026-08-14)
it may also be the id itself or `{"id": ...}`, and embeddings are not accepted. HTTP
errors are Cartesia's JSON error object `{error_code, title, message, request_id}` for
every version (older versions may also answer in plain text: the loopback does not),
WebSocket errors the `error` event.

Audio: `raw` PCM as `pcm_s16le` or `pcm_f32le` at 8000, 16000, 22050, 24000, 44100 or
48000 Hz everywhere; `/tts/bytes` also sends `wav` and `mp3`. Buffering: with
`max_buffer_delay_ms` above 0 (the default is 3000) text is held until it ends a
sentence, the context ends or is flushed, or that much time passed since the held text
arrived; with 0 every input is synthesized at once. Loopback choices where the docs say
nothing: the idle close is code 1000 with a reason; word timestamps share each input's
real audio duration among its words by length.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from playground.servers.audio import Mp3Encoder, float32_bytes, wav_bytes
from playground.servers.base import (
    LoopbackTTSServer,
    SocketGone,
    audio_duration_s,
    b64,
    request_id,
    word_timestamps,
)
from playground.servers.faults import ReplyFaults

WEBSOCKET_PATH = "/tts/websocket"
BYTES_PATH = "/tts/bytes"
SSE_PATH = "/tts/sse"
DEFAULT_BUFFER_DELAY_MS = 3000.0
FIRST_VERSION = "2024-06-10"
# From this version on: a voice may be its id alone or {"id": ...}, and errors are JSON objects.
VOICE_ID_VERSION = "2026-03-01"
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
ENCODINGS = ("pcm_s16le", "pcm_f32le")
# Fields of a request that may change between the inputs of one context.
_PER_INPUT = ("transcript", "continue", "flush", "context_id")
_SENTENCE_END = re.compile(r"[.!?…]['\")\]]*\s*$")
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
_END = object()


@dataclass
class _Flush:
    flush_id: int


@dataclass
class _Output:
    """A request's `output_format`: how its audio is encoded."""

    container: str
    encoding: str
    sample_rate: int
    bit_rate: int = 128000

    def pcm(self, samples: np.ndarray) -> bytes:
        return float32_bytes(samples) if self.encoding == "pcm_f32le" else samples.astype("<i2").tobytes()


@dataclass
class _Context:
    id: str
    settings: dict[str, Any]
    output: _Output
    timestamps: bool
    buffer_ms: float
    inputs: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    pending: str = ""
    ended: bool = False
    flushes: int = 0
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None


class RequestError(ValueError):
    """A request Cartesia would answer with an error (HTTP 400, or an `error` event)."""


def socket_error(context_id: str | None, message: str, status: int = 400, title: str = "Invalid request",
                 code: str = "invalid_request") -> dict[str, Any]:
    """The documented WebSocket `error` event."""
    error = {"type": "error", "done": True, "status_code": status, "error_code": code, "title": title,
             "message": message, "request_id": request_id()}
    return {**error, "context_id": context_id} if context_id is not None else error


def _voice_error(version: str) -> str:
    if version >= VOICE_ID_VERSION:
        return "voice must be a voice id, or {\"id\": \"<voice id>\"} (embeddings are not accepted)"
    return f"voice must be {{\"mode\": \"id\", \"id\": \"<voice id>\"}} (Cartesia-Version {version})"


def check_voice(voice: Any, version: str) -> None:
    if version >= VOICE_ID_VERSION and isinstance(voice, str) and voice:
        return
    if not isinstance(voice, dict) or not isinstance(voice.get("id"), str) or not voice["id"]:
        raise RequestError(_voice_error(version))
    mode = voice.get("mode")
    if mode != "id" and not (version >= VOICE_ID_VERSION and mode is None):
        raise RequestError(_voice_error(version))


def parse_output(output: Any, containers: tuple[str, ...]) -> _Output:
    if not isinstance(output, dict) or output.get("container") not in containers:
        raise RequestError(f"output_format.container must be one of {', '.join(containers)} here")
    container = output["container"]
    rate = output.get("sample_rate")
    if rate not in SAMPLE_RATES or isinstance(rate, bool):
        raise RequestError(f"output_format.sample_rate must be one of {', '.join(map(str, SAMPLE_RATES))}, "
                           f"got {rate!r}")
    if container == "mp3":
        bit_rate = output.get("bit_rate", 128000)
        if not isinstance(bit_rate, int) or not 32000 <= bit_rate <= 320000:
            raise RequestError(f"output_format.bit_rate must be from 32000 to 320000, got {bit_rate!r}")
        return _Output(container, "mp3", rate, bit_rate)
    encoding = output.get("encoding")
    if encoding not in ENCODINGS:
        raise RequestError(f"output_format.encoding {encoding!r} is not served by this loopback server "
                           f"(use {' or '.join(ENCODINGS)})")
    return _Output(container, encoding, rate)


def parse_settings(request: dict[str, Any], version: str,
                   containers: tuple[str, ...] = ("raw",)) -> tuple[dict[str, Any], _Output]:
    """The request's fields that must stay the same within a context, and its output format."""
    model = request.get("model_id")
    if not isinstance(model, str) or not model:
        raise RequestError("model_id is required (e.g. \"sonic-3\")")
    check_voice(request.get("voice"), version)
    output = parse_output(request.get("output_format"), containers)
    if not isinstance(request.get("transcript", ""), str):
        raise RequestError("transcript must be a string")
    if version >= VOICE_ID_VERSION and request.get("language") is not None and request.get("locale") is not None:
        raise RequestError("a request may set language or locale, never both")
    delay = request.get("max_buffer_delay_ms", DEFAULT_BUFFER_DELAY_MS)
    if delay is None:
        delay = DEFAULT_BUFFER_DELAY_MS
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 5000:
        raise RequestError(f"max_buffer_delay_ms must be a number from 0 to 5000, got {delay!r}")
    return {k: v for k, v in request.items() if k not in _PER_INPUT}, output


def _key_of(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    bearer = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
    return request.headers.get("X-API-Key") or request.query.get("api_key") or bearer


class CartesiaServer(LoopbackTTSServer):
    name = "cartesia"
    default_port = 8766  # `playground serve-tts cartesia` (ElevenLabs has 8765)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(WEBSOCKET_PATH, self._websocket)
        router.add_post(BYTES_PATH, self._bytes)
        router.add_post(SSE_PATH, self._sse)

    def error_response(self, status: int, message: str, code: str | None = None,
                       headers: dict[str, str] | None = None) -> web.Response:
        title = {400: "Invalid request", 401: "Unauthorized", 404: "Not found", 405: "Method not allowed",
                 429: "Too many requests"}.get(status, "Error")
        return web.json_response({"error_code": code, "title": title, "message": message,
                                  "request_id": request_id()}, status=status, headers=headers)

    def _check(self, request: web.Request) -> tuple[str, web.Response | None]:
        """The request's Cartesia-Version, and Cartesia's refusal of it (version, auth), if any."""
        version = request.query.get("cartesia_version") or request.headers.get("Cartesia-Version") or ""
        if not version:
            return version, self.error_response(400, "the Cartesia-Version header (or cartesia_version query "
                                                     "parameter) is required, e.g. 2026-03-01", "invalid_request")
        if not _VERSION.fullmatch(version) or version < FIRST_VERSION:
            return version, self.error_response(400, f"Cartesia-Version {version!r} is not a version: use a date "
                                                     f"(YYYY-MM-DD) from {FIRST_VERSION} on", "invalid_request")
        if self.api_key is not None and _key_of(request) != self.api_key:
            return version, self.error_response(401, "invalid or missing API key (Authorization: Bearer, "
                                                     "X-API-Key header or api_key query parameter)",
                                                "unauthorized")
        return version, None

    # -- WebSocket --------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        version, refusal = self._check(request)
        ws = await self.open_socket(request, refusal)
        if not isinstance(ws, web.WebSocketResponse):
            return ws
        activity = [asyncio.get_running_loop().time()]
        contexts: dict[str, _Context] = {}
        try:
            while (message := await self.receive(ws, activity)) is not None:
                reply = self._take(ws, request, version, message, contexts, activity)
                if reply is not None:
                    await self.send_json(ws, reply)
        except SocketGone:
            pass
        finally:
            for context in contexts.values():
                self._drop(context)
        return ws

    def _take(self, ws: web.WebSocketResponse, http: web.Request, version: str, message: str | bytes,
              contexts: dict[str, _Context], activity: list[float]) -> dict[str, Any] | None:
        """Handles one client message; returns an error to send, if any."""
        try:
            request = json.loads(message)
        except ValueError:
            return socket_error(None, "message is not valid JSON")
        if not isinstance(request, dict):
            return socket_error(None, "message must be a JSON object")
        context_id = request.get("context_id")
        if request.get("cancel") is True:
            if context_id in contexts:
                self._drop(contexts.pop(context_id))
            return None
        if context_id is None:
            context_id = str(uuid.uuid4())
        if not isinstance(context_id, str) or not context_id:
            return socket_error(None, "context_id must be a non-empty string")
        try:
            settings, output = parse_settings(request, version)
        except RequestError as exc:
            return socket_error(context_id, str(exc))
        context = contexts.get(context_id)
        if context is None:
            delay = settings.get("max_buffer_delay_ms")
            context = _Context(context_id, settings, output, bool(settings.get("add_timestamps")),
                               float(DEFAULT_BUFFER_DELAY_MS if delay is None else delay))
            context.task = asyncio.create_task(self._speak(ws, http, context, contexts, activity))
            contexts[context_id] = context
        elif context.ended:
            return socket_error(context_id, f"context {context_id} has ended (continue: false); use a new context_id")
        elif settings != context.settings:
            changed = sorted(k for k in settings.keys() | context.settings.keys()
                             if settings.get(k) != context.settings.get(k))
            self._drop(contexts.pop(context_id))
            return socket_error(context_id, f"fields other than transcript and continue must stay the same within "
                                            f"a context; changed: {', '.join(changed)}")
        self._add_input(context, request.get("transcript", ""), request.get("continue", False) is True,
                        request.get("flush") is True)
        return None

    def _add_input(self, context: _Context, transcript: str, more: bool, flush: bool) -> None:
        context.pending += transcript
        if not more or flush or context.buffer_ms == 0 or _SENTENCE_END.search(context.pending):
            self._release(context)
        elif context.timer is None:
            context.timer = asyncio.get_running_loop().call_later(context.buffer_ms / 1000, self._release, context)
        if flush:
            context.flushes += 1
            context.inputs.put_nowait(_Flush(context.flushes))
        if not more:
            context.ended = True
            context.inputs.put_nowait(_END)

    @staticmethod
    def _release(context: _Context) -> None:
        """Hands the held text to synthesis."""
        if context.timer is not None:
            context.timer.cancel()
            context.timer = None
        if context.pending:
            context.inputs.put_nowait(context.pending)
            context.pending = ""

    @staticmethod
    def _drop(context: _Context) -> None:
        if context.timer is not None:
            context.timer.cancel()
        if context.task is not None:
            context.task.cancel()

    async def _speak(self, ws: web.WebSocketResponse, http: web.Request, context: _Context,
                     contexts: dict[str, _Context], activity: list[float]) -> None:
        """Synthesizes a context's inputs in order and sends its replies."""
        loop = asyncio.get_running_loop()
        faults = self.faults.reply()
        spoken_s = 0.0
        try:
            while True:
                item = await context.inputs.get()
                if item is _END:
                    await self.send_json(ws, {"type": "done", "context_id": context.id, "status_code": 200,
                                              "done": True})
                    return
                if isinstance(item, _Flush):
                    await self.send_json(ws, {"type": "flush_done", "context_id": context.id, "status_code": 206,
                                              "done": False, "flush_done": True, "flush_id": item.flush_id})
                    continue
                started = loop.time()
                samples = 0
                async for frame in self.speech_frames(item, context.output.sample_rate):
                    await self.before_frame(ws, http, faults)
                    await self.send_json(ws, self._chunk(frame, context, faults, loop.time() - started))
                    activity[0] = started = loop.time()
                    samples += len(frame)
                duration = audio_duration_s(samples, context.output.sample_rate)
                if context.timestamps and item.strip():
                    await self.send_json(ws, {"type": "timestamps", "context_id": context.id, "status_code": 206,
                                              "done": False, "word_timestamps": word_timestamps(item, spoken_s,
                                                                                                duration)})
                spoken_s += duration
        except SocketGone:
            pass
        except Exception as exc:  # a synthesis failure ends this context, not the socket
            self.log(f"context {context.id} failed", exc_info=True)
            await self.send_json(ws, socket_error(context.id, f"synthesis failed: {exc}", 500, "Internal error",
                                                  "internal_error"))
        finally:
            if contexts.get(context.id) is context:
                del contexts[context.id]

    def _chunk(self, frame: np.ndarray, context: _Context, faults: ReplyFaults, step_s: float) -> dict[str, Any]:
        rate = context.output.sample_rate
        data = self.wrong_audio(faults.wrong_audio, frame, rate) if faults.wrong_audio else context.output.pcm(frame)
        return {"type": "chunk", "data": b64(data), "done": False, "status_code": 206,
                "step_time": round(step_s * 1000, 3), "context_id": context.id}

    # -- REST -------------------------------------------------------------------------------

    async def _rest_request(self, request: web.Request,
                            containers: tuple[str, ...]) -> tuple[dict[str, Any], _Output] | web.Response:
        version, refusal = self._check(request)
        refused = self.refuse(request) or refusal
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.read() or b"null")
            if not isinstance(body, dict):
                raise RequestError("the body must be a JSON object")
            _, output = parse_settings(body, version, containers)
        except (ValueError, RequestError) as exc:
            return self.error_response(400, str(exc), "invalid_request")
        self.rest_requests.append(body)
        return body, output

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        """The whole reply as audio bytes, streamed as synthesized (WAV: once all is made)."""
        parsed = await self._rest_request(request, ("raw", "wav", "mp3"))
        if isinstance(parsed, web.Response):
            return parsed
        body, output = parsed
        text = body.get("transcript", "")
        if output.container == "wav":
            samples = await self.whole_speech(text, output.sample_rate)
            return web.Response(body=wav_bytes(samples.astype("<i2").tobytes(), output.sample_rate)
                                if output.encoding == "pcm_s16le" else _float_wav(samples, output.sample_rate),
                                content_type="audio/wav")
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg" if output.container == "mp3"
                                               else "application/octet-stream"})
        await response.prepare(request)
        encoder = Mp3Encoder(output.sample_rate, output.bit_rate // 1000) if output.container == "mp3" else None
        async for frame in self.speech_frames(text, output.sample_rate):
            await response.write(encoder.encode(frame) if encoder else output.pcm(frame))
        if encoder is not None:
            await response.write(encoder.finish())
        await response.write_eof()
        return response

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `chunk` events as synthesized, `timestamps` if asked, then `done`."""
        parsed = await self._rest_request(request, ("raw",))
        if isinstance(parsed, web.Response):
            return parsed
        body, output = parsed
        text = body.get("transcript", "")
        context = {"context_id": body["context_id"]} if isinstance(body.get("context_id"), str) else {}
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        async def event(message: dict[str, Any]) -> None:
            await response.write(f"event: {message['type']}\ndata: {json.dumps(message)}\n\n".encode())

        loop = asyncio.get_running_loop()
        started = loop.time()
        samples = 0
        async for frame in self.speech_frames(text, output.sample_rate):
            await event({"type": "chunk", "data": b64(output.pcm(frame)), "done": False, "status_code": 206,
                         "step_time": round((loop.time() - started) * 1000, 3), **context})
            started = loop.time()
            samples += len(frame)
        if body.get("add_timestamps") and text.strip():
            stamps = word_timestamps(text, 0.0, audio_duration_s(samples, output.sample_rate))
            await event({"type": "timestamps", "done": False, "status_code": 206, "word_timestamps": stamps,
                         **context})
        await event({"type": "done", "done": True, "status_code": 200, **context})
        await response.write_eof()
        return response


def _float_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """float32 mono samples as a WAV file (format 3, IEEE float), which the `wave` module cannot write."""
    data = float32_bytes(samples)
    fmt = (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + sample_rate.to_bytes(4, "little") + \
        (sample_rate * 4).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    chunks = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + len(chunks).to_bytes(4, "little") + chunks


TTS_SERVER = CartesiaServer
