"""The `deepgram` session in full engine turns against the loopback Deepgram server:
the persistent socket across turns, Speak/Flush/Clear, barge-in, the Flush limit, and
the faults (server close, stall, malformed and unknown messages, wrong audio format,
401/403). Audio is checked sample for sample against what the server spoke."""

from __future__ import annotations

import asyncio

import pytest

from playground.core import events as ev
from playground.servers.deepgram import TTS_SERVER
from playground.servers.voice import LoopbackVoice
from playground.tts.base import TTSError
from playground.tts.deepgram import DeepgramSession
from tests.tts.loopback_turns import (
    LONG_REPLY,
    REPLIES,
    assert_reply_spoken_once,
    errors,
    open_turns,
    session_events,
)

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def voice() -> LoopbackVoice:
    return LoopbackVoice()


@pytest.fixture
async def server(voice):
    server = TTS_SERVER(voice=voice)
    await server.start()
    yield server
    await server.stop()


async def open_session(server, replies=REPLIES, *overrides: str):
    return await open_turns("loopback-deepgram", DeepgramSession, server, replies, *overrides)


async def run_turns(server, *texts: str, replies=REPLIES, overrides=()):
    async with asyncio.timeout(60):
        session, tap = await open_session(server, replies, *overrides)
        try:
            for text in texts:
                await session.run_turn(text)
        finally:
            await session.close()
    return session, tap


def actions(session, turn: int) -> list[str]:
    return [e.get("action") for e in session_events(session, turn)]


async def test_turns_reuse_one_socket_and_send_the_documented_messages(server):
    session, tap = await run_turns(server, "Hi!", "And again?")
    assert server.handshakes == 1
    for turn in (1, 2):
        assert_reply_spoken_once(session, tap, server, turn)
        assert actions(session, turn)[0] == "reuse"
    speaks = [m for m in server.received if m["type"] == "Speak" and m["text"]]
    assert " ".join(m["text"].strip() for m in speaks) == " ".join(REPLIES)
    assert [m["type"] for m in server.received].count("Flush") == 2
    assert server.received[-1] == {"type": "Close"}


async def test_a_refused_flush_is_reported_and_the_turn_resumes(server):
    server.flush_limit = 1  # Deepgram allows 20 a minute; the second turn's Flush is refused
    session, tap = await run_turns(server, "Hi!", "Again?")
    warnings = [e.get("message") for e in session_events(session, 2, "warning")]
    assert any("FLUSH" in w for w in warnings)
    assert "Flush" in session_events(session, 2, "reconnect")[0].get("reason")
    assert_reply_spoken_once(session, tap, server, 2)


async def test_barge_in_cancels_the_context_and_the_next_turn_is_clean(server):
    async with asyncio.timeout(60):
        session, tap = await open_session(server, [LONG_REPLY, REPLIES[1]])
        try:
            task = session.start_turn("Tell me a long story.")
            while not any(e.type == ev.PLAY_START for e in session.trace.turn_events(1)):
                await asyncio.sleep(0.02)
            session.cancel_turn("barge-in")
            await task
            await asyncio.sleep(0.3)  # audio of turn 1 still in flight must not reach turn 2
            await session.run_turn("Something else.")
        finally:
            await session.close()
    assert {"type": "Clear"} in server.received
    assert any(e.type == ev.TURN_CANCELLED for e in session.trace.turn_events(1))
    assert_reply_spoken_once(session, tap, server, 2)


@pytest.mark.parametrize("code, reason", [(1006, ""), (1008, "policy violation (injected)")])
async def test_server_close_mid_reply_reconnects_and_resumes(server, code, reason):
    server.faults.close_code, server.faults.close_reason, server.faults.close_after_frames = code, reason, 3
    session, tap = await run_turns(server, "Hi!", "Again?")
    reconnect = session_events(session, 1, "reconnect")
    assert len(reconnect) == 1 and str(code) in reconnect[0].get("reason") and reason in reconnect[0].get("reason")
    assert server.handshakes == 2
    assert_reply_spoken_once(session, tap, server, 1)
    assert_reply_spoken_once(session, tap, server, 2)


async def test_a_stall_is_detected_and_the_turn_resumes(server):
    server.faults.stall_s, server.faults.stall_after_frames = 4.0, 2
    session, tap = await run_turns(server, "Hi!", "Again?")
    assert "stall" in session_events(session, 1, "reconnect")[0].get("reason")
    assert_reply_spoken_once(session, tap, server, 1)
    assert_reply_spoken_once(session, tap, server, 2)


async def test_malformed_and_unknown_messages_are_reported_and_skipped(server):
    server.faults.malformed_json = server.faults.unknown_message = True
    session, tap = await run_turns(server, "Hi!")
    reasons = [e.get("message") for e in session_events(session, 1, "warning")]
    assert any("malformed" in r for r in reasons) and any("loopback_unknown" in r for r in reasons)
    assert "reconnect" not in actions(session, 1)
    assert_reply_spoken_once(session, tap, server, 1)


async def test_wrong_audio_format_falls_back_to_rest_for_the_turn(server):
    server.faults.wrong_audio_format = True
    session, tap = await run_turns(server, "Hi!", "Again?")
    fallback = session_events(session, 1, "fallback")
    assert len(fallback) == 1 and "WAV" in fallback[0].get("reason")
    assert {"type": "Clear"} in server.received  # the broken audio was stopped
    assert_reply_spoken_once(session, tap, server, 1)
    assert session_events(session, 2, "reuse")[0].get("path") == "persistent"
    assert_reply_spoken_once(session, tap, server, 2)


async def test_a_refused_reconnect_falls_back_to_rest(server):
    async with asyncio.timeout(60):
        session, tap = await open_session(server)
        server.faults.close_code, server.faults.close_after_frames = 1006, 2
        server.faults.reject_handshakes, server.faults.reject_status = 1, 403
        try:
            await session.run_turn("Hi!")
            await session.run_turn("Again?")
        finally:
            await session.close()
    fallback = session_events(session, 1, "fallback")
    assert fallback and "403" in fallback[-1].get("reason")
    assert_reply_spoken_once(session, tap, server, 1)
    assert errors(session, 2) == [] and len(tap.received(2, 0)) > 0


async def test_a_refused_key_is_named_at_open(voice, monkeypatch):
    server = TTS_SERVER(api_key="right", voice=voice)
    await server.start()
    monkeypatch.setenv("LOOPBACK_DEEPGRAM_KEY", "wrong")
    try:
        async with asyncio.timeout(20):
            with pytest.raises(TTSError, match=r"deepgram.*LOOPBACK_DEEPGRAM_KEY.*401"):
                await open_session(server, REPLIES, "tts.api_key_env=LOOPBACK_DEEPGRAM_KEY")
            monkeypatch.setenv("LOOPBACK_DEEPGRAM_KEY", "right")
            session, _ = await open_session(server, REPLIES, "tts.api_key_env=LOOPBACK_DEEPGRAM_KEY")
            await session.close()
    finally:
        await server.stop()
    assert server.handshakes == 1


async def test_persistent_false_speaks_every_turn_over_rest(server):
    session, tap = await run_turns(server, "Hi!", overrides=["tts.persistent=false"])
    assert server.handshakes == 0
    assert session_events(session, 1, "reuse")[0].get("path") == "fallback_rest"
    assert_reply_spoken_once(session, tap, server, 1)
