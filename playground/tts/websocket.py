"""Persistent WebSocket TTS sessions: the provider-neutral machinery behind ElevenLabs,
Cartesia and Deepgram (one subclass each, with only the provider's messages in it).

What the base does, for every provider
--------------------------------------
- `open()` reads the API key from the environment (a missing key is a `TTSError` that
  names the variable, before the first turn) and connects, so turn 1's TTFA has no
  TLS/WebSocket handshake in it. A 401/403 at the handshake is a `TTSError` naming the
  provider and the key's variable. `persistent = false` in the preset opens no socket:
  every turn goes to the REST endpoint, reported as the deliberate choice it is.
- One reader task per connection routes server messages (`parse`) to the running turn.
- Keep-alives (`keepalive_messages`) go out when nothing was written for the keep-alive
  interval: `tts.keepalive_ms` when set, else half the server's idle limit
  (`idle_timeout_ms`, e.g. ElevenLabs' `inactivity_timeout`; 10 s when the provider
  states none). A server that closes an idle connection naming a shorter limit
  (`stated_idle_limit_ms`) gets keep-alives at half that limit from then on.
- A provider with a cap on open contexts per connection (`max_contexts`) never exceeds
  it: a context counts from its init until the server's final message for it (a closed
  context goes on speaking what it had; a keep-alive's own, with nothing to speak, 2 s at
  most); a turn's context, or a keep-alive's own, opens once a slot is free.
- A server close (1006, 1008, any code), an error message, or a stall (audio owed and
  none arrived for `tts.stall_timeout_ms`) drops the connection; the base reconnects
  until it has a connection again (or the session closes): the first attempt after
  `tts.reconnect_backoff_ms`, each delay doubling up to 2 s, later ones (in the
  background, once no reply waits) up to 10 s. A reply cut by the drop waits for
  `tts.reconnect_attempts` attempts (about 5 s with the defaults), then, per
  `tts.on_disconnect`, either resumes on the new connection ("resume": a new context,
  the chunks whose audio may not have fully arrived sent again) or speaks its rest over
  REST ("rest"). When the attempts fail, the reply goes on over REST (`tts.fallback =
  "rest"`) or fails with a named error ("none"). A turn that begins with no connection
  tries the persistent session first: an attempt at once, then REST if it fails. A
  refused key stops the attempts until the next turn. Audio the user already got is
  never repeated and none is lost: a re-synthesized chunk's first samples, as many as
  were handed to the turn before the drop, are skipped, and the chunk whose last
  character was aligned is sent again unless audio of a later chunk had arrived (audio
  after its last character, e.g. a trailing silence, may not have).
- Audio that is not the raw PCM asked for (MP3/WAV/Ogg bytes, or a sample rate that does
  not match the alignment's timing) is never played: the turn goes on over REST.
- Every step is a `tts.session` event via `report(action, data)`; `data["path"]` is how
  the turn under way (between turns: the next one) reaches TTS and `data["reason"]` why:
  `persistent` (text and audio on a connection open before the turn, undisturbed),
  `reconnected` (some of the turn's text or audio waited for a reconnect: the connection
  dropped mid-reply, or the turn began with none) or `fallback_rest`. A reconnect while
  idle, or one no chunk of the turn waited for, leaves the turn `persistent`.
  Actions: open, reuse (each turn, with connection age and turns served), keepalive,
  disconnect (the connection was lost, and why), reconnect (with `attempts` and the
  `keepalive_ms` in force), fallback, warning (a malformed or unknown message, skipped;
  a turn waiting for a context slot), close.

Attributing audio to chunks
---------------------------
The turn keeps the chunks it sent whose audio has not fully arrived, oldest first.
Audio belongs to the oldest one. A frame's `chars` (the non-space characters its
alignment covers) is subtracted from that chunk's count; when it reaches zero the chunk
is complete and the next audio belongs to the next chunk (audio whose alignment covers
only whitespace still belongs to the chunk just completed: it is its trailing space). A provider without alignment
sets `chunk_done` when the server marks a chunk's end (e.g. a per-chunk flush reply).
The turn ends at the context's `final` frame (or, for providers with `ends_on_final =
False`, once every chunk is accounted for after `flush`).

Subclass hooks (provider-specific; messages are dicts sent as JSON, or str/bytes as is)
---------------------------------------------------------------------------------------
    name, default_base_url, default_key_env           class attributes
    ends_on_final = True                              the turn ends on a `final` frame
    websocket_url() -> str                            full wss:// URL with query
    websocket_headers(key) -> dict                    auth and version headers (key: None for a loopback
                                                      server with no key configured)
    begin_messages(context) -> list                   a turn's context init
    chunk_messages(context, text) -> list             one chunk of text
    end_messages(context) -> list                     end of reply: speak all, then final
    cancel_messages(context) -> list | None           barge-in; None = reconnect to cancel
    keepalive_messages(context | None) -> list        context = the open, unflushed one; None: between
                                                      turns (`keepalive_context()` names a context of its own)
    max_contexts = None                               contexts one connection may hold open
    idle_timeout_ms() -> float | None                 the server's idle limit as configured
    stated_idle_limit_ms(reason) -> float | None      the limit a close reason names
    close_messages() -> list                          before closing the socket at exit
    flushes_each_chunk() -> bool                      audio is owed right after each chunk
    parse(message) -> list[Frame]                     raise ValueError for a malformed one
    synthesize_rest(client, text) -> AsyncIterator[bytes]   raw PCM over HTTP (fallback)
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection
from pydantic import Field
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from playground.aio import iterate_queue
from playground.core.clock import now_ms
from playground.core.presets import TTSConfig, settings
from playground.core.progress import Progress
from playground.tts.base import AudioChunk, SessionReporter, TTSError

Message = dict[str, Any] | str | bytes
_END = object()
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_BACKOFF_CAP_MS = 2000.0
# Once no reply waits for the connection, the session keeps trying, less often.
_BACKGROUND_BACKOFF_CAP_MS = 10000.0
_MIN_RETRY_MS = 50.0
DEFAULT_KEEPALIVE_MS = 10000.0
KEEPALIVE_SHARE = 0.5  # of the server's idle limit
KEEPALIVE_CONTEXT_GRACE_MS = 2000.0
# Audio shorter than this is not used to check the sample rate against the alignment.
_RATE_CHECK_MIN_MS = 400.0
_RATE_TOLERANCE = 1.5
# MPEG Layer III frame headers: second byte (with and without CRC) -> version (1, 2, 2.5 as 25),
# bitrates in kbit/s (MPEG-1, MPEG-2/2.5) and sample rates per version.
_MP3_VERSIONS = {0xFB: 1, 0xFA: 1, 0xF3: 2, 0xF2: 2, 0xE3: 25, 0xE2: 25}
_MP3_BITRATES = {True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
                 False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_MP3_RATES = {1: (44100, 48000, 32000), 2: (22050, 24000, 16000), 25: (11025, 12000, 8000)}
_MP3_SECOND_BYTES = np.array(sorted(_MP3_VERSIONS), dtype=np.uint8)


@settings
class WebSocketTTSConfig(TTSConfig):
    """The settings of every provider on this persistent-WebSocket base."""

    keepalive_ms: Annotated[float, Field(gt=0)] | None = Field(None, description=(
        "a keep-alive when nothing was sent for this long; unset: half the server's inactivity timeout (10 s when "
        "the provider states none), shortened when the server closes an idle connection naming a shorter one"))
    on_disconnect: Literal["resume", "rest"] = Field("resume", description=(
        'after a dropped connection mid-reply: "resume" the reply on the new connection, or speak its rest '
        'over "rest"'))
    reconnect_attempts: int = Field(6, ge=0, description=(
        "reconnections a reply cut by a dropped connection waits for before its rest goes over REST (the "
        "session goes on reconnecting in the background)"))
    reconnect_backoff_ms: float = Field(100.0, ge=0, description=(
        "the first reconnect delay; doubles per attempt, capped at 2 s (10 s in the background): with the "
        "defaults a reply waits about 5 s"))
    stall_timeout_ms: float = Field(5000.0, gt=0, description="audio owed and none arrived for this long: the "
                                                              "connection is treated as dead")
    connect_timeout_ms: float = Field(5000.0, gt=0, description="opening the connection")


@settings
class ChunkFlushConfig(WebSocketTTSConfig):
    """... of a provider that can leave buffering to the server instead of flushing each chunk."""

    flush_chunks: bool = Field(True, description=(
        "flush every chunk so its audio starts at once; false lets the server buffer (for chunker.strategy "
        "= passthrough)"))


def spoken_chars(text: str) -> int:
    """Characters that alignment accounts for: everything but whitespace."""
    return sum(1 for c in text if not c.isspace())


@dataclass(slots=True)
class Frame:
    """What one server message means to the session (a provider's `parse` returns these)."""

    audio: bytes = b""  # raw s16le mono PCM
    chars: int | None = None  # non-space characters of the sent text this audio speaks
    alignment: dict[str, list] | None = None  # {"chars", "start_ms", "duration_ms"}, relative to this audio
    context: str | None = None  # the context it belongs to (None: the current one)
    chunk_done: bool = False  # the server marks the end of the oldest pending chunk's audio
    final: bool = False  # the context's last message: all its audio has arrived
    error: str | None = None  # the server reports an error: the connection is dropped
    ignored: str | None = None  # a message the session does not use (reported once per kind)


@dataclass(eq=False)
class _Chunk:
    index: int
    text: str
    chars_left: int
    context: str | None = None  # the context it was sent on (so nothing is sent twice on one)
    delivered: int = 0  # samples delivered to the turn
    skip: int = 0  # samples of a re-synthesis to drop: delivered before a reconnect


@dataclass(eq=False)
class _Turn:
    number: int
    context: str
    audio: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    pending: deque[_Chunk] = field(default_factory=deque)
    last: _Chunk | None = None  # the chunk late audio (after its accounting ended) belongs to
    sent_any: bool = False
    flushed: bool = False
    begun_on: str | None = None  # context its init was sent on
    ended_on: str | None = None  # context its end-of-reply was sent on
    mode: str = "ws"  # ws | rest
    ended: bool = False
    progress_at: float = 0.0  # last time audio arrived or became owed (stall watchdog)
    leftover: bytes = b""  # an odd byte of PCM waiting for its pair
    checked_on: str | None = None  # context whose first audio was checked for a container
    resumes: int = 0
    rest_queue: asyncio.Queue[Any] | None = None
    rest_task: asyncio.Task[None] | None = None
    path: str = "persistent"  # how this turn reaches TTS (the worst so far)
    waits_for_connection: bool = False  # began with no connection: REST if the next attempt fails


def _sample_rate(output_format: str, provider: str) -> int:
    match = re.fullmatch(r"pcm_(\d+)", output_format)
    if not match:
        raise TTSError(f"{provider}: tts.output_format {output_format!r} is not raw PCM; use pcm_<rate>, e.g. pcm_22050")
    return int(match.group(1))


def _mp3_frame_length(data: bytes, at: int) -> int | None:
    """The length of the MPEG Layer III frame whose header starts at `at`, or None."""
    if at + 3 > len(data) or data[at] != 0xFF or data[at + 1] not in _MP3_VERSIONS:
        return None
    version = _MP3_VERSIONS[data[at + 1]]
    bitrate_index, rate_index, padding = data[at + 2] >> 4, data[at + 2] >> 2 & 3, data[at + 2] >> 1 & 1
    if not 0 < bitrate_index < 15 or rate_index == 3:
        return None
    bitrate = _MP3_BITRATES[version == 1][bitrate_index] * 1000
    rate = _MP3_RATES[version][rate_index]
    return (144 if version == 1 else 72) * bitrate // rate + padding


def _not_pcm(data: bytes, context_start: bool) -> str | None:
    """The container of audio that is not raw PCM, else None. MP3 is found anywhere in a message
    as three chained frame headers (chance in PCM: ~1e-12 per position); the other containers'
    signatures only at the start of a context's audio."""
    if context_start:
        for magic, kind in ((b"ID3", "MP3"), (b"RIFF", "WAV"), (b"OggS", "Ogg"), (b"fLaC", "FLAC")):
            if data.startswith(magic):
                return kind
    raw = np.frombuffer(data, dtype=np.uint8)
    candidates = np.flatnonzero((raw[:-1] == 0xFF) & np.isin(raw[1:], _MP3_SECOND_BYTES))
    for at in candidates[:256].tolist():
        position, chained = at, 0
        while chained < 3 and (length := _mp3_frame_length(data, position)):
            position, chained = position + length, chained + 1
        if chained == 3 or (chained and at == 0 and position >= len(data)):
            return "MP3"
    return None


class WebSocketTTSSession:
    """A `TTSSession` over one persistent WebSocket; subclasses supply the messages."""

    name = "websocket"
    default_base_url = ""
    default_key_env = ""
    ends_on_final = True
    max_contexts: int | None = None

    def __init__(self, config: WebSocketTTSConfig) -> None:
        self.config = config
        self.sample_rate = 0
        self._report: SessionReporter = lambda action, data: None
        self.key: str | None = None  # the API key, read from the environment at open
        self._ws: ClientConnection | None = None
        self.connections = 0  # connections made so far (a hook can send something once per connection)
        self._connected_at = 0.0
        self._reader: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        self._recovery: asyncio.Task[None] | None = None
        self._retry_now = asyncio.Event()  # a turn began with no connection: attempt now, not after the delay
        self._spawned: set[asyncio.Task[Any]] = set()
        self._write_lock = asyncio.Lock()
        self._last_write = 0.0
        self._turn: _Turn | None = None
        self._turns_served = 0
        self._reconnects = 0
        self._down_reason: str | None = None  # why there is no connection
        self._idle_limit_ms: float | None = None  # the server's idle limit: configured, or stated by a close
        self._keepalive_ms = DEFAULT_KEEPALIVE_MS
        self._keepalive_changed = asyncio.Event()  # a new connection or interval: the keep-alive timer restarts
        # Contexts open on this connection (when max_contexts): name -> when it stops counting
        # without its final (inf: only its final frees it).
        self._open_contexts: dict[str, float] = {}
        self._keepalive_contexts = 0
        self._server_error: str | None = None
        self._warned: set[str] = set()
        self._http: httpx.AsyncClient | None = None
        self._closing = False

    # -- hooks (see the module docstring) ------------------------------------------------

    def websocket_url(self) -> str:
        raise NotImplementedError

    def websocket_headers(self, key: str | None) -> dict[str, str]:
        raise NotImplementedError

    def begin_messages(self, context: str) -> list[Message]:
        raise NotImplementedError

    def chunk_messages(self, context: str, text: str) -> list[Message]:
        raise NotImplementedError

    def end_messages(self, context: str) -> list[Message]:
        raise NotImplementedError

    def cancel_messages(self, context: str) -> list[Message] | None:
        raise NotImplementedError

    def keepalive_messages(self, context: str | None) -> list[Message]:
        raise NotImplementedError

    def idle_timeout_ms(self) -> float | None:
        return None

    def stated_idle_limit_ms(self, reason: str) -> float | None:
        return None

    def close_messages(self) -> list[Message]:
        return []

    def flushes_each_chunk(self) -> bool:
        return True

    def parse(self, message: str | bytes) -> list[Frame]:
        raise NotImplementedError

    def synthesize_rest(self, client: httpx.AsyncClient, text: str) -> AsyncIterator[bytes]:
        raise NotImplementedError

    # -- helpers for subclasses ----------------------------------------------------------

    @staticmethod
    async def post_for_audio(client: httpx.AsyncClient, url: str, **request: Any) -> AsyncIterator[bytes]:
        """A REST synthesis request's body as it streams in (an HTTP error raises, its body read)."""
        async with client.stream("POST", url, **request) as response:
            if response.status_code >= 400:
                await response.aread()
            response.raise_for_status()
            async for data in response.aiter_bytes():
                yield data

    def base_url(self, scheme: str) -> str:
        """`tts.base_url` (or the provider's default) with its scheme turned to `ws` or `http`
        (kept secure when it was: https/wss), without a trailing slash."""
        parts = urlsplit(self.config.base_url or self.default_base_url)
        secure = parts.scheme in ("https", "wss")
        new_scheme = {"ws": "wss" if secure else "ws", "http": "https" if secure else "http"}[scheme]
        return urlunsplit((new_scheme, parts.netloc, parts.path.rstrip("/"), "", ""))

    @property
    def key_env(self) -> str:
        return self.config.api_key_env or self.default_key_env

    def _is_loopback(self) -> bool:
        return urlsplit(self.config.base_url or self.default_base_url).hostname in _LOOPBACK_HOSTS

    def keepalive_context(self) -> str:
        """A context of its own for a keep-alive between turns, counted as open until its final."""
        self._keepalive_contexts += 1
        context = f"keepalive-{self._keepalive_contexts}"
        # It has nothing to speak: should its final never come, its slot is taken as free soon.
        self._open_contexts[context] = now_ms() + KEEPALIVE_CONTEXT_GRACE_MS
        return context

    @property
    def path(self) -> str:
        """How the turn under way reaches TTS; between turns, how the next one will (it tries the
        persistent session first)."""
        state = self._turn
        if state is not None and not state.ended:
            return state.path
        return "persistent" if self.config.persistent else "fallback_rest"

    # -- the TTSSession protocol ---------------------------------------------------------

    async def open(self, report: SessionReporter, progress: Progress | None = None) -> None:
        self._report = report
        self.sample_rate = _sample_rate(self.config.output_format, self.name)
        self.key = os.environ.get(self.key_env) or None
        # A loopback server needs no key unless the preset names one explicitly.
        if self.key is None and (self.config.api_key_env or not self._is_loopback()):
            raise TTSError(f"{self.name}: no API key: set the environment variable {self.key_env} "
                           f"(tts.api_key_env names it)")
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.config.connect_timeout_ms / 1000.0,
                                                             read=self.config.stall_timeout_ms / 1000.0),
                                       trust_env=not self._is_loopback())
        if not self.config.persistent:
            report("open", {"path": self.path, "provider": self.name, "reason": "preset: persistent = false",
                            "deliberate": True, "sample_rate": self.sample_rate})
            return
        self._idle_limit_ms = self.idle_timeout_ms()
        self._keepalive_ms = self.config.keepalive_ms or (
            self._idle_limit_ms * KEEPALIVE_SHARE if self._idle_limit_ms else DEFAULT_KEEPALIVE_MS)
        if progress:
            progress(f"connecting to {self.name} ({self.base_url('ws')})")
        started = now_ms()
        try:
            await self._connect()
        except TTSError:
            await self._http.aclose()
            raise
        self._background = [asyncio.create_task(self._keep_alive(), name=f"tts-{self.name}-keepalive"),
                            asyncio.create_task(self._watch_stalls(), name=f"tts-{self.name}-watchdog")]
        report("open", {"path": self.path, "provider": self.name, "url": self.base_url("ws"),
                        "connect_ms": round(now_ms() - started, 1), "sample_rate": self.sample_rate,
                        "keepalive_ms": self._keepalive_ms, "on_disconnect": self.config.on_disconnect})
        if progress:
            progress(f"{self.name} session open ({self.sample_rate} Hz)")

    async def begin_turn(self, turn: int) -> None:
        if self._http is None:
            raise TTSError(f"{self.name}: begin_turn() before open()")
        self._turns_served += 1
        state = _Turn(turn, f"turn-{turn}", progress_at=now_ms())
        self._turn = state
        data: dict[str, Any] = {"provider": self.name, "turns_served": self._turns_served}
        if not self.config.persistent:
            state.path = "fallback_rest"
            self._report("reuse", {**data, "path": state.path, "reason": "preset: persistent = false"})
            self._start_rest(state)
            return
        if self._ws is None:
            # The connection dropped and is not back: this turn tries it first, with an attempt
            # now; its text waits for that attempt and goes over REST if it fails.
            state.path, state.waits_for_connection = "reconnected", True
            self._report("reuse", {**data, "path": state.path, "reconnects": self._reconnects,
                                   "reason": f"not connected ({self._down_reason or 'connection lost'})"})
            if self._recovery is None:
                self._start_recovery(self._down_reason or "connection lost")
            self._retry_now.set()
            return
        self._report("reuse", {**data, "path": state.path, "age_ms": round(now_ms() - self._connected_at, 1),
                               "reconnects": self._reconnects})
        await self._write_turn(state)

    async def send(self, chunk: int, text: str) -> None:
        state = self._turn
        if state is None or state.ended:
            return
        item = _Chunk(chunk, text, spoken_chars(text))
        if self.flushes_each_chunk() and not self._owes_audio(state):
            state.progress_at = now_ms()
        state.pending.append(item)
        state.sent_any = True
        if state.mode == "rest":
            assert state.rest_queue is not None
            state.rest_queue.put_nowait(item)
        else:
            await self._write_turn(state)

    async def flush(self) -> None:
        state = self._turn
        if state is None or state.ended:
            return
        if not self._owes_audio(state):
            state.progress_at = now_ms()
        state.flushed = True
        if state.mode == "rest":
            assert state.rest_queue is not None
            state.rest_queue.put_nowait(_END)
        elif not state.sent_any:
            self._end_turn(state)  # nothing to speak; the context is still closed on the server
            if state.begun_on == state.context:
                await self._write_messages(self.end_messages(state.context))
        else:
            await self._write_turn(state)
            if not self.ends_on_final and not state.pending:
                self._end_turn(state)  # every chunk's audio had arrived already

    def audio(self) -> AsyncIterator[AudioChunk]:
        state = self._turn
        if state is None:
            raise TTSError(f"{self.name}: audio() before begin_turn()")
        return iterate_queue(state.audio, _END)

    async def cancel(self) -> None:
        state = self._turn
        if state is None:
            return
        self._turn = None  # late audio of this turn is dropped from here on
        was_running = not state.ended
        self._end_turn(state)
        if state.rest_task is not None:
            state.rest_task.cancel()
        if not was_running or state.mode != "ws" or state.begun_on is None or self._ws is None:
            return
        messages = self.cancel_messages(state.context)
        if messages is None:  # no in-band cancel: only a new connection stops the audio
            self._drop_connection("barge-in (the protocol has no cancel message)")
        else:
            await self._write_messages(messages)

    async def close(self) -> None:
        self._closing = True
        state, self._turn = self._turn, None
        if state is not None and state.rest_task is not None:
            state.rest_task.cancel()
        tasks = [*self._background, *([self._recovery] if self._recovery else []), *self._spawned]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                for message in self.close_messages():
                    await ws.send(_encode(message))
                async with asyncio.timeout(2.0):
                    await ws.close()
            except (ConnectionClosed, OSError, TimeoutError):
                pass  # closing anyway
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None
            self._report("close", {"path": self.path, "provider": self.name, "turns_served": self._turns_served,
                                   "reconnects": self._reconnects})

    # -- connection ----------------------------------------------------------------------

    async def _connect(self) -> None:
        """Connects (or raises TTSError) and starts the connection's reader."""
        url = self.websocket_url()
        try:
            async with asyncio.timeout(self.config.connect_timeout_ms / 1000.0):
                ws = await websockets.connect(
                    url, additional_headers=self.websocket_headers(self.key), max_size=None, compression=None,
                    proxy=None if self._is_loopback() else True, open_timeout=None)
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode("utf-8", "replace").strip()[:200] if exc.response.body else ""
            detail = f" ({body})" if body else ""
            if status in (401, 403):
                raise _AuthError(f"{self.name}: the server refused the API key from {self.key_env} "
                                 f"(HTTP {status}{detail}); check that the key is valid") from None
            raise TTSError(f"{self.name}: the server refused the connection (HTTP {status}{detail})") from None
        except TimeoutError:
            raise TTSError(f"{self.name}: no connection to {self.base_url('ws')} within "
                           f"{self.config.connect_timeout_ms:g} ms (tts.connect_timeout_ms)") from None
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            hint = f" (is `playground serve-tts {self.name}` running?)" if self._is_loopback() else ""
            raise TTSError(f"{self.name}: cannot connect to {self.base_url('ws')}: {exc}{hint}") from None
        self._ws = ws
        self.connections += 1
        self._connected_at = now_ms()
        self._server_error = None
        self._down_reason = None
        self._open_contexts = {}
        self._last_write = now_ms()  # the server's idle timer starts with the connection
        self._keepalive_changed.set()
        self._reader = asyncio.create_task(self._read(ws), name=f"tts-{self.name}-reader")

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self._on_message(message)
        except ConnectionClosed:
            pass
        if ws is not self._ws or self._closing:
            return  # a connection we dropped ourselves, or the session is closing
        code = ws.close_code if ws.close_code is not None else 1006
        reason = self._server_error or ws.close_reason or "no reason given"
        self._drop_connection(f"server closed the connection ({code}: {reason})")

    def _drop_connection(self, reason: str) -> None:
        """Gives up the current connection (closed, stalled, broken) and starts a recovery."""
        ws, self._ws = self._ws, None
        self._open_contexts = {}
        if ws is not None and ws.transport is not None:
            ws.transport.abort()  # do not wait for a close handshake from a server that stalls
        limit = self.stated_idle_limit_ms(reason)
        if limit is not None and (self._idle_limit_ms is None or limit < self._idle_limit_ms):
            # The server's own limit is shorter than the one configured: keep-alives fit inside it from now on.
            self._idle_limit_ms = limit
            self._keepalive_ms = min(self._keepalive_ms, limit * KEEPALIVE_SHARE)
            self._keepalive_changed.set()
        self._down_reason = reason
        if ws is not None and not self._closing:
            self._report("disconnect", {"path": self.path, "provider": self.name, "reason": reason,
                                        "age_ms": round(now_ms() - self._connected_at, 1)})
        if self._recovery is None and not self._closing:
            self._start_recovery(reason)

    def _start_recovery(self, reason: str) -> None:
        self._retry_now.clear()
        self._recovery = asyncio.create_task(self._recover(reason), name=f"tts-{self.name}-recover")

    def _waiting_turn(self) -> _Turn | None:
        """The turn whose text or audio waits for the connection, if any."""
        state = self._turn
        return state if state is not None and not state.ended and state.mode == "ws" else None

    async def _recover(self, reason: str) -> None:
        """Reconnects until connected (or the session closes, or the key is refused)."""
        try:
            started = now_ms()
            state = self._waiting_turn()
            if state is not None and self.config.on_disconnect == "rest":
                self._fall_back(state, f"{reason}; tts.on_disconnect = rest")
            elif state is not None and self.config.reconnect_attempts == 0:
                self._fall_back(state, f"{reason}; tts.reconnect_attempts = 0; reconnecting in the background")
            delay = self.config.reconnect_backoff_ms
            attempt = 0
            while not self._closing:
                if not self._retry_now.is_set():
                    try:
                        async with asyncio.timeout(delay / 1000.0):
                            await self._retry_now.wait()
                    except TimeoutError:
                        pass
                self._retry_now.clear()
                attempt += 1
                try:
                    await self._connect()
                except TTSError as exc:
                    refused = isinstance(exc, _AuthError)  # a refused key does not get better by retrying
                    self._down_reason = f"{reason}; reconnecting failed: {exc}"
                    self._give_up_waiting(attempt, started, refused)
                    if refused:
                        return
                    cap = _BACKOFF_CAP_MS if attempt < self.config.reconnect_attempts else _BACKGROUND_BACKOFF_CAP_MS
                    delay = min(max(delay * 2, _MIN_RETRY_MS), max(cap, self.config.reconnect_backoff_ms))
                    continue
                await self._on_reconnected(reason, started, attempt)
                return
        finally:
            self._recovery = None

    def _give_up_waiting(self, attempt: int, started: float, refused: bool) -> None:
        """After a failed attempt: the waiting turn goes on over REST once it has waited enough."""
        state = self._waiting_turn()
        if state is None or not (refused or state.waits_for_connection or attempt >= self.config.reconnect_attempts):
            return
        more = "" if refused else "; reconnecting in the background"
        self._fall_back(state, f"{self._down_reason} (attempt {attempt}, {(now_ms() - started) / 1000:.1f} s after "
                               f"the drop){more}")

    async def _on_reconnected(self, reason: str, started: float, attempts: int) -> None:
        self._reconnects += 1
        state = self._waiting_turn()
        if state is not None:
            # The turn is disturbed only if some of its text or audio waited for the new connection.
            if state.pending or state.flushed or state.waits_for_connection:
                state.path = "reconnected"
            state.waits_for_connection = False
            self._resume(state)
        self._report("reconnect", {"path": self.path, "provider": self.name, "reason": reason,
                                   "downtime_ms": round(now_ms() - started, 1), "reconnects": self._reconnects,
                                   "attempts": attempts, "keepalive_ms": self._keepalive_ms,
                                   "resumed_chunks": [c.index for c in state.pending] if state else []})
        if state is not None:
            await self._write_turn(state)

    def _resume(self, state: _Turn) -> None:
        """Prepares the interrupted turn for the new connection (a new context if it had one)."""
        if state.begun_on is not None:
            state.resumes += 1
            state.context = f"turn-{state.number}-r{state.resumes}"
        state.leftover = b""
        state.progress_at = now_ms()
        self._take_back_last(state)
        for item in state.pending:
            item.skip = item.delivered
            item.chars_left = spoken_chars(item.text)

    @staticmethod
    def _take_back_last(state: _Turn) -> None:
        """Before the turn's text is spoken again (resume, REST): the chunk whose last character
        was aligned goes back to the unfinished ones unless audio of a later chunk had arrived,
        since audio after its last character (covering none, e.g. its trailing silence) may not
        have. Its delivered samples are skipped, so nothing is repeated."""
        last = state.last
        if last is not None and (not state.pending or state.pending[0].delivered == 0):
            state.pending.appendleft(last)
        state.last = None

    # -- writing -------------------------------------------------------------------------

    async def _write_messages(self, messages: list[Message]) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            async with self._write_lock:
                for message in messages:
                    await ws.send(_encode(message))
        except ConnectionClosed:
            return False  # the reader sees the close and recovers
        self._last_write = now_ms()
        return True

    async def _write_turn(self, state: _Turn) -> None:
        """Sends what the turn's current context has not had yet: init, chunks, end of reply.
        Safe to call from several places: nothing is sent twice on one context."""
        if self._ws is None:
            return
        async with self._write_lock:
            ws = self._ws
            if ws is None or state.ended or state.mode != "ws":
                return
            context = state.context
            try:
                if state.begun_on != context:
                    if self._contexts_full():
                        self._warn("context-cap", f"{len(self._open_contexts)} contexts are still open on the "
                                   f"connection (at most {self.max_contexts}): the turn's context opens when one "
                                   "of them ends")
                        return  # its final frees a slot and writes the turn again (_on_frame)
                    for message in self.begin_messages(context):
                        await ws.send(_encode(message))
                    state.begun_on = context
                    if self.max_contexts is not None:
                        self._open_contexts[context] = math.inf
                for item in list(state.pending):
                    if item.context != context:
                        for message in self.chunk_messages(context, item.text):
                            await ws.send(_encode(message))
                        item.context = context
                if state.flushed and state.ended_on != context:
                    for message in self.end_messages(context):
                        await ws.send(_encode(message))
                    state.ended_on = context
            except ConnectionClosed:
                return  # the reader sees the close and recovers
            self._last_write = now_ms()

    def _contexts_full(self) -> bool:
        """No slot for a new context on this connection."""
        if self.max_contexts is None:
            return False
        now = now_ms()
        self._open_contexts = {name: until for name, until in self._open_contexts.items() if until > now}
        return len(self._open_contexts) >= self.max_contexts

    def _spawn(self, coroutine: Any) -> None:
        """Runs a write in the background, keeping it referenced until it is done."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def _keep_alive(self) -> None:
        while True:
            due_ms = self._keepalive_ms - (now_ms() - self._last_write)
            state = self._turn
            context = state.context if state is not None and not state.ended and not state.flushed \
                and state.begun_on == state.context and state.mode == "ws" else None
            # No slot for a keep-alive context of its own: soon again (a closed context ends soon).
            if due_ms > 0 or self._ws is None or (context is None and self._contexts_full()):
                self._keepalive_changed.clear()
                try:
                    async with asyncio.timeout(max(_MIN_RETRY_MS, due_ms) / 1000.0):
                        await self._keepalive_changed.wait()
                except TimeoutError:
                    pass
                continue
            if await self._write_messages(self.keepalive_messages(context)):
                self._report("keepalive", {"path": self.path, "provider": self.name, "context": context,
                                           "age_ms": round(now_ms() - self._connected_at, 1)})

    # -- reading -------------------------------------------------------------------------

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:  # once per kind: a broken server must not flood the trace
            self._warned.add(kind)
            self._report("warning", {"provider": self.name, "message": message})

    def _on_message(self, message: str | bytes) -> None:
        try:
            frames = self.parse(message)
        except Exception as exc:  # noqa: BLE001 - whatever a message does to the parser, the reader goes on
            excerpt = message[:80] if isinstance(message, str) else f"{len(message)} bytes"
            self._warn("malformed", f"skipped a malformed message: {exc} ({excerpt!r})")
            return
        for frame in frames:
            self._on_frame(frame)

    def _on_frame(self, frame: Frame) -> None:
        if frame.ignored:
            self._warn(f"ignored:{frame.ignored}", f"ignored an unknown message: {frame.ignored}")
            return
        state = self._turn
        if frame.error:
            self._server_error = frame.error
            if frame.context is None or (state is not None and frame.context == state.context):
                self._drop_connection(f"server error: {frame.error}")
            return
        if frame.final and frame.context in self._open_contexts:
            del self._open_contexts[frame.context]  # its slot is free
            waiting = self._waiting_turn()
            if waiting is not None and waiting.begun_on != waiting.context and self._ws is not None:
                self._spawn(self._write_turn(waiting))
        if state is None or state.ended or state.mode != "ws":
            return  # audio of a cancelled or finished turn, or of a turn now spoken over REST
        if frame.context is not None and frame.context != state.context:
            return  # a context given up (cancelled, or interrupted before a resume)
        if frame.audio:
            if not self._accept_audio(state, frame):
                return
            self._on_audio(state, frame)
        if frame.chunk_done and state.pending:
            state.last = state.pending.popleft()
        if frame.final:
            if state.flushed:
                state.pending.clear()
                self._end_turn(state)
        elif not self.ends_on_final and state.flushed and not state.pending:
            self._end_turn(state)

    def _accept_audio(self, state: _Turn, frame: Frame) -> bool:
        """False (and the turn goes on over REST) when the audio is not the PCM asked for."""
        problem = None
        container = _not_pcm(frame.audio, context_start=state.checked_on != state.context)
        state.checked_on = state.context
        if container:
            problem = f"{container} bytes instead of raw PCM ({self.config.output_format})"
        elif frame.alignment and frame.alignment.get("start_ms"):
            span_ms = frame.alignment["start_ms"][-1] + frame.alignment["duration_ms"][-1]
            audio_ms = len(frame.audio) / 2 * 1000.0 / self.sample_rate
            if audio_ms >= _RATE_CHECK_MIN_MS and span_ms > 0 and not (
                    1 / _RATE_TOLERANCE <= audio_ms / span_ms <= _RATE_TOLERANCE):
                problem = (f"audio lasts {audio_ms / span_ms:.2f}x its alignment at {self.sample_rate} Hz: "
                           f"not the sample rate of {self.config.output_format}")
        if problem is None:
            return True
        messages = self.cancel_messages(state.context)
        self._fall_back(state, f"wrong audio format: {problem}")
        if messages is None:  # no in-band cancel: only a new connection stops that audio
            self._drop_connection(f"wrong audio format: {problem}")
        else:
            self._spawn(self._write_messages(messages))
        return False

    def _on_audio(self, state: _Turn, frame: Frame) -> None:
        data = state.leftover + frame.audio
        state.leftover = data[len(data) - len(data) % 2:]
        samples = np.frombuffer(data[:len(data) - len(data) % 2], dtype="<i2").astype(np.int16, copy=False)
        state.progress_at = now_ms()
        # Audio whose alignment covers no character but whitespace is the tail of the chunk just
        # completed (its trailing space or silence), not the start of the next one.
        trailing = frame.chars == 0 and state.last is not None
        target = state.pending[0] if state.pending and not trailing else state.last
        if target is None:
            return  # audio with no chunk sent: nothing it could speak
        self._deliver(state, target, samples, frame.alignment)
        if frame.chars is None:
            return
        chars = frame.chars
        while state.pending and chars > 0:
            head = state.pending[0]
            used = min(chars, head.chars_left)
            head.chars_left -= used
            chars -= used
            if head.chars_left <= 0:
                state.last = state.pending.popleft()

    def _deliver(self, state: _Turn, item: _Chunk, samples: np.ndarray, alignment: dict | None) -> None:
        if item.skip:
            dropped = min(item.skip, len(samples))
            item.skip -= dropped
            samples = samples[dropped:]
            alignment = None  # its times no longer match the trimmed audio
        if len(samples) == 0:
            return
        item.delivered += len(samples)
        state.audio.put_nowait(AudioChunk(samples, self.sample_rate, item.index, now_ms(), alignment))

    def _end_turn(self, state: _Turn) -> None:
        if not state.ended:
            state.ended = True
            state.audio.put_nowait(_END)

    # -- stall watchdog ------------------------------------------------------------------

    def _owes_audio(self, state: _Turn) -> bool:
        return not state.ended and (state.flushed or (self.flushes_each_chunk() and bool(state.pending)))

    async def _watch_stalls(self) -> None:
        limit_ms = self.config.stall_timeout_ms
        while True:
            await asyncio.sleep(min(100.0, limit_ms / 5) / 1000.0)
            state = self._turn
            if state is None or state.mode != "ws" or self._ws is None or not self._owes_audio(state):
                continue
            waited = now_ms() - state.progress_at
            if waited > limit_ms:
                state.progress_at = now_ms()
                self._drop_connection(f"stall: no audio for {waited / 1000:.1f} s while audio was owed "
                                      f"(tts.stall_timeout_ms = {limit_ms:g})")

    # -- REST --------------------------------------------------------------------------

    def _fall_back(self, state: _Turn, reason: str) -> None:
        """Speaks the rest of the turn over REST, starting with the chunks whose audio has not
        fully arrived; never silently. With tts.fallback = "none" the turn fails instead."""
        if self.config.fallback == "none":
            self._report("fallback", {"path": state.path, "provider": self.name, "reason": f"{reason}; "
                                      "tts.fallback = none: the turn fails"})
            state.ended = True
            state.audio.put_nowait(TTSError(f"{self.name}: {reason} (tts.fallback = none, so no REST fallback)"))
            return
        state.path = "fallback_rest"
        self._take_back_last(state)
        self._report("fallback", {"path": state.path, "provider": self.name, "reason": reason,
                                  "resent_chunks": [c.index for c in state.pending]})
        self._start_rest(state)
        assert state.rest_queue is not None
        for item in state.pending:
            item.skip = item.delivered
            state.rest_queue.put_nowait(item)
        if state.flushed:
            state.rest_queue.put_nowait(_END)

    def _start_rest(self, state: _Turn) -> None:
        state.mode = "rest"
        state.rest_queue = asyncio.Queue()
        state.rest_task = asyncio.create_task(self._speak_rest(state), name=f"tts-{self.name}-rest")

    async def _speak_rest(self, state: _Turn) -> None:
        assert state.rest_queue is not None and self._http is not None
        while True:
            item = await state.rest_queue.get()
            if item is _END:
                self._end_turn(state)
                return
            leftover = b""
            try:
                async for data in self.synthesize_rest(self._http, item.text):
                    data = leftover + data
                    cut = len(data) - len(data) % 2
                    leftover = data[cut:]
                    if cut:
                        self._deliver(state, item, np.frombuffer(data[:cut], dtype="<i2"), None)
            except httpx.HTTPStatusError as exc:
                self._fail_turn(state, f"REST synthesis of chunk {item.index} failed: HTTP "
                                       f"{exc.response.status_code} from {exc.request.url.copy_with(query=None)}")
                return
            except Exception as exc:  # noqa: BLE001 - network or provider errors fail the turn, never hang it
                self._fail_turn(state, f"REST synthesis of chunk {item.index} failed: {exc!r}")
                return
            if state.pending and state.pending[0] is item:
                state.pending.popleft()

    def _fail_turn(self, state: _Turn, message: str) -> None:
        if not state.ended:
            state.ended = True
            state.audio.put_nowait(TTSError(f"{self.name}: {message}"))


class _AuthError(TTSError):
    """The server refused the key at the handshake."""


def _encode(message: Message) -> str | bytes:
    return message if isinstance(message, (str, bytes)) else json.dumps(message, separators=(",", ":"))
