"""Agents that misbehave, as small aiohttp servers: each fault is named in the turn it happened
in, and the call goes on (or ends cleanly when the agent hangs up)."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import pytest

from playground.core.tracefile import read_trace
from playground.phone import dialects as dl
from playground.phone.caller import AGENT_CLOSED, NO_ANSWER, Call, CallOptions, Line
from tests.phone.fake_agents import AgentSide, FakeAgent, tone_ulaw

LINES = [Line("Hello there."), Line("Still there?")]


async def place(dialect: dl.Dialect, behaviour, voice, tmp_path, lines=LINES):
    agent = FakeAgent(dialect, behaviour)
    url = await agent.start()
    options = CallOptions(url, dialect, lead_in_ms=100, reply_silence_ms=400, answer_timeout_ms=1000)
    try:
        async with aiohttp.ClientSession() as http:
            result = await Call(options, voice, http, trace_path=tmp_path / "call.jsonl").run(lines)
    finally:
        await agent.stop()
    header, events = read_trace(tmp_path / "call.jsonl")  # the trace is whole and readable
    assert events[-1].type == "call.hangup" and header["kind"] == "call"
    return result, events


def errors_of(result) -> list[list[str]]:
    return [list(m.error_counts) for m in result.turns]


@pytest.mark.parametrize("name, payload", [("telnyx", 80), ("twilio", 0)])
async def test_a_wrong_payload_size_is_named_in_its_turn_and_the_call_goes_on(name, payload, caller_voice, tmp_path):
    async def behave(side: AgentSide) -> None:
        await asyncio.sleep(0.05)
        if side.lines_heard == 1:  # first reply: media messages of a size the dialect does not allow
            for _ in range(10):
                await side.send({"event": "media", side.dialect.stream_key: side.stream_id,
                                 "media": {"payload": base64.b64encode(b"\x10" * payload).decode()}})
        await side.audio(tone_ulaw(400))
    result, events = await place(dl.dialect(name), behave, caller_voice, tmp_path)
    assert result.reason == "done"
    assert errors_of(result) == [[dl.PAYLOAD_SIZE], []]
    [error] = [e for e in events if e.type == "call.error"]
    assert error.turn == 1 and error.kind == dl.PAYLOAD_SIZE and error.count == 10
    assert f"{payload} bytes" in error.message
    assert all(m.first_audio is not None for m in result.turns)  # the well-formed audio was played


@pytest.mark.parametrize("name", ["twilio", "telnyx"])
async def test_media_for_no_stream_or_another_is_dropped_and_named(name, caller_voice, tmp_path):
    # An agent that never read `start`: its media names no stream (Twilio requires one) or a wrong one.
    async def behave(side: AgentSide) -> None:
        await side.audio(tone_ulaw(400), stream_id=None if name == "twilio" else "not-the-call")
    result, _ = await place(dl.dialect(name), behave, caller_voice, tmp_path, LINES[:1])
    assert result.reason == "done"
    # dropped as the carrier would: the caller heard nothing, so the agent did not answer either
    assert errors_of(result) == [[dl.WRONG_STREAM, NO_ANSWER]]
    assert all(m.first_audio is None and m.heard_ms == 0 for m in result.turns)


async def test_an_agent_that_hangs_up_mid_reply_ends_the_call_cleanly(caller_voice, tmp_path):
    async def behave(side: AgentSide) -> None:
        await side.audio(tone_ulaw(300), paced=True)
        await side.ws.close()
    result, events = await place(dl.dialect("twilio"), behave, caller_voice, tmp_path)
    assert result.reason == AGENT_CLOSED
    [turn] = result.turns  # the second line was never said
    assert turn.first_audio is not None and turn.error_counts == {AGENT_CLOSED: 1}
    assert events[-1].reason == AGENT_CLOSED


async def test_an_agent_that_never_answers_gets_no_answer_per_turn(caller_voice, tmp_path):
    result, _ = await place(dl.dialect("twilio"), None, caller_voice, tmp_path)
    assert result.reason == "done"
    assert errors_of(result) == [[NO_ANSWER], [NO_ANSWER]]
    assert all(m.status == "error" and m.first_audio is None for m in result.turns)


async def test_an_agent_that_refuses_the_connection_is_named(caller_voice):
    options = CallOptions("ws://127.0.0.1:9/nothing-listens", dl.dialect("twilio"))
    async with aiohttp.ClientSession() as http:
        result = await Call(options, caller_voice, http).run(LINES)
    assert result.reason == "connect_failed" and result.turns == []
    assert result.errors == {"connect_failed": 1}
