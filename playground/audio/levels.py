"""Audio levels: how loud a piece of audio is, window by window, and where it becomes audible."""

from __future__ import annotations

import numpy as np

AUDIBLE_DB = -45.0  # a 10 ms window at least this loud (RMS, dBFS) is heard
AUDIBLE_WINDOW_MS = 10.0


def as_float(samples: np.ndarray) -> np.ndarray:
    """Mono samples as float in [-1, 1] (int16 or float input)."""
    audio = np.asarray(samples).reshape(-1)
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    return audio.astype(np.float32, copy=False)


def window_levels_db(samples: np.ndarray, sample_rate: int, window_ms: float) -> np.ndarray:
    """The RMS level (dBFS) of each whole window of `window_ms`; silence is -inf."""
    audio = as_float(samples)
    window = max(1, round(sample_rate * window_ms / 1000.0))
    count = len(audio) // window
    if count == 0:
        return np.empty(0)
    power = np.mean(np.square(audio[: count * window].reshape(count, window), dtype=np.float64), axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(power)


def first_audible_ms(samples: np.ndarray, sample_rate: int, threshold_db: float = AUDIBLE_DB,
                     window_ms: float = AUDIBLE_WINDOW_MS) -> float | None:
    """Where the first window at least `threshold_db` loud starts (ms into the audio), None when none is.

    A window, not a sample: a lone click is not the start of speech."""
    loud = np.flatnonzero(window_levels_db(samples, sample_rate, window_ms) >= threshold_db)
    return float(loud[0] * window_ms) if loud.size else None
