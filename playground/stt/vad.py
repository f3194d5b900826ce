"""Streaming voice activity detection with the Silero model faster-whisper ships (no network).

`SileroVAD` scores one 32 ms frame at a time, carrying the model's recurrent state and
64 samples of context from frame to frame (the same computation faster-whisper does on
a whole file, fed incrementally). `SpeechDetector` turns the scores into speech start
(`START_FRAMES` voiced frames in a row), speech end (`end_silence_ms` after the last
voiced frame) and drops utterances shorter than `min_speech_ms`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from playground.audio.input import FRAME_MS, FRAME_SAMPLES

CONTEXT_SAMPLES = 64  # the model sees the tail of the previous window before each new one
START_FRAMES = 2  # voiced frames in a row that make a speech start (64 ms): a click is one frame


class VADUnavailable(RuntimeError):
    """The Silero model could not be loaded; the message says what to install."""


class SileroVAD:
    def __init__(self) -> None:
        try:
            from faster_whisper.vad import get_vad_model
        except ImportError:
            raise VADUnavailable("VAD: faster-whisper is not installed (pip install faster-whisper, "
                                 "or pip install -e '.[offline]')") from None
        try:
            self._session = get_vad_model().session  # onnxruntime, one thread
        except Exception as exc:  # onnxruntime raises its own types
            raise VADUnavailable(f"VAD: could not load the Silero model ({exc})") from exc
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability of one FRAME_SAMPLES frame (float32, 16 kHz)."""
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"VAD frames are {FRAME_SAMPLES} samples, got {len(frame)}")
        if not frame.any():
            # Digital silence (a muted line, a carrier's silence between words) holds nothing to
            # hear, and the model's state drifts on long runs of exact zeros: after 15 s of them a
            # 0.7 s question scored as 0.2 s of speech and was dropped. Skip it, as silence.
            self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
            return 0.0
        window = np.concatenate((self._context, frame)).astype(np.float32, copy=False)[np.newaxis]
        out, self._h, self._c = self._session.run(None, {"input": window, "h": self._h, "c": self._c})
        self._context = frame[-CONTEXT_SAMPLES:]
        return float(out.reshape(-1)[0])


@dataclass(frozen=True, slots=True)
class SpeechStart:
    onset_ms: float  # capture time of the first voiced frame's end
    t_ms: float  # capture time of the frame that confirmed it


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    onset_ms: float
    last_voiced_ms: float  # capture time of the last voiced frame's end: where speech really ended
    t_ms: float  # capture time of the frame that completed the silence
    kept: bool  # False: shorter than min_speech_ms, not a turn

    @property
    def speech_ms(self) -> float:
        return speech_duration_ms(self.onset_ms, self.last_voiced_ms)


def speech_duration_ms(onset_ms: float, last_voiced_ms: float) -> float:
    return last_voiced_ms - onset_ms + FRAME_MS  # both are frame ends: count the first frame too


class SpeechDetector:
    """Speech start/end from per-frame probabilities, with hysteresis: a frame is voiced at
    `threshold`, and only a frame under `threshold - 0.15` counts toward the end silence."""

    def __init__(self, threshold: float = 0.5, end_silence_ms: float = 500.0, min_speech_ms: float = 150.0) -> None:
        self.threshold = threshold
        self.silence_threshold = max(threshold - 0.15, 0.01)
        self.end_silence_ms = end_silence_ms
        self.min_speech_ms = min_speech_ms
        self.speaking = False
        self._run = 0  # voiced frames in a row before a start
        self._onset = 0.0
        self._last_voiced = 0.0

    def reset(self) -> None:
        self.speaking = False
        self._run = 0

    def feed(self, probability: float, t_ms: float) -> SpeechStart | SpeechEnd | None:
        """One frame's probability and capture time; returns what it completed, if anything."""
        voiced = probability >= self.threshold
        if not self.speaking:
            self._run = self._run + 1 if voiced else 0
            if self._run == 1:
                self._onset = t_ms
            if self._run >= START_FRAMES:
                self.speaking = True
                self._last_voiced = t_ms
                return SpeechStart(self._onset, t_ms)
            return None
        if voiced:
            self._last_voiced = t_ms
        elif probability < self.silence_threshold and t_ms - self._last_voiced >= self.end_silence_ms:
            return self.end(t_ms)
        return None

    def end(self, t_ms: float) -> SpeechEnd:
        """Ends the current speech now (silence, end of input, key released, length limit)."""
        self.speaking = False
        self._run = 0
        kept = speech_duration_ms(self._onset, self._last_voiced) >= self.min_speech_ms
        return SpeechEnd(self._onset, self._last_voiced, t_ms, kept=kept)
