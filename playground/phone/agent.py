"""`playground serve-agent`: the playground's own pipeline answering phone calls over a carrier's
media-stream WebSocket (Twilio or Telnyx dialect).

Each WebSocket is one call and one `Session` (a preset's LLM, chunker and persistent TTS
session), with its own trace. The server keeps one session opened ahead (models loaded, TTS
session open) for the next call, so a call's first turn does not wait for models to load. The caller's audio goes through the same voice loop as the
microphone (Silero VAD, faster-whisper: one Whisper model shared by every call), the reply
plays into a `CallOutput` that streams 20 ms μ-law frames at real-time rate, a `mark` after
each chunk, and `clear` when the caller speaks over the reply (barge-in cancels the turn).
The caller's `mark` echoes are recorded with their round trip. Besides the engine's events,
the trace holds the `phone.*` events (`playground.core.events`) that place each turn in the
caller's stream, so a caller can relate its own timing to the agent's.
"""

from __future__ import annotations

import asyncio
import copy
import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from playground.core import events as ev
from playground.core.clock import now_ms
from playground.core.metrics import TurnMetrics
from playground.core.presets import Preset
from playground.engine import build
from playground.engine.session import Prelude, Session
from playground.engine.voice import HANDS_FREE, VoiceLoop
from playground.export.jsonl import JsonlTraceWriter, open_trace_writer
from playground.phone import dialects as dl
from playground.phone.events import emit, prelude_entry
from playground.phone.media import CallInput, CallOutput
from playground.phone.report import trace_file_name
from playground.stt.whisper import WhisperSTT

START_TIMEOUT_S = 10.0  # a carrier sends `start` right after `connected`
ERRORS_RECORDED_PER_KIND = 20  # a carrier repeating a fault every 20 ms must not flood the trace

Log = Callable[[str], None]


class CallListener(VoiceLoop):
    """The voice loop on a call: hands-free, the server's shared Whisper model, and each turn's
    end of speech placed in the caller's stream (`phone.eos`, with the VAD's events)."""

    def __init__(self, session: Session, preset: Preset, source: CallInput, stt: WhisperSTT,
                 on_turn: Callable[[str, asyncio.Task[TurnMetrics]], None]) -> None:
        config = copy.copy(preset.input)
        config.interim_ms = 0  # interim transcripts are for a screen; on a call they only take cores
        super().__init__(session, config, mode=HANDS_FREE, source=source, on_turn=on_turn)
        self.stt = stt
        self.call_input = source

    def _prelude(self, u: Any, text: str, final_ms: float) -> list[Prelude]:
        entries = super()._prelude(u, text, final_ms)
        end_stream = self.call_input.stream_ms_at(u.end.t_ms)
        arrival = self.call_input.arrival_at(end_stream) if end_stream is not None else None
        eos = prelude_entry(ev.PhoneEndOfSpeech, u.end_detected_ms, stream_ms=end_stream,
                            last_voiced_stream_ms=self.call_input.stream_ms_at(u.end.last_voiced_ms),
                            lag_ms=None if arrival is None else u.end_detected_ms - arrival)
        return [*entries, eos]


