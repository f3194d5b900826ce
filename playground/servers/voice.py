"""The voice behind the loopback TTS servers: the local Piper voice, loaded once per server."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from playground.audio.output import resample
from playground.tts.base import TTSError
from playground.tts.piper import find_voice_files, load_voice, onnx_threads


class LoopbackVoice:
    """Synthesizes text to int16 mono PCM at the sample rate a client asked for.

    Servers call `synthesize` from worker threads; onnxruntime's `run` is thread-safe,
    so concurrent contexts need no lock."""

    def __init__(self, voice: str = "en_US-joe-medium") -> None:
        model, config = find_voice_files(voice)
        try:
            from piper import PiperVoice
        except ImportError:
            raise TTSError("loopback voice: piper-tts is not installed (pip install piper-tts)") from None
        self._voice = load_voice(PiperVoice, model, config, onnx_threads(0))
        self.native_rate: int = self._voice.config.sample_rate

    def synthesize(self, text: str, sample_rate: int | None = None) -> Iterator[np.ndarray]:
        """The speech of `text`, sentence by sentence as Piper produces it (int16 at `sample_rate`)."""
        rate = sample_rate or self.native_rate
        if not text.strip():
            return
        for piece in self._voice.synthesize(text):
            yield resample(piece.audio_int16_array, self.native_rate, rate)
