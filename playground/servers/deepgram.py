"""Deepgram Aura's TTS API on 127.0.0.1: the `/v1/speak` WebSocket and `POST /v1/speak`.

Messages follow Deepgram's API reference (developers.deepgram.com, "Text to Speech WebSocket"):
`?model=&encoding=linear16&sample_rate=` with `Authorization: Token <key>`; the client
sends `{"type": "Speak", "text"}`, `{"type": "Flush"}` (at most 20 a minute, then a
`Warning` and the Flush is not processed), `{"type": "Clear"}` and `{"type": "Close"}`;
the server sends `Metadata` first, binary frames of raw audio, `Flushed` and `Cleared`
with a `sequence_id`, `Warning` with `description` and `code`, and reports errors as a
close frame with a code and a reason.

Buffering: Speak text is held until it ends at a natural boundary (. ! ? , ; : followed by
a space or the end of the text); Flush and Close synthesize whatever is held. Loopback
choices where the docs say nothing: only `linear16` is served; a message that is not
JSON or has an unknown type closes the socket with 1008; the idle close is 1000.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from playground.servers.audio import wav_bytes
from playground.servers.base import LoopbackTTSServer, SocketGone, request_id

SPEAK_PATH = "/v1/speak"
DEFAULT_MODEL = "aura-asteria-en"
FLUSH_LIMIT = 20
FLUSH_WINDOW_S = 60.0
# The last boundary in the held text after which Deepgram starts speaking without a Flush.
_BOUNDARY = re.compile(r".*[.!?…,;:]['\")\]]*(\s+|$)", re.DOTALL)


@dataclass
class _Flush:
    sequence_id: int


_CLOSE = object()


@dataclass
class _Socket:
    """One connection's state: held text, the synthesis queue, Flush and Clear counters."""

    sample_rate: int
    activity: list[float]  # loop time of the last traffic either way (for the idle close)
    inputs: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    held: str = ""
    flushes: int = 0
    clears: int = 0
    flush_times: collections.deque[float] = field(default_factory=collections.deque)
    worker: asyncio.Task[None] | None = None


