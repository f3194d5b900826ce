"""The caller speaks each carrier's documented messages, on a real socket, to a small aiohttp agent:
field names, 20 ms = 160-byte μ-law payloads at a 20 ms cadence, sequence numbers, `mark` round
trips, `clear` and `stop`."""

from __future__ import annotations

import asyncio
import base64
import json
from statistics import median

import aiohttp
import pytest

from playground.core import events as ev
from playground.core.tracefile import read_trace
from playground.phone import dialects as dl
from playground.phone.caller import Call, CallOptions, Line
from tests.phone.fake_agents import AgentSide, FakeAgent, tone_ulaw

# The documented message shapes (twilio.com/docs/voice/media-streams/websocket-messages;
# developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket): keys per level.
DOCUMENTED = {
    "twilio": {
        "connected": {"event": "connected", "protocol": "Call", "version": "1.0.0"},
        "start": ({"event", "sequenceNumber", "start", "streamSid"},
                  {"accountSid", "streamSid", "callSid", "tracks", "mediaFormat", "customParameters"},
                  {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}),
        "media": ({"event", "sequenceNumber", "media", "streamSid"}, {"track", "chunk", "timestamp", "payload"}),
        "mark": ({"event", "sequenceNumber", "streamSid", "mark"}, {"name"}),
        "stop": ({"event", "sequenceNumber", "stop", "streamSid"}, {"accountSid", "callSid"}),
        "agent_media": {"event", "streamSid", "media"},
        "agent_clear": {"event", "streamSid"},
    },
    "telnyx": {
        "connected": {"event": "connected", "version": "1.0.0"},
        "start": ({"event", "sequence_number", "start", "stream_id"},
                  {"user_id", "call_control_id", "call_session_id", "from", "to", "custom_parameters", "media_format"},
                  {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}),
        "media": ({"event", "sequence_number", "media", "stream_id"}, {"track", "chunk", "timestamp", "payload"}),
        "mark": ({"event", "sequence_number", "stream_id", "mark"}, {"name"}),
        "stop": ({"event", "sequence_number", "stop", "stream_id"}, {"user_id", "call_control_id"}),
        "agent_media": {"event", "media"},
        "agent_clear": {"event"},
    },
}


@pytest.mark.parametrize("name", ["twilio", "telnyx"])
def test_each_message_has_the_documented_fields(name):
    d, doc = dl.dialect(name), DOCUMENTED[name]
    assert json.loads(d.connected()) == doc["connected"]
    start = json.loads(d.start(1, "S", "C", "A", {"customer": "7"}))
    top, inner, media_format = doc["start"]
    assert set(start) == top and set(start["start"]) >= inner and start["start"][d.format_key] == media_format
    assert start["sequenceNumber" if name == "twilio" else "sequence_number"] == "1"
    assert start[d.stream_key] == "S" and start["start"][d.custom_key] == {"customer": "7"}
    media = json.loads(d.media(2, "S", 1, 0, b"\xff" * 160))
    assert (set(media), set(media["media"])) == doc["media"]
    assert media["media"]["track"] == "inbound" and (media["media"]["chunk"], media["media"]["timestamp"]) == ("1", "0")
    assert len(base64.b64decode(media["media"]["payload"])) == 160
    mark = json.loads(d.mark(3, "S", "m"))
    assert (set(mark), set(mark["mark"])) == doc["mark"]
    stop = json.loads(d.stop(4, "S", "C", "A"))
    assert (set(stop), set(stop["stop"])) == doc["stop"]
    assert set(json.loads(d.agent_media("S", b"\xff" * 160))) == doc["agent_media"]
    assert set(json.loads(d.agent_clear("S"))) == doc["agent_clear"]


