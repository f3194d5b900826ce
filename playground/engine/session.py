"""The session and the turn pipeline: LLM -> chunker -> TTS -> playback, concurrently.

A `Session` owns what lives across turns (LLM, the persistent TTS session, the audio
output, the conversation) and runs one turn at a time. Inside a turn two tasks run
side by side: the producer (LLM tokens into the chunker, chunks to TTS, plus a
deadline watcher so the chunker can cut when no token comes) and the audio consumer
(TTS audio to the output). Every step is a trace event stamped where its data
arrived; the CLI and the UI only read the trace.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import platform
import statistics
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import msgspec
import numpy as np

from playground import __version__
from playground.audio.levels import first_audible_ms
from playground.chunking import Chunk, Chunker
from playground.core import events as ev
from playground.core.clock import now_ms
from playground.core.metrics import TurnMetrics, budget_misses, compute_metrics
from playground.core.presets import Preset
from playground.core.progress import Progress
from playground.engine import collector
from playground.llm.base import LLMError, LLMProvider, Message
from playground.tts.base import TTSError, TTSSession

MAX_INPUT_CHARS = 100_000
DRAIN_MARGIN_S = 5.0
# Silence between two pieces of a reply's audio longer than this is a playback gap (the output
# ran dry while more audio was coming); shorter ones are block granularity, not heard.
PLAYBACK_GAP_MIN_MS = 30.0
# The TTS's time from a chunk's text to its first audio, before any was measured in the session.
DEFAULT_CHUNK_TTFA_MS = 300.0


# An event that led to a turn, recorded in it right after its turn.start: (event type, monotonic ms, its fields).
Prelude = tuple[type[ev.TraceEvent], float, dict[str, Any]]


class AudioStalled(RuntimeError):
    """The output device stopped taking audio before the turn's playback finished."""


class InputRefused(ValueError):
    """User input the session will not turn into a turn (empty, too long)."""


def check_input(text: str) -> str:
    if not text or not text.strip():
        raise InputRefused("nothing to say: the input is empty")
    if len(text) > MAX_INPUT_CHARS:
        raise InputRefused(f"input too long ({len(text):,} characters; at most {MAX_INPUT_CHARS:,})")
    return text.strip()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class _TurnState:
    """Bookkeeping of one running turn (playback marks, cancellation)."""

    clock: ev.TurnClock
    reply: list[str] = field(default_factory=list)
    pieces_queued: dict[int, int] = field(default_factory=dict)
    pieces_done: dict[int, int] = field(default_factory=dict)
    last_end: dict[int, float] = field(default_factory=dict)
    audio_complete: set[int] = field(default_factory=set)
    started: set[int] = field(default_factory=set)
    ended: set[int] = field(default_factory=set)
    audio_ms: float = 0.0  # duration of all audio handed to the output
    sent_any: bool = False  # a chunk was handed to TTS
    sent_at: dict[int, float] = field(default_factory=dict)  # chunk -> when its text went to TTS
    chunker: Chunker | None = None
    chunker_changed: asyncio.Event | None = None  # wakes the deadline watcher (a new lead)
    # When the audio queued so far will have played out, at real-time rate (monotonic ms).
    play_until: float = 0.0
    # (chunk, piece) -> ms from the piece's first sample to its first audible one (None: silent)
    audible_offset: dict[tuple[int, int], float | None] = field(default_factory=dict)
    last_piece_end: float | None = None
    heard: bool = False  # FIRST_SOUND recorded
    cancel_reason: str | None = None
    cancel_requested_at: float | None = None
    # (event type, monotonic ms, its fields) of what led to the turn (a spoken turn's VAD and STT events)
    prelude: list[Prelude] = field(default_factory=list)


