"""Audio input: the microphone (sounddevice) or a WAV file played in real time, as 16 kHz frames.

Both sources work the same way: a producer (PortAudio's callback, or the file's pacing
thread) only copies each block with its capture time into a `queue.SimpleQueue` and
returns, so the audio thread never blocks. The consumer, a listener thread of the voice
loop, calls `frames()`: blocks are resampled to 16 kHz mono (libswresample through PyAV,
which faster-whisper already needs) and cut into `FRAME_SAMPLES` frames, the window of
the Silero VAD.

`open_input(spec)` returns a started source or raises `MicUnavailable` with the reason
(no PortAudio, no input device, the device refused to open): the caller shows
"mic unavailable (reason)" and typed input goes on working.
"""

from __future__ import annotations

import math
import queue
import threading
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from playground.audio.output import AudioDeviceError, import_sounddevice, list_devices
from playground.core.clock import now_ms

SAMPLE_RATE = 16_000  # what the VAD and Whisper take
FRAME_SAMPLES = 512  # one Silero VAD window: 32 ms at 16 kHz
FRAME_MS = FRAME_SAMPLES * 1000 / SAMPLE_RATE
BLOCK_SECONDS = 0.020  # what a producer hands over at a time
SILENCE_DB = -100.0  # the level of digital silence (log of zero)
_END = object()  # the producer has no more audio (end of file, stream closed)
ORDERING_STEP_MS = 0.001  # how far after the frame before it a frame with a bunched stamp is placed


class MicUnavailable(RuntimeError):
    """No microphone can be used; the message says why and what to do."""


@dataclass(slots=True)
class Frame:
    samples: np.ndarray  # float32 in [-1, 1], FRAME_SAMPLES at SAMPLE_RATE
    t_ms: float  # monotonic time its last sample was captured
    level_db: float  # RMS in dBFS (SILENCE_DB for digital silence)


def level_db(samples: np.ndarray) -> float:
    """RMS level of float samples in dBFS."""
    if len(samples) == 0:
        return SILENCE_DB
    rms = math.sqrt(float(np.mean(np.square(samples, dtype=np.float64))))
    return max(SILENCE_DB, 20.0 * math.log10(rms)) if rms > 0 else SILENCE_DB


class StreamResampler:
    """Streaming conversion of float32 mono blocks at `rate` to `to_rate` (libswresample, a
    band-limited resampler). Its delay is constant and small (32 samples converting 20 ms
    blocks from 8 to 16 kHz): what a live stream needs. soxr's stream, built for throughput,
    gives the same blocks back 4 to 118 ms late, in bursts."""

    def __init__(self, rate: int, to_rate: int = SAMPLE_RATE) -> None:
        self.rate = rate
        self._resampler: Any = None
        if rate != to_rate:
            import av

            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=to_rate)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        if self._resampler is None:
            return block
        import av

        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


class AudioInput:
    """A source of captured audio. `start()`, then `frames()` from one consumer thread,
    then `close()` (which also ends `frames()`).

    `hears_playback`: whether the agent's own voice can reach this source (a microphone
    near speakers can; a file cannot), so echo gating applies to it.
    """

    hears_playback = True

    def __init__(self, name: str, rate: int) -> None:
        self.name = name
        self.rate = rate
        self.overflows = 0  # blocks the device dropped before we got them
        self._blocks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = threading.Event()

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed.set()
        self._blocks.put(_END)

    def _put(self, block: np.ndarray, t_ms: float) -> None:
        """Producer side: never blocks (SimpleQueue.put on an unbounded queue)."""
        self._blocks.put((block, t_ms))

    def frames(self) -> Iterator[Frame]:
        """16 kHz frames in capture order, until the source ends or is closed (blocking)."""
        resample = StreamResampler(self.rate)
        pending = np.zeros(0, dtype=np.float32)
        previous = -math.inf
        while not self._closed.is_set():
            item = self._blocks.get()
            if item is _END:
                return
            block, t_ms = item
            pending = np.concatenate((pending, resample(block)))
            count = len(pending) // FRAME_SAMPLES
            for i in range(count):
                samples = pending[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]
                # the block's last sample was captured at t_ms; later samples of `pending` are newer
                behind_ms = (len(pending) - (i + 1) * FRAME_SAMPLES) * 1000 / SAMPLE_RATE
                # Stamps taken on arrival bunch when the producer fell behind (a late callback, a
                # network burst): frame times must still never run backwards, and stay distinct
                # (a call maps each frame's time to its stream position).
                previous = max(t_ms - behind_ms, previous + ORDERING_STEP_MS)
                yield Frame(samples, previous, level_db(samples))
            pending = pending[count * FRAME_SAMPLES:]