@pytest.mark.parametrize("name", ["twilio", "telnyx"])
def test_what_the_agent_sends_is_read_back_and_faults_are_named(name):
    d = dl.dialect(name)
    media = d.parse_from_agent(d.agent_media("S", b"\x01" * 160), "S")
    assert media == dl.Media(b"\x01" * 160)
    assert d.parse_from_agent(d.agent_mark("S", "m1"), "S") == dl.Mark("m1")
    assert d.parse_from_agent(d.agent_clear("S"), "S") == dl.Clear()
    faults = {
        dl.NOT_JSON: "{not json",
        dl.UNKNOWN_EVENT: json.dumps({"event": "hello"}),
        dl.BAD_PAYLOAD: json.dumps({"event": "media", d.stream_key: "S", "media": {"payload": "!!"}}),
        dl.WRONG_STREAM: json.dumps({"event": "mark", d.stream_key: "T", "mark": {"name": "m"}}),
        dl.PAYLOAD_SIZE: d.agent_media("S", b"" if name == "twilio" else b"\xff" * 80),
    }
    for kind, text in faults.items():
        with pytest.raises(dl.ProtocolError) as error:
            d.parse_from_agent(text, "S")
        assert error.value.kind == kind, text
    # Twilio routes the agent's messages by streamSid: one without it is not the call's
    unnamed = json.dumps({"event": "clear"})
    if name == "twilio":
        with pytest.raises(dl.ProtocolError, match="did not take it from `start`"):
            d.parse_from_agent(unnamed, "S")
    else:
        assert d.parse_from_agent(unnamed, "S") == dl.Clear()


@pytest.mark.parametrize("name", ["twilio", "telnyx"])
def test_the_carrier_side_is_read_and_checked(name):
    d = dl.dialect(name)
    start = d.parse_from_carrier(d.start(1, "S", "C", "A"))
    assert (start.stream_id, start.call_id, start.account_id, start.sequence) == ("S", "C", "A", 1)
    media = d.parse_from_carrier(d.media(7, "S", 6, 100, b"\x02" * 160))
    assert (media.payload, media.sequence, media.chunk, media.timestamp_ms) == (b"\x02" * 160, 7, 6, 100)
    with pytest.raises(dl.ProtocolError) as short:
        d.parse_from_carrier(d.media(8, "S", 7, 120, b"\x02" * 100))
    assert short.value.kind == dl.PAYLOAD_SIZE and short.value.parsed.payload == b"\x02" * 100
    wrong_rate = json.loads(d.start(1, "S", "C", "A"))
    wrong_rate["start"][d.format_key][d.rate_key] = 16000
    with pytest.raises(dl.ProtocolError) as bad:
        d.parse_from_carrier(json.dumps(wrong_rate))
    assert bad.value.kind == dl.BAD_FORMAT


def reply_with_marks_then_clear(side: AgentSide):
    async def behave() -> None:
        await asyncio.sleep(0.1)
        await side.audio(tone_ulaw(600))  # all at once, as agents may: the carrier buffers it
        await side.mark("first")
        await asyncio.sleep(0.8)  # the 600 ms have played by now
        await side.audio(tone_ulaw(2000))
        await side.mark("second")
        await asyncio.sleep(0.3)
        await side.clear()
    return behave()


@pytest.mark.parametrize("name", ["twilio", "telnyx"])
async def test_a_call_streams_documented_messages_and_answers_marks_and_clear(name, caller_voice, tmp_path):
    d = dl.dialect(name)
    agent = FakeAgent(d, reply_with_marks_then_clear)
    url = await agent.start()
    options = CallOptions(url, d, lead_in_ms=200, reply_silence_ms=600, answer_timeout_ms=3000)
    try:
        async with aiohttp.ClientSession() as http:
            call = Call(options, caller_voice, http, trace_path=tmp_path / "call.jsonl")
            result = await call.run([Line("Hello there.")])
    finally:
        await agent.stop()
    assert result.reason == "done"
    received = [m for _t, m in agent.received]
    events = [m["event"] for m in received]
    assert events[0] == "connected" and events[1] == "start" and events[-1] == "stop"
    assert set(events) == {"connected", "start", "media", "mark", "stop"}
    seq_key = "sequenceNumber" if name == "twilio" else "sequence_number"
    sequences = [int(m[seq_key]) for m in received[1:]]
    assert sequences == list(range(1, len(sequences) + 1))  # every message after `connected`, counted from 1
    media = [(t, m) for t, m in agent.received if m["event"] == "media"]
    assert all(m[d.stream_key] == call.stream_id and m["media"]["track"] == "inbound" for _t, m in media)
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for _t, m in media)
    chunks = [int(m["media"]["chunk"]) for _t, m in media]
    assert chunks == list(range(1, len(media) + 1))
    assert [int(m["media"]["timestamp"]) for _t, m in media] == [20 * (c - 1) for c in chunks]
    gaps = [b[0] - a[0] for a, b in zip(media, media[1:])]
    assert 19 <= median(gaps) <= 21  # real time: a frame every 20 ms
    assert (media[-1][0] - media[0][0]) == pytest.approx(20 * (len(media) - 1), rel=0.05)

    side = agent.sides[0]
    sent_at = {m["mark"]["name"]: t for t, m in side.sent if m["event"] == "mark"}
    clear_at = next(t for t, m in side.sent if m["event"] == "clear")
    echoes = {m["mark"]["name"]: t for t, m in agent.received if m["event"] == "mark"}
    assert set(echoes) == {"first", "second"}
    # "first" comes back once its 600 ms played (the playout plays at real time), "second" at the clear
    # (upper bounds leave room for a loaded machine's event loop)
    assert 560 <= echoes["first"] - sent_at["first"] <= 1000
    assert echoes["second"] - clear_at < 300  # not after the 1.7 s still queued
    assert all(m[d.stream_key] == call.stream_id for _t, m in agent.received if m["event"] == "mark")

    [turn] = result.turns
    assert turn.status == "ok" and turn.marks == 2
    # the agent answered 200 ms of silence + 100 ms after the line's end; the tone is audible at once
    assert 250 <= turn.first_audio <= 1000 and turn.real_latency - turn.first_audio < 30
    trace = {e.type: e for e in result.trace.turn_events(1)}
    assert trace["call.clear"].marks_returned == 1 and trace["call.clear"].dropped_ms > 1000
    assert {e.name: e.by for e in result.trace.turn_events(1) if e.type == "call.mark"} == \
        {"first": "played", "second": "clear"}
    header, events = read_trace(tmp_path / "call.jsonl")
    assert header["kind"] == "call" and header["call"]["dialect"] == name
    assert [e.type for e in events if e.turn == 0] == ["call.dial", "call.hangup"]
    assert events[-1].type == "call.hangup" or any(isinstance(e, ev.TurnSummary) for e in events)


