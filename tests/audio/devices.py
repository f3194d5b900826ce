"""Whether this machine has a real sound device for the device tests, and if not, why not."""

from __future__ import annotations

import functools
import shutil
import subprocess

from playground.audio import AudioDeviceError, import_sounddevice

SETUP = "scripts/virtual-audio.sh start (as root on Debian it installs what is missing)"


@functools.cache
def device_skip_reason() -> str | None:
    """None when PortAudio has a default output and input on a running sound server."""
    try:
        sd = import_sounddevice()
    except AudioDeviceError as exc:
        return f"{exc}; {SETUP}"
    if shutil.which("pactl") is None:
        return f"no PulseAudio; {SETUP}"
    try:
        subprocess.run(["pactl", "info"], check=True, capture_output=True, timeout=5)
    except (subprocess.SubprocessError, OSError):
        return f"no PulseAudio server running; {SETUP}"
    try:
        sd.query_devices(kind="output")
        sd.query_devices(kind="input")
    except sd.PortAudioError as exc:
        return f"PortAudio has no default output and input device ({exc})"
    return None
