"""An OpenAI-compatible chat-completions server on 127.0.0.1, backed by any LLM provider of
the playground: the local model (SmolLM2 via llama.cpp) or a replay of a recorded trace.

Endpoints, as OpenAI documents them:
- `POST /v1/chat/completions`: with `stream: true` an SSE stream of `chat.completion.chunk`
  events (a role delta first, content deltas, a chunk with `finish_reason`, with
  `stream_options.include_usage` one more chunk with `choices: []` and `usage`, then
  `data: [DONE]`); without it one `chat.completion` object. Per-request `max_tokens`
  (or `max_completion_tokens`) is honoured; the backend's own sampling settings apply.
- `GET /v1/models`: the one model served.
- Errors as `{"error": {"message", "type", "param", "code"}}`; with an API key, requests
  must carry `Authorization: Bearer <key>` (401 otherwise).

HTTP/1.1 with keep-alive (h11, the parser httpx itself uses, on asyncio streams): one
connection serves many requests, so a client's connection reuse can be tested.
`faults` break the next chat request once (HTTP errors, stalls, a cut mid-event,
malformed JSON); `style` holds the legal variations real servers send (comment pings,
reasoning deltas, `content: null`, `choices: []`) for as long as it is set.

Usage: the completion tokens are the deltas sent; prompt tokens are counted as words and
punctuation marks of the chat-templated prompt (a replay has no tokenizer; the count is
of the same order as a BPE tokenizer's), and `cached_tokens` are those of the leading
messages shared with the previous request: the prefix llama.cpp keeps evaluated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import h11

from playground.core.clock import now_ms
from playground.llm.base import LLMError, LLMProvider, Message, Progress

# `playground serve-llm` listens here unless told otherwise (presets/loopback-llm.toml points at it).
DEFAULT_PORT = 8090
_READ_SIZE = 65536
_MAX_BODY = 8 * 1024 * 1024
# A request must arrive whole within this time once its first byte came.
_REQUEST_TIMEOUT_S = 30.0
# The SmolLM2 chat template around each message: what the model's prompt really holds.
_TEMPLATE = "<|im_start|>{role}\n{content}<|im_end|>\n"

@dataclass
class LLMFaults:
    """What goes wrong on the next chat request (then the server is well again)."""

    # answer with this HTTP status and an OpenAI error body (401, 403, 404, 429, 500, 503)
    status: int | None = None
    retry_after: int | None = None  # the Retry-After header (seconds) sent with the status
    # after the role chunk, nothing for this long before the first token
    stall_first_ms: float = 0.0
    # after `stall_after_tokens` tokens, nothing for `stall_ms`
    stall_ms: float = 0.0
    stall_after_tokens: int = 1
    # close the connection in the middle of the event of token N (HTTP chunk and SSE event cut)
    cut_at_token: int | None = None
    # the event of token N is not valid JSON
    malformed_at_token: int | None = None
    # an error event (`data: {"error": ...}`) instead of token N ends the stream, as a model
    # failing after the 200 does
    error_at_token: int | None = None


@dataclass
class StreamStyle:
    """Legal variations of the stream that real servers send, applied to every stream."""

    ping: bool = False  # a `: ping` comment line before every event
    reasoning: list[str] = field(default_factory=list)  # `delta.reasoning_content` pieces before the reply
    null_content: bool = False  # a `{"content": null}` delta after the role chunk
    empty_choices: bool = False  # a `choices: []` chunk after the first token
    # old servers answer 400 to `stream_options` (the client must retry without it)
    rejects_stream_options: bool = False


class _HttpError(Exception):
    """A request answered with an OpenAI error body."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        return {"error": {"message": str(self), "type": kind, "param": None, "code": self.code}}


_FAULT_MESSAGES = {
    401: ("Incorrect API key provided (injected by the loopback server).", "invalid_api_key"),
    403: ("You are not allowed to use this model (injected by the loopback server).", "permission_denied"),
    404: ("The model does not exist or you do not have access to it (injected).", "model_not_found"),
    429: ("Rate limit reached for requests (injected by the loopback server).", "rate_limit_exceeded"),
}


_WORD_PIECES = re.compile(r"\w+|[^\w\s]")


def _count_tokens(text: str) -> int:
    return len(_WORD_PIECES.findall(text))


