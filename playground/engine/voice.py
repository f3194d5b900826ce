"""The listening loop: microphone -> VAD -> STT -> turns of the same `Session` the TUI and CLI drive.

Threads: the input's producer (PortAudio callback or file pacer) only queues blocks; a
*listener* thread turns them into 16 kHz frames, scores each with the Silero VAD and
decides speech start / end; one *STT* thread runs faster-whisper (interim transcripts
while the user speaks, the final one at the end). Everything that touches the session
happens on the event loop, reached with `call_soon_threadsafe`.

A spoken turn's t0 is the moment the end of speech was detected (hands-free: `end_silence_ms`
after the last voiced frame; push-to-talk: the key released). Its trace starts with the
events that led to it: `vad.speech_start`, `stt.interim`, `vad.speech_end` (with
`last_voiced_ms`, where the speech really ended) and `stt.final`; `VAD_END`, `STT` and
`USER_LATENCY` are computed from them (core.metrics).

Barge-in: speech starting while a turn runs cancels it (playback, LLM stream, TTS context)
with `Session.cancel_turn`, timed from the frame that confirmed the speech.
Echo: in hands-free mode, while the agent is audible (plus `echo_tail_ms`), a frame only
counts as speech when it is `echo_margin_db` louder than what is being played.

Front ends read `VoiceLoop.state` (level, speaking, interim text, mic status) and call
`start_listening` / `stop_listening` (push-to-talk key down / up).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from playground.audio.input import (
    FRAME_MS,
    SAMPLE_RATE,
    SILENCE_DB,
    AudioInput,
    Frame,
    MicUnavailable,
    level_db,
    open_input,
)
from playground.core import events as ev
from playground.core.clock import now_ms
from playground.core.metrics import TurnMetrics
from playground.core.presets import InputConfig
from playground.engine.session import InputRefused, Prelude, Session
from playground.stt.vad import (
    SileroVAD,
    SpeechDetector,
    SpeechEnd,
    SpeechStart,
    VADUnavailable,
    speech_duration_ms,
)
from playground.stt.whisper import STTError, WhisperSTT

HANDS_FREE, PUSH_TO_TALK = "hands_free", "push_to_talk"
PREROLL_FRAMES = 10  # 320 ms kept before a speech start: the VAD confirms speech after its onset
MAX_UTTERANCE_S = 120.0  # longer speech is cut into several utterances: bounds the memory
MAX_INTERIM_S = 25.0  # past one Whisper window an interim pass costs too much to repeat every second
_END_OF_INPUT = object()

TurnStarted = Callable[[str, "asyncio.Task[TurnMetrics]"], None]


@dataclass
class VoiceState:
    """What a front end shows live. Written by the listener thread and the loop, plain
    attributes only: read it from any thread (e.g. a 30 fps timer), never wait on it."""

    mode: str
    mic: str = "off"  # off | loading | listening | ended | unavailable
    reason: str = ""  # why the mic is unavailable
    device: str = ""
    level_db: float = SILENCE_DB  # the latest frame's RMS level (dBFS)
    speech_probability: float = 0.0  # the latest frame's Silero score
    speaking: bool = False  # an utterance is in progress (VAD, or the key is held)
    key_down: bool = False  # push-to-talk: listening
    echo_gated: bool = False  # the agent is audible: only louder input counts as speech
    transcribing: bool = False
    interim: str = ""  # the current utterance's latest interim transcript
    transcript: str = ""  # the last final transcript
    barge_ins: int = 0
    ignored: int = 0  # utterances that made no turn (too short, no words recognized)


class PlaybackMeter:
    """A tap on the session's audio output (`AudioOutput.add_tap`) that remembers when each
    queued piece will sound and how loud it is: the reference the echo gate compares the mic with.

    Pieces play back to back in real time from when they are queued, as every output
    does; the device's own latency is covered by `tail_ms`.
    """

    def __init__(self, tail_ms: float) -> None:
        self.tail_ms = tail_ms
        self._pieces: tuple[tuple[float, float, float], ...] = ()  # (start, end, peak level); replaced, never mutated
        self._until = 0.0

    def queued(self, samples: np.ndarray, sample_rate: int) -> None:
        start = max(now_ms(), self._until)
        self._until = start + len(samples) * 1000.0 / sample_rate
        recent = tuple(p for p in self._pieces if p[1] + self.tail_ms > start)
        self._pieces = (*recent, (start, self._until, _peak_level_db(samples, sample_rate)))

    def cleared(self) -> None:
        self._pieces = ()
        self._until = 0.0

    def level_at(self, t_ms: float) -> float | None:
        """The loudest piece audible at `t_ms` (dBFS), None when the agent is silent. Any thread."""
        levels = [level for start, end, level in self._pieces if start <= t_ms <= end + self.tail_ms]
        return max(levels) if levels else None


def _peak_level_db(samples: np.ndarray, sample_rate: int) -> float:
    """The loudest 32 ms window of a piece (dBFS): speech is louder than its average on vowels."""
    audio = np.asarray(samples, dtype=np.float32).reshape(-1)
    if samples.dtype == np.int16:
        audio = audio / 32768.0
    window = max(1, round(sample_rate * FRAME_MS / 1000))
    count = len(audio) // window
    if count == 0:
        return level_db(audio)
    power = np.mean(np.square(audio[:count * window].reshape(count, window)), axis=1)
    peak = float(np.max(power))
    return max(SILENCE_DB, 10.0 * math.log10(peak)) if peak > 0 else SILENCE_DB


@dataclass
class _Utterance:
    """One stretch of user speech, gathered on the loop thread until it becomes a turn."""

    start: SpeechStart
    detected_ms: float  # when the listener confirmed the start (monotonic)
    barge_in: int | None  # the turn it cancelled
    interims: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    end: SpeechEnd | None = None
    end_detected_ms: float = 0.0
    trigger: str = ""
    audio: np.ndarray | None = None


def listening_mode(config: InputConfig, mode: str | None, mic_file: str | None, keys: bool = False) -> str:
    """How utterances end: the `mode` asked for, else the preset's ([input] mode; hands-free when
    it is off). A WAV file never presses the push-to-talk key, so a file is heard hands-free unless
    push-to-talk is asked for; asked for where no one presses the key (`keys` False: the headless
    CLI), it is refused (ValueError) instead of waiting forever. `keys`: the caller presses it
    (VoiceLoop.start_listening / stop_listening: the TUI, a test)."""
    if mode is not None and mode not in (HANDS_FREE, PUSH_TO_TALK):
        raise ValueError(f"voice: unknown mode {mode!r} (choose {HANDS_FREE} or {PUSH_TO_TALK})")
    if mic_file is not None:
        if mode == PUSH_TO_TALK:
            if keys:
                return PUSH_TO_TALK
            raise ValueError("push-to-talk waits for a key press, and a mic file never presses one: "
                             "use --mode hands_free with --mic-file (a pause ends each utterance)")
        return HANDS_FREE
    return mode or (config.mode if config.mode != "off" else HANDS_FREE)


class VoiceLoop:
    """Spoken input for an open `Session`. `await open()`, then speak; `await close()` at the end.

    `mic_file` feeds a WAV file in real time instead of the microphone (`speed` > 1 faster);
    `source` an input of the caller's (not yet started). `on_turn(text, task)` is called on
    the loop for every spoken turn started.
    """

    def __init__(self, session: Session, config: InputConfig, mode: str | None = None,
                 mic_file: str | None = None, speed: float = 1.0, on_turn: TurnStarted | None = None,
                 source: AudioInput | None = None) -> None:
        self.session = session
        self.config = config
        self.mode = listening_mode(config, mode, mic_file, keys=True)
        self.mic_file = mic_file
        self.speed = speed
        self.on_turn = on_turn or (lambda text, task: None)
        self.state = VoiceState(self.mode)
        self.stt = WhisperSTT(config.stt_model, config.stt_threads)
        self.source = source
        self.meter: PlaybackMeter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stt_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt")
        self._stt_busy = threading.Event()
        self._listener: threading.Thread | None = None
        self._keys: queue.SimpleQueue[tuple[bool, float]] = queue.SimpleQueue()
        self._utterances: asyncio.Queue[Any] = asyncio.Queue()
        self._current: _Utterance | None = None
        self._worker: asyncio.Task[None] | None = None
        self._turn_tasks: set[asyncio.Task[TurnMetrics]] = set()
        self._vad: SileroVAD | None = None
        self._key_barge_in: int | None = None  # the turn the last key press cut

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> bool:
        """Loads VAD and STT (once per session) and starts listening. False when the mic is
        unavailable: `state.reason` says why, and typed turns still work."""
        self._loop = asyncio.get_running_loop()
        self.state.mic = "loading"
        try:
            self._vad = await asyncio.to_thread(SileroVAD)
            await self.session.load_component(
                "stt", "faster-whisper", lambda progress: self._loop.run_in_executor(self._stt_pool, self.stt.load, progress))
            if self.source is None:
                self.source = await asyncio.to_thread(open_input, self.config.device, self.mic_file, self.speed)
            else:
                self.source.start()
        except (MicUnavailable, VADUnavailable, STTError) as exc:
            self.state.mic, self.state.reason = "unavailable", str(exc)
            self._mic_event("unavailable", reason=str(exc))
            return False
        self.state.device = self.source.name
        if self.mode == HANDS_FREE and self.config.echo_gate and self.source.hears_playback:
            self.meter = PlaybackMeter(self.config.echo_tail_ms)
            self.session.output.add_tap(self.meter)
        self.state.mic = "listening"
        self._mic_event("listening", device=self.source.name, rate=self.source.rate, stt=self.stt.model,
                        stt_load_ms=round(self.stt.load_ms or 0.0, 1), echo_gate=self.meter is not None)
        self._worker = asyncio.create_task(self._make_turns(), name="voice-turns")
        self._listener = threading.Thread(target=self._listen, name="voice-listener", daemon=True)
        self._listener.start()
        return True

    async def wait_input_end(self) -> None:
        """Returns once the input has ended (a mic file played out) and its last turn is done."""
        if self._worker is not None:
            await self._worker
        if self._turn_tasks:
            await asyncio.gather(*self._turn_tasks, return_exceptions=True)

    async def close(self) -> None:
        if self.source is not None:
            self.source.close()
        if self._listener is not None:
            await asyncio.to_thread(self._listener.join, 5.0)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        if self.meter is not None:
            self.session.output.remove_tap(self.meter)
        await asyncio.to_thread(self._stt_pool.shutdown)
        if self.state.mic == "listening":
            self.state.mic = "ended"

    # -- push-to-talk -------------------------------------------------------------------

    def start_listening(self) -> None:
        """Key down (push-to-talk): the user starts speaking; an agent reply is cut now."""
        if self.mode != PUSH_TO_TALK or self.state.key_down:
            return
        now = now_ms()
        self.state.key_down = True
        self._key_barge_in = self._barge_in(now)
        self._keys.put((True, now))

    def stop_listening(self) -> None:
        """Key up: what was said since `start_listening` is the user's turn."""
        if self.mode != PUSH_TO_TALK or not self.state.key_down:
            return
        self.state.key_down = False
        self._keys.put((False, now_ms()))

    def toggle_listening(self) -> None:
        (self.stop_listening if self.state.key_down else self.start_listening)()

    # -- listener thread ----------------------------------------------------------------

    def _listen(self) -> None:
        assert self.source is not None and self._vad is not None
        detector = SpeechDetector(self.config.vad_threshold, self.config.end_silence_ms, self.config.min_speech_ms)
        keys = _KeyTracker(self._keys, self.config.min_speech_ms)
        preroll: deque[np.ndarray] = deque(maxlen=PREROLL_FRAMES)
        speech: list[np.ndarray] = []  # the current utterance's frames
        since_interim = 0
        interim_frames = round(self.config.interim_ms / FRAME_MS) if self.config.interim_ms > 0 else 0
        max_frames = round(MAX_UTTERANCE_S * 1000 / FRAME_MS)
        trigger = "key" if self.mode == PUSH_TO_TALK else "silence"
        try:
            for frame in self.source.frames():
                probability = self._vad.probability(frame.samples)
                self.state.level_db, self.state.speech_probability = frame.level_db, probability
                if self.mode == PUSH_TO_TALK:
                    result = keys.feed(probability >= self.config.vad_threshold, frame.t_ms)
                else:
                    result = detector.feed(0.0 if self._echo_gated(frame) else probability, frame.t_ms)
                speaking = keys.active if self.mode == PUSH_TO_TALK else detector.speaking
                if isinstance(result, SpeechStart):
                    speech = list(preroll)
                    self._post(self._speech_started, result, now_ms() if self.mode == HANDS_FREE else result.t_ms)
                if speaking and len(speech) >= max_frames:
                    result = (keys if self.mode == PUSH_TO_TALK else detector).end(frame.t_ms)
                    speaking = False
                self.state.speaking = speaking
                if isinstance(result, SpeechEnd):
                    self._post(self._speech_ended, result, now_ms(), _joined(speech), trigger)
                    speech, since_interim = [], 0
                elif speaking:
                    speech.append(frame.samples)
                    since_interim += 1
                    if (interim_frames and since_interim >= interim_frames and not self._stt_busy.is_set()
                            and len(speech) * FRAME_MS <= MAX_INTERIM_S * 1000):
                        since_interim = 0
                        self._stt_busy.set()
                        self._stt_pool.submit(self._interim, np.concatenate(speech))
                preroll.append(frame.samples)
            unfinished = keys if self.mode == PUSH_TO_TALK and keys.active else detector if detector.speaking else None
            if unfinished is not None:  # the input ended mid-speech: that is the end of the utterance
                self._post(self._speech_ended, unfinished.end(now_ms()), now_ms(), _joined(speech), "end_of_input")
        except Exception as exc:  # noqa: BLE001 - whatever stops the listener is shown, never silent
            self._post(self._listener_failed, exc)
        finally:
            self.state.speaking = False
            self._post(self._utterances.put_nowait, _END_OF_INPUT)

    def _echo_gated(self, frame: Frame) -> bool:
        """Hands-free echo gate: True when this frame is not clearly louder than the agent's playback."""
        playing = self.meter.level_at(frame.t_ms) if self.meter is not None else None
        self.state.echo_gated = playing is not None
        return playing is not None and frame.level_db < playing + self.config.echo_margin_db

    def _interim(self, audio: np.ndarray) -> None:
        """STT thread: an interim transcript of the speech so far."""
        started = now_ms()
        try:
            text = self.stt.transcribe(audio)
        except (RuntimeError, ValueError):  # an interim is a preview: the final pass reports STT errors
            return
        finally:
            self._stt_busy.clear()
        self._post(self._interim_ready, text, started, now_ms(), len(audio) * 1000.0 / SAMPLE_RATE)

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop has closed: the session is over
            pass

    # -- loop thread --------------------------------------------------------------------

    def _speech_started(self, start: SpeechStart, detected_ms: float) -> None:
        # push-to-talk cut the reply at the key press already
        cancelled = self._barge_in(detected_ms) if self.mode == HANDS_FREE else self._key_barge_in
        self._current = _Utterance(start, detected_ms, cancelled)
        self.state.interim = ""

    def _barge_in(self, detected_ms: float) -> int | None:
        """Cuts the agent's reply when the user starts speaking; the number of the turn cut."""
        turn = self.session.turn_count
        if self.session.cancel_turn("barge-in: the user spoke", requested_at=detected_ms):
            self.state.barge_ins += 1
            return turn
        return None

    def _interim_ready(self, text: str, started: float, done: float, audio_ms: float) -> None:
        if self._current is None or self._current.end is not None or not text:
            return
        self._current.interims.append((done, {"text": text, "audio_ms": round(audio_ms, 1),
                                              "took_ms": round(done - started, 1)}))
        self.state.interim = text

    def _speech_ended(self, end: SpeechEnd, detected_ms: float, audio: np.ndarray | None, trigger: str) -> None:
        utterance, self._current = self._current, None
        if utterance is None:
            return
        utterance.end, utterance.end_detected_ms, utterance.audio, utterance.trigger = end, detected_ms, audio, trigger
        if not end.kept or audio is None:
            self._ignored(utterance, f"less than {self.config.min_speech_ms:.0f} ms of speech")
            return
        self.state.transcribing = True
        self._utterances.put_nowait(utterance)

    def _listener_failed(self, exc: Exception) -> None:
        self.state.mic, self.state.reason = "unavailable", f"listener stopped: {exc}"
        self._mic_event("unavailable", reason=self.state.reason)

    async def _make_turns(self) -> None:
        """Final transcript of each utterance, in order, then its turn."""
        assert self._loop is not None
        while (utterance := await self._utterances.get()) is not _END_OF_INPUT:
            self._stt_busy.set()
            try:
                text = await self._loop.run_in_executor(self._stt_pool, self.stt.transcribe, utterance.audio)
            except (RuntimeError, ValueError) as exc:  # CTranslate2's errors: one utterance is lost, not the session
                self._session_event(ev.Error, where="stt", message=str(exc))
                continue
            finally:
                self._stt_busy.clear()
                self.state.transcribing = not self._utterances.empty()
            await self._start_turn(utterance, text, now_ms())
        if self.state.mic == "listening":
            self.state.mic = "ended"
            self._mic_event("ended")

    async def _start_turn(self, utterance: _Utterance, text: str, final_ms: float) -> None:
        assert utterance.end is not None and utterance.audio is not None
        if not text.strip():
            self._ignored(utterance, "no words recognized")
            return
        self.state.transcript, self.state.interim = text, ""
        # A turn that began while this utterance was being spoken answers stale input: cut it,
        # and let it finish its cleanup before the next one starts.
        self.session.cancel_turn("barge-in: the user spoke", requested_at=utterance.detected_ms)
        await self.session.wait_idle()
        try:
            task = self.session.start_turn(text, t0=utterance.end_detected_ms, input_kind="voice",
                                           prelude=self._prelude(utterance, text, final_ms))
        except (InputRefused, RuntimeError) as exc:
            self._ignored(utterance, str(exc))
            return
        self._turn_tasks.add(task)
        task.add_done_callback(self._turn_tasks.discard)
        self.on_turn(text, task)

    def _prelude(self, u: _Utterance, text: str, final_ms: float) -> list[Prelude]:
        """The utterance's events for its turn; times in the data are relative to t0 like t_ms."""
        assert u.end is not None and u.audio is not None
        t0 = u.end_detected_ms

        def rel(t_ms: float) -> float:
            return round(t_ms - t0, 1)
        return [
            (ev.VadSpeechStart, u.detected_ms, {"onset_ms": rel(u.start.onset_ms), "mode": self.mode,
                                                  "barge_in": u.barge_in}),
            *[(ev.SttInterim, t, data) for t, data in u.interims],
            (ev.VadSpeechEnd, t0, {"last_voiced_ms": rel(u.end.last_voiced_ms), "trigger": u.trigger,
                                     "speech_ms": round(u.end.speech_ms, 1),
                                     "end_silence_ms": self.config.end_silence_ms}),
            (ev.SttFinal, final_ms, {"text": text, "audio_ms": round(len(u.audio) * 1000.0 / SAMPLE_RATE, 1),
                                      "model": self.stt.model}),
        ]

    def _ignored(self, utterance: _Utterance, reason: str) -> None:
        self.state.ignored += 1
        self.state.interim = ""
        speech_ms = round(utterance.end.speech_ms, 1) if utterance.end else None
        self._session_event(ev.VadSpeechEnd, ignored=reason, speech_ms=speech_ms)

    def _mic_event(self, status: str, **data: Any) -> None:
        self._session_event(ev.Mic, status=status, mode=self.mode, **data)

    def _session_event(self, kind: type[ev.TraceEvent], /, **fields: Any) -> None:
        self.session.trace.add(ev.session_event(kind, now_ms() - self.session.started_at, **fields))


