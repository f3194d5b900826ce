"""The audio encodings the loopback TTS servers send: raw PCM (s16le, f32le), WAV and MP3.

MP3 is encoded by LAME through PyAV (FFmpeg's libmp3lame, shipped in PyAV's wheels),
frame by frame as the speech is made, like a provider streaming `mp3_44100_128`.
"""

from __future__ import annotations

import io
import wave

import numpy as np

from playground.tts.base import TTSError


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """16-bit mono PCM as a WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


def float32_bytes(samples: np.ndarray) -> bytes:
    """int16 samples as little-endian float32 in [-1, 1) (Cartesia's `pcm_f32le`)."""
    return (samples.astype("<f4") / np.float32(32768)).tobytes()


class Mp3Encoder:
    """int16 mono samples in, MP3 frames out, as they are ready (`encode`, then `finish`)."""

    def __init__(self, sample_rate: int, bitrate_kbps: int) -> None:
        try:
            import av
        except ImportError:
            raise TTSError("loopback server: MP3 output needs PyAV (pip install av)") from None
        self._av = av
        self.sample_rate = sample_rate
        self._context = av.CodecContext.create("libmp3lame", "w")
        self._context.sample_rate = sample_rate
        self._context.layout = "mono"
        self._context.format = "s16p"
        self._context.bit_rate = bitrate_kbps * 1000

    def encode(self, samples: np.ndarray) -> bytes:
        if not len(samples):
            return b""
        frame = self._av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype="<i2").reshape(1, -1),
                                                 format="s16p", layout="mono")
        frame.sample_rate = self.sample_rate
        return b"".join(bytes(packet) for packet in self._context.encode(frame))

    def finish(self) -> bytes:
        """The frames LAME still holds (its look-ahead): the end of the stream."""
        return b"".join(bytes(packet) for packet in self._context.encode(None))


def mp3_bytes(samples: np.ndarray, sample_rate: int, bitrate_kbps: int = 128) -> bytes:
    encoder = Mp3Encoder(sample_rate, bitrate_kbps)
    return encoder.encode(samples) + encoder.finish()
