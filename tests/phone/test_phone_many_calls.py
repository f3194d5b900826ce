"""Ten calls at once, as a user runs them: `playground serve-agent` (replayed LLM, Piper, Silero,
faster-whisper) and `playground call --calls 10` in processes of their own, on 127.0.0.1."""

from __future__ import annotations

import re

import pytest

from playground.core.tracefile import read_trace
from playground.phone.report import trace_file_name
from tests.phone.fake_agents import ROOT, playground_process, serve_agent, stop

pytestmark = [pytest.mark.models, pytest.mark.serial]  # ten calls at once are the load: no other beside them

REPLAY = ROOT / "playground" / "data" / "traces" / "phone-call.jsonl"  # recorded replies to the phone-call script


def agent_trouble(agent_dir) -> list[str]:
    """Each agent trace's speech that made no turn, its errors, and its turns' transcripts."""
    said = []
    for path in sorted(agent_dir.glob("*.jsonl")):
        _, events = read_trace(path)
        said += [f"{path.name}: {e!r}" for e in events
                 if e.type in ("error", "stt.final", "turn.cancelled") or (e.type == "vad.speech_end" and e.ignored)]
    return said


def test_ten_simultaneous_calls_report_latency_failures_and_the_agents_stages(tmp_path):
    agent_dir, caller_dir = tmp_path / "agent", tmp_path / "calls"
    server, url = serve_agent("--trace", str(agent_dir), "--set", "llm.provider=replay", "--set", f"llm.trace={REPLAY}")
    try:
        caller = playground_process("call", url, "--calls", "10", "--say", "Hi, who is this?", "--say",
                                    "And who are you?", "--no-transcribe", "--trace", str(caller_dir),
                                    "--agent-traces", str(agent_dir), "--reply-silence-ms", "1000",
                                    "--answer-timeout-ms", "30000")
        out, err = caller.communicate(timeout=300)
    finally:
        server_err = stop(server)
    assert caller.returncode == 0, err
    assert server.returncode == 0, server_err
    # the row of N = 10: calls, ended ok, turns, answered, FIRST_AUDIO and REAL_LATENCY p50/p95/max, errors
    level = re.search(r"^\s+10\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/(\d+)/(\d+)\s+(\d+)/(\d+)/(\d+)\s+(.+)$", out, re.M)
    assert level, out
    ended_ok, turns, answered = (int(level.group(i)) for i in (1, 2, 3))
    assert (ended_ok, turns) == (10, 20)
    # every turn is answered or reported: ten Whisper passes at once on two cores can keep a reply
    # past the answer timeout on a loaded machine, and then the report must say so
    unanswered = re.search(r"no_answer (\d+)", level.group(10))
    assert answered == turns - (int(unanswered.group(1)) if unanswered else 0) >= 16, out
    assert set(re.findall(r"([a-z_]+) \d+", level.group(10))) <= {"no_answer"}, out
    p50, p95, top = (int(level.group(i)) for i in (4, 5, 6))
    assert 0 < p50 <= p95 <= top
    stages = re.search(r"^\s+10\s+(\d+)\s+(\d+)\s+(\d+)\s+(-?\d+)", out.split("where the agent's time went")[1], re.M)
    # every turn found in the agent's traces; if one is missing, what the agent did with that speech
    assert stages and int(stages.group(1)) == 20, out + "\n".join(agent_trouble(agent_dir))
    rss = re.search(r"caller process: peak RSS (\d+) MB", out)
    assert rss and int(rss.group(1)) < 1500, out
    caller_traces = sorted(caller_dir.glob("call-*.jsonl"))
    assert len(caller_traces) == 10
    for path in caller_traces:
        header, events = read_trace(path)
        assert events[-1].type == "call.hangup" and events[-1].reason == "done"
        agent_trace = agent_dir / trace_file_name(header["call"]["call_id"])
        _, agent_events = read_trace(agent_trace)
        assert [e.reason for e in agent_events if e.type == "phone.stop"] == ["stop"]
    print(out)
