"""Test speech made at test time with the local Piper voice (no committed audio)."""

from __future__ import annotations

import functools
import wave
from pathlib import Path

import numpy as np

from playground.audio.input import SAMPLE_RATE

SECOND = SAMPLE_RATE


@functools.cache
def _voice():
    from playground.servers.voice import LoopbackVoice

    return LoopbackVoice()


@functools.cache
def speech(text: str) -> np.ndarray:
    """`text` spoken by Piper, int16 mono at 16 kHz."""
    return np.concatenate(list(_voice().synthesize(text, SAMPLE_RATE)))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


def noise(seconds: float, amplitude: float = 0.05, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0, amplitude * 32767, round(seconds * SAMPLE_RATE)), -32768, 32767).astype(np.int16)


def write_wav(path: Path, *parts: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.concatenate(parts).astype("<i2").tobytes())
    return path


def words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in text).split()


def mostly_heard(text: str, expected: str, share: float = 0.75) -> bool:
    """Whether `text` has at least `share` of the words of `expected` (tiny.en mishears a word now and then)."""
    said = words(expected)
    heard = set(words(text))
    return sum(w in heard for w in said) >= share * len(said)
