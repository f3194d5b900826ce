"""The engine's audio ends, on a phone call: what the agent says goes out as 20 ms μ-law
frames at real-time rate (`CallOutput`), what the caller says comes in as the voice loop's
16 kHz frames (`CallInput`).

`CallOutput` is an `AudioOutput`: the session plays into it as into a sound card, so its
play reports keep their meaning (FIRST_PLAY is the first frame handed to the socket) and
`stop()` (barge-in) is where the agent sends `clear`. Its pacing thread takes one 20 ms
frame from the playback queue per tick, like a device callback, and hands the frame, with
the reports it caused, to the event loop in one step: the frame is queued for the socket
before any report is delivered, so a `mark` sent on a chunk's end follows its last frame.
When nothing is queued the thread sleeps until `play()` wakes it: a reply's first frame
leaves at once instead of at the next tick.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from playground.audio.input import FRAME_MS as VAD_FRAME_MS
from playground.audio.input import AudioInput, Frame
from playground.audio.output import START, AudioOutput, PlaybackQueue, PlaybackReport
from playground.phone.codec import FRAME_MS, FRAME_SAMPLES, RATE, resample, to_int16, ulaw_decode, ulaw_encode

FRAME_S = FRAME_MS / 1000.0
LATE_RESTART_S = 0.5  # the thread was stalled this long: resume the cadence instead of bursting to catch up
STREAM_FRAMES_KEPT = 3000  # frames whose stream position / arrival is remembered (a minute and more)

FrameSink = Callable[[bytes, list[Any]], None]  # (μ-law frame, marks of the pieces that started in it)


class CallOutput(AudioOutput):
    """Plays into a call: `on_frame(frame, started_marks)` on the event loop for every 20 ms
    μ-law frame, at real-time rate; `on_stop()` when playback is stopped (barge-in). A session
    opened before its call comes is given its call with `connect`."""

    def __init__(self, name: str = "phone call") -> None:
        super().__init__(name, RATE)
        self._on_frame: FrameSink = lambda frame, started: None
        self._on_stop: Callable[[], None] = lambda: None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pacer: int | None = None  # the pacing thread's ident
        self._reports: list[PlaybackReport] = []  # collected during one fill, on the pacing thread

    def connect(self, on_frame: FrameSink, on_stop: Callable[[], None]) -> None:
        self._on_frame = on_frame
        self._on_stop = on_stop

    def play(self, samples: np.ndarray, sample_rate: int, mark: Any) -> None:
        # Resampled here with soxr: the queue's own resampling is linear interpolation, which
        # would alias the voice's 4-11 kHz into the telephone band.
        super().play(resample(to_int16(samples), sample_rate, RATE), RATE, mark)
        self._wake.set()

    def stop(self) -> None:
        super().stop()
        self._on_stop()

    async def _start(self, playback: PlaybackQueue) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._pace, args=(playback,), name="call-output", daemon=True)
        self._thread.start()

    async def _stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def _post_report(self, report: PlaybackReport) -> None:
        if threading.get_ident() == self._pacer:
            self._reports.append(report)  # handed over with its frame
        else:  # close() cutting the last piece, from the loop
            super()._post_report(report)

    def _pace(self, playback: PlaybackQueue) -> None:
        self._pacer = threading.get_ident()
        block = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        deadline = time.perf_counter()
        while not self._stopping.is_set():
            if not playback.pending:
                self._wake.wait()
                self._wake.clear()
                deadline = max(deadline, time.perf_counter())  # idle: the next frame may go now
                continue
            delay = deadline - time.perf_counter()
            if delay > 0 and self._stopping.wait(delay):
                return
            if delay < -LATE_RESTART_S:
                deadline = time.perf_counter()
            written = playback.fill(block)
            reports, self._reports = self._reports, []
            frame = ulaw_encode(block) if written else None
            if frame is not None or reports:
                try:
                    self._loop.call_soon_threadsafe(self._hand_over, frame, reports)
                except RuntimeError:  # the loop is closed: the call is over
                    return
            deadline += FRAME_S

    def _hand_over(self, frame: bytes | None, reports: list[PlaybackReport]) -> None:
        if frame is not None:
            self._on_frame(frame, [r.mark for r in reports if r.kind == START])
        for report in reports:
            self._deliver(report)


class CallInput(AudioInput):
    """The caller's audio for the voice loop: μ-law frames fed on the event loop as they arrive,
    decoded, then resampled to 16 kHz and framed for the VAD by `AudioInput`.

    Positions in the caller's stream count the caller audio received since the stream started,
    in ms. Every VAD frame's position is remembered by its `t_ms` (`stream_ms_at`), and every
    caller frame's arrival by its position (`arrival_at`), so an end of speech found by the VAD
    can be placed in the stream and timed from when that audio arrived, whatever the resampler
    held back."""

    hears_playback = False  # the caller's stream does not carry the agent's voice

    def __init__(self, name: str = "phone call") -> None:
        super().__init__(name, RATE)
        self.received_ms = 0.0  # caller audio received so far: the stream position of the latest frame's end
        self.last_arrival_ms: float | None = None  # when the latest frame arrived
        self.frames_received = 0
        self._positions: dict[float, float] = {}  # VAD frame t_ms -> stream position of its end
        self._position_order: deque[float] = deque()
        self._arrivals: deque[tuple[float, float]] = deque()  # (stream position of a frame's end, arrival)

    def start(self) -> None:
        """Nothing to start: audio arrives with `feed`."""

    def feed(self, payload: bytes, arrival_ms: float) -> None:
        pcm = ulaw_decode(payload).astype(np.float32) / 32768.0
        self._put(pcm, arrival_ms)
        self.received_ms += len(payload) * 1000.0 / RATE
        self.last_arrival_ms = arrival_ms
        self.frames_received += 1
        self._arrivals.append((self.received_ms, arrival_ms))
        if len(self._arrivals) > STREAM_FRAMES_KEPT:
            self._arrivals.popleft()

    def frames(self) -> Iterator[Frame]:
        for index, frame in enumerate(super().frames()):
            self._positions[frame.t_ms] = (index + 1) * VAD_FRAME_MS
            self._position_order.append(frame.t_ms)
            if len(self._position_order) > STREAM_FRAMES_KEPT:
                self._positions.pop(self._position_order.popleft(), None)
            yield frame

    def stream_ms_at(self, t_ms: float) -> float | None:
        """The stream position of the end of the VAD frame stamped `t_ms` (None: unknown)."""
        return self._positions.get(t_ms)

    def arrival_at(self, stream_ms: float) -> float | None:
        """When the caller audio at `stream_ms` arrived, live: its frame's arrival less the part of
        the frame after it (None: not received, or forgotten)."""
        for end_ms, arrival_ms in reversed(self._arrivals):  # recent positions are asked for
            if end_ms - FRAME_MS <= stream_ms <= end_ms:
                return arrival_ms - (end_ms - stream_ms)
            if end_ms < stream_ms:
                return None
        return None
