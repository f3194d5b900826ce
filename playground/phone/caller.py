"""`playground call URL`: the playground plays the carrier and the person calling, and measures the
agent from outside, as a caller hears it.

One call is one WebSocket in a carrier's dialect (`connected`, `start`, then a `media`
message every 20 ms for the whole call, the agent's `mark`s echoed, `stop`). A 20 ms tick
drives both directions, like a phone:
- uplink: the caller's mouth. A line is Piper speech, resampled to 8 kHz with soxr, trimmed
  of its silent edges and sent frame by frame; between lines the frames are silence. The
  turn's t0 is the send of the line's last frame: the caller's end of speech.
- downlink: the carrier's playout. The agent's media is buffered and one frame is played per
  tick (what the caller hears, also sent to the local speaker); a `mark` is echoed once the
  audio before it has played, or at once when a `clear` drops it.

Per turn: FIRST_AUDIO (t0 -> the agent's first media message), REAL_LATENCY (t0 -> its first
audible sample played), the agent's speech as the caller's VAD (Silero) heard it, the reply's
transcript (faster-whisper), and for a line that cuts in (barge-in) how long the agent took to
go quiet and to send `clear`. Faults of the agent are named per turn (`call.error`) and the
call goes on, or ends cleanly when the agent hangs up.

With `network`, every message in both directions crosses a simulated delay line
(`playground.phone.network`), so the numbers include that leg.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import datetime
import math
import queue
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from playground import __version__
from playground.audio.input import StreamResampler
from playground.core import events as ev
from playground.core.clock import now_ms
from playground.data import find
from playground.export.jsonl import open_trace_writer
from playground.phone import dialects as dl
from playground.phone.codec import (
    FRAME_BYTES,
    FRAME_MS,
    RATE,
    SILENT_FRAME,
    frames_of,
    resample,
    to_int16,
    ulaw_decode,
    ulaw_encode,
)
from playground.phone.events import emit
from playground.phone.network import DelayLine, NetworkProfile
from playground.phone.report import Stages, agent_turns, read_agent_trace, stages, trace_file_name

AUDIBLE_DB = -40.0  # a sample at least this loud (peak, dBFS) is heard
_AUDIBLE_LEVEL = 32768.0 * 10 ** (AUDIBLE_DB / 20)
TRIM_DB = -40.0  # a line's speech starts and ends where Piper's output first / last reaches this
AGENT_END_SILENCE_MS = 300.0  # the caller's VAD: a pause this long ends a stretch of agent speech
STALE_GAP_MS = 100.0  # after a barge-in, agent audio with no gap this long still belongs to the cut reply
POLL_S = FRAME_MS / 1000.0
MIC_BOOKING_MARGIN_MS = 300.0  # a microphone turn begins at most this long after its end of speech was found
BARGE_IN_RE = re.compile(r"^\[barge-in\s+(\d+(?:\.\d+)?)\s*ms\]\s*(.+)$", re.IGNORECASE)

# `call.error` kinds of the caller's own (beside dialects' ProtocolError kinds)
NO_ANSWER = "no_answer"
AGENT_CLOSED = "agent_closed"
CONNECT_FAILED = "connect_failed"
BARGE_IN_IGNORED = "barge_in_ignored"
MAX_DURATION = "max_duration"


class CallFailed(RuntimeError):
    """The call could not be placed (the agent refused the connection, or none listens)."""


class _AgentGone(Exception):
    """The agent closed the WebSocket."""


# -- what the caller says ----------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One thing the caller says. `barge_in_after_ms`: say it over the agent's reply once this
    much of the reply was heard (script syntax: `[barge-in 800ms] Wait, one more thing.`)."""

    text: str
    source: str = "script"  # script | say | stdin
    barge_in_after_ms: float | None = None

    @property
    def waits_for_reply(self) -> bool:
        """Scripted lines take turns; a line typed live is said at once, over the agent or not."""
        return self.source != "stdin" and self.barge_in_after_ms is None


def parse_line(raw: str, source: str = "script") -> Line | None:
    text = raw.strip()
    if not text or text.startswith("#"):
        return None
    barge = BARGE_IN_RE.match(text)
    if barge:
        return Line(barge.group(2).strip(), source, float(barge.group(1)))
    return Line(text, source)


def read_script(name_or_path: str) -> list[Line]:
    """A script like `playground bench`'s (one line per turn, # comments, shipped names work),
    plus `[barge-in N ms]` lines."""
    path = find("script", name_or_path)
    lines = [line for raw in path.read_text(encoding="utf-8").splitlines() if (line := parse_line(raw))]
    if not lines:
        raise ValueError(f"{path}: no lines (one caller line per turn; lines starting with # are comments)")
    return lines


class CallerVoice:
    """The caller's voice: Piper, at 8 kHz (soxr), trimmed to the speech; each text synthesized once."""

    def __init__(self, voice: str = "en_US-joe-medium") -> None:
        from playground.servers.voice import LoopbackVoice

        self._voice = LoopbackVoice(voice)
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def speech(self, text: str) -> np.ndarray:
        """int16 8 kHz speech of `text` (blocking: call it in a thread)."""
        with self._lock:
            cached = self._cache.get(text)
        if cached is not None:
            return cached
        native = np.concatenate(list(self._voice.synthesize(text)) or [np.zeros(0, dtype=np.int16)])
        audio = trim(resample(native, self._voice.native_rate, RATE))
        with self._lock:
            self._cache[text] = audio
        return audio


def trim(samples: np.ndarray, level_db: float = TRIM_DB) -> np.ndarray:
    """`samples` from their first to their last sample at least `level_db` loud (peak)."""
    loud = np.nonzero(np.abs(samples.astype(np.int32)) >= 32768.0 * 10 ** (level_db / 20))[0]
    return samples[loud[0]:loud[-1] + 1] if len(loud) else samples[:0]


