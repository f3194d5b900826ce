"""A whole call on the real models: `serve-agent` on the offline preset (SmolLM2, Piper, Silero,
faster-whisper) answering `call` with a five-line script over a simulated network leg, in the
Telnyx dialect (test_phone_agent.py runs serve-agent in Twilio's). What the
caller measured must be the agent's own trace plus the network and the agent's end-of-speech
detection, to the frame."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from playground.core import events as ev
from playground.core.presets import load_preset
from playground.core.tracefile import read_trace
from playground.phone import dialects as dl
from playground.phone.caller import Call, CallOptions, read_script
from playground.phone.network import NetworkProfile
from playground.phone.report import trace_file_name
from tests.phone.fake_agents import serve_agent, stop
from tests.speech import words

pytestmark = [pytest.mark.models, pytest.mark.serial]  # its times must add up within 30 ms

SCRIPT = """# five short lines, one turn each
Hi, who is this?
How did you get my number?
What is this about?
How much does it cost?
Thank you, goodbye.
"""
ONE_WAY_MS = 25.0


async def test_a_five_line_call_adds_up_to_the_agents_own_trace_within_30_ms(caller_hearing, tmp_path):
    agent_traces = tmp_path / "agent"
    # the agent in a process of its own, as in real life: its Whisper and Piper passes do not
    # hold the caller's interpreter while the caller times its frames
    server, url = serve_agent("--dialect", "telnyx", "--trace", str(agent_traces), "--set", "llm.max_tokens=8")
    script = Path(tmp_path / "call.txt")
    script.write_text(SCRIPT)
    options = CallOptions(url, dl.dialect("telnyx"), network=NetworkProfile("test", ONE_WAY_MS, 0.0),
                          lead_in_ms=300, reply_silence_ms=1000, answer_timeout_ms=30_000, agent_traces=agent_traces)
    try:
        async with aiohttp.ClientSession() as http:
            call = Call(options, caller_hearing, http, trace_path=tmp_path / "call.jsonl")
            result = await call.run(read_script(str(script)))
    finally:
        stop(server)
    assert result.reason == "done"
    assert len(result.turns) == 5 and all(m.first_audio is not None and m.real_latency is not None
                                          for m in result.turns), result.turns
    assert all(m.transcript and m.agent_speech for m in result.turns)  # heard and understood by the caller
    # called the moment serve-agent printed its URL: its models were loaded before it listened
    assert result.turns[0].first_audio < CallOptions.answer_timeout_ms
    end_silence = load_preset("local").input.end_silence_ms
    for m, stage in zip(result.turns, result.stages):
        assert stage is not None, f"turn {m.turn}: no agent turn in the agent's trace"
        # the caller's number = the agent's t0 -> first frame sent (its trace) + its end-of-speech
        # detection (placed in the caller's stream) + the network both ways, within 30 ms
        assert abs(m.first_audio - (stage.agent_ms + stage.eos_ms + 2 * ONE_WAY_MS)) <= 30, stage
        assert abs(stage.residual_ms) <= 30, stage
        # the network stage, measured from stream positions alone, is the simulated leg
        assert abs(stage.net_ms - 2 * ONE_WAY_MS) <= 15, stage
        # end of speech: the agent waits end_silence_ms after the last frame Silero found voiced, which
        # may come before the caller's last audible sample (a quiet final consonant). How much before
        # depends on where the line falls in the VAD's 32 ms frames: these five lines, through μ-law
        # and the agent's resampler at each of the 8 alignments a 20 ms frame can have, end their
        # speech 261 to 546 ms after the last audible sample ("this?" loses up to 240 ms).
        assert end_silence - 300 <= stage.eos_ms <= end_silence + 400, stage
        assert stage.eos_net_ms == pytest.approx(m.first_audio - stage.agent_ms)
        assert stage.metrics["first_play"] == pytest.approx(stage.agent_ms, abs=25)
        assert m.real_latency >= m.first_audio
    # the caller's trace keeps the stages; the agent's trace heard the caller's words
    _, events = read_trace(tmp_path / "call.jsonl")
    assert len([e for e in events if e.type == "call.agent_turn"]) == 5
    _, agent_events = read_trace(agent_traces / trace_file_name(call.call_id))
    heard = [e.text for e in agent_events if isinstance(e, ev.SttFinal)]
    assert words(heard[0]) == words("Hi, who is this?")
