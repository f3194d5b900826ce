"""Real PortAudio playback: a tone played on the default output is heard on the default input.

Needs libportaudio2 and a PulseAudio server whose default source hears the default sink;
`scripts/virtual-audio.sh start` sets that up on a machine without a sound card.
"""

from __future__ import annotations

import asyncio
import faulthandler

import numpy as np
import pytest

from playground.audio import END, START, SoundDeviceOutput, import_sounddevice, open_output
from tests.audio.devices import device_skip_reason

TONE_HZ = 1000
TONE_SECONDS = 0.8


SKIP_REASON = device_skip_reason()
pytestmark = [pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
              pytest.mark.serial]  # the shared sound device hears whatever another test plays


@pytest.fixture
def hang_guard():
    """A stuck PortAudio call cannot be cancelled from Python: dump the stacks and exit instead."""
    faulthandler.dump_traceback_later(30, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


async def test_tone_on_default_output_is_heard_on_default_input(hang_guard):
    sd = import_sounddevice()
    input_rate = int(sd.query_devices(kind="input")["default_samplerate"])
    recorded: list[np.ndarray] = []

    def on_input(indata, frames, time_info, status) -> None:
        recorded.append(indata[:, 0].copy())

    t = np.arange(round(TONE_SECONDS * 22050)) / 22050
    tone = np.rint(0.5 * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
    reports: list[tuple[str, object, float]] = []
    warnings: list[str] = []

    with sd.InputStream(samplerate=input_rate, channels=1, dtype="float32", callback=on_input):
        output = await open_output("default", warn=warnings.append)
        try:
            assert warnings == []
            assert isinstance(output, SoundDeviceOutput)
            # PulseAudio's null sink idles with a 2 s latency and takes about a second to
            # start consuming a new stream; a silent segment absorbs that before the tone.
            output.play(np.zeros(2205, dtype=np.int16), 22050, "warm-up")
            await asyncio.wait_for(output.drain(), 5)
            output.set_listener(lambda kind, mark, t_ms: reports.append((kind, mark, t_ms)))
            output.play(tone, 22050, (1, 0))
            await asyncio.wait_for(output.drain(), 5)
            await asyncio.sleep(0.3)  # the device and PulseAudio still hold the tail of the tone
        finally:
            await output.close()

    assert [(kind, mark) for kind, mark, _ in reports] == [(START, (1, 0)), (END, (1, 0))]
    assert reports[1][2] - reports[0][2] == pytest.approx(TONE_SECONDS * 1000, abs=100)

    recording = np.concatenate(recorded)
    assert np.sqrt(np.mean(recording**2)) > 0.05, "the input heard (almost) nothing"
    spectrum = np.abs(np.fft.rfft(recording * np.hanning(len(recording))))
    peak_hz = np.fft.rfftfreq(len(recording), 1 / input_rate)[np.argmax(spectrum)]
    assert peak_hz == pytest.approx(TONE_HZ, abs=10)


async def test_rate_the_device_rejects_falls_back_to_its_default_rate(hang_guard):
    sd = import_sounddevice()
    reports: list[tuple[str, object]] = []
    output = SoundDeviceOutput(preferred_rate=3)  # no device plays 3 Hz audio
    output.set_listener(lambda kind, mark, t_ms: reports.append((kind, mark)))
    await output.open()
    try:
        assert output.device_rate == int(sd.query_devices(kind="output")["default_samplerate"])
        output.play(np.zeros(2205, dtype=np.int16), 22050, "resampled")
        await asyncio.wait_for(output.drain(), 5)
    finally:
        await output.close()
    assert reports == [(START, "resampled"), (END, "resampled")]