async def test_the_caller_hears_a_greeting_out_before_its_first_line(caller_voice):
    d = dl.dialect("twilio")
    agent = FakeAgent(d, lambda side: side.audio(tone_ulaw(300)), greeting=tone_ulaw(1000))
    url = await agent.start()
    options = CallOptions(url, d, lead_in_ms=100, reply_silence_ms=400, answer_timeout_ms=2000)
    try:
        async with aiohttp.ClientSession() as http:
            result = await Call(options, caller_voice, http).run([Line("Hello.")])
    finally:
        await agent.stop()
    [greeting] = [e for e in result.trace.events if e.type == "call.greeting"]
    assert greeting.heard_ms == 1000 and greeting.first_audio_ms < 100
    [line] = [e for e in result.trace.events if e.type == "call.line"]
    # the greeting played out, then the caller waited reply_silence_ms before speaking
    assert line.start_stream_ms >= 1000 + 400
    assert result.turns[0].status == "ok" and result.turns[0].heard_ms == 300


async def test_what_the_caller_says_into_a_microphone_becomes_turns(caller_hearing, tmp_path):
    # a WAV file played in real time stands in for the microphone: two questions, a pause between
    from playground.audio.input import open_input
    from playground.phone.caller import Microphone
    from tests.speech import mostly_heard, silence, speech, write_wav

    first, second = "Hello, can you hear me?", "What is your name?"
    wav = write_wav(tmp_path / "mic.wav", silence(0.3), speech(first), silence(1.8), speech(second), silence(1.6))
    d = dl.dialect("twilio")
    agent = FakeAgent(d, lambda side: side.audio(tone_ulaw(500)))
    url = await agent.start()
    options = CallOptions(url, d, reply_silence_ms=500, answer_timeout_ms=3000)
    try:
        async with aiohttp.ClientSession() as http:
            call = Call(options, caller_hearing, http)
            mic = Microphone(open_input(mic_file=str(wav)))
            try:
                result = await call.run(mic=mic)
            finally:
                mic.close()
    finally:
        await agent.stop()
    assert result.reason == "done" and len(result.turns) == 2
    assert mostly_heard(result.turns[0].text, first) and mostly_heard(result.turns[1].text, second)
    # t0 is the send of the frame that held the last voiced audio: the agent (200 ms of silence
    # after the line) answers soon after it, though the caller's VAD knew of it 500 ms later
    assert all(200 <= m.first_audio <= 600 and m.heard_ms == 500 for m in result.turns), result.turns
    lines = [e for e in result.trace.events if e.type == "call.line"]
    assert [e.source for e in lines] == ["mic", "mic"] and all(e.t_ms < 0 for e in lines)
    assert all(600 <= e.speech_ms <= 2500 for e in lines), lines
