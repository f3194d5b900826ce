"""Cartesia's TTS API on 127.0.0.1: the `/tts/websocket` contexts and `POST /tts/bytes`.

Messages follow Cartesia's API reference (docs.cartesia.ai, "TTS (WebSocket)"):
a request carries `model_id`, `transcript`, `voice {mode, id}`, `language`, `context_id`,
`output_format {container: raw, encoding: pcm_s16le, sample_rate}`, `continue`,
`max_buffer_delay_ms` and `add_timestamps`; a context's transcripts are concatenated
verbatim and every other field must stay the same; `continue: false` ends it;
`{"context_id", "cancel": true}` drops it. Replies: `chunk`, `timestamps`, `flush_done`,
`done`, `error`.

Buffering: with `max_buffer_delay_ms` above 0 (the default is 3000) text is held until it
ends a sentence, the context ends or is flushed, or that much time passed since the
held text arrived; with 0 every input is synthesized at once.
Loopback choices where the docs say nothing: the idle close is code 1000 with a reason;
word timestamps share each input's real audio duration among its words by length.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from playground.servers.base import (
    HttpReply,
    HttpRequest,
    LoopbackTTSServer,
    ReplyFaults,
    audio_duration_s,
    word_timestamps,
)

WEBSOCKET_PATH = "/tts/websocket"
BYTES_PATH = "/tts/bytes"
DEFAULT_BUFFER_DELAY_MS = 3000.0
# Fields of a request that may change between the inputs of one context.
_PER_INPUT = ("transcript", "continue", "flush", "context_id")
_SENTENCE_END = re.compile(r"[.!?…]['\")\]]*\s*$")
_END = object()


@dataclass
class _Flush:
    flush_id: int


@dataclass
class _Context:
    id: str
    settings: dict[str, Any]
    sample_rate: int
    timestamps: bool
    buffer_ms: float
    inputs: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    pending: str = ""
    ended: bool = False
    flushes: int = 0
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None


class RequestError(ValueError):
    """A request Cartesia would answer with an `error` message."""


def _error(context_id: str | None, message: str, status: int = 400, title: str = "Invalid request",
           code: str = "invalid_request") -> dict[str, Any]:
    return {"type": "error", "context_id": context_id, "status_code": status, "done": True,
            "title": title, "message": message, "error_code": code}


def parse_settings(request: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The request's fields that must stay the same within a context, and its sample rate."""
    model = request.get("model_id")
    if not isinstance(model, str) or not model:
        raise RequestError("model_id is required (e.g. \"sonic-3\")")
    voice = request.get("voice")
    if not isinstance(voice, dict) or voice.get("mode") != "id" or not isinstance(voice.get("id"), str):
        raise RequestError("voice must be {\"mode\": \"id\", \"id\": \"<voice id>\"}")
    output = request.get("output_format")
    if not isinstance(output, dict) or output.get("container") != "raw" or output.get("encoding") != "pcm_s16le":
        raise RequestError("output_format must be {\"container\": \"raw\", \"encoding\": \"pcm_s16le\", "
                           "\"sample_rate\": N} on this server")
    rate = output.get("sample_rate")
    if not isinstance(rate, int) or isinstance(rate, bool) or not 8000 <= rate <= 48000:
        raise RequestError(f"output_format.sample_rate must be an integer from 8000 to 48000, got {rate!r}")
    if not isinstance(request.get("transcript", ""), str):
        raise RequestError("transcript must be a string")
    delay = request.get("max_buffer_delay_ms", DEFAULT_BUFFER_DELAY_MS)
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 5000:
        raise RequestError(f"max_buffer_delay_ms must be a number from 0 to 5000, got {delay!r}")
    return {k: v for k, v in request.items() if k not in _PER_INPUT}, rate


def _key_of(request: HttpRequest) -> str | None:
    auth = request.headers.get("Authorization", "")
    bearer = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
    return request.headers.get("X-API-Key") or request.query.get("api_key") or bearer