MIC_MAX_LAG_BYTES = 10 * FRAME_BYTES  # captured audio waiting more than 200 ms: the oldest goes (a faster mic clock)


class Microphone:
    """The caller speaking into a microphone, or a WAV file played in real time (`open_input`):
    what it captures goes out as captured, and its own VAD (Silero) finds each utterance, by
    position in the captured audio (μ-law bytes at 8 kHz)."""

    def __init__(self, source: Any, end_silence_ms: float = 500.0, threshold: float = 0.5,
                 min_speech_ms: float = 250.0) -> None:
        self.source = source  # a started AudioInput
        self.end_silence_ms = end_silence_ms
        self.threshold = threshold
        self.min_speech_ms = min_speech_ms
        self.ended = asyncio.Event()
        self.utterances: asyncio.Queue[tuple[int, int, float, np.ndarray]] = asyncio.Queue()
        self._captured = bytearray()
        self.taken = 0  # bytes handed to the uplink so far (their position)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._listen, name="caller-mic", daemon=True)
        self._thread.start()

    def take(self) -> tuple[bytes, int] | None:
        """The next 20 ms captured and the position of its end, or None when not captured yet."""
        if len(self._captured) > MIC_MAX_LAG_BYTES:
            late = len(self._captured) - MIC_MAX_LAG_BYTES
            del self._captured[:late]
            self.taken += late
        if len(self._captured) < FRAME_BYTES:
            return None
        frame = bytes(self._captured[:FRAME_BYTES])
        del self._captured[:FRAME_BYTES]
        self.taken += FRAME_BYTES
        return frame, self.taken

    def close(self) -> None:
        self.source.close()
        self._thread.join(timeout=5.0)

    def _listen(self) -> None:
        from playground.audio.input import FRAME_SAMPLES as VAD_FRAME
        from playground.audio.input import SAMPLE_RATE
        from playground.stt.vad import SileroVAD, SpeechDetector, SpeechEnd, SpeechStart

        vad = SileroVAD()
        detector = SpeechDetector(self.threshold, self.end_silence_ms, self.min_speech_ms)
        to_line = StreamResampler(SAMPLE_RATE, RATE)
        positions: dict[float, int] = {}  # VAD frame t_ms -> position of its end (bytes at 8 kHz)
        preroll: list[np.ndarray] = []
        speech: list[np.ndarray] = []
        bytes_per_frame = VAD_FRAME * RATE // SAMPLE_RATE
        try:
            for index, frame in enumerate(self.source.frames()):
                self._post(self._captured.extend, ulaw_encode(to_int16(to_line(frame.samples))))
                positions[frame.t_ms] = (index + 1) * bytes_per_frame
                result = detector.feed(vad.probability(frame.samples), frame.t_ms)
                if isinstance(result, SpeechStart):
                    speech = preroll[-2:]
                if detector.speaking or isinstance(result, SpeechEnd):
                    speech.append(frame.samples)
                preroll = [*preroll[-3:], frame.samples]
                if isinstance(result, SpeechEnd) and result.kept:
                    self._post(self.utterances.put_nowait, (positions[result.onset_ms], positions[result.last_voiced_ms],
                                                            result.speech_ms, np.concatenate(speech)))
                if len(positions) > 4000:  # two minutes of frames: forget the oldest
                    for key in list(positions)[:2000]:
                        del positions[key]
        finally:
            self._post(self.ended.set)

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the call is over
            pass


class CallerResources:
    """What every call of one caller process shares: the voice, speech recognition and its thread."""

    def __init__(self, voice: str = "en_US-joe-medium", stt_model: str | None = "tiny.en", stt_threads: int = 0) -> None:
        self.voice = CallerVoice(voice)
        self.stt = None
        self.stt_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="caller-stt")
        if stt_model:
            from playground.stt.whisper import WhisperSTT

            self.stt = WhisperSTT(stt_model, stt_threads)
            self.stt.load()

    def close(self) -> None:
        self.stt_pool.shutdown(wait=False, cancel_futures=True)


# -- the two directions of the line --------------------------------------------------------------


@dataclass
class Utterance:
    """A line being said: its frames go out one per tick."""

    line: Line
    frames: list[bytes]
    started: asyncio.Future[float]  # onset: the first frame's send (monotonic ms)
    ended: asyncio.Future[float]  # t0: the last frame's send
    sent: int = 0
    start_stream_ms: float = 0.0
    end_stream_ms: float = 0.0


class Playout:
    """The carrier's buffer of agent audio, played one frame per tick, with the agent's marks at
    their place in it. A mark is due once every byte before it was played."""

    def __init__(self) -> None:
        self._audio = bytearray()
        self.received_bytes = 0  # position of the end of everything received
        self.played_bytes = 0
        self._marks: list[tuple[int, str, float]] = []  # (position, name, arrival)

    @property
    def buffered_bytes(self) -> int:
        return self.received_bytes - self.played_bytes

    def add_audio(self, payload: bytes) -> None:
        self._audio += payload
        self.received_bytes += len(payload)

    def add_mark(self, name: str, arrival: float) -> None:
        self._marks.append((self.received_bytes, name, arrival))

    def due_marks(self) -> list[tuple[str, float]]:
        due = [(name, arrival) for position, name, arrival in self._marks if position <= self.played_bytes]
        self._marks = [m for m in self._marks if m[0] > self.played_bytes]
        return due

    def take_frame(self) -> bytes | None:
        """The next 20 ms to play (padded with silence), or None when nothing is buffered."""
        if not self._audio:
            return None
        frame = bytes(self._audio[:FRAME_BYTES])
        del self._audio[:FRAME_BYTES]
        self.played_bytes += len(frame)
        return frame + SILENT_FRAME[len(frame):]

    def clear(self) -> tuple[int, list[tuple[str, float]]]:
        """Drops the audio not played yet; returns its size and the marks to return now."""
        dropped = len(self._audio)
        self._audio.clear()
        self.played_bytes = self.received_bytes
        marks = [(name, arrival) for _position, name, arrival in self._marks]
        self._marks = []
        return dropped, marks


