"""The `elevenlabs` session: ElevenLabs WebSocket TTS, opened once and reused by every turn.

Multi-context (`tts.contexts = "multi"`, the default): `/v1/text-to-speech/{voice_id}/
multi-stream-input`, one `context_id` per turn (a resumed turn gets a new one), each chunk
sent with `flush: true` so its audio starts at once (unflushed when `tts.flush_chunks =
false`, for `chunker.strategy = passthrough`: the server then buffers by its
`chunk_length_schedule`). End of reply: flush, then `close_context`, answered by `isFinal`.
Barge-in closes the context. A connection holds at most 5 contexts, a closed one until its
`isFinal` (it goes on speaking what it had): the base never opens a sixth. Keep-alives are
the documented `{"text": "", "context_id"}` for a turn's open context; between turns, a
context of its own opened with `{"text": " "}` and closed at once (`{"text": ""}` without a
context would open the default context and hold a slot for the rest of the session; as a
context's first message it would make that context's init fail with 1008). Their interval
is half the `inactivity_timeout` asked for (sent as the query parameter), or half the
limit a server's idle close states when that is shorter.

Single-context (`tts.contexts = "single"`): `/stream-input`, one stream per connection,
the voice settings once per connection, a flush per chunk and at the end of a reply (no
final message follows a flush, so a turn ends when the alignment has accounted for every
chunk), keep-alive `{"text": " "}`; it has no cancel, so a barge-in reconnects.

Audio is attributed to chunks by the alignment ElevenLabs sends with every audio message
(`sync_alignment=true`): its characters count down the oldest unfinished chunk's
characters (see `playground.tts.websocket`). The REST fallback is `POST .../stream`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

import httpx
from pydantic import Field

from playground.core.presets import Why, settings
from playground.core.progress import Progress
from playground.tts.base import SessionReporter, TTSError
from playground.tts.websocket import ChunkFlushConfig, Frame, Message, WebSocketTTSSession, spoken_chars

DEFAULT_MODEL = "eleven_flash_v2_5"
# ElevenLabs' documented default schedule (characters buffered before each generation);
# only used when chunks are not flushed (tts.flush_chunks = false).
CHUNK_LENGTH_SCHEDULE = [120, 160, 250, 290]
MAX_CONTEXTS = 5  # per multi-context connection, as documented
# The inactivity close: "... within the timeout of 20.0 seconds. ..." (the message, and the close reason)
_STATED_LIMIT = re.compile(r"timeout of (\d+(?:\.\d+)?) seconds")
_KNOWN_KEYS = {"audio", "isFinal", "is_final", "alignment", "normalizedAlignment", "normalized_alignment",
               "contextId", "context_id", "error", "message", "code"}


def _with_one_space(text: str) -> str:
    """ElevenLabs wants text to end with one space (the same text over WebSocket and REST)."""
    return text.strip() + " "


def parse_alignment(raw: Any) -> dict[str, list] | None:
    """ElevenLabs alignment as {"chars", "start_ms", "duration_ms"}; None when absent or unusable.
    Accepts `charDurationsMs` (SDKs) and `charsDurationsMs` (the AsyncAPI spec)."""
    if not isinstance(raw, dict):
        return None
    chars = raw.get("chars")
    starts = raw.get("charStartTimesMs")
    durations = raw.get("charDurationsMs", raw.get("charsDurationsMs"))
    if not (isinstance(chars, list) and isinstance(starts, list) and isinstance(durations, list)):
        return None
    if not (len(chars) == len(starts) == len(durations)):
        return None
    return {"chars": [str(c) for c in chars], "start_ms": starts, "duration_ms": durations}


@settings
class ElevenLabsConfig(ChunkFlushConfig):
    provider: Literal["elevenlabs"] = "elevenlabs"
    inactivity_timeout_s: Annotated[int, Why("the ElevenLabs limit")] = Field(20, ge=1, le=180, description=(
        "the server closes a connection that received no text for this long"))
    contexts: Literal["multi", "single"] = Field("multi", description=(
        '"multi" (the multi-stream-input endpoint, a context per turn) or "single" (stream-input)'))


class ElevenLabsSession(WebSocketTTSSession):
    name = "elevenlabs"
    default_base_url = "https://api.elevenlabs.io"
    default_key_env = "ELEVENLABS_API_KEY"

    def __init__(self, config: ElevenLabsConfig) -> None:
        super().__init__(config)
        self.multi = config.contexts == "multi"
        self.ends_on_final = self.multi  # a single-context flush gives no final message
        self.max_contexts = MAX_CONTEXTS if self.multi else None
        self._settings_sent_on = 0  # single-context: the connection the voice settings went to

    async def open(self, report: SessionReporter, progress: Progress | None = None) -> None:
        keepalive_ms = self.config.keepalive_ms
        if keepalive_ms is not None and keepalive_ms >= self.config.inactivity_timeout_s * 1000:
            raise TTSError(f"{self.name}: tts.keepalive_ms ({self.config.keepalive_ms:g}) must be shorter than "
                           f"tts.inactivity_timeout_s ({self.config.inactivity_timeout_s} s), or the server closes "
                           "an idle session")
        await super().open(report, progress)

    @property
    def model(self) -> str:
        return self.config.model or DEFAULT_MODEL

    def _voice_path(self) -> str:
        return f"/v1/text-to-speech/{quote(self.config.voice, safe='')}"

    def _voice_settings(self) -> dict[str, Any]:
        return {"stability": 0.5, "similarity_boost": 0.8, "speed": self.config.speed}

    def _init(self) -> dict[str, Any]:
        return {"text": " ", "voice_settings": self._voice_settings(),
                "generation_config": {"chunk_length_schedule": CHUNK_LENGTH_SCHEDULE}}

    # -- hooks -----------------------------------------------------------------------------

    def websocket_url(self) -> str:
        endpoint = "multi-stream-input" if self.multi else "stream-input"
        query = urlencode({"model_id": self.model, "output_format": self.config.output_format,
                           "inactivity_timeout": self.config.inactivity_timeout_s,
                           "auto_mode": str(self.config.flush_chunks).lower(), "sync_alignment": "true"})
        return f"{self.base_url('ws')}{self._voice_path()}/{endpoint}?{query}"

    def websocket_headers(self, key: str | None) -> dict[str, str]:
        return {"xi-api-key": key} if key else {}

    def flushes_each_chunk(self) -> bool:
        return self.config.flush_chunks

    def begin_messages(self, context: str) -> list[Message]:
        if self.multi:
            return [{**self._init(), "context_id": context}]
        if self._settings_sent_on == self.connections:
            return []  # one stream per connection: its settings went with the first turn on it
        self._settings_sent_on = self.connections
        return [self._init()]

    def chunk_messages(self, context: str, text: str) -> list[Message]:
        message: dict[str, Any] = {"text": _with_one_space(text)}
        if self.multi:
            message["context_id"] = context
        if self.config.flush_chunks:
            message["flush"] = True
        return [message]

    def end_messages(self, context: str) -> list[Message]:
        if self.multi:
            return [{"context_id": context, "flush": True}, {"context_id": context, "close_context": True}]
        return [{"text": " ", "flush": True}]

    def cancel_messages(self, context: str) -> list[Message] | None:
        return [{"context_id": context, "close_context": True}] if self.multi else None

    def keepalive_messages(self, context: str | None) -> list[Message]:
        if not self.multi:
            return [{"text": " "}]  # single stream: an empty text would end it
        if context:
            return [{"text": "", "context_id": context}]
        own = self.keepalive_context()
        return [{"text": " ", "context_id": own}, {"context_id": own, "close_context": True}]

    def idle_timeout_ms(self) -> float | None:
        return self.config.inactivity_timeout_s * 1000.0

    def stated_idle_limit_ms(self, reason: str) -> float | None:
        match = _STATED_LIMIT.search(reason)
        return float(match.group(1)) * 1000.0 if match else None

    def close_messages(self) -> list[Message]:
        return [{"close_socket": True}] if self.multi else [{"text": ""}]

    def parse(self, message: str | bytes) -> list[Frame]:
        if isinstance(message, bytes):
            raise ValueError("a binary message (ElevenLabs sends JSON text)")  # noqa: TRY004 - malformed = ValueError
        data = json.loads(message)  # a JSONDecodeError is a ValueError
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")  # noqa: TRY004 - malformed = ValueError
        context = (data.get("contextId") or data.get("context_id")) if self.multi else None
        if data.get("error"):
            return [Frame(error=f"{data['error']}: {data.get('message', '')}".rstrip(": "), context=context)]
        if not _KNOWN_KEYS & data.keys():
            return [Frame(ignored=f"message with keys {', '.join(sorted(data))}"[:100])]
        audio = b""
        if data.get("audio"):
            try:
                audio = base64.b64decode(data["audio"], validate=True)
            except (binascii.Error, TypeError) as exc:
                raise ValueError(f"audio is not base64: {exc}") from None
        alignment = parse_alignment(data.get("alignment")) or parse_alignment(
            data.get("normalizedAlignment", data.get("normalized_alignment")))
        # with sync_alignment every audio message is aligned: one without alignment covers no characters
        chars = spoken_chars("".join(alignment["chars"])) if alignment else 0
        final = bool(data.get("isFinal") or data.get("is_final"))
        return [Frame(audio=audio, chars=chars if audio else None, alignment=alignment if audio else None,
                      context=context, final=final)]

    def synthesize_rest(self, client: httpx.AsyncClient, text: str) -> AsyncIterator[bytes]:
        return self.post_for_audio(client, f"{self.base_url('http')}{self._voice_path()}/stream",
                                   params={"output_format": self.config.output_format},
                                   headers=self.websocket_headers(self.key),
                                   json={"text": _with_one_space(text), "model_id": self.model,
                                         "voice_settings": self._voice_settings()})


PROVIDER = ElevenLabsSession
SETTINGS = ElevenLabsConfig
