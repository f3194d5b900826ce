"""Real PortAudio capture: a spoken question played into the virtual sink is heard on the default
input, transcribed, and answered aloud on the same device, whose echo must not interrupt the reply.

Needs libportaudio2 and `scripts/virtual-audio.sh start` (the sink's monitor is the
default input), as tests/audio/test_audio_device.py.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from playground.audio import SoundDeviceOutput, open_output
from playground.audio.input import SAMPLE_RATE
from playground.core import events as ev
from playground.engine.session import Session
from playground.engine.voice import VoiceLoop
from playground.llm.local import LocalLLM
from playground.tts.piper import PiperSession
from tests.audio.test_audio_device import SKIP_REASON, hang_guard  # noqa: F401 - a fixture, used by name
from tests.conftest import local_preset
from tests.speech import mostly_heard, silence, speech

pytestmark = [pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
              pytest.mark.serial]  # the shared sound device hears whatever another test plays

QUESTION = "What is the capital of France?"


@pytest.mark.usefixtures("hang_guard")
async def test_a_question_played_into_the_sink_is_answered_aloud():
    preset = local_preset()
    warnings: list[str] = []
    output = await open_output("default", warn=warnings.append)
    session = Session(preset, LocalLLM(preset.llm), PiperSession(preset.tts), output)
    await session.open()
    turns: list[tuple[str, asyncio.Task]] = []
    voice = VoiceLoop(session, preset.input, mode="hands_free", on_turn=lambda text, task: turns.append((text, task)))
    speaker = await open_output("default", warn=warnings.append)
    try:
        assert warnings == [] and isinstance(output, SoundDeviceOutput)
        assert await voice.open(), voice.state.reason
        assert voice.meter is not None  # a mic that hears the speakers: the echo gate is on
        # the caller, speaking into the same sink (after PulseAudio's start-up latency)
        speaker.play(np.concatenate([silence(0.5), speech(QUESTION)]), SAMPLE_RATE, "caller")
        async with asyncio.timeout(60):
            await speaker.drain()
            while not turns:
                await asyncio.sleep(0.05)
            metrics = await turns[0][1]
            await asyncio.sleep(1.5)  # the reply's echo tail must not start another turn either
    finally:
        await speaker.close()
        await voice.close()
        await session.close()
    [(text, _)] = turns
    assert mostly_heard(text, QUESTION, share=0.8)
    assert metrics.status == "ok"  # its own voice on the monitor did not barge in
    assert metrics.first_play is not None and metrics.user_latency is not None
    assert voice.state.barge_ins == 0 and voice.state.ignored == 0
    played = [e for e in session.trace.turn_events(1) if isinstance(e, ev.PlayEnd) and not e.cut]
    assert played  # the spoken reply went to the device
