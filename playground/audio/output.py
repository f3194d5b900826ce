"""Audio output: play int16 mono segments and report when each was handed to the device.

Every segment is tagged with an opaque `mark` (the engine uses `(turn, chunk_index)`).
For each mark the output reports, on the event loop thread, `listener(kind, mark, t_ms)`:

- `"start"`: its first sample was handed to the device (FIRST_PLAY for the first chunk);
- `"end"`:   its last sample was handed to the device;
- `"cut"`:   `stop()` (or `close()`) dropped it after it had started: its end never played.
  A mark dropped before it started gets no report at all.

`t_ms` is `now_ms()` when the audio thread copied the sample into the device buffer.

Threads: `PlaybackQueue.fill` runs on the audio thread (PortAudio's callback, or the null
output's pacing thread); everything else runs on the asyncio thread. Reports cross over
with `loop.call_soon_threadsafe`, which never blocks the audio thread.

Use `await open_output(spec, wav_path, warn)`: it returns an *opened* output and falls
back to the real-time `NullOutput` (warning once) when no device can be used.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import queue
import sys
import threading
import time
import wave
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from playground.core.clock import now_ms

START, END, CUT = "start", "end", "cut"
DEFAULT_SOURCE_RATE = 22050  # the Piper voice's rate: the common case, played without resampling

Listener = Callable[[str, Any, float], None]


class PlaybackTap(Protocol):
    """Sees every segment an output is given to play, and every stop, when they happen (on the
    event loop thread): e.g. the voice loop's echo gate, which must know what the speakers play."""

    def queued(self, samples: np.ndarray, sample_rate: int) -> None: ...

    def cleared(self) -> None: ...


class AudioDeviceError(RuntimeError):
    """No usable sound device, phrased for the user (what is wrong and what to do)."""


class PlaybackReport(NamedTuple):
    kind: str  # START | END | CUT
    mark: Any
    t_ms: float
    serial: int  # position of the segment in enqueue order (lets drain() wait for "all so far")


