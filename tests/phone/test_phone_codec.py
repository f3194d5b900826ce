"""G.711 μ-law against Python's own implementation (`audioop`, used here only as an independent
reference) and resampling against what linear interpolation would do."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from playground.audio.input import StreamResampler
from playground.phone.codec import (
    FRAME_BYTES,
    FRAME_MS,
    RATE,
    SILENT_FRAME,
    frames_of,
    resample,
    ulaw_decode,
    ulaw_encode,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # deprecated since 3.11, gone in 3.13: the test then skips


def test_a_20_ms_frame_is_160_bytes_at_8_khz():
    assert (RATE, FRAME_MS, FRAME_BYTES) == (8000, 20, 160)
    assert SILENT_FRAME == b"\xff" * 160 and ulaw_decode(SILENT_FRAME).tolist() == [0] * 160


def test_every_16_bit_sample_encodes_as_the_reference_does():
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert ulaw_encode(every) == audioop.lin2ulaw(every.tobytes(), 2)


def test_every_ulaw_byte_decodes_as_the_reference_does():
    every = bytes(range(256))
    assert ulaw_decode(every).tobytes() == audioop.ulaw2lin(every, 2)


def test_the_g711_table_values():
    # G.711: 0 -> 0xFF, the largest magnitudes -> 0x80 / 0x00, and the decoder's extremes +-32124
    assert ulaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == bytes([0xFF, 0x80, 0x00])
    assert ulaw_decode(bytes([0x80, 0x00, 0x7F])).tolist() == [32124, -32124, 0]


def test_a_round_trip_keeps_speech_within_the_codec_step():
    rng = np.random.default_rng(1)
    speech_like = np.clip(rng.normal(0, 3000, 8000), -32768, 32767).astype(np.int16)
    back = ulaw_decode(ulaw_encode(speech_like)).astype(np.int32)
    # the step grows with the magnitude: at most 1/16 of it (plus the smallest step)
    assert np.all(np.abs(back - speech_like) <= np.abs(speech_like) / 16 + 8)


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * 16000).astype(np.int16)


def level_at(samples: np.ndarray, rate: int, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    bin_ = round(freq * len(samples) / rate)
    return float(spectrum[max(0, bin_ - 2):bin_ + 3].max())


def test_a_tone_in_the_telephone_band_passes():
    out = resample(tone(1000, 22050), 22050, RATE)
    assert len(out) == RATE
    assert level_at(out, RATE, 1000) == pytest.approx(level_at(tone(1000, RATE), RATE, 1000), rel=0.05)


def test_a_tone_above_4_khz_is_filtered_out_not_folded_into_the_band():
    # 5 kHz does not exist at 8 kHz: a real resampler removes it; linear interpolation folds it to 3 kHz
    high = tone(5000, 22050)
    out = resample(high, 22050, RATE)
    positions = np.arange(RATE) * (22050 / RATE)
    interpolated = np.interp(positions, np.arange(len(high)), high.astype(np.float64))
    reference = level_at(tone(3000, RATE), RATE, 3000)
    assert level_at(interpolated, RATE, 3000) > 0.3 * reference  # what the engine's linear resampler would do
    assert level_at(out, RATE, 3000) < 0.01 * reference


def test_a_live_stream_in_20_ms_blocks_comes_out_at_once_and_band_limited():
    # the caller's audio reaches the agent's VAD through this: every block must come out with
    # it, at a constant delay, not in bursts (soxr's stream held blocks back 4 to 118 ms)
    stream = StreamResampler(RATE, 16000)
    behind = []
    given = 0
    band_top = tone(3400, RATE, 2.0).astype(np.float32) / 32768  # the telephone band's top
    for i in range(0, len(band_top), FRAME_BYTES):
        given += len(stream(band_top[i:i + FRAME_BYTES]))
        behind.append(2 * (i + FRAME_BYTES) - given)
    assert max(behind[5:]) == min(behind[5:]) <= 64  # samples at 16 kHz: at most 4 ms
    out = StreamResampler(RATE, 16000)(band_top)
    reference = level_at(tone(3400, 16000, 2.0).astype(np.float32) / 32768, 16000, 3400)
    assert level_at(out, 16000, 3400) > 0.9 * reference
    # upsampling by interpolation leaves an image of the tone at 8000 - 3400 Hz; a real resampler does not
    assert level_at(out, 16000, 4600) < 0.05 * reference


def test_frames_of_pads_the_last_frame_with_silence():
    frames = frames_of(b"\x01" * 400)
    assert [len(f) for f in frames] == [160, 160, 160]
    assert frames[2] == b"\x01" * 80 + b"\xff" * 80
