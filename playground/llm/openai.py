"""The `openai` provider: any OpenAI-compatible chat-completions server, streamed over SSE.

xAI, OpenAI, Groq, Ollama, the llama.cpp server, vLLM and `playground serve-llm` all
speak it: `POST {base_url}/chat/completions` with `stream: true`, answered by
`data: {chunk}` events and a final `data: [DONE]`.

One pooled HTTP/1.1 keep-alive client lives as long as the session; `load()` opens its
connection (`GET {base_url}/models`) so turn 1 pays no handshake either, and checks the
key before the first turn. Each `llm.done` records how its request reached the server
(`connection`: reused or new, and what connecting cost). Reasoning deltas are counted
apart and never yielded: they are not speakable and must not start TTFS.
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import msgspec
from httpx_sse import EventSource, SSEError
from pydantic import Field

from playground.core.clock import now_ms
from playground.core.events import LlmConnection, Usage
from playground.core.presets import LLMConfig, settings
from playground.core.progress import Progress
from playground.llm.base import LLMError, Message, StreamInfo, Token

# Idle connections are kept this long between turns (httpx's default of 5 s would make
# every turn after a pause pay a new handshake); a server closing earlier is detected.
KEEPALIVE_EXPIRY_S = 300.0
# How much of an error body is read and quoted.
_ERROR_BODY_LIMIT = 4096
_QUOTE_CHARS = 200


@settings
class OpenAILLMConfig(LLMConfig):
    """Give up (a named error ends the turn) when connecting, the first token, or the next token
    takes longer than its timeout."""

    provider: Literal["openai"] = "openai"
    connect_timeout_ms: float = Field(5000.0, gt=0, description="connecting to the server")
    first_token_timeout_ms: float = Field(15000.0, gt=0, description="from the request to the first token")
    idle_timeout_ms: float = Field(10000.0, gt=0, description="between two tokens")


def _quote(text: str) -> str:
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "…"


def _server_message(body: bytes) -> str:
    """The `error.message` of an OpenAI-style error body, else the body itself (shortened)."""
    text = body.decode("utf-8", "replace")
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return _quote(text)
    if isinstance(error, dict) and error.get("message"):
        return _quote(str(error["message"]))
    return _quote(str(error) if error else text)


def _usage(reported: Any) -> Usage:
    """The server's usage, kept in the OpenAI shape `llm.done` declares; a shape it does not
    have is recorded as usage unavailable, with why, rather than failing the turn."""
    try:
        return msgspec.convert(reported, Usage, strict=False)
    except msgspec.ValidationError as exc:
        return Usage(unavailable=f"the server's usage is not in the OpenAI shape ({exc}): {_quote(str(reported))}")


def _step_recorder(steps: dict[str, float]):
    """An httpx `trace` callback noting when each step of a request happened; the
    `connection.connect_tcp.*` steps only occur when the request opened a new connection."""

    async def record(step: str, data: dict[str, Any]) -> None:
        steps[step] = now_ms()

    return record


class OpenAILLM:
    name = "openai"

    def __init__(self, config: OpenAILLMConfig, warm_up: bool = True) -> None:
        """`warm_up=False` skips opening the connection in `load()` (turn 1 then pays the handshake)."""
        self.config = config
        self.warm_up = warm_up
        self.model = config.model
        self.info = StreamInfo()
        self.base_url = config.base_url.rstrip("/")
        self._client: httpx.AsyncClient | None = None
        # Cleared for good when the server rejects `stream_options` (older local servers).
        self._send_stream_options = True
        # network stream -> [opened at (ms), requests served]; entries go with their connection.
        self._connections: weakref.WeakKeyDictionary[Any, list[float]] = weakref.WeakKeyDictionary()

    # -- session ------------------------------------------------------------------------

    def _where(self) -> str:
        return f"openai LLM ({self.base_url}, model {self.model!r})"

    def _check_config(self) -> dict[str, str]:
        """The request headers, once the preset's values are usable."""
        if not self.base_url.startswith(("http://", "https://")):
            raise LLMError(f"openai LLM: [llm] base_url must be an http(s) URL such as https://api.x.ai/v1, "
                           f"got {self.config.base_url!r}")
        headers = {"Accept": "text/event-stream"}
        env_name = self.config.api_key_env
        if env_name:
            key = os.environ.get(env_name, "").strip()
            if not key:
                raise LLMError(f"openai LLM ({self.base_url}): the API key variable {env_name} is not set "
                               f"([llm] api_key_env); export {env_name}=<your key>, or set api_key_env = \"\" "
                               f"for a local server that needs no key")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def load(self, progress: Progress | None = None) -> None:
        if self._client is not None:
            return
        headers = self._check_config()
        connect_s = self.config.connect_timeout_ms / 1000.0
        self._client = httpx.AsyncClient(
            headers=headers,
            # The read limits are enforced per phase in stream() (first token, idle), with named errors.
            timeout=httpx.Timeout(connect=connect_s, read=None, write=connect_s, pool=connect_s),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2, keepalive_expiry=KEEPALIVE_EXPIRY_S),
            http2=False,
        )
        try:
            if self.warm_up:
                await self._open_connection(progress)
        except BaseException:
            await self.close()
            raise

    async def _open_connection(self, progress: Progress | None) -> None:
        """Opens the pooled connection before the first turn and checks the key on it."""
        assert self._client is not None
        url = f"{self.base_url}/models"
        started = now_ms()
        limit_s = (self.config.connect_timeout_ms + self.config.first_token_timeout_ms) / 1000.0
        try:
            response = await self._client.get(url, timeout=httpx.Timeout(limit_s, connect=self.config.connect_timeout_ms / 1000.0))
        except httpx.TransportError as exc:
            raise self._transport_error(exc, started, tokens=None) from None
        if response.status_code in (401, 403):
            raise self._status_error(response.status_code, response.headers, response.content)
        stream = response.extensions.get("network_stream")
        if stream is not None:
            self._connections[stream] = [started, 1]
        if progress:
            # Any answer proves the connection; a non-200 here (a server without /models) is no fault.
            progress(f"openai LLM: connected to {self.base_url} in {now_ms() - started:.0f} ms "
                     f"(GET /models: HTTP {response.status_code})")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- a turn -------------------------------------------------------------------------

    def _body(self, messages: list[Message]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_json() for m in messages],
            "stream": True,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if self._send_stream_options:
            body["stream_options"] = {"include_usage": True}
        return body

    async def stream(self, messages: list[Message]) -> AsyncIterator[Token]:
        if self._client is None:
            raise LLMError("openai LLM: stream() before load()")
        self.info = info = StreamInfo()
        started = now_ms()
        first_deadline = started + self.config.first_token_timeout_ms
        response = await self._open_stream(messages, info, started, first_deadline)
        events = EventSource(response).aiter_sse()
        tokens = 0
        first_token_at: float | None = None
        done = False
        try:
            while True:
                if first_token_at is None:
                    field, wait_ms = "first_token_timeout_ms", first_deadline - now_ms()
                else:
                    field, wait_ms = "idle_timeout_ms", self.config.idle_timeout_ms
                try:
                    async with asyncio.timeout(max(0.0, wait_ms) / 1000.0):
                        sse = await anext(events, None)
                except TimeoutError:
                    raise self._timeout_error(field, tokens) from None
                if sse is None:
                    break
                arrived = now_ms()
                if sse.data == "[DONE]":
                    done = True
                    continue  # read to the body's end, so the connection goes back to the pool
                if done:
                    continue
                if not sse.data:
                    continue
                for kind, text in self._parse_chunk(sse.data, info):
                    if first_token_at is None:
                        first_token_at = arrived
                    if kind == "content":
                        tokens += 1
                        yield Token(text, arrived)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, started, tokens) from None
        except SSEError as exc:
            raise LLMError(f"{self._where()}: the answer is not an SSE stream ({exc}); "
                           f"is base_url an OpenAI-compatible API?") from None
        finally:
            await events.aclose()
            await response.aclose()
        if not done and info.finish_reason is None:
            raise LLMError(f"{self._where()}: the stream ended after {tokens} tokens without a finish_reason "
                           f"or [DONE]: the reply is cut short")
        if info.usage == Usage():  # one rule for every server that reports none (llama.cpp's sends no usage chunk)
            info.usage = Usage(unavailable="the server sent no usage" if self._send_stream_options
                               else "the server rejected stream_options.include_usage")

    async def _open_stream(self, messages: list[Message], info: StreamInfo, started: float,
                           first_deadline: float) -> httpx.Response:
        """Sends the request and returns the streaming 200 response; an HTTP error is an LLMError.

        A 400 naming `stream_options` (servers that don't know it) is retried once without it."""
        assert self._client is not None
        while True:
            steps: dict[str, float] = {}
            request = self._client.build_request("POST", f"{self.base_url}/chat/completions", json=self._body(messages),
                                                 extensions={"trace": _step_recorder(steps)})
            try:
                async with asyncio.timeout(max(0.0, first_deadline - now_ms()) / 1000.0):
                    response = await self._client.send(request, stream=True)
                    if response.status_code != 200:
                        body = await response.aread()
            except TimeoutError:
                raise self._timeout_error("first_token_timeout_ms", 0) from None
            except httpx.TransportError as exc:
                raise self._transport_error(exc, started, tokens=None) from None
            info.connection = self._connection_info(response, steps)
            if response.status_code == 200:
                return response
            await response.aclose()
            if response.status_code == 400 and self._send_stream_options and b"stream_options" in body:
                self._send_stream_options = False
                continue
            raise self._status_error(response.status_code, response.headers, body)

    def _connection_info(self, response: httpx.Response, steps: dict[str, float]) -> LlmConnection:
        stream = response.extensions.get("network_stream")
        now = now_ms()
        connected = "connection.connect_tcp.complete" in steps
        record = self._connections.get(stream) if stream is not None else None
        if record is None or connected:
            record = [now, 0]
            if stream is not None:
                self._connections[stream] = record
        record[1] += 1
        if not connected:
            return LlmConnection(reused=True, requests=int(record[1]), age_ms=round(now - record[0], 1))
        info = LlmConnection(reused=False, connect_ms=round(
            steps["connection.connect_tcp.complete"] - steps["connection.connect_tcp.started"], 3))
        if "connection.start_tls.complete" in steps:
            info.tls_ms = round(steps["connection.start_tls.complete"] - steps["connection.start_tls.started"], 3)
        return info

    def _parse_chunk(self, data: str, info: StreamInfo) -> list[tuple[str, str]]:
        """("content" | "reasoning", text) pieces of one `data:` event; records usage and finish_reason."""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise LLMError(f"{self._where()}: malformed JSON in the stream: {_quote(data)}") from None
        if not isinstance(chunk, dict):
            raise LLMError(f"{self._where()}: unexpected stream event (not a JSON object): {_quote(data)}")
        if chunk.get("error"):
            raise LLMError(f"{self._where()}: the server reported an error mid-stream: "
                           f"{_server_message(data.encode())}")
        pieces: list[tuple[str, str]] = []
        try:
            # Kept as the server reports it (prompt_tokens, completion_tokens, prompt_tokens_details.
            # cached_tokens, ...). Groq sends it under x_groq; others in `usage`, null but on the last chunk.
            usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage")
            if usage:
                info.usage = _usage(usage)
            for choice in chunk.get("choices") or []:  # `choices: []` carries only usage
                if choice.get("finish_reason"):
                    info.finish_reason = choice["finish_reason"]
                delta = choice.get("delta") or {}
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning:
                    info.reasoning_chars += len(reasoning)
                    pieces.append(("reasoning", reasoning))
                if delta.get("content"):  # `content: null` is allowed
                    pieces.append(("content", str(delta["content"])))
        except (AttributeError, TypeError):  # a field of the wrong type (a list where an object belongs)
            raise LLMError(f"{self._where()}: unexpected stream event shape: {_quote(data)}") from None
        return pieces

    # -- errors, one line each: what happened, the value involved, what to do -------------

    def _status_error(self, status: int, headers: httpx.Headers, body: bytes) -> LLMError:
        said = _server_message(body[:_ERROR_BODY_LIMIT]) or "(no message)"
        where = self._where()
        if status in (401, 403):
            key = (f"check {self.config.api_key_env} ([llm] api_key_env)" if self.config.api_key_env
                   else "the server wants a key: set [llm] api_key_env to the variable holding it")
            what = "key rejected" if status == 401 else "access denied (key lacks permission for this model?)"
            return LLMError(f"{where}: HTTP {status} {what}: {said}; {key}")
        if status == 404:
            return LLMError(f"{where}: HTTP 404: {said}; check [llm] model and [llm] base_url "
                            f"(it usually ends in /v1)")
        if status == 429:
            retry = headers.get("retry-after")
            wait = f"retry after {retry} s" if retry else "wait and retry"
            return LLMError(f"{where}: HTTP 429 rate limited: {said}; {wait}, or check the plan's limits")
        if status >= 500:
            return LLMError(f"{where}: HTTP {status} server error: {said}; try again, or another provider")
        return LLMError(f"{where}: HTTP {status}: {said}")

    def _timeout_error(self, field: str, tokens: int) -> LLMError:
        limit = getattr(self.config, field)
        if field == "first_token_timeout_ms":
            what = f"no first token within {limit:.0f} ms"
        else:
            what = f"the stream stalled: no token for {limit:.0f} ms after token {tokens}"
        return LLMError(f"{self._where()}: {what} ([llm] {field} = {limit:g}); "
                        f"the server may be overloaded, or raise {field}")

    def _transport_error(self, exc: httpx.TransportError, started: float, tokens: int | None) -> LLMError:
        where = self._where()
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectTimeout):
            limit = self.config.connect_timeout_ms
            return LLMError(f"{where}: connect timeout: no connection within {limit:.0f} ms "
                            f"([llm] connect_timeout_ms = {limit:g}); check the network and base_url")
        if isinstance(exc, httpx.ConnectError):
            return LLMError(f"{where}: cannot connect ({detail}); is the server running and base_url right?")
        if isinstance(exc, httpx.TimeoutException):
            return LLMError(f"{where}: timed out after {now_ms() - started:.0f} ms ({type(exc).__name__})")
        if tokens is not None:
            return LLMError(f"{where}: the connection broke mid-reply after {tokens} tokens ({detail})")
        return LLMError(f"{where}: the request failed ({detail})")


PROVIDER = OpenAILLM
SETTINGS = OpenAILLMConfig