class CartesiaServer(LoopbackTTSServer):
    name = "cartesia"
    default_port = 8766  # `playground serve-tts cartesia` (ElevenLabs has 8765)

    def check_request(self, request: HttpRequest) -> HttpReply | None:
        routes = {WEBSOCKET_PATH: "GET", BYTES_PATH: "POST"}
        if request.path not in routes:
            return HttpReply.error(404, _error(None, f"no endpoint {request.path}", 404, "Not found", "not_found"))
        if routes[request.path] != request.method:
            return HttpReply.error(405, _error(None, f"{request.path} takes {routes[request.path]}", 405,
                                               "Method not allowed", "method_not_allowed"))
        if not (request.headers.get("Cartesia-Version") or request.query.get("cartesia_version")):
            return HttpReply.error(400, _error(None, "the Cartesia-Version header (or cartesia_version query "
                                                     "parameter) is required, e.g. 2025-04-16"))
        if self.api_key is not None and _key_of(request) != self.api_key:
            return HttpReply.error(401, _error(None, "invalid or missing API key (X-API-Key header, api_key "
                                                     "query parameter or Authorization: Bearer)", 401,
                                               "Unauthorized", "unauthorized"))
        return None

    # -- WebSocket --------------------------------------------------------------------------

    async def serve_socket(self, ws: ServerConnection, request: HttpRequest) -> None:
        loop = asyncio.get_running_loop()
        activity = [loop.time()]
        contexts: dict[str, _Context] = {}
        try:
            while (message := await self.receive(ws, activity)) is not None:
                reply = self._take(ws, message, contexts, activity)
                if reply is not None:
                    await ws.send(json.dumps(reply))
        except ConnectionClosed:
            pass
        finally:
            for context in contexts.values():
                self._drop(context)

    def _take(self, ws: ServerConnection, message: str | bytes, contexts: dict[str, _Context],
              activity: list[float]) -> dict[str, Any] | None:
        """Handles one client message; returns an error to send, if any."""
        try:
            request = json.loads(message)
        except ValueError:
            return _error(None, "message is not valid JSON")
        if not isinstance(request, dict):
            return _error(None, "message must be a JSON object")
        context_id = request.get("context_id")
        if request.get("cancel") is True:
            if context_id in contexts:
                self._drop(contexts.pop(context_id))
            return None
        if context_id is None:
            context_id = str(uuid.uuid4())
        if not isinstance(context_id, str) or not context_id:
            return _error(None, "context_id must be a non-empty string")
        try:
            settings, rate = parse_settings(request)
        except RequestError as exc:
            return _error(context_id, str(exc))
        context = contexts.get(context_id)
        if context is None:
            context = _Context(context_id, settings, rate, bool(settings.get("add_timestamps")),
                               float(settings.get("max_buffer_delay_ms", DEFAULT_BUFFER_DELAY_MS)))
            context.task = asyncio.create_task(self._speak(ws, context, contexts, activity))
            contexts[context_id] = context
        elif context.ended:
            return _error(context_id, f"context {context_id} has ended (continue: false); use a new context_id")
        elif settings != context.settings:
            changed = sorted(k for k in settings.keys() | context.settings.keys()
                             if settings.get(k) != context.settings.get(k))
            self._drop(contexts.pop(context_id))
            return _error(context_id, f"fields other than transcript and continue must stay the same within a "
                                      f"context; changed: {', '.join(changed)}")
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

    async def _speak(self, ws: ServerConnection, context: _Context, contexts: dict[str, _Context],
                     activity: list[float]) -> None:
        """Synthesizes a context's inputs in order and sends its replies."""
        loop = asyncio.get_running_loop()
        faults = ReplyFaults(self.faults)
        spoken_s = 0.0
        try:
            while True:
                item = await context.inputs.get()
                if item is _END:
                    await ws.send(json.dumps({"type": "done", "context_id": context.id, "status_code": 200,
                                              "done": True}))
                    return
                if isinstance(item, _Flush):
                    await ws.send(json.dumps({"type": "flush_done", "context_id": context.id, "status_code": 206,
                                              "done": False, "flush_done": True, "flush_id": item.flush_id}))
                    continue
                started = loop.time()
                audio_bytes = 0
                async for frame in self.speech_frames(item, context.sample_rate):
                    if not await faults.before_frame(ws):
                        return
                    chunk: dict[str, Any] = {
                        "type": "chunk", "data": base64.b64encode(faults.payload(frame, context.sample_rate)).decode(), "done": False,
                        "status_code": 206, "step_time": round((loop.time() - started) * 1000, 3),
                        "context_id": context.id}
                    await ws.send(json.dumps(chunk))
                    activity[0] = started = loop.time()
                    audio_bytes += len(frame)
                duration = audio_duration_s(audio_bytes, context.sample_rate)
                if context.timestamps and item.strip():
                    await ws.send(json.dumps({"type": "timestamps", "context_id": context.id, "status_code": 206,
                                              "done": False, "word_timestamps": word_timestamps(item, spoken_s,
                                                                                                duration)}))
                spoken_s += duration
        except ConnectionClosed:
            pass
        except Exception as exc:  # a synthesis failure ends this context, not the socket
            self.log(f"context {context.id} failed", exc_info=True)
            await ws.send(json.dumps(_error(context.id, f"synthesis failed: {exc}", 500, "Internal error",
                                            "internal_error")))
        finally:
            if contexts.get(context.id) is context:
                del contexts[context.id]

    # -- REST -------------------------------------------------------------------------------

    async def serve_rest(self, request: HttpRequest) -> HttpReply:
        try:
            body = request.json()
            if not isinstance(body, dict):
                raise RequestError("the body must be a JSON object")
            _, rate = parse_settings(body)
        except (ValueError, RequestError) as exc:
            return HttpReply.error(400, _error(None, str(exc)))
        self.received.append(body)
        return HttpReply(200, self.speech_frames(body.get("transcript", ""), rate), "application/octet-stream")


TTS_SERVER = CartesiaServer