def _joined(frames: list[np.ndarray]) -> np.ndarray | None:
    return np.concatenate(frames) if frames else None


class _KeyTracker:
    """Push-to-talk on the listener thread: the utterance runs from key down to key up, each
    applied at the first frame captured after it; the VAD only says where speech really ended."""

    def __init__(self, keys: queue.SimpleQueue[tuple[bool, float]], min_speech_ms: float) -> None:
        self._keys = keys
        self._pending: deque[tuple[bool, float]] = deque()
        self.min_speech_ms = min_speech_ms
        self.active = False
        self._down_at = 0.0
        self._first_voiced: float | None = None
        self._last_voiced: float | None = None

    def feed(self, voiced: bool, t_ms: float) -> SpeechStart | SpeechEnd | None:
        while True:
            try:
                self._pending.append(self._keys.get_nowait())
            except queue.Empty:
                break
        result: SpeechStart | SpeechEnd | None = None
        while self._pending and self._pending[0][1] <= t_ms:
            down, at = self._pending.popleft()
            if down and not self.active:
                self.active, self._down_at = True, at
                self._first_voiced = self._last_voiced = None
                result = SpeechStart(at, at)
            elif not down and self.active:
                return self.end(at)
        if self.active and voiced:
            self._first_voiced = t_ms if self._first_voiced is None else self._first_voiced
            self._last_voiced = t_ms
        return result

    def end(self, t_ms: float) -> SpeechEnd:
        self.active = False
        if self._first_voiced is None or self._last_voiced is None:
            return SpeechEnd(self._down_at, self._down_at, t_ms, kept=False)
        kept = speech_duration_ms(self._first_voiced, self._last_voiced) >= self.min_speech_ms
        return SpeechEnd(self._first_voiced, self._last_voiced, t_ms, kept)