class Ear:
    """The caller's VAD on what it hears, in a thread of its own: every tick's 20 ms (silence when
    the agent is quiet) goes to Silero at 16 kHz; `on_speech(onset_ms, last_voiced_ms, speech_ms)`
    is called on the loop for each stretch of agent speech."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_speech: Callable[[float, float, float], None],
                 end_silence_ms: float = AGENT_END_SILENCE_MS, threshold: float = 0.5) -> None:
        self._loop = loop
        self._on_speech = on_speech
        self._end_silence_ms = end_silence_ms
        self._threshold = threshold
        self._ticks: queue.SimpleQueue[tuple[float, np.ndarray | None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._listen, name="caller-ear", daemon=True)
        self._thread.start()

    def hear(self, t_ms: float, samples: np.ndarray | None) -> None:
        self._ticks.put((t_ms, samples))

    def close(self) -> None:
        self._ticks.put(None)
        self._thread.join(timeout=5.0)

    def _listen(self) -> None:
        from playground.audio.input import FRAME_SAMPLES as VAD_FRAME
        from playground.audio.input import SAMPLE_RATE
        from playground.stt.vad import SileroVAD, SpeechDetector, SpeechEnd

        vad = SileroVAD()
        detector = SpeechDetector(self._threshold, self._end_silence_ms, min_speech_ms=100.0)
        to_vad = StreamResampler(RATE, SAMPLE_RATE)
        silence = np.zeros(FRAME_BYTES, dtype=np.float32)
        pending = np.zeros(0, dtype=np.float32)
        while (tick := self._ticks.get()) is not None:
            t_ms, samples = tick
            block = silence if samples is None else samples.astype(np.float32) / 32768.0
            pending = np.concatenate((pending, to_vad(block)))
            while len(pending) >= VAD_FRAME:
                frame, pending = pending[:VAD_FRAME], pending[VAD_FRAME:]
                frame_t = t_ms + FRAME_MS - len(pending) * 1000.0 / SAMPLE_RATE
                probability = vad.probability(frame)
                result = detector.feed(probability, frame_t)
                if isinstance(result, SpeechEnd) and result.kept:
                    self._post(result.onset_ms, result.last_voiced_ms, result.speech_ms)
        if detector.speaking:
            end = detector.end(now_ms())
            if end.kept:
                self._post(end.onset_ms, end.last_voiced_ms, end.speech_ms)

    def _post(self, *args: float) -> None:
        try:
            self._loop.call_soon_threadsafe(self._on_speech, *args)
        except RuntimeError:  # the loop is closed: the call is over
            pass


# -- one turn ------------------------------------------------------------------------------------


@dataclass
class CallTurnMetrics:
    """A caller turn's numbers (the `turn.summary` of a call trace), ms after t0."""

    turn: int
    text: str
    status: str = "ok"  # ok | error
    first_audio: float | None = None  # FIRST_AUDIO: the agent's first media message arrived
    real_latency: float | None = None  # REAL_LATENCY: its first audible sample was played
    agent_speech: float | None = None  # AGENT_SPEECH: agent speech heard (VAD), ms
    heard_ms: float = 0.0  # agent audio played
    received_ms: float = 0.0  # agent audio received
    barge_in_stop: float | None = None  # BARGE_STOP: the caller cut in -> the agent's last audio played
    clear_ms: float | None = None  # the caller cut in -> `clear` arrived
    underruns: int = 0
    marks: int = 0
    transcript: str = ""
    errors: list[str] = field(default_factory=list)  # "kind: message (xN)", for people
    error_counts: dict[str, int] = field(default_factory=dict)  # kind -> times in the turn

    def value(self, key: str) -> float | None:
        return getattr(self, key)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k != "turn"}
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in data.items()}


@dataclass
class _Turn:
    number: int
    line: Line
    clock: ev.TurnClock
    end_stream_ms: float
    first_audio_ms: float | None = None
    first_audio_bytes: int = 0
    first_audible_ms: float | None = None
    last_audible_ms: float | None = None
    last_media_ms: float | None = None
    silent_heard_ms: float = 0.0  # agent audio played before the first audible sample
    heard_frames: int = 0
    received_bytes: int = 0
    first_tick: int | None = None
    last_tick: int | None = None
    audio: list[np.ndarray] = field(default_factory=list)
    speech_ms: float = 0.0
    marks: int = 0
    barge_onset_ms: float | None = None
    clear_ms: float | None = None  # monotonic, after the onset
    continues: bool | None = None  # the agent's previous reply ran on across t0 (decided at its first media)
    errors: Counter[str] = field(default_factory=Counter)
    error_messages: dict[str, str] = field(default_factory=dict)
    transcribing: tuple[int, float, asyncio.Future[str]] | None = None  # (frames, started, transcript)

    @property
    def t0(self) -> float:
        return self.clock.t0

    def rel(self, t_ms: float | None) -> float | None:
        return None if t_ms is None else t_ms - self.t0


# -- one call --------------------------------------------------------------------------------------


@dataclass
class CallOptions:
    url: str
    dialect: dl.Dialect
    network: NetworkProfile | None = None
    seed: int = 0
    lead_in_ms: float = 600.0  # silence after `start` before the first line (an agent may greet)
    reply_silence_ms: float = 1200.0  # nothing audible this long after the reply: the agent is done
    answer_timeout_ms: float = 10_000.0  # no agent audio this long after t0: no_answer
    think_ms: float = 250.0  # pause between the agent's reply and the caller's next line
    max_duration_s: float = 600.0
    connect_timeout_s: float = 10.0
    agent_traces: Path | None = None  # serve-agent's --trace folder: the agent's side of each turn