class Session:
    def __init__(
        self,
        preset: Preset,
        llm: LLMProvider,
        tts: TTSSession,
        output: Any,
        progress: Progress | None = None,
    ) -> None:
        self.preset = preset
        self.llm = llm
        self.tts = tts
        self.output = output
        self.progress: Progress = progress or (lambda message, fraction=None: None)
        self.trace = ev.Trace()
        self.history: list[Message] = []
        self.started_at = now_ms()
        self.turn_count = 0
        self._turn: _TurnState | None = None
        self._task: asyncio.Task[TurnMetrics] | None = None
        self._send_lock = asyncio.Lock()
        # Recent times from a chunk's text to its first audio: the chunker's lead subtracts them.
        self._chunk_ttfa_ms: deque[float] = deque(maxlen=20)
        # Muted playback still runs (silence of the same length), so FIRST_PLAY stays measured.
        self.muted = False

    # -- lifecycle ----------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        return {
            "playground": __version__,
            "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "preset": self.preset.to_json(),
            "providers": {
                "llm": {"name": self.llm.name, "model": self.llm.model},
                "tts": {"name": self.tts.name, "voice": self.preset.tts.voice},
                "audio": getattr(self.output, "name", "?"),
            },
            "versions": {
                "python": platform.python_version(),
                **{name: _package_version(name) for name in ("llama-cpp-python", "piper-tts", "numpy", "sounddevice")},
            },
        }

    async def open(self) -> None:
        """Loads the LLM and opens the persistent TTS session, before any turn (the output is open)."""
        self.trace.header = self.header()
        self.output.set_listener(self._on_playback)
        await asyncio.gather(
            self.load_component("llm", self.llm.name, self.llm.load),
            self.load_component("tts", self.tts.name, lambda progress: self.tts.open(self._on_tts_session, progress)),
        )
        self.trace.header = self.header()  # now with what opening learned (devices, voice)
        # The models and modules now loaded live as long as the session: keep the cyclic
        # collector from rescanning them (a full collection holds the GIL; with them it took
        # 20-80 ms, stalling every thread: python -m playground.bench.tui).
        gc.freeze()

    async def load_component(self, component: str, provider: str,
                             load: Callable[[Progress], Awaitable[Any]]) -> Any:
        """Runs one component's loading (llm, tts, stt), recorded as `session.load` events:
        loading, each progress message it reports (from any thread), then ready or failed.
        The UI's loading bar shows them; the session's own `progress` callback gets the messages too."""
        loop = asyncio.get_running_loop()
        started = now_ms()

        def record(state: str, **data: Any) -> None:
            self._session_event(ev.SessionLoad, component=component, provider=provider, state=state, **data)

        def on_loop(message: str) -> None:
            record("progress", message=message)
            self.progress(message)

        def progress(message: str) -> None:
            if _running_loop() is loop:
                on_loop(message)
            else:  # loaders report from worker threads too; the trace is appended on the loop only
                loop.call_soon_threadsafe(on_loop, message)

        record("loading")
        try:
            result = await load(progress)
        except BaseException as exc:
            record("failed", ms=round(now_ms() - started, 1), message=str(exc) or type(exc).__name__)
            raise
        record("ready", ms=round(now_ms() - started, 1))
        return result

    async def close(self) -> None:
        self.cancel_turn("session closed")
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        for closer in (self.tts.close, self.llm.close, self.output.close):
            try:
                await closer()
            except Exception as exc:  # closing must go on for the others
                self._session_event(ev.Error, where="close", message=str(exc))

    # -- turns --------------------------------------------------------------------------

    def start_turn(self, text: str, t0: float | None = None, input_kind: str = "typed",
                   prelude: Iterable[Prelude] = ()) -> asyncio.Task[TurnMetrics]:
        """Starts a turn (t0 = now unless given); `await` the task for its metrics.

        `prelude`: events that led to the turn, e.g. a spoken turn's VAD and STT events
        (type, monotonic ms, data), recorded in the turn right after its turn.start."""
        text = check_input(text)
        if self._task is not None and not self._task.done():
            raise RuntimeError("a turn is already running: cancel it first")
        self.turn_count += 1
        clock = ev.TurnClock(self.trace, self.turn_count, now_ms() if t0 is None else t0)
        self._turn = _TurnState(clock, prelude=list(prelude))
        self._task = asyncio.create_task(self._run_turn(self._turn, text, input_kind), name=f"turn-{self.turn_count}")
        return self._task

    async def run_turn(self, text: str, t0: float | None = None) -> TurnMetrics:
        return await self.start_turn(text, t0)

    def last_user_text(self) -> str | None:
        starts = [e for e in self.trace.events if isinstance(e, ev.TurnStart)]
        return starts[-1].text if starts else None

    def forget_last_exchange(self) -> None:
        """Drops the last user message and its reply from the conversation (to re-run it)."""
        if len(self.history) >= 2 and self.history[-2].role == "user":
            del self.history[-2:]

    async def wait_idle(self) -> None:
        """Returns once no turn is running (a cancelled one has finished cleaning up)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def cancel_turn(self, reason: str = "cancelled", requested_at: float | None = None) -> bool:
        """Cancels the running turn (LLM, chunker, TTS and playback); False if none runs.

        `requested_at`: when the cancel was really asked for (a barge-in's speech start,
        detected on another thread), so turn.cancelled's stop_ms counts from there."""
        if not self.busy or self._turn is None:
            return False
        self._turn.cancel_reason = reason
        self._turn.cancel_requested_at = now_ms() if requested_at is None else requested_at
        assert self._task is not None
        self._task.cancel()
        return True

    def _played(self, turn: int) -> ev.Played:
        """What the user had heard of a turn: chunks whose playback started, and for how long."""
        starts: dict[int, float] = {}
        ends: dict[int, float] = {}
        for e in self.trace.turn_events(turn):
            if isinstance(e, ev.PlayStart):
                starts[e.chunk] = e.t_ms
            elif isinstance(e, ev.PlayEnd):
                ends[e.chunk] = e.t_ms
        return ev.Played(chunks=sorted(starts), ms=round(sum(ends.get(c, s) - s for c, s in starts.items()), 1))

    def change_preset(self, preset: Preset, reason: str) -> dict[str, Any]:
        """Applies a new preset from the next turn on, recording what changed in the trace."""
        before, after = self.preset.to_json(), preset.to_json()
        changes = {
            f"{section}.{key}": value
            for section, values in after.items() if isinstance(values, dict)
            for key, value in values.items() if before.get(section, {}).get(key) != value
        }
        self.preset = preset
        self._session_event(ev.ConfigChange, reason=reason, changes=changes, preset=preset.name)
        return changes

    async def _run_turn(self, state: _TurnState, text: str, input_kind: str) -> TurnMetrics:
        clock = state.clock
        chunker_config = self.preset.chunker
        # session_ms: where this turn's t0 falls on the session clock (session events' clock).
        clock.emit(ev.TurnStart, clock.t0, text=text, input=input_kind, strategy=chunker_config.strategy,
                   chunker=dict(vars(chunker_config)), session_ms=round(clock.t0 - self.started_at, 3),
                   # an output that does not play in real time: no playback timing past the first sample
                   unpaced=not getattr(self.output, "paced", True))
        for kind, t_ms, data in state.prelude:
            clock.emit(kind, t_ms, **data)
        user = Message("user", text)
        tasks: list[asyncio.Task[Any]] = []
        collector.turn_started()
        try:
            await self.tts.begin_turn(clock.turn)
            messages = [Message("system", self.preset.agent.system_prompt), *self.history, user]
            clock.emit(ev.LlmRequest, now_ms(), provider=self.llm.name, model=self.llm.model,
                       messages=len(messages), prompt_chars=sum(len(m.content) for m in messages))
            tasks = [
                asyncio.create_task(self._produce(state, messages), name="llm+chunker"),
                asyncio.create_task(self._play(state), name="tts+playback"),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = next((t for t in done if t.exception() is not None), None)
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]
            await self._drain(state)
            self.history += [user, Message("assistant", "".join(state.reply))]
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # we cancelled ourselves on purpose: the turn ends normally
            await self._stop(state, tasks)
            requested = state.cancel_requested_at or now_ms()
            clock.emit(ev.TurnCancelled, now_ms(), reason=state.cancel_reason or "cancelled",
                       stop_ms=round(now_ms() - requested, 3), played=self._played(clock.turn),
                       reply_so_far="".join(state.reply))
            if state.reply:
                self.history += [user, Message("assistant", "".join(state.reply))]
        except Exception as exc:
            await self._stop(state, tasks)
            where = ("llm" if isinstance(exc, LLMError) else "tts" if isinstance(exc, TTSError)
                     else "audio" if isinstance(exc, AudioStalled) else "engine")
            clock.emit(ev.Error, now_ms(), where=where, message=str(exc) or type(exc).__name__)
        finally:
            self._turn = None
            self._resume_generation()
            collector.turn_ended()
        metrics = compute_metrics(self.trace.turn_events(clock.turn))
        clock.emit(ev.TurnSummary, now_ms(), metrics=metrics.to_json(),
                   budget_misses={k: v[0] for k, v in budget_misses(metrics, self.preset.budgets).items()})
        return metrics

    async def _drain(self, state: _TurnState) -> None:
        """Waits for playback to finish, bounded: a device that stops calling back
        (unplugged, suspended) must fail the turn, not hang the session."""
        limit_s = state.audio_ms / 1000.0 + DRAIN_MARGIN_S
        try:
            async with asyncio.timeout(limit_s):
                await self.output.drain()
        except TimeoutError:
            raise AudioStalled(f"{self.output.name} stopped playing ({state.audio_ms / 1000:.1f} s of audio "
                               f"not finished after {limit_s:.1f} s); check the device or use --no-audio") from None

    async def _stop(self, state: _TurnState, tasks: list[asyncio.Task[Any]]) -> None:
        """Stops everything a turn started: LLM stream, chunker, TTS context, playback."""
        self.output.stop()
        # The output's own "cut" report comes a block later, after the turn is over:
        # record now which chunks were cut mid-playback.
        stopped = now_ms()
        for chunk in sorted(state.started - state.ended):
            state.ended.add(chunk)
            state.clock.emit(ev.PlayEnd, stopped, chunk=chunk, cut=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.tts.cancel()

    # -- producer: LLM -> chunker -> TTS ------------------------------------------------

    async def _produce(self, state: _TurnState, messages: list[Message]) -> None:
        clock = state.clock
        chunker = state.chunker = Chunker(self.preset.chunker)
        changed = state.chunker_changed = asyncio.Event()
        watcher = asyncio.create_task(self._watch_deadlines(state, chunker, changed), name="chunker-deadlines")
        index = 0
        try:
            async for token in self.llm.stream(messages):
                clock.emit(ev.LlmToken, token.t_ms, i=index, text=token.text)
                index += 1
                state.reply.append(token.text)
                await self._send_chunks(state, chunker.push(token.text, token.t_ms - clock.t0))
                changed.set()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        info = self.llm.info
        clock.emit(ev.LlmDone, now_ms(), tokens=index, **info.to_event(), text="".join(state.reply))
        await self._send_chunks(state, chunker.flush(now_ms() - clock.t0))
        await self.tts.flush()

    def _pause_generation(self) -> None:
        """llm.pause_until_first_audio: the local LLM waits while the first chunk is synthesized,
        so that synthesis, which TTFA waits for, does not share the cores with generation. Not
        when the TTS buffers text until it has enough (unflushed chunks): it would wait forever."""
        gate = getattr(self.llm, "may_generate", None)
        flushes_each_chunk = getattr(self.tts, "flushes_each_chunk", lambda: True)
        if gate is not None and self.preset.llm.pause_until_first_audio and flushes_each_chunk():
            gate.clear()

    def _resume_generation(self) -> None:
        gate = getattr(self.llm, "may_generate", None)
        if gate is not None:
            gate.set()

    async def _watch_deadlines(self, state: _TurnState, chunker: Chunker, changed: asyncio.Event) -> None:
        """Polls the chunker when its deadline passes with no token arriving.

        A loop timer sets the same event a token does; `asyncio.wait_for` is avoided
        because on Python 3.11 it can swallow a cancellation that races its timeout.
        """
        loop = asyncio.get_running_loop()
        t0 = state.clock.t0
        while True:
            changed.clear()
            deadline = chunker.next_deadline()
            timer = None
            if deadline is not None:
                timer = loop.call_later(max(0.0, deadline + t0 - now_ms()) / 1000.0, changed.set)
            try:
                await changed.wait()
            finally:
                if timer is not None:
                    timer.cancel()
            if deadline is not None and now_ms() - t0 >= deadline:
                await self._send_chunks(state, chunker.poll(now_ms() - t0))

    async def _send_chunks(self, state: _TurnState, chunks: list[Chunk]) -> None:
        if not chunks:
            return
        clock = state.clock
        # One sender at a time, so chunks reach TTS in order even when a deadline
        # cut and a token cut happen close together.
        async with self._send_lock:
            for chunk in chunks:
                # input_ms: when the token (or deadline) that made the chunker emit arrived.
                clock.emit(ev.Chunk, now_ms(), index=chunk.index, text=chunk.text, raw=chunk.raw,
                           reason=chunk.reason, start_ms=round(chunk.start_ms, 3), input_ms=round(chunk.end_ms, 3),
                           token_start=chunk.token_start, token_end=chunk.token_end)
                if chunk.text:
                    state.sent_at[chunk.index] = now_ms()
                    clock.emit(ev.TtsSend, state.sent_at[chunk.index], chunk=chunk.index, chars=len(chunk.text))
                    if not state.sent_any:
                        state.sent_any = True
                        self._pause_generation()
                    await self.tts.send(chunk.index, chunk.text)

    # -- consumer: TTS audio -> playback ------------------------------------------------

    async def _play(self, state: _TurnState) -> None:
        clock = state.clock
        piece = 0
        current_chunk: int | None = None
        async for audio in self.tts.audio():
            if piece == 0:
                self._resume_generation()
            clock.emit(ev.TtsAudio, audio.t_ms, chunk=audio.chunk, samples=len(audio.samples),
                       sample_rate=audio.sample_rate, duration_ms=round(audio.duration_ms, 1),
                       alignment=msgspec.convert(audio.alignment, ev.Alignment) if audio.alignment else None)
            if current_chunk is not None and audio.chunk != current_chunk:
                self._chunk_audio_complete(state, current_chunk)
            if audio.chunk != current_chunk and audio.chunk in state.sent_at:
                self._chunk_ttfa_ms.append(audio.t_ms - state.sent_at[audio.chunk])
            current_chunk = audio.chunk
            state.pieces_queued[audio.chunk] = state.pieces_queued.get(audio.chunk, 0) + 1
            state.audio_ms += audio.duration_ms
            # Audible from the reply's own samples: muting plays silence, it does not change what was said.
            state.audible_offset[(audio.chunk, piece)] = first_audible_ms(audio.samples, audio.sample_rate)
            samples = np.zeros_like(audio.samples) if self.muted else audio.samples
            self.output.play(samples, audio.sample_rate, (clock.turn, audio.chunk, piece))
            state.play_until = max(state.play_until, now_ms()) + audio.duration_ms
            self._update_lead(state)
            piece += 1
        if current_chunk is not None:
            self._chunk_audio_complete(state, current_chunk)
        clock.emit(ev.TtsDone, now_ms())

    def _update_lead(self, state: _TurnState) -> None:
        """Tells the chunker how long playback can go on with what is queued, less the TTS's time to
        first audio for a new chunk: while that lead is comfortable it waits for a good boundary."""
        if state.chunker is None:
            return
        ttfa = statistics.median(self._chunk_ttfa_ms) if self._chunk_ttfa_ms else DEFAULT_CHUNK_TTFA_MS
        now = now_ms()
        state.chunker.set_lead(state.play_until - now - ttfa, now - state.clock.t0)
        if state.chunker_changed is not None:
            state.chunker_changed.set()

    def _chunk_audio_complete(self, state: _TurnState, chunk: int) -> None:
        state.audio_complete.add(chunk)
        self._maybe_end_chunk(state, chunk)

    def _maybe_end_chunk(self, state: _TurnState, chunk: int) -> None:
        if chunk in state.ended or chunk not in state.audio_complete:
            return
        if state.pieces_done.get(chunk, 0) >= state.pieces_queued.get(chunk, 0) and chunk in state.last_end:
            state.ended.add(chunk)
            state.clock.emit(ev.PlayEnd, state.last_end[chunk], chunk=chunk)

    def _on_playback(self, kind: str, mark: Any, t_ms: float) -> None:
        """Output reports (on the loop thread): a piece started / ended / was cut."""
        state = self._turn
        turn, chunk, piece = mark
        if state is None or state.clock.turn != turn:
            return  # a late report of a turn that has ended
        if kind == "start":
            if chunk not in state.started:
                state.started.add(chunk)
                state.clock.emit(ev.PlayStart, t_ms, chunk=chunk)
            self._on_piece_start(state, chunk, piece, t_ms)
            return
        state.last_piece_end = t_ms
        state.pieces_done[chunk] = state.pieces_done.get(chunk, 0) + 1
        state.last_end[chunk] = t_ms
        if kind == "cut":
            state.clock.emit(ev.PlayEnd, t_ms, chunk=chunk, cut=True)
            state.ended.add(chunk)
            return
        self._maybe_end_chunk(state, chunk)

    def _on_piece_start(self, state: _TurnState, chunk: int, piece: int, t_ms: float) -> None:
        """A piece of audio reached the device: a gap before it, and the first audible sample."""
        clock = state.clock
        if (state.last_piece_end is not None and t_ms - state.last_piece_end > PLAYBACK_GAP_MIN_MS
                and getattr(self.output, "paced", True)):
            clock.emit(ev.PlayGap, t_ms, chunk=chunk, ms=round(t_ms - state.last_piece_end, 1),
                       from_ms=round(state.last_piece_end - clock.t0, 3))
        offset = state.audible_offset.pop((chunk, piece), None)
        if not state.heard and offset is not None:
            state.heard = True
            latency = getattr(self.output, "latency_ms", 0.0)
            clock.emit(ev.PlaySound, t_ms + offset + latency, chunk=chunk, silence_ms=round(offset, 1),
                       device_latency_ms=round(latency, 1))

    # -- session-level events -----------------------------------------------------------

    def _session_event(self, kind: type[ev.TraceEvent], /, **fields: Any) -> None:
        self.trace.add(ev.session_event(kind, now_ms() - self.started_at, **fields))

    def _on_tts_session(self, action: str, data: dict[str, Any]) -> None:
        state = self._turn
        if state is not None:
            state.clock.emit(ev.TtsSession, now_ms(), action=action, **data)
        else:
            self._session_event(ev.TtsSession, action=action, **data)
