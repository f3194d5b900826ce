"""Audio: playback with per-segment play reports (output), WAV capture, device listing."""

from playground.audio.output import (
    CUT,
    END,
    START,
    AudioDeviceError,
    AudioOutput,
    NullOutput,
    PlaybackQueue,
    PlaybackReport,
    SoundDeviceOutput,
    UnpacedOutput,
    WavCapture,
    import_sounddevice,
    list_devices,
    open_output,
    resample,
)

__all__ = [
    "CUT",
    "END",
    "START",
    "AudioDeviceError",
    "AudioOutput",
    "NullOutput",
    "PlaybackQueue",
    "PlaybackReport",
    "SoundDeviceOutput",
    "UnpacedOutput",
    "WavCapture",
    "import_sounddevice",
    "list_devices",
    "open_output",
    "resample",
]