@dataclass
class CallResult:
    """What a finished call hands to reports: its turns and what relates them to the agent's trace."""

    label: str
    stream_id: str
    call_id: str
    reason: str
    turns: list[CallTurnMetrics]
    t0s: list[float]  # each turn's t0 (monotonic)
    end_stream_ms: list[float]  # each turn's line end in the stream
    first_audio_at: list[float | None]  # each turn's first agent media (monotonic)
    frame_sent_at: list[float]  # send time of the uplink frame ending at 20 * (i + 1) ms
    trace: ev.Trace
    errors: dict[str, int]  # the call's own faults (not a turn's): kind -> times
    stages: list[Stages | None]  # per turn, from the agent's trace (empty without one)
    tick_late_ms: list[float]  # how late each 20 ms tick of the caller ran


Printer = Callable[[str, str], None]  # (kind, text): kind is you | agent | note | error
TurnDone = Callable[[CallTurnMetrics], None]


class Call:
    """One call to `options.url`: `await run(lines)`; the lines come from a list or a live source."""

    def __init__(self, options: CallOptions, resources: CallerResources, http: aiohttp.ClientSession,
                 trace_path: str | Path | None = None, player: Any = None, label: str = "call",
                 printer: Printer | None = None, on_turn: TurnDone | None = None) -> None:
        self.options = options
        self.dialect = options.dialect
        self.resources = resources
        self.http = http
        self.label = label
        self.player = player  # an opened AudioOutput for the local speaker, or None
        self.print = printer or (lambda kind, text: None)
        self.on_turn = on_turn or (lambda metrics: None)
        self.stream_id = self.dialect.new_stream_id()
        self.call_id = self.dialect.new_call_id()
        self.account_id = self.dialect.new_account_id()
        self.trace = ev.Trace()
        self.trace.header = self._header()
        self._writer = open_trace_writer(trace_path, self.trace.header) if trace_path else None
        if self._writer:
            self._writer.follow(self.trace)
        self.started_at = now_ms()
        self.session_clock = ev.TurnClock(self.trace, ev.SESSION_TURN, self.started_at)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._uplink: DelayLine | None = None
        self._downlink: DelayLine | None = None
        self._sequence = 0
        self._chunk = 0
        self._tick = 0
        self._frame_sent_at: list[float] = []
        self._tick_late_ms: list[float] = []
        self._speaking: list[Utterance] = []
        self._mic: Microphone | None = None
        self._mic_sent: list[tuple[int, float, float]] = []  # (mic position of a sent frame's end, its stream end, sent at)
        self._playout = Playout()
        self._player_rate = StreamResampler(RATE, player.device_rate) if player is not None else None  # the speaker's rate
        self._ear: Ear | None = None
        self._turns: list[_Turn] = []
        self._turn: _Turn | None = None
        self._results: list[CallTurnMetrics | None] = []
        self._finishing: list[asyncio.Task[None]] = []
        self._start_sent_ms = 0.0
        self._greeting_first_audio_ms: float | None = None
        self._greeting_heard_ms = 0.0
        self._greeting_audible_ms: float | None = None
        self._greeting_last_audible: float | None = None
        self._agent_closed = asyncio.Event()
        self._hung_up = False
        self._media_received = 0
        self._session_errors: Counter[str] = Counter()
        self._stages: list[Stages | None] = []
        self.reason = ""

    def _header(self) -> dict[str, Any]:
        network = self.options.network.to_json() if self.options.network else None
        return {"kind": "call", "playground": __version__,
                "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "call": {"url": self.options.url, "dialect": self.dialect.name, "stream_id": self.stream_id,
                         "call_id": self.call_id, "network": network}}

    # -- the call --------------------------------------------------------------------------------

    async def run(self, lines: Iterable[Line] | AsyncIterator[Line] = (), mic: Microphone | None = None) -> CallResult:
        """Places the call, says `lines` (or what `mic` captures), and hangs up after the last reply."""
        loop = asyncio.get_running_loop()
        self._mic = mic
        self._ear = Ear(loop, self._agent_speech)
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._dial()
            tasks = [asyncio.create_task(self._ticks(), name=f"{self.label}-ticks"),
                     asyncio.create_task(self._receive(), name=f"{self.label}-receive")]
            async with asyncio.timeout(self.options.max_duration_s):
                await (self._converse(lines) if mic is None else self._listen_to(mic))
            self.reason = "done"
        except CallFailed as exc:
            self.reason = CONNECT_FAILED
            self._session_error(CONNECT_FAILED, str(exc))
        except _AgentGone:
            self.reason = AGENT_CLOSED
        except TimeoutError:
            self.reason = MAX_DURATION
            self._error(MAX_DURATION, f"the call reached --max-duration ({self.options.max_duration_s:.0f} s)")
        except asyncio.CancelledError:
            self.reason = "interrupted"
            raise
        finally:
            await self._hang_up(tasks)
        return self._result()

    async def _dial(self) -> None:
        connecting = now_ms()
        try:
            async with asyncio.timeout(self.options.connect_timeout_s):
                self._ws = await self.http.ws_connect(self.options.url, autoping=True, max_msg_size=0,
                                                      timeout=aiohttp.ClientWSTimeout(ws_close=2.0))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise CallFailed(f"cannot connect to {self.options.url}: {exc}") from None
        connect_ms = now_ms() - connecting
        seed = self.options.seed
        self._uplink = DelayLine(self.options.network, self._send_now, seed=seed * 2 + 1)
        self._downlink = DelayLine(self.options.network, self._deliver, seed=seed * 2 + 2)
        await self._uplink.put(self.dialect.connected())
        await self._uplink.put(self.dialect.start(self._next_sequence(), self.stream_id, self.call_id, self.account_id))
        self._start_sent_ms = now_ms()
        emit(self.session_clock, ev.CallDial, self._start_sent_ms, url=self.options.url, dialect=self.dialect.name,
             stream_id=self.stream_id, call_id=self.call_id, connect_ms=connect_ms,
             network=self.trace.header["call"]["network"])

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    async def _send_now(self, text: str) -> None:
        if self._ws is not None and not self._ws.closed:
            try:
                await self._ws.send_str(text)
            except (ConnectionError, RuntimeError):  # the agent hung up: _receive sees it
                pass

    async def _hang_up(self, tasks: list[asyncio.Task[None]]) -> None:
        self._hung_up = True
        if self._ws is not None and not self._ws.closed and self._uplink is not None:
            await self._uplink.put(self.dialect.stop(self._next_sequence(), self.stream_id, self.call_id,
                                                     self.account_id))
            if self.options.network is not None:  # let the delay line deliver it
                await asyncio.sleep(2 * (self.options.network.latency_ms + self.options.network.jitter_ms) / 1000)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for line in (self._uplink, self._downlink):
            if line is not None:
                await line.close()
        if self._ws is not None:
            await self._ws.close()
        if self._mic is not None:
            await asyncio.sleep(self._mic_delay_s())  # the last bookings
        if self._turn is not None:
            self._finish_turn(self._turn, None)
        await asyncio.gather(*self._finishing, return_exceptions=True)
        if self._ear is not None:
            await asyncio.to_thread(self._ear.close)
        if self.options.agent_traces is not None and self._turns:
            await self._read_agent_trace(self.options.agent_traces / trace_file_name(self.call_id))
        if self._greeting_audible_ms is not None:
            emit(self.session_clock, ev.CallGreeting, self._greeting_audible_ms,
                 first_audio_ms=self._greeting_first_audio_ms - self._start_sent_ms, heard_ms=self._greeting_heard_ms)
        emit(self.session_clock, ev.CallHangup, now_ms(), reason=self.reason, turns=len(self._turns),
             frames_sent=len(self._frame_sent_at), media_received=self._media_received)
        if self._writer is not None:
            self._writer.close()

    async def _read_agent_trace(self, path: Path) -> None:
        """The agent's side of every turn, from its trace, as `call.agent_turn` events."""
        events = await read_agent_trace(path)
        if events is None:
            self.print("note", f"no agent trace at {path} (is the agent `playground serve-agent --trace "
                               f"{path.parent}`?)")
            return
        self._stages = stages([t.end_stream_ms for t in self._turns], [t.first_audio_ms for t in self._turns],
                              [t.t0 for t in self._turns], self._frame_sent_at, agent_turns(events))
        for turn, cut in zip(self._turns, self._stages):
            if cut is not None:
                emit(turn.clock, ev.CallAgentTurn, now_ms(), agent_turn=cut.agent_turn, eos_ms=cut.eos_ms,
                     agent_ms=cut.agent_ms, net_ms=cut.net_ms, eos_net_ms=cut.eos_net_ms,
                     residual_ms=cut.residual_ms, metrics=cut.metrics)

    def _result(self) -> CallResult:
        turns = [r for r in self._results if r is not None]
        errors = dict(self._session_errors)
        return CallResult(self.label, self.stream_id, self.call_id, self.reason, turns,
                          [t.t0 for t in self._turns], [t.end_stream_ms for t in self._turns],
                          [t.first_audio_ms for t in self._turns], list(self._frame_sent_at), self.trace, errors,
                          self._stages, self._tick_late_ms)

    # -- the conversation ------------------------------------------------------------------------

    async def _converse(self, lines: Iterable[Line] | AsyncIterator[Line]) -> None:
        await self._sleep(self.options.lead_in_ms)
        await self._wait(self._agent_quiet)  # a greeting plays out first
        async for line in _aiter(lines):
            # synthesized before the wait: a line that cuts in must start the moment it is due
            audio = await asyncio.to_thread(self.resources.voice.speech, line.text)
            if self._turn is not None:
                if line.barge_in_after_ms is not None:
                    await self._wait(lambda: self._heard_in_reply() >= line.barge_in_after_ms or self._reply_over())
                elif line.waits_for_reply:
                    await self._wait(self._reply_over)
                    self._transcribe_reply(self._turn)
                    await self._sleep(self.options.think_ms)
            await self._say(line, audio)
        if self._turn is not None:
            await self._wait(self._reply_over)
            self._transcribe_reply(self._turn)

    def _transcribe_reply(self, turn: _Turn) -> None:
        """Starts transcribing a reply that is over, now: at the next line's end (its t0) a
        Whisper pass would take the cores just when the agent's end of speech is being timed."""
        if self.resources.stt is None or not turn.audio or turn.transcribing is not None:
            return
        audio = np.concatenate(turn.audio)
        future = asyncio.get_running_loop().run_in_executor(self.resources.stt_pool, self._transcribe, audio)
        turn.transcribing = (len(turn.audio), now_ms(), future)

    async def _listen_to(self, mic: Microphone) -> None:
        """Turns from what the caller says into the microphone, until it ends (a WAV file played out)."""
        while not (mic.ended.is_set() and mic.utterances.empty()):
            if self._agent_closed.is_set():
                raise _AgentGone
            try:
                utterance = mic.utterances.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(POLL_S)
                continue
            await self._mic_turn(*utterance)
        if self._turn is not None:
            await self._wait(self._reply_over)

    async def _mic_turn(self, onset_position: int, end_position: int, speech_ms: float, audio: np.ndarray) -> None:
        """A turn from an utterance the microphone's VAD found: t0 is when the frame holding its last
        voiced audio was sent (found now, end_silence_ms later), its text what Whisper makes of it."""
        await self._wait(lambda: bool(self._mic_sent) and self._mic_sent[-1][0] >= end_position)
        onset_frame = self._mic_frame(onset_position)
        end_frame = self._mic_frame(end_position)
        self._on_onset(Line("", "mic"), onset_frame[2])
        turn = self._begin_turn(Line("", "mic"), end_frame[2], end_frame[1])
        text = ""
        if self.resources.stt is not None:
            text = await asyncio.get_running_loop().run_in_executor(self.resources.stt_pool, self.resources.stt.transcribe,
                                                                    audio)
        turn.line = Line(text, "mic")
        self.print("you", text or "(spoken; not transcribed)")
        self._line_said(turn, onset_frame[2], speech_ms, onset_frame[1] - FRAME_MS)

    def _mic_frame(self, position: int) -> tuple[int, float, float]:
        """The sent frame that held the captured audio at `position`."""
        index = bisect.bisect_left(self._mic_sent, (position, -math.inf, -math.inf))
        return self._mic_sent[min(index, len(self._mic_sent) - 1)]

    async def _say(self, line: Line, audio: np.ndarray) -> None:
        if len(audio) == 0:
            self.print("note", f"nothing to say for {line.text!r}")
            return
        loop = asyncio.get_running_loop()
        utterance = Utterance(line, frames_of(ulaw_encode(audio)), loop.create_future(), loop.create_future())
        self._speaking.append(utterance)
        self.print("you", line.text)
        onset = await utterance.started
        self._on_onset(line, onset)
        t0 = await utterance.ended
        turn = self._begin_turn(line, t0, utterance.end_stream_ms)
        self._line_said(turn, onset, len(audio) * 1000.0 / RATE, utterance.start_stream_ms)

    def _begin_turn(self, line: Line, t0: float, end_stream_ms: float) -> _Turn:
        """A new turn from t0 (the caller's end of speech); the one before it is over."""
        previous = self._turn
        number = len(self._turns) + 1
        self._turn = _Turn(number, line, ev.TurnClock(self.trace, number, t0), end_stream_ms)
        self._turns.append(self._turn)
        self._results.append(None)
        if previous is not None:
            self._account(self._finish_turn, previous, t0)  # once everything before t0 is booked
        return self._turn

    def _line_said(self, turn: _Turn, onset: float, speech_ms: float, start_stream_ms: float) -> None:
        line = turn.line
        turn.clock.emit(ev.TurnStart, turn.t0, text=line.text, input="call")
        emit(turn.clock, ev.CallLine, onset, text=line.text, source=line.source, speech_ms=speech_ms,
             start_stream_ms=start_stream_ms, end_stream_ms=turn.end_stream_ms,
             barge_in_after_ms=line.barge_in_after_ms)

    def _on_onset(self, line: Line, onset: float) -> None:
        turn = self._turn
        if turn is None or not (line.barge_in_after_ms is not None or self._agent_audible_recently(onset)):
            return
        turn.barge_onset_ms = onset
        missed = line.barge_in_after_ms is not None and self._heard_in_reply() < line.barge_in_after_ms
        emit(turn.clock, ev.CallBargeIn, onset, heard_ms=self._heard_in_reply(), after_ms=line.barge_in_after_ms,
             missed=missed)

    async def _sleep(self, ms: float) -> None:
        await self._wait(lambda: False, ms)

    async def _wait(self, done: Callable[[], bool], timeout_ms: float | None = None) -> None:
        """Until `done()` (checked every tick) or `timeout_ms`; raises _AgentGone if the agent hangs up."""
        started = now_ms()
        while not done():
            if self._agent_closed.is_set():
                raise _AgentGone
            if timeout_ms is not None and now_ms() - started >= timeout_ms:
                return
            await asyncio.sleep(POLL_S)

    def _agent_quiet(self) -> bool:
        last = self._greeting_last_audible if self._turn is None else self._turn.last_audible_ms
        return self._playout.buffered_bytes == 0 and (last is None or now_ms() - last >= self.options.reply_silence_ms)

    def _reply_over(self) -> bool:
        """The agent answered and went quiet, or did not answer in time (a `no_answer` error)."""
        turn = self._turn
        assert turn is not None
        if turn.first_audible_ms is None:
            if now_ms() - turn.t0 >= self.options.answer_timeout_ms:
                if not turn.errors[NO_ANSWER]:
                    detail = "no audio" if turn.first_audio_ms is None else "only inaudible audio"
                    self._error(NO_ANSWER, f"{detail} within {self.options.answer_timeout_ms:.0f} ms of the line's end")
                return True
            return False
        return self._agent_quiet()

    def _heard_in_reply(self) -> float:
        turn = self._turn
        return 0.0 if turn is None else turn.heard_frames * FRAME_MS

    def _agent_audible_recently(self, t_ms: float) -> bool:
        turn = self._turn
        last = turn.last_audible_ms if turn is not None else None
        return self._playout.buffered_bytes > 0 or (last is not None and t_ms - last < 3 * FRAME_MS)

    # -- the 20 ms tick --------------------------------------------------------------------------

    async def _ticks(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not self._hung_up:
            next_tick += POLL_S
            delay = next_tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # the process was stopped: resume instead of bursting a second of audio
                next_tick = loop.time()
            # how late the caller's own clock ran: past a frame or two the caller, not the agent, is measured
            self._tick_late_ms.append(max(0.0, loop.time() - next_tick) * 1000.0)
            await self._tick_once()

    async def _tick_once(self) -> None:
        now = now_ms()
        self._tick += 1
        # uplink: the caller's next 20 ms
        frame = SILENT_FRAME
        mic_position = None
        utterance = self._speaking[0] if self._speaking else None
        if utterance is not None:
            frame = utterance.frames[utterance.sent]
        elif self._mic is not None and (captured := self._mic.take()) is not None:
            frame, mic_position = captured
        self._chunk += 1
        stream_end = self._chunk * FRAME_MS
        message = self.dialect.media(self._next_sequence(), self.stream_id, self._chunk, stream_end - FRAME_MS, frame)
        assert self._uplink is not None
        await self._uplink.put(message)
        sent = now_ms()
        self._frame_sent_at.append(sent)
        if mic_position is not None:
            self._mic_sent.append((mic_position, stream_end, sent))
        if utterance is not None:
            if utterance.sent == 0:
                utterance.start_stream_ms = stream_end - FRAME_MS
                utterance.started.set_result(sent)
            utterance.sent += 1
            if utterance.sent == len(utterance.frames):
                self._speaking.pop(0)
                utterance.end_stream_ms = stream_end
                utterance.ended.set_result(sent)
        # downlink: the carrier plays the agent's next 20 ms
        for name, arrival in self._playout.due_marks():
            await self._echo_mark(name, arrival, "played")
        self._play(self._playout.take_frame(), now)

    def _play(self, frame: bytes | None, now: float) -> None:
        samples = None if frame is None else ulaw_decode(frame)
        assert self._ear is not None
        self._ear.hear(now, samples)
        if samples is None:
            return
        if self.player is not None and self._player_rate is not None:
            out = self._player_rate(samples.astype(np.float32) / 32768.0)
            self.player.play(to_int16(out), self.player.device_rate, None)
        self._account(self._heard, now, samples, self._tick)

    def _account(self, fn: Callable[..., None], *args: Any) -> None:
        """Books what the caller heard or received into its turn. With a microphone a turn begins
        only once its end of speech is found (its t0 then lies end_silence_ms in the past), so the
        booking waits that long; a scripted line's turn begins when it ends, and books at once."""
        if self._mic is None:
            fn(*args)
        else:
            asyncio.get_running_loop().call_later(self._mic_delay_s(), fn, *args)

    def _mic_delay_s(self) -> float:
        assert self._mic is not None
        return (self._mic.end_silence_ms + MIC_BOOKING_MARGIN_MS) / 1000.0

    def _turn_at(self, t_ms: float) -> _Turn | None:
        """The turn whose reply window holds `t_ms` (None: before the first line, a greeting)."""
        return next((t for t in reversed(self._turns) if t.t0 <= t_ms), None)

    def _heard(self, now: float, samples: np.ndarray, tick: int) -> None:
        loud = np.nonzero(np.abs(samples.astype(np.int32)) >= _AUDIBLE_LEVEL)[0]
        first_loud, last_loud = (int(loud[0]), int(loud[-1])) if len(loud) else (None, None)
        audible_at = None if first_loud is None else now + first_loud * 1000.0 / RATE
        turn = self._turn_at(now)
        if turn is None:  # before the first line: a greeting
            self._greeting_heard_ms += FRAME_MS
            if audible_at is not None:
                self._greeting_audible_ms = self._greeting_audible_ms or audible_at
                self._greeting_last_audible = now + (last_loud + 1) * 1000.0 / RATE
            return
        turn.heard_frames += 1
        turn.audio.append(samples)
        turn.first_tick = turn.first_tick if turn.first_tick is not None else tick
        turn.last_tick = tick
        if audible_at is None:
            if turn.first_audible_ms is None:
                turn.silent_heard_ms += FRAME_MS
            return
        if turn.first_audible_ms is None:
            turn.first_audible_ms = audible_at
            peak = float(np.max(np.abs(samples.astype(np.int32))))
            emit(turn.clock, ev.CallAgentAudible, audible_at, peak_db=20 * math.log10(peak / 32768.0),
                 silent_ms=turn.silent_heard_ms)
        turn.last_audible_ms = now + (last_loud + 1) * 1000.0 / RATE

    # -- the agent's messages --------------------------------------------------------------------

    async def _receive(self) -> None:
        assert self._ws is not None and self._downlink is not None
        try:
            async for message in self._ws:
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    await self._downlink.put(message.data)
                elif message.type == aiohttp.WSMsgType.ERROR:
                    break
        finally:
            if not self._hung_up:
                await self._downlink.put(None)  # the close travels behind the last message

    async def _deliver(self, data: str | bytes | None) -> None:
        """A message from the agent reaches the phone (after the network, if any)."""
        arrival = now_ms()
        if data is None:
            if not self._hung_up:
                self._error(AGENT_CLOSED, "the agent closed the call's WebSocket")
                self._agent_closed.set()
            return
        try:
            message = self.dialect.parse_from_agent(data, self.stream_id)
        except dl.ProtocolError as exc:
            self._error(exc.kind, str(exc))
            if not isinstance(exc.parsed, dl.Media):
                return
            message = exc.parsed  # audio of an unusual size is still played, as a carrier would
        if isinstance(message, dl.Media):
            self._media_received += 1
            self._playout.add_audio(message.payload)
            self._account(self._received, len(message.payload), arrival)
        elif isinstance(message, dl.Mark):
            self._playout.add_mark(message.name, arrival)
        elif isinstance(message, dl.Clear):
            dropped, marks = self._playout.clear()
            self._account(self._cleared, arrival, dropped, len(marks))
            for name, received in marks:
                await self._echo_mark(name, received, "clear")

    def _received(self, size: int, arrival: float) -> None:
        """Books a media message of the agent's into the reply it belongs to."""
        turn = self._turn_at(arrival)
        if turn is None:
            self._greeting_first_audio_ms = self._greeting_first_audio_ms or arrival
            return
        previous = self._turns[turn.number - 2] if turn.number > 1 else None
        if turn.first_audio_ms is None and turn.continues is None:
            # audio flowing right across t0, with no clear: the reply the caller spoke over goes on
            turn.continues = (previous is not None and previous.last_media_ms is not None
                              and previous.last_media_ms > turn.t0 - STALE_GAP_MS
                              and arrival - previous.last_media_ms < STALE_GAP_MS)
        if turn.continues and previous is not None:
            if arrival - (previous.last_media_ms or 0.0) >= STALE_GAP_MS:
                turn.continues = False  # a gap: what follows is the new reply
            else:
                previous.last_media_ms = arrival
                previous.received_bytes += size
                if not previous.errors[BARGE_IN_IGNORED]:
                    self._error(BARGE_IN_IGNORED, "the agent went on with its reply after the caller spoke over it "
                                                  "(no clear, no pause)", previous)
                return
        turn.last_media_ms = arrival
        turn.received_bytes += size
        if turn.first_audio_ms is None:
            turn.first_audio_ms = arrival
            turn.first_audio_bytes = size
            emit(turn.clock, ev.CallAgentAudio, arrival, payload_bytes=size)

    def _cleared(self, arrival: float, dropped: int, marks: int) -> None:
        turn = self._turn_at(arrival)
        if turn is None:
            return
        turn.continues = False
        if turn.barge_onset_ms is not None and turn.clear_ms is None:
            turn.clear_ms = arrival
        emit(turn.clock, ev.CallClear, arrival, dropped_ms=dropped * 1000.0 / RATE, marks_returned=marks)

    async def _echo_mark(self, name: str, received: float, by: str) -> None:
        assert self._uplink is not None
        await self._uplink.put(self.dialect.mark(self._next_sequence(), self.stream_id, name))
        self._account(self._echoed, name, received, by, now_ms())

    def _echoed(self, name: str, received: float, by: str, echoed: float) -> None:
        turn = self._turn_at(echoed)
        if turn is not None:
            turn.marks += 1
            emit(turn.clock, ev.CallMark, echoed, name=name, received_ms=received - turn.t0, by=by)

    def _agent_speech(self, onset_ms: float, last_voiced_ms: float, speech_ms: float) -> None:
        turn = next((t for t in reversed(self._turns) if t.t0 <= onset_ms), None)
        if turn is None:
            return  # the greeting's
        turn.speech_ms += speech_ms
        emit(turn.clock, ev.CallAgentSpeech, last_voiced_ms, start_ms=onset_ms - turn.t0, speech_ms=speech_ms)

    # -- errors and the end of a turn ------------------------------------------------------------

    def _error(self, kind: str, message: str, turn: _Turn | None = None) -> None:
        turn = turn or self._turn
        if turn is None:
            self._session_error(kind, message)
            return
        if not turn.errors[kind]:
            turn.error_messages[kind] = message
            self.print("error", f"turn {turn.number}: {kind}: {message}")
        turn.errors[kind] += 1

    def _session_error(self, kind: str, message: str) -> None:
        if not self._session_errors[kind]:
            emit(self.session_clock, ev.CallError, now_ms(), kind=kind, message=message, count=1)
            self.print("error", f"{kind}: {message}")
        self._session_errors[kind] += 1

    def _finish_turn(self, turn: _Turn, next_t0: float | None) -> None:
        """The turn's reply is over (the next line's t0, or the hang-up): its closing events now,
        its transcript and summary once transcribed."""
        end = now_ms() if next_t0 is None else next_t0
        stopped = None
        if turn.barge_onset_ms is not None:
            onset = turn.barge_onset_ms
            heard_after = turn.last_audible_ms if turn.last_audible_ms is not None and turn.last_audible_ms > onset else None
            stopped = emit(
                turn.clock, ev.CallAgentStopped, heard_after or onset,
                stop_ms=0.0 if heard_after is None else heard_after - onset,
                clear_ms=None if turn.clear_ms is None else turn.clear_ms - onset,
                audio_stop_ms=None if turn.last_media_ms is None or turn.last_media_ms < onset
                else turn.last_media_ms - onset)
        underruns = 0
        if turn.first_tick is not None and turn.last_tick is not None:
            underruns = (turn.last_tick - turn.first_tick + 1) - turn.heard_frames
        emit(turn.clock, ev.CallReplyEnd, turn.last_audible_ms or end, received_ms=turn.received_bytes * 1000.0 / RATE,
             heard_ms=turn.heard_frames * FRAME_MS, underruns=underruns)
        self._finishing.append(asyncio.create_task(self._summarize(turn, underruns, stopped)))

    async def _summarize(self, turn: _Turn, underruns: int, stopped: ev.CallAgentStopped | None) -> None:
        transcript = ""
        if turn.transcribing is not None and turn.transcribing[0] != len(turn.audio):
            turn.transcribing = None  # the reply went on after it was thought over: all of it, then
        self._transcribe_reply(turn)
        if turn.transcribing is not None:
            frames, started, future = turn.transcribing
            try:
                transcript = await future
            except (RuntimeError, ValueError) as exc:
                self._error("stt", f"could not transcribe the reply: {exc}", turn)
            emit(turn.clock, ev.CallTranscript, now_ms(), text=transcript, audio_ms=frames * FRAME_MS,
                 took_ms=now_ms() - started)
        for kind, count in turn.errors.items():
            emit(turn.clock, ev.CallError, now_ms(), kind=kind, message=turn.error_messages[kind], count=count)
        metrics = CallTurnMetrics(
            turn.number, turn.line.text, "error" if turn.errors else "ok",
            turn.rel(turn.first_audio_ms), turn.rel(turn.first_audible_ms), turn.speech_ms or None,
            turn.heard_frames * FRAME_MS, turn.received_bytes * 1000.0 / RATE,
            None if stopped is None else stopped.stop_ms, None if stopped is None else stopped.clear_ms, underruns, turn.marks, transcript,
            [f"{kind}: {turn.error_messages[kind]}" + (f" (x{n})" if n > 1 else "") for kind, n in turn.errors.items()],
            dict(turn.errors))
        turn.clock.emit(ev.TurnSummary, now_ms(), metrics=metrics.to_json())
        self._results[turn.number - 1] = metrics
        turn.audio = []
        if transcript:
            self.print("agent", transcript)
        self.on_turn(metrics)

    def _transcribe(self, audio: np.ndarray) -> str:
        assert self.resources.stt is not None
        from playground.audio.input import SAMPLE_RATE

        return self.resources.stt.transcribe(resample(audio, RATE, SAMPLE_RATE).astype(np.float32) / 32768.0)


async def _aiter(lines: Iterable[Line] | AsyncIterator[Line]) -> AsyncIterator[Line]:
    if hasattr(lines, "__aiter__"):
        async for line in lines:  # type: ignore[union-attr]
            yield line
    else:
        for line in lines:  # type: ignore[union-attr]
            yield line
