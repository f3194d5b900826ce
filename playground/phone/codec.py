"""Telephone audio: G.711 μ-law at 8 kHz in 20 ms frames, and resampling to and from it.

μ-law follows the G.711 reference algorithm (the one in Sun's g711.c and Python's `audioop`):
a 16-bit sample keeps its top 14 bits, gets a bias of 33, and is coded as sign, 3-bit segment
and 4-bit mantissa, all bits inverted. Both directions are table lookups built once from that
definition (65,536 and 256 entries), so encoding a frame is one numpy indexing.

A whole signal (a line of the caller's, a piece of the agent's reply, a reply to transcribe)
is resampled with soxr: band-limited, never linear interpolation, which squeezing 22,050 Hz
speech into 8 kHz would alias everything above 4 kHz back into the band with. A live 20 ms
stream is resampled by `playground.audio.input.StreamResampler` (libswresample), whose delay
stays at 2 ms where soxr's stream hands blocks back in bursts up to 118 ms late.
"""

from __future__ import annotations

import numpy as np

RATE = 8000  # the telephone rate both carriers stream at
FRAME_MS = 20  # one media message: what carriers send and expect
FRAME_SAMPLES = RATE * FRAME_MS // 1000  # 160 samples
FRAME_BYTES = FRAME_SAMPLES  # μ-law: one byte per sample
SILENCE_BYTE = 0xFF  # μ-law of 0
SILENT_FRAME = bytes([SILENCE_BYTE]) * FRAME_BYTES

_ULAW_BIAS = 0x21  # 0x84 >> 2: the bias on the 14-bit magnitude
_ULAW_CLIP = 8159  # the largest 14-bit magnitude before the bias
_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def _encode_table() -> np.ndarray:
    """μ-law byte for every int16 value, indexed by the value's uint16 bit pattern."""
    linear = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 14-bit, as G.711 takes it
    negative = linear < 0
    magnitude = np.minimum(np.where(negative, -linear, linear), _ULAW_CLIP) + _ULAW_BIAS
    segment = np.searchsorted(_SEGMENT_ENDS, magnitude)  # first end >= magnitude
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    code = np.where(segment < 8, (segment << 4) | mantissa, 0x7F)  # past the last segment: the top code
    mask = np.where(negative, 0x7F, 0xFF)
    table = np.zeros(65536, dtype=np.uint8)
    values = np.arange(-32768, 32768, dtype=np.int32)
    table[values.astype(np.uint16)] = (code ^ mask).astype(np.uint8)
    return table


def _decode_table() -> np.ndarray:
    """int16 sample for every μ-law byte."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


_ENCODE = _encode_table()
_DECODE = _decode_table()


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 mono samples -> μ-law bytes (one per sample)."""
    pcm = np.ascontiguousarray(samples, dtype=np.int16)
    return _ENCODE[pcm.view(np.uint16)].tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """μ-law bytes -> int16 mono samples."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)]


def to_int16(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples).reshape(-1)
    if samples.dtype == np.int16:
        return samples
    return np.clip(np.rint(samples * 32767.0), -32768, 32767).astype(np.int16)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """A whole int16 signal at another rate (soxr, high quality)."""
    if from_rate == to_rate or len(samples) == 0:
        return np.asarray(samples, dtype=np.int16)
    import soxr

    return to_int16(soxr.resample(np.asarray(samples, dtype=np.float32) / 32768.0, from_rate, to_rate))


def frames_of(data: bytes) -> list[bytes]:
    """μ-law bytes cut into 20 ms frames, the last padded with silence."""
    frames = [data[i:i + FRAME_BYTES] for i in range(0, len(data), FRAME_BYTES)]
    if frames and len(frames[-1]) < FRAME_BYTES:
        frames[-1] = frames[-1] + bytes([SILENCE_BYTE]) * (FRAME_BYTES - len(frames[-1]))
    return frames