class Capture(Protocol):
    def write(self, samples: np.ndarray) -> None:
        """Receives a block of samples just handed to the device; called on the audio thread."""


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Linear-interpolation resampling of int16 mono audio (good enough for speech playback)."""
    if from_rate == to_rate or len(samples) == 0:
        return samples
    out_len = round(len(samples) * to_rate / from_rate)
    positions = np.arange(out_len) * (from_rate / to_rate)
    resampled = np.interp(positions, np.arange(len(samples)), samples.astype(np.float32))
    return np.clip(np.rint(resampled), -32768, 32767).astype(np.int16)


def _as_int16(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples).reshape(-1)
    if samples.dtype == np.int16:
        return samples
    if np.issubdtype(samples.dtype, np.floating):  # float audio in [-1, 1]
        return np.clip(np.rint(samples * 32767.0), -32768, 32767).astype(np.int16)
    raise TypeError(f"audio samples must be int16 or float, got {samples.dtype}")


class _Segment:
    __slots__ = ("samples", "mark", "serial", "generation", "pos", "started")

    def __init__(self, samples: np.ndarray, mark: Any, serial: int, generation: int) -> None:
        self.samples = samples
        self.mark = mark
        self.serial = serial
        self.generation = generation
        self.pos = 0
        self.started = False


class PlaybackQueue:
    """The segments waiting to be played, shared by every output.

    `enqueue` and `clear` are called from one control thread (the event loop), `fill`
    from the audio thread. No lock: `clear` starts a new *generation* and swaps in an
    empty deque; `fill` never plays a segment of an older generation, and the segment
    it was in the middle of is reported as cut on its next call (within one block).
    """

    def __init__(self, device_rate: int, listener: Callable[[PlaybackReport], None] | None = None,
                 capture: Capture | None = None) -> None:
        self.device_rate = device_rate
        self.listener = listener  # called on the audio thread: must not block
        self.capture = capture  # receives exactly the samples handed to the device
        self._segments: deque[_Segment] = deque()
        self._current: _Segment | None = None  # touched by the audio thread only (and close())
        self._generation = 0
        self._last_serial = 0

    @property
    def pending(self) -> bool:
        """Audio is queued or being played."""
        return self._current is not None or bool(self._segments)

    @property
    def last_serial(self) -> int:
        """Serial of the most recently enqueued segment (0 before the first)."""
        return self._last_serial

    def enqueue(self, samples: np.ndarray, sample_rate: int, mark: Any) -> None:
        """Queues a segment for playback (resampled to the device rate); returns at once."""
        device_samples = np.ascontiguousarray(resample(_as_int16(samples), sample_rate, self.device_rate))
        if np.may_share_memory(device_samples, samples):  # the caller may reuse its buffer
            device_samples = device_samples.copy()
        self._last_serial += 1
        self._segments.append(_Segment(device_samples, mark, self._last_serial, self._generation))

    def clear(self) -> None:
        """Drops everything queued; the segment being played is cut at the next fill."""
        self._generation += 1
        self._segments = deque()

    def close(self) -> None:
        """Drops everything and reports the in-flight segment as cut; only once fill has stopped."""
        self.clear()
        self._cut_current(now_ms())

    def fill(self, out: np.ndarray) -> int:
        """Audio thread: copies queued samples into `out` ((frames,) or (frames, 1) int16) and
        returns how many it copied.

        Zero-fills what the queue cannot cover. Never blocks; allocates only the copy
        handed to the capture.
        """
        flat = out.reshape(-1)
        frames = len(flat)
        t = now_ms()
        written = 0
        while written < frames:
            # The generation is re-read at every step: a clear() may land in the middle of
            # this call, and segments enqueued after it must still play.
            segment = self._current
            if segment is not None and segment.generation < self._generation:
                self._cut_current(t)
                segment = None
            if segment is None:
                try:
                    segment = self._segments.popleft()
                except IndexError:
                    break
                if segment.generation < self._generation:
                    continue  # popped from the deque clear() was swapping out
                self._current = segment
            if not segment.started:
                segment.started = True
                self._report(START, segment, t)
            n = min(frames - written, len(segment.samples) - segment.pos)
            flat[written:written + n] = segment.samples[segment.pos:segment.pos + n]
            segment.pos += n
            written += n
            if segment.pos == len(segment.samples):
                self._current = None
                self._report(END, segment, t)
        flat[written:] = 0
        if written and self.capture is not None:
            self.capture.write(flat[:written])
        return written

    def _cut_current(self, t: float) -> None:
        segment, self._current = self._current, None
        if segment is not None and segment.started:
            self._report(CUT, segment, t)

    def _report(self, kind: str, segment: _Segment, t: float) -> None:
        if self.listener is not None:
            self.listener(PlaybackReport(kind, segment.mark, t, segment.serial))


class WavCapture:
    """Writes the samples handed to the device (device rate, int16 mono) to a WAV file.

    The audio thread only copies each block into a queue; a writer thread does the file
    I/O, so memory stays bounded in long sessions. Underflow silence is not written: the
    file is the played audio back to back. `close()` writes everything before returning.
    """

    def __init__(self, path: str | Path, sample_rate: int) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._wav = wave.open(str(self.path), "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)
        self._blocks: queue.SimpleQueue[np.ndarray | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_blocks, name="wav-capture", daemon=True)
        self._writer.start()

    def write(self, samples: np.ndarray) -> None:
        self._blocks.put(samples.copy())  # the device buffer is reused after the callback

    def close(self) -> None:
        self._blocks.put(None)
        self._writer.join()
        self._wav.close()

    def _write_blocks(self) -> None:
        while (block := self._blocks.get()) is not None:
            self._wav.writeframes(block.astype("<i2", copy=False).tobytes())


class AudioOutput:
    """Plays segments on a device (see the module docstring for reports and threads).

    Lifecycle: `await open()`, then `play` / `drain` / `stop` any number of times,
    then `await close()`. Subclasses implement `_prepare` (choose device and rate),
    `_start(queue)` (make the audio thread call `queue.fill`) and `_stop`.
    """

    # Audio is handed over at the device's real-time rate (False: UnpacedOutput).
    paced = True
    # From a sample handed to the device to its sound (what PortAudio reports; 0 with no device).
    latency_ms = 0.0

    def __init__(self, name: str, device_rate: int, wav_path: str | Path | None = None) -> None:
        self.name = name
        self.device_rate = device_rate
        self.wav_path = wav_path
        self._listener: Listener | None = None
        self._taps: list[PlaybackTap] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: PlaybackQueue | None = None
        self._capture: WavCapture | None = None
        self._finished_serial = 0  # every segment up to this serial has ended, been cut or dropped
        self._drain_waiters: list[tuple[int, asyncio.Future[None]]] = []

    def set_listener(self, fn: Listener | None) -> None:
        """`fn(kind, mark, t_ms)` is called on the event loop thread for every report."""
        self._listener = fn

    def add_tap(self, tap: PlaybackTap) -> None:
        self._taps.append(tap)

    def remove_tap(self, tap: PlaybackTap) -> None:
        if tap in self._taps:  # closing twice is harmless
            self._taps.remove(tap)

    async def open(self) -> None:
        """Opens the device and starts its audio thread; does nothing if already open."""
        if self._queue is not None:
            return
        self._loop = asyncio.get_running_loop()
        await self._prepare()
        playback = PlaybackQueue(self.device_rate, listener=self._post_report)
        if self.wav_path is not None:
            self._capture = playback.capture = WavCapture(self.wav_path, self.device_rate)
        try:
            await self._start(playback)
        except BaseException:
            self._close_capture()
            raise
        self._queue = playback

    def play(self, samples: np.ndarray, sample_rate: int, mark: Any) -> None:
        """Queues int16 mono samples for playback after what is already queued; returns at once."""
        if self._queue is None:
            raise RuntimeError(f"audio output {self.name!r} is not open")
        self._queue.enqueue(samples, sample_rate, mark)
        for tap in self._taps:
            tap.queued(samples, sample_rate)

    async def drain(self) -> None:
        """Returns once everything queued so far was handed to the device (or stopped)."""
        if self._queue is None or self._finished_serial >= self._queue.last_serial:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append((self._queue.last_serial, waiter))
        await waiter

    def stop(self) -> None:
        """Barge-in: drops everything queued at once. The playing mark is reported as cut
        within one audio block; pending `drain()` calls return now."""
        for tap in self._taps:
            tap.cleared()
        if self._queue is None:
            return
        self._queue.clear()
        self._finish_through(self._queue.last_serial)

    async def close(self) -> None:
        """Stops playback now (drain first to let it finish), closes the device and the WAV file."""
        playback, self._queue = self._queue, None
        if playback is None:
            return
        await self._stop()
        playback.close()
        self._close_capture()
        self._finish_through(playback.last_serial)

    async def _prepare(self) -> None:
        """Chooses the device and sets `name` / `device_rate`; raises AudioDeviceError."""

    async def _start(self, playback: PlaybackQueue) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def _close_capture(self) -> None:
        if self._capture is not None:
            self._capture.close()
            self._capture = None

    def _post_report(self, report: PlaybackReport) -> None:
        """Audio thread: hands a report to the event loop without blocking."""
        try:
            self._loop.call_soon_threadsafe(self._deliver, report)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _deliver(self, report: PlaybackReport) -> None:
        # Waiters are only woken later in this loop iteration, so the listener still sees
        # the report before drain() returns; finishing first keeps a raising listener from
        # leaving drain() hanging.
        if report.kind != START:
            self._finish_through(report.serial)
        if self._listener is not None:
            self._listener(report.kind, report.mark, report.t_ms)

    def _finish_through(self, serial: int) -> None:
        self._finished_serial = max(self._finished_serial, serial)
        still_waiting = []
        for target, waiter in self._drain_waiters:
            if target <= self._finished_serial:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still_waiting.append((target, waiter))
        self._drain_waiters = still_waiting


class NullOutput(AudioOutput):
    """No device: a thread consumes the queue in real time, 10 ms blocks on a fixed
    schedule, so play reports and drain times are those of a real device."""

    BLOCK_SECONDS = 0.010

    def __init__(self, device_rate: int = DEFAULT_SOURCE_RATE, wav_path: str | Path | None = None) -> None:
        super().__init__("null output", device_rate, wav_path)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    async def _start(self, playback: PlaybackQueue) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._pace, args=(playback,), name="null-audio", daemon=True)
        self._thread.start()

    async def _stop(self) -> None:
        self._stopping.set()
        await asyncio.to_thread(self._thread.join)

    def _pace(self, playback: PlaybackQueue) -> None:
        frames = max(1, round(self.device_rate * self.BLOCK_SECONDS))
        block = np.zeros(frames, dtype=np.int16)
        block_seconds = frames / self.device_rate
        deadline = time.perf_counter()
        while not self._stopping.is_set():
            playback.fill(block)
            # Deadlines advance by exactly one block, so wake-up jitter does not accumulate.
            deadline += block_seconds
            delay = deadline - time.perf_counter()
            if delay > 0:
                self._stopping.wait(delay)
            elif delay < -0.5:  # the process was suspended: resume instead of playing catch-up
                deadline = time.perf_counter()


class UnpacedOutput(NullOutput):
    """No device and no pacing: queued audio is taken as fast as it arrives.

    For measuring the first-audio metrics of many turns without playing every reply in
    real time (`--audio unpaced`): TTFA and FIRST_PLAY are what a device would show,
    but nothing after the first sample is real time, so a turn on this output records
    `unpaced` and its playback gaps are not measured."""

    BLOCK_SECONDS = 0.5
    paced = False

    def __init__(self, device_rate: int = DEFAULT_SOURCE_RATE, wav_path: str | Path | None = None) -> None:
        super().__init__(device_rate, wav_path)
        self.name = "unpaced output"

    def _pace(self, playback: PlaybackQueue) -> None:
        block = np.zeros(max(1, round(self.device_rate * self.BLOCK_SECONDS)), dtype=np.int16)
        while not self._stopping.is_set():
            if playback.pending:
                playback.fill(block)
            else:
                self._stopping.wait(0.001)


class SoundDeviceOutput(AudioOutput):
    """A PortAudio output stream (sounddevice), int16 mono, low latency.

    Opens at `preferred_rate` when the device accepts it (no resampling), otherwise at
    the device's default rate. `device` is None for the default device, an index or a
    (part of a) device name as `list_devices()` shows them.
    """

    def __init__(self, device: int | str | None = None, preferred_rate: int = DEFAULT_SOURCE_RATE,
                 wav_path: str | Path | None = None) -> None:
        super().__init__("default" if device is None else str(device), preferred_rate, wav_path)
        self.device = device
        self.preferred_rate = preferred_rate
        self._stream: Any = None

    async def _prepare(self) -> None:
        self.name, self.device_rate = await asyncio.to_thread(self._choose_rate)

    def _choose_rate(self) -> tuple[str, int]:
        sd = import_sounddevice()
        try:
            info = sd.query_devices(self.device, "output")
        except (sd.PortAudioError, ValueError) as exc:
            wanted = "default output device" if self.device is None else f"output device {self.device!r}"
            raise AudioDeviceError(f"no {wanted} ({exc}); `playground devices` lists the devices") from exc
        name = f"{info['name']} ({sd.query_hostapis(info['hostapi'])['name']})"
        rates = (self.preferred_rate, int(info["default_samplerate"]))
        for rate in rates:
            try:
                sd.check_output_settings(self.device, channels=1, dtype="int16", samplerate=rate)
                return name, rate
            except (sd.PortAudioError, ValueError) as exc:
                rejected = exc
        raise AudioDeviceError(f"output device {name!r} rejects 16-bit mono at {rates[0]} and {rates[1]} Hz "
                               f"({rejected})")

    async def _start(self, playback: PlaybackQueue) -> None:
        self._stream = await asyncio.to_thread(self._open_stream, playback)

    def _open_stream(self, playback: PlaybackQueue) -> Any:
        sd = import_sounddevice()

        def callback(outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            playback.fill(outdata)

        try:
            stream = sd.OutputStream(device=self.device, samplerate=self.device_rate, channels=1,
                                     dtype="int16", blocksize=0, latency="low", callback=callback)
            stream.start()
            self.latency_ms = float(stream.latency) * 1000.0
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(f"could not open output device {self.name!r} at {self.device_rate} Hz "
                                   f"({exc})") from exc
        return stream

    async def _stop(self) -> None:
        stream, self._stream = self._stream, None
        await asyncio.to_thread(self._close_stream, stream)

    @staticmethod
    def _close_stream(stream: Any) -> None:
        stream.abort()  # drop what the device still buffers: close() means now
        stream.close()


NO_DEVICE_OUTPUTS: dict[str, type[NullOutput]] = {"null": NullOutput, "unpaced": UnpacedOutput}


def _parse_device(spec: str | int) -> int | str | None:
    if isinstance(spec, int):
        return spec
    spec = spec.strip()
    if spec == "default":
        return None
    return int(spec) if spec.isdigit() else spec


async def open_output(spec: str | int = "default", wav_path: str | Path | None = None,
                      warn: Callable[[str], None] = print,
                      preferred_rate: int = DEFAULT_SOURCE_RATE) -> AudioOutput:
    """Opens and returns the output `spec` names (the caller only has to `close()` it).

    `spec`: "null" (no device, real-time paced), "unpaced" (no device, no pacing: first-audio
    metrics only), "default" (the system's default output),
    or a device index or name as `list_devices()` shows them. `wav_path`: also write
    what is played to this WAV file. If the device cannot be used (PortAudio missing, no
    such device, opening fails), `warn` is called once with the reason and what to do,
    and an opened NullOutput is returned instead.
    """
    if str(spec).strip() in NO_DEVICE_OUTPUTS:
        output: AudioOutput = NO_DEVICE_OUTPUTS[str(spec).strip()](preferred_rate, wav_path)
    else:
        output = SoundDeviceOutput(_parse_device(spec), preferred_rate, wav_path)
        try:
            await output.open()
            return output
        except AudioDeviceError as exc:
            warn(f"audio: {exc}; using the null output")
            output = NullOutput(preferred_rate, wav_path)
    await output.open()
    return output


def list_devices() -> list[dict[str, Any]]:
    """Every PortAudio device (for `playground devices`); empty when PortAudio is missing."""
    try:
        sd = import_sounddevice()
    except AudioDeviceError:
        return []
    devices = sd.query_devices()
    default_input, default_output = sd.default.device  # -1 when there is none
    return [
        {
            "index": info["index"],
            "name": info["name"],
            "hostapi": sd.query_hostapis(info["hostapi"])["name"],
            "max_input_channels": info["max_input_channels"],
            "max_output_channels": info["max_output_channels"],
            "default_samplerate": info["default_samplerate"],
            "default_input": info["index"] == default_input,
            "default_output": info["index"] == default_output,
        }
        for info in devices
    ]


def import_sounddevice() -> Any:
    """Imports sounddevice quietly; raises AudioDeviceError saying what to install.

    ALSA and JACK print diagnostics straight to file descriptor 2, which would corrupt
    the TUI: PortAudio's start-up runs with fd 2 sent to /dev/null, and ALSA's runtime
    messages (e.g. underruns) go to a handler that drops them.
    """
    _silence_alsa()
    try:
        with _stderr_fd_to_devnull():
            import sounddevice
    except OSError as exc:  # sounddevice raises OSError('PortAudio library not found')
        raise AudioDeviceError("PortAudio library not found (install the Debian package libportaudio2)") from exc
    except ImportError as exc:
        raise AudioDeviceError("the sounddevice package is not installed (pip install sounddevice)") from exc
    return sounddevice


@contextlib.contextmanager
def _stderr_fd_to_devnull() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# void handler(const char *file, int line, const char *function, int err, const char *fmt, ...)
_ALSA_ERROR_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                       ctypes.c_int, ctypes.c_char_p)
_alsa_quiet_handler: Any = None  # kept referenced: ALSA holds a raw pointer to it


def _silence_alsa() -> None:
    global _alsa_quiet_handler
    if _alsa_quiet_handler is not None:
        return
    library = ctypes.util.find_library("asound")
    if library is None:
        return
    try:
        asound = ctypes.CDLL(library)
    except OSError:
        return
    _alsa_quiet_handler = _ALSA_ERROR_HANDLER(lambda *args: None)
    asound.snd_lib_error_set_handler(_alsa_quiet_handler)
