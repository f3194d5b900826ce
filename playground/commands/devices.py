"""`playground devices`: the sound devices, inputs (microphones) and outputs, as PortAudio sees them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from playground.audio.input import list_input_devices
from playground.audio.output import AudioDeviceError, import_sounddevice, list_devices
from playground.commands import Command

if TYPE_CHECKING:
    from playground.console import Console


def _row(device: dict[str, Any], default: bool, channels: int) -> str:
    mark = "*" if default else " "
    return (f"  {mark} {device['index']:>3}  {device['name']}  ({device['hostapi']}, {channels} ch, "
            f"{device['default_samplerate']:.0f} Hz)")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: the listing is short."""


def _run(args: argparse.Namespace, console: Console) -> int:
    try:
        import_sounddevice()
    except AudioDeviceError as exc:
        console.note(f"no sound devices: {exc}")
        return 1
    inputs = list_input_devices()
    outputs = [d for d in list_devices() if d["max_output_channels"] > 0]
    console.print("input devices (microphones; --set input.device=INDEX|NAME):")
    for device in inputs:
        console.print(_row(device, device["default_input"], device["max_input_channels"]))
    if not inputs:
        console.print("  none: spoken input is unavailable, typed input works")
    console.print("output devices (--audio INDEX|NAME):")
    for device in outputs:
        console.print(_row(device, device["default_output"], device["max_output_channels"]))
    if not outputs:
        console.print("  none: playback uses the null output (real-time paced, silent)")
    console.print("* = default")
    return 0


COMMAND = Command("devices", "list the input (microphone) and output sound devices", _add_arguments, _run)
