"""The `deepgram` session: Deepgram Aura's `/v1/speak` WebSocket, opened once and reused.

`Authorization: Token <key>`; the model, `encoding=linear16` and the sample rate are
query parameters. Each chunk is a `Speak`; the end of a reply is a `Flush`, answered by
`Flushed` (the turn's last audio has arrived); barge-in is a `Clear`, answered by
`Cleared`; `Close` at exit. Audio comes as binary frames.

The socket has no contexts: audio and a `Flushed` still on the wire when a turn is
cleared belong to the cleared turn, so everything up to its `Cleared` is dropped. The
frames carry no text either, so a reply's audio is attributed to its first unfinished
chunk. Every `Warning` is reported as a `tts.session` warning; one refusing a Flush
(more than 20 a minute) means the reply's end would never be confirmed, so it is treated
as an error: the session reconnects and resumes the turn. The REST fallback is
`POST /v1/speak` with `container=none` (raw PCM).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Literal
from urllib.parse import urlencode

import httpx

from playground.core.presets import settings
from playground.tts.websocket import Frame, Message, WebSocketTTSConfig, WebSocketTTSSession

DEFAULT_MODEL = "aura-asteria-en"
_SKIPPED = {"Metadata"}


@settings
class DeepgramConfig(WebSocketTTSConfig):
    provider: Literal["deepgram"] = "deepgram"


class DeepgramSession(WebSocketTTSSession):
    name = "deepgram"
    default_base_url = "https://api.deepgram.com"
    default_key_env = "DEEPGRAM_API_KEY"

    def __init__(self, config: DeepgramConfig) -> None:
        super().__init__(config)
        self._clears_owed = 0  # Clear messages whose Cleared has not arrived yet
        self._clears_connection = 0  # ... on this connection (a new one owes none)

    def _query(self, **extra: str) -> str:
        return urlencode({"model": self.config.model or DEFAULT_MODEL, "encoding": "linear16",
                          "sample_rate": self.sample_rate, **extra})

    def _clearing(self) -> bool:
        return self._clears_owed > 0 and self._clears_connection == self.connections

    # -- hooks -----------------------------------------------------------------------------

    def websocket_url(self) -> str:
        return f"{self.base_url('ws')}/v1/speak?{self._query()}"

    def websocket_headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Token {key}"} if key else {}

    def flushes_each_chunk(self) -> bool:
        # Deepgram speaks held text at natural boundaries; only a Flush makes audio certain.
        return False

    def begin_messages(self, context: str) -> list[Message]:
        return []  # one stream per socket: nothing opens a reply

    def chunk_messages(self, context: str, text: str) -> list[Message]:
        return [{"type": "Speak", "text": _speakable(text)}]

    def end_messages(self, context: str) -> list[Message]:
        return [{"type": "Flush"}]

    def cancel_messages(self, context: str) -> list[Message] | None:
        if self._clears_connection != self.connections:
            self._clears_connection, self._clears_owed = self.connections, 0
        self._clears_owed += 1
        return [{"type": "Clear"}]

    def keepalive_messages(self, context: str | None) -> list[Message]:
        return [{"type": "Speak", "text": ""}]  # adds nothing to the buffer; Deepgram has no keep-alive message

    def close_messages(self) -> list[Message]:
        return [{"type": "Close"}]

    def parse(self, message: str | bytes) -> list[Frame]:
        if isinstance(message, bytes):
            return [] if self._clearing() else [Frame(audio=message)]
        data = json.loads(message)  # a JSONDecodeError is a ValueError
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")  # noqa: TRY004 - malformed = ValueError
        kind = data.get("type")
        if kind == "Cleared":
            self._clears_owed = max(0, self._clears_owed - 1)
            return []
        if kind == "Flushed":
            return [] if self._clearing() else [Frame(final=True)]
        if kind == "Warning":
            return self._on_warning(str(data.get("description", "")), str(data.get("code", "")))
        if kind in _SKIPPED:
            return []
        return [Frame(ignored=f"message type {kind!r}"[:100])]

    def _on_warning(self, description: str, code: str) -> list[Frame]:
        reason = f"Deepgram warning {code}: {description}".strip()
        self._report("warning", {"provider": self.name, "message": reason, "code": code})
        if "flush" in f"{code} {description}".lower():
            return [Frame(error=f"the Flush was refused ({reason}); the reply's end would never be confirmed")]
        return []

    def synthesize_rest(self, client: httpx.AsyncClient, text: str) -> AsyncIterator[bytes]:
        return self.post_for_audio(client, f"{self.base_url('http')}/v1/speak?{self._query(container='none')}",
                                   headers=self.websocket_headers(self.key), json={"text": _speakable(text)})


def _speakable(text: str) -> str:
    """A chunk as sent, over the socket and over REST alike (so a re-synthesis matches): the
    socket's buffer joins texts as sent, so each brings its own separating space."""
    return text.strip() + " "


PROVIDER = DeepgramSession
SETTINGS = DeepgramConfig