class DeepgramServer(LoopbackTTSServer):
    name = "deepgram"
    default_port = 8767  # `playground serve-tts deepgram` (ElevenLabs has 8765)
    flush_limit = FLUSH_LIMIT  # Flush messages a socket may send per FLUSH_WINDOW_S (tests lower it)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(SPEAK_PATH, self._websocket)
        router.add_post(SPEAK_PATH, self._rest)

    def error_response(self, status: int, message: str, code: str | None = None,
                       headers: dict[str, str] | None = None) -> web.Response:
        err_code = code or {400: "Bad Request", 401: "INVALID_AUTH", 404: "Not Found", 405: "Method Not Allowed",
                            429: "TOO_MANY_REQUESTS"}.get(status, "ERROR")
        return web.json_response({"err_code": err_code, "err_msg": message, "request_id": request_id()},
                                 status=status, headers=headers)

    def _check(self, request: web.Request) -> web.Response | None:
        """Deepgram's refusal of a request (auth, query), if any."""
        if self.api_key is not None:
            scheme, _, key = request.headers.get("Authorization", "").partition(" ")
            if scheme not in ("Token", "Bearer") or key != self.api_key:
                return self.error_response(401, "Invalid credentials: send the header Authorization: Token <key>.",
                                           "INVALID_AUTH")
        encoding = request.query.get("encoding", "linear16")
        if encoding != "linear16":
            return self.error_response(400, f"encoding {encoding!r} is not served by this loopback server "
                                            "(use linear16)")
        rate = request.query.get("sample_rate", "24000")
        if not rate.isdigit() or not 8000 <= int(rate) <= 48000:
            return self.error_response(400, f"sample_rate must be an integer from 8000 to 48000, got {rate!r}")
        container = request.query.get("container", "none" if request.method == "GET" else "wav")
        if container not in ("none", "wav") or (request.method == "GET" and container != "none"):
            return self.error_response(400, f"container {container!r} is not available here")
        return None

    # -- WebSocket --------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = await self.open_socket(request, self._check(request))
        if not isinstance(ws, web.WebSocketResponse):
            return ws
        loop = asyncio.get_running_loop()
        model = request.query.get("model", DEFAULT_MODEL)
        state = _Socket(int(request.query.get("sample_rate", "24000")), [loop.time()])
        state.worker = asyncio.create_task(self._speak(ws, request, state))
        try:
            await self.send_json(ws, {"type": "Metadata", "request_id": request_id(), "model_name": model,
                                      "model_version": "loopback-piper",
                                      "model_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, model))})
            while (message := await self.receive(ws, state.activity)) is not None:
                if not await self._take(ws, request, state, message, loop.time()):
                    break
        except SocketGone:
            pass
        finally:
            if state.worker is not None:
                state.worker.cancel()
        return ws

    async def _take(self, ws: web.WebSocketResponse, http: web.Request, state: _Socket, message: str | bytes,
                    now: float) -> bool:
        """Handles one client message; False once the socket is closing."""
        if isinstance(message, bytes):
            await ws.close(code=1003, message=b"binary messages are not accepted: send JSON text messages")
            return False
        try:
            request = json.loads(message)
            kind = request.get("type") if isinstance(request, dict) else None
        except ValueError:
            await ws.close(code=1008, message=b"message is not valid JSON")
            return False
        if kind == "Speak":
            text = request.get("text")
            if not isinstance(text, str):
                await ws.close(code=1008, message=b"Speak needs a string field 'text'")
                return False
            state.held += text
            boundary = _BOUNDARY.match(state.held)
            if boundary:
                self._hand_over(state, boundary.end())
        elif kind == "Flush":
            while state.flush_times and now - state.flush_times[0] >= FLUSH_WINDOW_S:
                state.flush_times.popleft()
            if len(state.flush_times) >= self.flush_limit:
                await self.send_json(ws, {"type": "Warning", "code": "FLUSH_LIMIT_EXCEEDED", "description":
                                          f"Flush ignored: at most {self.flush_limit} Flush messages every "
                                          f"{FLUSH_WINDOW_S:g} seconds"})
                return True
            state.flush_times.append(now)
            self._hand_over(state, len(state.held))
            state.inputs.put_nowait(_Flush(state.flushes))
            state.flushes += 1
        elif kind == "Clear":
            await self._clear(ws, http, state)
        elif kind == "Close":
            self._hand_over(state, len(state.held))
            state.inputs.put_nowait(_CLOSE)
            if state.worker is not None:
                await state.worker
            return False
        else:
            await ws.close(code=1008, message=f"unknown message type {kind!r} (expected Speak, Flush, Clear or "
                                              "Close)".encode())
            return False
        return True

    @staticmethod
    def _hand_over(state: _Socket, end: int) -> None:
        text, state.held = state.held[:end], state.held[end:]
        if text.strip():
            state.inputs.put_nowait(text)

    async def _clear(self, ws: web.WebSocketResponse, http: web.Request, state: _Socket) -> None:
        """Drops held and queued text and stops the audio being sent, then confirms."""
        state.held = ""
        if state.worker is not None:
            state.worker.cancel()
            await asyncio.gather(state.worker, return_exceptions=True)
        state.inputs = asyncio.Queue()
        state.worker = asyncio.create_task(self._speak(ws, http, state))
        await self.send_json(ws, {"type": "Cleared", "sequence_id": state.clears})
        state.clears += 1

    async def _speak(self, ws: web.WebSocketResponse, http: web.Request, state: _Socket) -> None:
        """Synthesizes handed-over text in order; a reply (the audio up to a Flushed) claims the faults."""
        loop = asyncio.get_running_loop()
        faults = self.faults.reply()
        try:
            while True:
                item = await state.inputs.get()
                if item is _CLOSE:
                    await ws.close(code=1000, message=b"Close received")
                    return
                if isinstance(item, _Flush):
                    await self.send_json(ws, {"type": "Flushed", "sequence_id": item.sequence_id})
                    faults = self.faults.reply()
                    continue
                async for frame in self.speech_frames(item, state.sample_rate):
                    await self.before_frame(ws, http, faults)
                    await self.send(ws, self.wrong_audio(faults.wrong_audio, frame, state.sample_rate)
                                    if faults.wrong_audio else frame.astype("<i2").tobytes())
                    state.activity[0] = loop.time()
        except SocketGone:
            pass
        except Exception as exc:  # a synthesis failure is an error close, as Deepgram reports errors
            self.log("synthesis failed", exc_info=True)
            await ws.close(code=1011, message=f"synthesis failed: {exc}"[:120].encode())

    # -- REST -------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        refused = self.refuse(request) or self._check(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return self.error_response(400, "the body must be JSON: {\"text\": \"...\"}")
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"].strip():
            return self.error_response(400, "the body must be {\"text\": \"...\"} with some text")
        self.rest_requests.append(body)
        rate = int(request.query.get("sample_rate", "24000"))
        model = request.query.get("model", DEFAULT_MODEL)
        headers = {"dg-request-id": request_id(), "dg-model-name": model, "dg-char-count": str(len(body["text"]))}
        if request.query.get("container", "wav") != "none":
            samples = await self.whole_speech(body["text"], rate)
            return web.Response(body=wav_bytes(samples.astype("<i2").tobytes(), rate), content_type="audio/wav",
                                headers=headers)
        response = web.StreamResponse(headers={**headers, "Content-Type": "application/octet-stream"})
        await response.prepare(request)
        async for frame in self.speech_frames(body["text"], rate):
            await response.write(frame.astype("<i2").tobytes())
        await response.write_eof()
        return response


TTS_SERVER = DeepgramServer