def _message_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


class OpenAILLMServer:
    """Serves `llm` (a provider of the playground, loaded by `start`) as an OpenAI-compatible API.

    `model`: the id served and required in requests (default: the provider's model).
    `api_key`: when set, requests must carry `Authorization: Bearer <key>`.
    For tests and the benchmark: `connections` counts accepted TCP connections,
    `requests` logs (method, path, status), `sent` holds each stream's content-token
    send times (now_ms, after the bytes were handed to the socket). `on_request` is
    called with each (method, path, status) as it is answered.
    """

    def __init__(self, llm: LLMProvider, model: str | None = None, api_key: str | None = None) -> None:
        self.llm = llm
        self.model = model or llm.model
        self.api_key = api_key
        self.faults = LLMFaults()
        self.style = StreamStyle()
        self.connections = 0
        self.requests: list[tuple[str, str, int]] = []
        self.sent: list[list[float]] = []
        self.base_url = ""
        self.port = 0
        self.on_request: Callable[[str, str, int], None] | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._previous_prompt: list[tuple[str, str]] = []

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, progress: Progress | None = None) -> str:
        """Loads the backend, listens, and returns the base URL to give a client (ends in /v1)."""
        await self.llm.load(progress)
        self._server = await asyncio.start_server(self._handle, host, port)
        bound_host, bound_port = self._server.sockets[0].getsockname()[:2]
        self.port = bound_port
        self.base_url = f"http://{bound_host}:{bound_port}/v1"
        return self.base_url

    async def stop(self) -> None:
        """Stops listening and drops every open connection (clients see them close)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self.llm.close()

    # -- HTTP -----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        http = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(http, reader)
                if request is None:
                    break
                await self._answer(http, reader, writer, *request)
                if http.our_state is not h11.DONE or http.their_state is not h11.DONE:
                    break
                http.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, TimeoutError):
            pass  # the client went away or broke HTTP: this connection ends, the server goes on
        except asyncio.CancelledError:
            pass  # stop()
        finally:
            self._handlers.discard(task)
            writer.transport.abort()

    async def _read_request(self, http: h11.Connection, reader: asyncio.StreamReader) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                if request is None:
                    data = await reader.read(_READ_SIZE)  # an idle keep-alive connection waits here
                else:
                    async with asyncio.timeout(_REQUEST_TIMEOUT_S):
                        data = await reader.read(_READ_SIZE)
                http.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_BODY:
                    raise h11.RemoteProtocolError("request body too large")
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, bytes(body)
            else:  # ConnectionClosed, PAUSED
                return None

    async def _answer(self, http: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      request: h11.Request, body: bytes) -> None:
        method = request.method.decode()
        path = request.target.decode().split("?", 1)[0]
        status = 200
        try:
            self._check_key(request)
            if method == "GET" and path == "/v1/models":
                await self._send_json(http, writer, 200, self._models())
            elif method == "POST" and path == "/v1/chat/completions":
                await self._chat(http, reader, writer, self._parse_chat(body))
            else:
                raise _HttpError(404, f"Invalid URL ({method} {path})", "unknown_url")
        except _HttpError as error:
            status = error.status
            await self._send_json(http, writer, error.status, error.body(), error.headers)
        finally:
            self.requests.append((method, path, status))
            if self.on_request is not None:
                self.on_request(method, path, status)

    def _check_key(self, request: h11.Request) -> None:
        if not self.api_key:
            return
        given = dict(request.headers).get(b"authorization", b"").decode("latin-1")
        if not given:
            raise _HttpError(401, "You didn't provide an API key. You need to provide your API key in an "
                                  "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if given != f"Bearer {self.api_key}":
            raise _HttpError(401, "Incorrect API key provided.", "invalid_api_key")

    def _models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "playground"}]}

    async def _send_json(self, http: h11.Connection, writer: asyncio.StreamWriter, status: int, payload: Any,
                         headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        head = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(headers or {}).items()]
        writer.write(http.send(h11.Response(status_code=status, headers=head, reason=HTTPStatus(status).phrase))
                     + http.send(h11.Data(data=data)) + http.send(h11.EndOfMessage()))
        await writer.drain()

    # -- chat completions -----------------------------------------------------------------

    def _parse_chat(self, body: bytes) -> dict[str, Any]:
        try:
            request = json.loads(body)
        except ValueError:
            raise _HttpError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list) or not request["messages"]:
            raise _HttpError(400, "'messages' is a required property and must be a non-empty array.")
        limit = request.get("max_completion_tokens", request.get("max_tokens"))
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise _HttpError(400, f"Invalid 'max_tokens': expected an integer of at least 1, got {limit!r}.")
        if request.get("model") != self.model:
            raise _HttpError(404, f"The model `{request.get('model')}` does not exist or you do not have access "
                                  f"to it (this server serves `{self.model}`).", "model_not_found")
        if "stream_options" in request and (self.style.rejects_stream_options or not request.get("stream")):
            raise _HttpError(400, "Unrecognized request argument supplied: stream_options"
                             if self.style.rejects_stream_options
                             else "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
        return request

    def _take_faults(self) -> LLMFaults:
        faults, self.faults = self.faults, LLMFaults()
        if faults.status is not None:
            injected = f"{HTTPStatus(faults.status).phrase} (injected by the loopback server)."
            message, code = _FAULT_MESSAGES.get(faults.status, (injected, None))
            headers = {"Retry-After": str(faults.retry_after)} if faults.retry_after is not None else {}
            raise _HttpError(faults.status, message, code, headers)
        return faults

    def _usage(self, messages: list[Message], completion_tokens: int) -> dict[str, Any]:
        prompt = [(m.role, m.content) for m in messages]
        shared = 0
        for mine, previous in zip(prompt, self._previous_prompt):
            if mine != previous:
                break
            shared += 1
        self._previous_prompt = prompt
        counts = [_count_tokens(_TEMPLATE.format(role=role, content=content)) for role, content in prompt]
        return {"prompt_tokens": sum(counts), "completion_tokens": completion_tokens,
                "total_tokens": sum(counts) + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": sum(counts[:shared])}}

    async def _reply_tokens(self, messages: list[Message], max_tokens: int | None,
                            result: dict[str, Any]) -> AsyncIterator[str]:
        """The backend's reply, cut at `max_tokens`; `result["finish_reason"]` is set at the end."""
        count = 0
        async with contextlib.aclosing(self.llm.stream(messages)) as tokens:
            async for token in tokens:
                if max_tokens is not None and count >= max_tokens:
                    result["finish_reason"] = "length"
                    return
                count += 1
                yield token.text
        result["finish_reason"] = self.llm.info.finish_reason or "stop"

    async def _chat(self, http: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: dict[str, Any]) -> None:
        faults = self._take_faults()
        messages = [Message(str(m.get("role", "user")), _message_text(m.get("content"))) for m in request["messages"]]
        max_tokens = request.get("max_completion_tokens", request.get("max_tokens"))
        if not request.get("stream"):
            result: dict[str, Any] = {}
            try:
                pieces = [t async for t in self._reply_tokens(messages, max_tokens, result)]
            except LLMError as exc:
                raise _HttpError(500, f"The model failed: {exc}") from None
            message = {"role": "assistant", "content": "".join(pieces)}
            await self._send_json(http, writer, 200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model, "system_fingerprint": "fp_playground",
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": result["finish_reason"]}],
                "usage": self._usage(messages, len(pieces))})
            return
        stream = _SseStream(http, writer, self, bool((request.get("stream_options") or {}).get("include_usage")))
        # A client that hangs up (barge-in) stops the backend at once, not at the next write.
        sending = asyncio.create_task(self._stream_reply(stream, messages, max_tokens, faults))
        hangup = asyncio.create_task(_wait_hangup(http, reader))
        try:
            await asyncio.wait({sending, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sending, hangup):
                task.cancel()
            await asyncio.gather(hangup, return_exceptions=True)
        if hangup.done() and not hangup.cancelled() and hangup.exception() is None:
            await asyncio.gather(sending, return_exceptions=True)
            raise ConnectionResetError("the client closed the connection mid-stream")
        await sending  # its error (a write to a closed socket, an injected cut) ends the connection

    async def _stream_reply(self, stream: _SseStream, messages: list[Message], max_tokens: int | None,
                            faults: LLMFaults) -> None:
        style = self.style
        await stream.start()
        await stream.delta({"role": "assistant", "content": ""})
        if style.null_content:
            await stream.delta({"content": None})
        for piece in style.reasoning:
            await stream.delta({"content": None, "reasoning_content": piece})
        if faults.stall_first_ms:
            await asyncio.sleep(faults.stall_first_ms / 1000.0)
        result: dict[str, Any] = {}
        sent: list[float] = []
        self.sent.append(sent)
        try:
            async for text in self._reply_tokens(messages, max_tokens, result):
                index = len(sent)
                if faults.stall_ms and index == faults.stall_after_tokens:
                    await asyncio.sleep(faults.stall_ms / 1000.0)
                if faults.cut_at_token == index:
                    await stream.cut({"content": text})
                if faults.malformed_at_token == index:
                    await stream.raw(b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content": "\n\n')
                if faults.error_at_token == index:
                    raise LLMError("injected by the loopback server")
                sent.append(await stream.delta({"content": text}))
                if style.empty_choices and index == 0:
                    await stream.chunk([])
        except LLMError as exc:  # the status is sent already: an error event ends the stream, as OpenAI does
            await stream.raw(b"data: " + json.dumps(_HttpError(500, f"The model failed: {exc}").body()).encode() + b"\n\n")
            await stream.end()
            return
        await stream.delta({}, finish_reason=result.get("finish_reason", "stop"))
        if stream.include_usage:
            await stream.chunk([], usage=self._usage(messages, len(sent)))
        await stream.raw(b"data: [DONE]\n\n")
        await stream.end()


async def _wait_hangup(http: h11.Connection, reader: asyncio.StreamReader) -> None:
    """Returns when the client closes its side; bytes it sends meanwhile are kept for h11."""
    while True:
        data = await reader.read(_READ_SIZE)
        http.receive_data(data)
        if not data:
            return


class _SseStream:
    """One `text/event-stream` response: chunk events in OpenAI's shape, written as they are made."""

    def __init__(self, http: h11.Connection, writer: asyncio.StreamWriter, server: OpenAILLMServer,
                 include_usage: bool) -> None:
        self.http = http
        self.writer = writer
        self.include_usage = include_usage
        self.ping = server.style.ping
        self.model = server.model
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    async def start(self) -> None:
        headers = [("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache"),
                   ("X-Request-Id", self.id)]
        self.writer.write(self.http.send(h11.Response(status_code=200, headers=headers, reason=b"OK")))
        await self.writer.drain()

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                 "model": self.model, "system_fingerprint": "fp_playground", "choices": choices}
        if self.include_usage:
            chunk["usage"] = None  # OpenAI sends usage: null on every chunk but the last
        chunk.update(extra)
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    @staticmethod
    def _choice(delta: dict[str, Any], finish_reason: str | None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

    async def raw(self, event: bytes) -> float:
        """Writes one event (after a ping comment when pinging); returns when it was handed to the socket."""
        if self.ping:
            event = b": ping\n\n" + event
        self.writer.write(self.http.send(h11.Data(data=event)))
        await self.writer.drain()
        return now_ms()

    async def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> float:
        return await self.raw(self._event(choices, **extra))

    async def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> float:
        return await self.chunk(self._choice(delta, finish_reason))

    async def cut(self, delta: dict[str, Any]) -> None:
        """Sends half of this delta's event (its HTTP chunk announces all of it) and drops the connection."""
        event = self._event(self._choice(delta, None))
        self.writer.write(f"{len(event):x}\r\n".encode() + event[:len(event) // 2])
        await self.writer.drain()
        self.writer.transport.abort()
        raise ConnectionAbortedError("cut mid-event (injected by the loopback server)")

    async def end(self) -> None:
        self.writer.write(self.http.send(h11.EndOfMessage()))
        await self.writer.drain()


def build_backend(replay: str | None = None, max_tokens: int = 512) -> LLMProvider:
    """The provider behind the server: a replay of `replay` (a JSONL trace), else the local model."""
    if replay:
        from playground.llm.replay import ReplayLLM, ReplayLLMConfig

        return ReplayLLM(ReplayLLMConfig(trace=replay))
    from playground.llm.local import LocalLLM, LocalLLMConfig

    return LocalLLM(LocalLLMConfig(max_tokens=max_tokens))
