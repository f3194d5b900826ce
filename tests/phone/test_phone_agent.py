"""`serve-agent` behind each carrier's protocol, on real sockets and the real models (Silero,
faster-whisper, Piper; the LLM replayed from a recorded trace): what it sends, its marks, `clear`
on barge-in, its trace per call, and carriers that break the protocol."""

from __future__ import annotations

import asyncio
import base64
import json
import socket

import aiohttp
import pytest

from playground.bench.harness import DATA as BENCH_DATA
from playground.core import events as ev
from playground.core.presets import apply_overrides, load_preset
from playground.core.tracefile import read_trace
from playground.phone import dialects as dl
from playground.phone.agent import AgentServer
from playground.phone.caller import Call, CallOptions, Line
from playground.phone.report import trace_file_name
from tests.phone.fake_agents import playground_process

REPLAY = BENCH_DATA / "two-turns.jsonl"  # a recorded two-turn session, its tokens replayed
pytestmark = pytest.mark.models


class TappedCall(Call):
    """A call that also keeps every raw message the agent sent (with its arrival)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.raw: list[dict] = []

    async def _deliver(self, data) -> None:
        if data is not None:
            self.raw.append(json.loads(data))
        await super()._deliver(data)


def replay_preset(*overrides: str):
    return apply_overrides(load_preset("local"), ["llm.provider=replay", f"llm.trace={REPLAY}", *overrides])


@pytest.mark.serial  # a real-time call: the agent's end of speech placed in the caller's stream to the frame
async def test_serve_agent_answers_with_paced_frames_marks_and_clears_on_barge_in(caller_voice, tmp_path):
    # Twilio's dialect here; the whole call in test_phone_call.py is Telnyx's
    name = "twilio"
    d = dl.dialect(name)
    server = AgentServer(replay_preset(), d, tmp_path / "agent")
    url = await server.start()
    lines = [Line("Hi, who is this?"), Line("Sorry, say that again?", barge_in_after_ms=1500)]
    options = CallOptions(url, d, lead_in_ms=300, reply_silence_ms=1500, answer_timeout_ms=15000)
    try:
        async with aiohttp.ClientSession() as http:
            call = TappedCall(options, caller_voice, http, trace_path=tmp_path / "call.jsonl")
            result = await call.run(lines)
    finally:
        await server.stop()
    assert result.reason == "done" and [m.status for m in result.turns] == ["ok", "ok"], result.turns
    media = [m for m in call.raw if m["event"] == "media"]
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for m in media)
    assert all(m.get("streamSid") == call.stream_id for m in call.raw)
    assert {m["event"] for m in call.raw} == {"media", "mark", "clear"}

    [record] = server.finished
    assert record.end_reason == "stop" and record.errors == {}
    assert record.trace_path == tmp_path / "agent" / trace_file_name(call.call_id)
    header, events = read_trace(record.trace_path)
    assert header["phone"] == {"dialect": name, "call_id": call.call_id, "stream_id": call.stream_id}
    by_type = lambda turn, type_: [e for e in events if e.turn == turn and e.type == type_]  # noqa: E731
    # turn 2 (played to its end): a mark after each chunk, each echoed by the caller once heard
    marks = [e.name for e in by_type(2, "phone.mark")]
    played_chunks = [e.chunk for e in by_type(2, ev.PlayEnd.type) if not e.cut]
    assert len(marks) >= 2 and marks == [f"2.{chunk}" for chunk in played_chunks]
    assert marks == [m["mark"]["name"] for m in call.raw if m["event"] == "mark"][-len(marks):]
    echoes = by_type(2, "phone.mark_echo")
    assert [e.name for e in echoes] == marks and all(e.rtt_ms > 0 for e in echoes)
    assert result.turns[1].marks == len(marks)
    # the caller cut in after 1.5 s of the reply: the turn was cancelled and `clear` sent
    [cancelled] = by_type(1, ev.TurnCancelled.type)
    assert cancelled.reason.startswith("barge-in")
    [clear] = by_type(1, "phone.clear")
    assert clear.reason == "barge-in"
    stopped = result.trace.turn_events(1)
    [barge] = [e for e in stopped if e.type == "call.barge_in"]
    assert barge.heard_ms >= 1500
    [quiet] = [e for e in stopped if e.type == "call.agent_stopped"]
    # the agent's VAD confirms speech ~64 ms after its onset, then everything stops at once
    assert quiet.clear_ms is not None and quiet.clear_ms < 600
    assert quiet.stop_ms < 600 and result.turns[0].barge_in_stop == pytest.approx(quiet.stop_ms, abs=0.001)
    # every turn is placed in the caller's stream and its first frame timed
    for turn in (1, 2):
        [eos] = by_type(turn, "phone.eos")
        assert eos.t_ms == 0 and eos.stream_ms >= result.end_stream_ms[turn - 1]
        assert len(by_type(turn, "phone.audio_out")) == 1
    [stop] = by_type(0, "phone.stop")
    assert stop.reason == "stop" and stop.frames_sent == len(media)


async def test_speech_that_makes_no_turn_is_said_in_the_servers_log(caller_voice, tmp_path):
    # the caller hears nothing back; whoever runs the agent must see why (here: a line shorter
    # than the preset's min_speech_ms)
    said: list[str] = []
    server = AgentServer(replay_preset("input.min_speech_ms=5000"), dl.dialect("twilio"), log=said.append)
    url = await server.start()
    options = CallOptions(url, dl.dialect("twilio"), lead_in_ms=300, answer_timeout_ms=2500)
    try:
        async with aiohttp.ClientSession() as http:
            result = await Call(options, caller_voice, http).run([Line("Hi, who is this?")])
    finally:
        await server.stop()
    assert [list(m.error_counts) for m in result.turns] == [["no_answer"]]
    [ignored] = [line for line in said if "speech made no turn" in line]
    assert f"call {result.call_id}: speech made no turn (less than 5000 ms of speech; " in ignored, said


async def test_carriers_that_break_the_protocol_are_refused_with_the_fault_named(tmp_path):
    server = AgentServer(replay_preset(), dl.dialect("twilio"), tmp_path / "agent", start_timeout_s=0.5)
    url = await server.start()
    d = dl.dialect("twilio")
    no_start = [d.connected(), d.media(1, "MZ1", 1, 0, b"\xff" * 160)]
    wide = json.loads(d.start(1, "MZ2", "CA2", "AC2"))
    wide["start"]["mediaFormat"]["sampleRate"] = 16000
    bad_format = [d.connected(), json.dumps(wide)]
    silent = [d.connected()]
    closes = []
    try:
        async with aiohttp.ClientSession() as http:
            for messages in (no_start, bad_format, silent):
                async with http.ws_connect(url) as ws:
                    for text in messages:
                        await ws.send_str(text)
                    async with asyncio.timeout(10):
                        message = await ws.receive()
                    closes.append((message.type, ws.close_code))
    finally:
        await server.stop()
    assert [c[0] for c in closes] == [aiohttp.WSMsgType.CLOSE] * 3
    assert [c[1] for c in closes] == [1008, 1008, 1008]  # policy violation, with the fault as the reason
    assert [r.end_reason for r in server.finished] == [dl.NO_START, dl.BAD_FORMAT, "start_timeout"]
    assert all(r.trace_path is None for r in server.finished)  # no call was answered
    assert [kind for kind, _message in server.rejected] == [dl.NO_START, dl.BAD_FORMAT, "start_timeout"]


def test_serve_agent_listens_only_once_it_can_answer_and_says_why_it_cannot(tmp_path):
    # a session that cannot open: one line naming the preset and the cause, before any URL is printed
    broken = playground_process("serve-agent", "--port", "0", "--set", "llm.provider=replay",
                                "--set", f"llm.trace={tmp_path / 'missing.jsonl'}")
    out, err = broken.communicate(timeout=120)
    assert broken.returncode == 1 and "ws://" not in out, out
    assert "a session of preset local could not open" in err and "missing.jsonl" in err, err
    assert "Traceback" not in err
    # a port that is taken: named, with what to do
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = playground_process("serve-agent", "--port", str(port), "--set", "llm.provider=replay",
                                  "--set", f"llm.trace={REPLAY}")
        out, err = busy.communicate(timeout=120)
    assert busy.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err, err