class MicInput(AudioInput):
    """A PortAudio input stream; `device` is None (default input), an index or part of a name."""

    def __init__(self, device: int | str | None = None) -> None:
        super().__init__("default input" if device is None else str(device), SAMPLE_RATE)
        self.device = device
        self._stream: Any = None

    def start(self) -> None:
        try:
            sd = import_sounddevice()
        except AudioDeviceError as exc:
            raise MicUnavailable(str(exc)) from exc
        try:
            info = sd.query_devices(self.device, "input")
        except (sd.PortAudioError, ValueError) as exc:
            wanted = "no default input device" if self.device is None else f"no input device {self.device!r}"
            raise MicUnavailable(f"{wanted} ({exc}); `playground devices` lists the devices") from exc
        self.name = f"{info['name']} ({sd.query_hostapis(info['hostapi'])['name']})"
        # 16 kHz straight from the device when it offers it; otherwise its own rate, resampled.
        for rate in (SAMPLE_RATE, int(info["default_samplerate"])):
            try:
                sd.check_input_settings(self.device, channels=1, dtype="float32", samplerate=rate)
                self.rate = rate
                break
            except (sd.PortAudioError, ValueError) as exc:
                rejected = exc
        else:
            raise MicUnavailable(f"input device {self.name!r} rejects mono float audio ({rejected})")

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status.input_overflow:
                self.overflows += 1
            self._put(indata[:, 0].copy(), now_ms())

        try:
            self._stream = sd.InputStream(device=self.device, samplerate=self.rate, channels=1, dtype="float32",
                                          blocksize=round(self.rate * BLOCK_SECONDS), latency="low",
                                          callback=callback)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            self._stream = None
            raise MicUnavailable(f"could not open input device {self.name!r} at {self.rate} Hz ({exc})") from exc

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()
            stream.close()
        super().close()


class WavFileInput(AudioInput):
    """A 16-bit PCM WAV file fed block by block at the pace of a real microphone
    (`speed` > 1 plays it faster, for long test recordings), then the end of input."""

    hears_playback = False

    def __init__(self, path: str | Path, speed: float = 1.0) -> None:
        self.path = Path(path)
        try:
            with wave.open(str(self.path), "rb") as wav:
                channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
                data = wav.readframes(wav.getnframes())
        except FileNotFoundError:
            raise MicUnavailable(f"mic file {self.path}: no such file") from None
        except (wave.Error, EOFError) as exc:
            raise MicUnavailable(f"mic file {self.path}: not a WAV file ({exc})") from None
        if width != 2:
            raise MicUnavailable(f"mic file {self.path}: {8 * width}-bit samples; convert it to 16-bit PCM "
                                 f"(e.g. ffmpeg -i {self.path.name} -c:a pcm_s16le out.wav)")
        super().__init__(f"file {self.path.name}", rate)
        samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels).mean(axis=1)
        self.samples = (samples / 32768.0).astype(np.float32)
        self.speed = speed
        self._thread: threading.Thread | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate

    def start(self) -> None:
        self._thread = threading.Thread(target=self._pace, name="mic-file", daemon=True)
        self._thread.start()

    def _pace(self) -> None:
        step = max(1, round(self.rate * BLOCK_SECONDS))
        block_ms = step * 1000.0 / self.rate / self.speed
        deadline = now_ms()
        for start in range(0, len(self.samples), step):
            # Deadlines advance by exactly one block: wake-up jitter does not accumulate. Each block
            # is stamped with its deadline, when a microphone would have captured it, however late we woke.
            deadline += block_ms
            if self._closed.wait(max(0.0, deadline - now_ms()) / 1000.0):
                return
            self._put(self.samples[start:start + step], deadline)
        self._blocks.put(_END)

    def close(self) -> None:
        super().close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)


class CuedInput(AudioInput):
    """Recorded parts (int16, 16 kHz) fed in real time like a microphone, each once its cue
    (a threading.Event) is set, with silence while waiting: speech at a moment chosen by the
    caller, e.g. while the agent's reply plays (tests, benchmarks). Ends after the last part."""

    hears_playback = False

    def __init__(self, parts: list[tuple[threading.Event | None, np.ndarray]], name: str = "cued speech") -> None:
        super().__init__(name, SAMPLE_RATE)
        self.parts = parts

    def start(self) -> None:
        threading.Thread(target=self._feed, name="cued-input", daemon=True).start()

    def _feed(self) -> None:
        step = round(SAMPLE_RATE * BLOCK_SECONDS)
        quiet = np.zeros(step, dtype=np.float32)
        deadline = now_ms()
        for cue, audio in self.parts:
            samples = audio.astype(np.float32) / 32768.0
            position = 0
            while position < len(samples):
                deadline += BLOCK_SECONDS * 1000.0  # stamped as in WavFileInput._pace
                if self._closed.wait(max(0.0, deadline - now_ms()) / 1000.0):
                    return
                if cue is not None and not cue.is_set():
                    self._put(quiet, deadline)
                    continue
                self._put(samples[position:position + step], deadline)
                position += step
        self._blocks.put(_END)


def open_input(device: str = "default", mic_file: str | Path | None = None, speed: float = 1.0) -> AudioInput:
    """A started input: `mic_file` when given, else the microphone `device` ("default",
    an index or part of a name). Raises MicUnavailable with the reason."""
    if mic_file is not None:
        source: AudioInput = WavFileInput(mic_file, speed=speed)
    else:
        spec = device.strip()
        source = MicInput(None if spec in ("", "default") else int(spec) if spec.isdigit() else spec)
    source.start()
    return source


def list_input_devices() -> list[dict[str, Any]]:
    """The devices that can record (for `playground devices`)."""
    return [d for d in list_devices() if d["max_input_channels"] > 0]
