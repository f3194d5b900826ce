"""The `cartesia` session: Cartesia's `/tts/websocket`, opened once and reused by every turn.

Auth and version go as the `X-API-Key` and `Cartesia-Version` headers. Each turn is one
`context_id` (a resumed turn gets a new one): every chunk is a request with `continue:
true` and the same settings; `max_buffer_delay_ms: 0` when we chunk ourselves (left to
the server's buffering when `tts.flush_chunks = false`, for `chunker.strategy =
passthrough`); an empty transcript with `continue: false` ends the reply, answered by
`done`; barge-in sends `cancel: true`.

Cartesia's audio `chunk`s carry no text, but with `add_timestamps` the `timestamps`
messages say which words have been spoken: once they cover a sent chunk's characters,
that chunk's audio is complete and the next audio belongs to the next chunk. The REST
fallback is `POST /tts/bytes`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx

from playground.core.presets import settings
from playground.tts.websocket import ChunkFlushConfig, Frame, Message, WebSocketTTSSession, spoken_chars

CARTESIA_VERSION = "2025-04-16"
DEFAULT_MODEL = "sonic-2"
LANGUAGE = "en"
IDLE_TIMEOUT_MS = 5 * 60 * 1000.0  # Cartesia closes a socket idle for 5 minutes
# The messages the session uses or knowingly skips; anything else is reported as unknown.
_SKIPPED = {"flush_done", "phoneme_timestamps"}


@settings
class CartesiaConfig(ChunkFlushConfig):
    provider: Literal["cartesia"] = "cartesia"


class CartesiaSession(WebSocketTTSSession):
    name = "cartesia"
    default_base_url = "https://api.cartesia.ai"
    default_key_env = "CARTESIA_API_KEY"

    def __init__(self, config: CartesiaConfig) -> None:
        super().__init__(config)
        # per context: the running total of spoken characters at the end of each chunk not yet
        # covered by timestamps, and how many characters the timestamps have covered
        self._chunk_ends: dict[str, deque[int]] = {}
        self._sent_chars: dict[str, int] = {}
        self._stamped_chars: dict[str, int] = {}

    def _settings(self) -> dict[str, Any]:
        """The fields that must be identical in every request of a context."""
        settings: dict[str, Any] = {
            "model_id": self.config.model or DEFAULT_MODEL,
            "voice": {"mode": "id", "id": self.config.voice},
            "language": LANGUAGE,
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": self.sample_rate},
            "add_timestamps": True,
        }
        if self.config.flush_chunks:
            settings["max_buffer_delay_ms"] = 0  # we chunk ourselves: no server-side wait
        return settings

    def _request(self, context: str, transcript: str, more: bool) -> dict[str, Any]:
        return {**self._settings(), "transcript": transcript, "context_id": context, "continue": more}

    def _forget(self, context: str) -> None:
        for table in (self._chunk_ends, self._sent_chars, self._stamped_chars):
            table.pop(context, None)

    # -- hooks -----------------------------------------------------------------------------

    def websocket_url(self) -> str:
        return f"{self.base_url('ws')}/tts/websocket"

    def websocket_headers(self, key: str | None) -> dict[str, str]:
        return {"Cartesia-Version": CARTESIA_VERSION, **({"X-API-Key": key} if key else {})}

    def flushes_each_chunk(self) -> bool:
        return self.config.flush_chunks

    def begin_messages(self, context: str) -> list[Message]:
        self._chunk_ends[context] = deque()
        self._sent_chars[context] = self._stamped_chars[context] = 0
        return []  # a context starts with its first request

    def chunk_messages(self, context: str, text: str) -> list[Message]:
        transcript = _transcript(text)
        self._sent_chars[context] = self._sent_chars.get(context, 0) + spoken_chars(transcript)
        self._chunk_ends.setdefault(context, deque()).append(self._sent_chars[context])
        return [self._request(context, transcript, True)]

    def end_messages(self, context: str) -> list[Message]:
        return [self._request(context, "", False)]

    def cancel_messages(self, context: str) -> list[Message] | None:
        self._forget(context)
        return [{"context_id": context, "cancel": True}]

    def keepalive_messages(self, context: str | None) -> list[Message]:
        # Cartesia has no keep-alive message: an empty transcript adds nothing to an open
        # context, and cancelling a context that does not exist is a no-op.
        if context is not None:
            return [self._request(context, "", True)]
        return [{"context_id": "keepalive", "cancel": True}]

    def idle_timeout_ms(self) -> float | None:
        return IDLE_TIMEOUT_MS

    def parse(self, message: str | bytes) -> list[Frame]:
        if isinstance(message, bytes):
            raise ValueError("a binary message (Cartesia sends JSON text)")  # noqa: TRY004 - malformed = ValueError
        data = json.loads(message)  # a JSONDecodeError is a ValueError
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")  # noqa: TRY004 - malformed = ValueError
        kind, context = data.get("type"), data.get("context_id")
        if kind == "chunk":
            try:
                audio = base64.b64decode(data.get("data") or "", validate=True)
            except (binascii.Error, TypeError) as exc:
                raise ValueError(f"chunk data is not base64: {exc}") from None
            return [Frame(audio=audio, context=context)]
        if kind == "timestamps":
            return self._chunks_spoken(context, data.get("word_timestamps"))
        if kind == "done":
            self._forget(context)
            return [Frame(final=True, context=context)]
        if kind == "error":
            detail = ", ".join(str(data[k]) for k in ("error_code", "status_code") if data.get(k) is not None)
            text = f"{data.get('title') or 'error'}: {data.get('message') or ''}".rstrip(": ")
            return [Frame(error=f"{text} ({detail})" if detail else text, context=context)]
        if kind in _SKIPPED:
            return []
        return [Frame(ignored=f"message type {kind!r}"[:100])]

    def _chunks_spoken(self, context: str | None, stamps: Any) -> list[Frame]:
        """A `chunk_done` frame for every chunk whose words the timestamps now cover."""
        if context not in self._chunk_ends or not isinstance(stamps, dict):
            return []
        words = stamps.get("words")
        if not isinstance(words, list):
            raise ValueError("timestamps without a words list")  # noqa: TRY004 - malformed = ValueError
        self._stamped_chars[context] += spoken_chars("".join(str(w) for w in words))
        ends = self._chunk_ends[context]
        frames = []
        while ends and ends[0] <= self._stamped_chars[context]:
            ends.popleft()
            frames.append(Frame(chunk_done=True, context=context))
        return frames

    def synthesize_rest(self, client: httpx.AsyncClient, text: str) -> AsyncIterator[bytes]:
        settings = {k: v for k, v in self._settings().items() if k not in ("add_timestamps", "max_buffer_delay_ms")}
        return self.post_for_audio(client, f"{self.base_url('http')}/tts/bytes", headers=self.websocket_headers(self.key),
                                   json={**settings, "transcript": _transcript(text)})


def _transcript(text: str) -> str:
    """A chunk as sent, over the socket and over REST alike (so a re-synthesis matches): the
    socket concatenates transcripts verbatim, so each brings its own separating space."""
    return text.strip() + " "


PROVIDER = CartesiaSession
SETTINGS = CartesiaConfig