class AgentCall:
    """One call: reads the carrier's messages, runs the session, writes the agent's messages."""

    def __init__(self, server: AgentServer, ws: web.WebSocketResponse) -> None:
        self.server = server
        self.ws = ws
        self.dialect = server.dialect
        self.start: dl.Start | None = None
        self.session: Session | None = None
        self.trace_path: Path | None = None
        self.end_reason = ""
        self.media_received = 0
        self.frames_sent = 0
        self.errors: dict[str, int] = {}
        self.input = CallInput()
        self._listener: CallListener | None = None
        self._writer: JsonlTraceWriter | None = None
        self._outbox: asyncio.Queue[tuple[str, Callable[[float], None] | None] | None] = asyncio.Queue()
        self._started = asyncio.Event()
        self._ended = asyncio.Event()
        self._clocks: dict[int, ev.TurnClock] = {}
        self._marks_sent: dict[str, float] = {}
        self._audio_turns: set[int] = set()
        self._audio_since_clear = False
        self._barge_ins_seen = 0

    @property
    def call_id(self) -> str:
        return self.start.call_id if self.start else "?"

    # -- the call -------------------------------------------------------------------------

    async def run(self) -> None:
        reader = asyncio.create_task(self._read(), name="call-reader")
        writer = asyncio.create_task(self._write(), name="call-writer")
        try:
            started = asyncio.create_task(self._started.wait())
            ended = asyncio.create_task(self._ended.wait())
            await asyncio.wait({started, ended}, timeout=self.server.start_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
            ended.cancel()
            if self._started.is_set() and not self._ended.is_set():
                await self._answer()
                await self._ended.wait()
            elif not self._ended.is_set():
                self._end("start_timeout", f"no `start` within {self.server.start_timeout_s:.0f} s of the connection")
        finally:
            await self._hang_up()
            self._outbox.put_nowait(None)
            await asyncio.gather(writer, return_exceptions=True)
            if not self.ws.closed:
                code = WSCloseCode.OK if self.end_reason in ("stop", "closed", "server_stopped") \
                    else WSCloseCode.POLICY_VIOLATION
                await self.ws.close(code=code, message=self.end_reason.encode())
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _answer(self) -> None:
        """Opens the call's session and starts listening (caller audio queues meanwhile)."""
        assert self.start is not None
        preset = self.server.preset
        try:
            session = self.session = await self.server.take_session()
        except Exception as exc:  # a provider that cannot load ends the call, not the server
            self.server.log(f"call {self.call_id}: could not open the session: {exc}")
            self._end("session_failed", str(exc))
            return
        session.output.connect(self._on_frame, self._on_stop)
        session.trace.header = {**session.trace.header, "phone": {
            "dialect": self.dialect.name, "call_id": self.start.call_id, "stream_id": self.start.stream_id}}
        if self.server.trace_dir is not None:
            self.trace_path = self.server.trace_dir / trace_file_name(self.start.call_id)
            self._writer = open_trace_writer(self.trace_path, session.trace.header)
            self._writer.follow(session.trace)  # what opening the session recorded, then every event
        session.trace.subscribe(self._on_event)
        emit(self._session_clock(), ev.PhoneCall, now_ms(), dialect=self.dialect.name, stream_id=self.start.stream_id,
             call_id=self.start.call_id, account_id=self.start.account_id, media_format=self.start.media_format,
             custom_parameters=self.start.custom_parameters)
        self._listener = CallListener(session, preset, self.input, self.server.stt, self._on_turn)
        if not await self._listener.open():
            self._end("session_failed", self._listener.state.reason)
            return
        self.server.log(f"call {self.call_id}: answered ({self.dialect.name}, stream {self.start.stream_id})")

    async def _hang_up(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self.session is not None:
            await self.session.close()
            emit(self._session_clock(), ev.PhoneStop, now_ms(), reason=self.end_reason,
                 media_received=self.media_received, frames_sent=self.frames_sent)
        if self._writer is not None:
            self._writer.close()
        self.server.log(f"call {self.call_id}: ended ({self.end_reason}); {self.media_received} media messages in, "
                        f"{self.frames_sent} out" + (f"; trace {self.trace_path}" if self.trace_path else ""))

    def _end(self, reason: str, message: str = "") -> None:
        if self._ended.is_set():
            return
        self.end_reason = reason
        if message:
            self._error(reason, message)
        self._ended.set()

    def stop(self) -> None:
        """The server is stopping: end the call now."""
        self._end("server_stopped")

    # -- carrier -> agent -----------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                arrival = now_ms()
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._receive(message.data, arrival)
                if self._ended.is_set():
                    return
        finally:
            self._end("closed")  # the socket closed without `stop` (or after it: no change)

    def _receive(self, data: str | bytes, arrival: float) -> None:
        try:
            message = self.dialect.parse_from_carrier(data)
        except dl.ProtocolError as exc:
            self._error(exc.kind, str(exc))
            if not isinstance(exc.parsed, dl.Media) or self.start is None:
                if exc.kind == dl.BAD_FORMAT:
                    self._end(dl.BAD_FORMAT)
                return
            message = exc.parsed  # a frame of an unusual size still carries the caller's voice
        if isinstance(message, dl.Start):
            if self.start is None:
                self.start = message
                self._started.set()
        elif isinstance(message, dl.Media):
            if self.start is None:
                self._end(dl.NO_START, "media before `start`: the carrier must announce the stream first")
                return
            self.media_received += 1
            self.input.feed(message.payload, arrival)
        elif isinstance(message, dl.Mark):
            self._mark_echoed(message.name, arrival)
        elif isinstance(message, dl.Stop):
            self._end("stop")

    def _error(self, kind: str, message: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if self.errors[kind] == 1:
            self.server.log(f"call {self.call_id}: {kind}: {message}")
        if self.session is not None and self.errors[kind] <= ERRORS_RECORDED_PER_KIND:
            emit(self._current_clock(), ev.PhoneError, now_ms(), kind=kind, message=message)
        else:
            self.server.rejected.append((kind, message))

    # -- agent -> carrier -----------------------------------------------------------------

    def _send(self, text: str, on_sent: Callable[[float], None] | None = None) -> None:
        self._outbox.put_nowait((text, on_sent))

    async def _write(self) -> None:
        while (item := await self._outbox.get()) is not None:
            text, on_sent = item
            if self.ws.closed:
                continue
            sent = now_ms()
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):  # the caller is gone: its end is read by _read
                continue
            if on_sent is not None:
                on_sent(sent)

    def _on_frame(self, frame: bytes, started: list[Any]) -> None:
        assert self.start is not None
        self.frames_sent += 1
        self._audio_since_clear = True
        first = [turn for turn, _chunk, _piece in started if turn not in self._audio_turns]
        self._audio_turns.update(first)
        on_sent = self._on_first_frame_sent(first[0]) if first else None
        self._send(self.dialect.agent_media(self.start.stream_id, frame), on_sent)

    def _on_first_frame_sent(self, turn: Any) -> Callable[[float], None]:
        """When a turn's first audio frame is on the wire: phone.audio_out in its trace."""
        def on_sent(sent: float) -> None:
            since = None if self.input.last_arrival_ms is None else sent - self.input.last_arrival_ms
            emit(self._clock(turn), ev.PhoneAudioOut, sent, stream_ms=self.input.received_ms, since_ms=since)
        return on_sent

    def _on_stop(self) -> None:
        """The session stopped playback (barge-in, or a failed turn): drop what the carrier still holds."""
        if self.start is None or not self._audio_since_clear:
            return
        self._audio_since_clear = False
        barge_ins = self._listener.state.barge_ins if self._listener is not None else 0
        reason = "barge-in" if barge_ins > self._barge_ins_seen else "reply stopped"
        self._barge_ins_seen = barge_ins
        self._send(self.dialect.agent_clear(self.start.stream_id))
        emit(self._current_clock(), ev.PhoneClear, now_ms(), reason=reason)

    def _send_mark(self, turn: int, chunk: int) -> None:
        assert self.start is not None
        name = f"{turn}.{chunk}"
        self._marks_sent[name] = now_ms()
        self._send(self.dialect.agent_mark(self.start.stream_id, name))
        emit(self._clock(turn), ev.PhoneMark, now_ms(), name=name, chunk=chunk)

    def _mark_echoed(self, name: str, arrival: float) -> None:
        sent = self._marks_sent.pop(name, None)
        if sent is None:
            self._error(dl.UNKNOWN_EVENT, f"an echo of mark {name!r}, which this agent did not send")
            return
        emit(self._clock(int(name.split(".")[0])), ev.PhoneMarkEcho, arrival, name=name, rtt_ms=arrival - sent)

    # -- the session's trace ----------------------------------------------------------------

    def _on_event(self, event: ev.TraceEvent) -> None:
        if isinstance(event, ev.TurnStart):
            assert self.session is not None
            self._clocks[event.turn] = ev.TurnClock(self.session.trace, event.turn,
                                                    self.session.started_at + (event.session_ms or 0.0))
        elif isinstance(event, ev.PlayEnd) and not event.cut:
            # after this event is recorded, so the mark's own event follows it in the trace
            asyncio.get_running_loop().call_soon(self._send_mark, event.turn, event.chunk)
        elif isinstance(event, ev.VadSpeechEnd) and event.ignored:
            # the caller hears nothing back: the server's log says why
            self.server.log(f"call {self.call_id}: speech made no turn ({event.ignored}"
                            + (f"; {event.speech_ms:.0f} ms of speech)" if event.speech_ms is not None else ")"))

    def _clock(self, turn: int) -> ev.TurnClock:
        return self._clocks.get(turn) or self._session_clock()

    def _current_clock(self) -> ev.TurnClock:
        return self._clock(self.session.turn_count) if self.session is not None else self._session_clock()

    def _session_clock(self) -> ev.TurnClock:
        assert self.session is not None
        return ev.TurnClock(self.session.trace, ev.SESSION_TURN, self.session.started_at)

    def _on_turn(self, text: str, task: asyncio.Task[TurnMetrics]) -> None:
        def done(finished: asyncio.Task[TurnMetrics]) -> None:
            if finished.cancelled():
                return
            m = finished.result()
            cells = " ".join(f"{label} {value:.0f}" for label, value in (
                ("VAD_END", m.vad_end), ("STT", m.stt), ("TTFA", m.ttfa), ("FIRST_PLAY", m.first_play),
                ("USER_LATENCY", m.user_latency)) if value is not None)
            status = "" if m.status == "ok" else f" {m.status.upper()}"
            self.server.log(f"call {self.call_id} turn {m.turn}: {text!r}: {cells}{status}")
        task.add_done_callback(done)


@dataclass(frozen=True)
class CallRecord:
    """What the server remembers of a finished call."""

    call_id: str
    trace_path: Path | None
    end_reason: str
    errors: dict[str, int]
    media_received: int
    frames_sent: int


@dataclass
class AgentServer:
    """Serves calls on ws://host:port/ (any path): one `AgentCall` per WebSocket."""

    preset: Preset
    dialect: dl.Dialect
    trace_dir: Path | None = None
    log: Log = lambda message: None
    start_timeout_s: float = START_TIMEOUT_S

    def __post_init__(self) -> None:
        self.stt = WhisperSTT(self.preset.input.stt_model, self.preset.input.stt_threads)
        self.calls: set[AgentCall] = set()
        self.finished: list[CallRecord] = []
        self.rejected: list[tuple[str, str]] = []  # protocol errors of connections that never became calls
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._spare: asyncio.Task[Session] | None = None

    async def open_session(self) -> Session:
        """A session of the preset, opened (models loaded, TTS session open), playing into a call."""
        return await build.open_session(self.preset, output=CallOutput())

    def open_spare(self) -> None:
        """Starts opening a session for the next call. (llama.cpp's loading sends the process's
        stdout and stderr to /dev/null while it runs: say what must be seen before this.)"""
        if self._spare is None:
            self._spare = asyncio.create_task(self.open_session(), name="spare-session")

    async def take_session(self) -> Session:
        """The spare session, opened before this call came (its first turn does not wait for models
        to load), and a new spare for the next call; or a session opened now."""
        spare, self._spare = self._spare, None
        session = None
        if spare is not None:
            try:
                session = await spare
            except Exception as exc:  # noqa: BLE001 - said, then a session opened now shows the error
                self.log(f"the spare session could not open: {exc}")
        if session is None:
            session = await self.open_session()
        self.open_spare()
        return session

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """`prepare`, then `listen`: the URL to call."""
        await self.prepare()
        return await self.listen(host, port)

    async def prepare(self) -> None:
        """Loads the shared speech recognition and opens the first call's session, so a call that
        comes as soon as the server listens is answered at once."""
        if self.trace_dir is not None:
            self.trace_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.stt.load)
        self.open_spare()
        await asyncio.shield(self._spare)

    async def listen(self, host: str, port: int) -> str:
        """Listens on ws://host:port/ and returns that URL (port 0: a free one)."""
        app = web.Application()
        app.router.add_get("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.url = f"ws://{host}:{bound_port}/"
        return self.url

    async def stop(self) -> None:
        for call in list(self.calls):
            call.stop()
        while self.calls:
            await asyncio.sleep(0.01)
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.cancel()
            session = (await asyncio.gather(spare, return_exceptions=True))[0]
            if isinstance(session, Session):
                await session.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        call = AgentCall(self, ws)
        self.calls.add(call)
        try:
            await call.run()
        finally:
            self.calls.discard(call)
            self.finished.append(CallRecord(call.call_id, call.trace_path, call.end_reason, dict(call.errors),
                                            call.media_received, call.frames_sent))
            # Each session froze the heap it found (Session.open: gc.freeze); a call that has ended
            # must not stay frozen with it, or its reference cycles would never be collected.
            gc.unfreeze()
        return ws
