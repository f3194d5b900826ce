"""`playground diagnose`: the shipped seed trace (the seed's own findings), a recorded spoken turn,
a phone caller's trace, and the command's options."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import aiohttp
import pytest

from playground.cli import build_parser
from playground.console import Console
from playground.core import events as ev
from playground.core.tracefile import read_trace
from playground.diagnosis.session import diagnose_trace
from playground.export.jsonl import write_trace_jsonl
from playground.export.layout import budgets_of
from playground.phone import dialects as dl
from playground.phone.caller import Call, CallOptions, Line
from playground.phone.codec import SILENT_FRAME
from tests.phone.fake_agents import AgentSide, FakeAgent, tone_ulaw

ROOT = Path(__file__).resolve().parents[2]
VOICE = ROOT / "tests" / "export" / "data" / "voice.jsonl"  # a spoken turn recorded on the real models


def diagnose(*argv: str) -> str:
    args = build_parser().parse_args(["diagnose", *argv])
    console = Console(io.StringIO(), io.StringIO())
    assert args.plugin.run(args, console) == 0
    return console.out.getvalue()


def test_seed_turn4_names_the_run_on_and_the_rest_path_with_compare_s_adaptive_what_if():
    out = diagnose("seed-turn4")
    assert "**CRITICAL** elevenlabs: persistent TTS not used (REST fallback)" in out
    assert "TTFA: not measured" in out and "never opened" in out
    assert "run-on first chunk: 6,087 ms of chunker wait" in out
    assert "first chunk: 125 characters, cut by `strong` under `sentence`" in out
    assert "first boundary of any kind: after 97 characters (weak), at 4,514 ms" in out
    # compare's numbers for the same tokens (tests/commands/test_compare_command.py checks them there)
    assert "adaptive 1,236 ms" in out
    assert "adaptive: TTFS 1,236 ms instead of 6,621 ms (-5,385 ms)" in out
    assert "Waited **6,621 ms** from t0 to TTFT_TTS (stops short: no TTFA measured)" in out
    assert "1. `chunker.strategy`: 5,385 ms over turn(s) 4" in out


def test_json_and_a_report_file_and_one_turn(tmp_path):
    data = json.loads(diagnose("seed-turn4", "--format", "json"))
    [turn] = data["turns"]
    assert turn["turn"] == 4 and [f["code"] for f in turn["findings"]][:2] == ["tts_rest", "run_on"]
    assert sum(s["ms"] for s in turn["breakdown"]["stages"]) == pytest.approx(6621.0)
    assert data["summary"]["top_settings"][0] == {"setting": "chunker.strategy", "saving_ms": 5384.7, "turns": [4],
                                                  "bases": ["playground compare (same tokens, same times; TTFS)"]}
    report = tmp_path / "report.md"
    assert diagnose("seed-turn4", "-o", str(report)) == ""
    assert report.read_text().startswith("# Diagnosis of ")
    with pytest.raises(ValueError, match="no turn 9, so there is nothing to diagnose"):
        diagnose("seed-turn4", "--turn", "9")


def test_a_spoken_turn_waits_from_its_last_voiced_frame():
    header, events = read_trace(VOICE)
    [t] = diagnose_trace(header, events, budgets_of(header)).turns
    m = t.evidence.metrics
    stages = t.breakdown.stages
    assert [s.key for s in stages] == ["endpointing", "stt", "llm", "chunker", "handoff", "tts", "to_playback"]
    assert t.breakdown.start_label == "last voiced frame" and stages[0].start_ms == -522.8
    assert stages[0].ms == pytest.approx(m.vad_end) and stages[1].ms == pytest.approx(m.stt)
    assert t.breakdown.total_ms == pytest.approx(m.user_latency, abs=1.0)  # last voiced frame -> FIRST_PLAY
    assert [s.ms for s in t.breakdown.explaining("ttfs")] == pytest.approx([m.stt, m.llm_ttft - m.stt, m.chunker_wait])
    endpointing = next(f for f in t.findings if f.code == "endpointing")
    assert endpointing.setting == "input.end_silence_ms" and endpointing.what_if.saving_ms == 200.0


@pytest.mark.models  # the caller's voice is Piper
async def test_a_phone_caller_s_turns_add_up_to_the_first_audible_sample(caller_voice, tmp_path):
    silence_frames = 25  # 500 ms of μ-law silence before the reply's tone

    async def reply(side: AgentSide) -> None:
        await asyncio.sleep(0.05)
        lead = SILENT_FRAME * (silence_frames if side.lines_heard == 1 else 0)
        await side.audio(lead + tone_ulaw(400))  # all at once: the caller plays it in real time

    agent = FakeAgent(dl.dialect("twilio"), reply)
    url = await agent.start()
    options = CallOptions(url, dl.dialect("twilio"), lead_in_ms=100, reply_silence_ms=400, answer_timeout_ms=3000)
    try:
        async with aiohttp.ClientSession() as http:
            call = Call(options, caller_voice, http)
            await call.run([Line("Hello there."), Line("Still there?")])
    finally:
        await agent.stop()
    write_trace_jsonl(tmp_path / "call.jsonl", call.trace.header, call.trace.events)
    header, events = read_trace(tmp_path / "call.jsonl")
    d = diagnose_trace(header, events, budgets_of(header))
    assert d.facts.kind == "call" and len(d.turns) == 2
    for t in d.turns:
        summary = next(e for e in events if e.turn == t.turn and isinstance(e, ev.TurnSummary)).metrics
        assert [s.key for s in t.breakdown.stages] == ["agent_network", "silence"]
        assert t.breakdown.stages[0].ms == pytest.approx(summary["first_audio"])
        assert t.breakdown.total_ms == pytest.approx(summary["real_latency"], abs=1.0)
    silence = next(f for f in d.turns[0].findings if f.code == "leading_silence")
    assert silence.what_if.saving_ms == pytest.approx(d.turns[0].breakdown.ms("silence"))
    assert silence.what_if.saving_ms >= silence_frames * 20 - 40
    assert [f.code for f in d.turns[1].findings] == []
