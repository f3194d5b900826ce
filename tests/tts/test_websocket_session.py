"""The persistent WebSocket TTS session under faults, in full engine turns against the loopback
ElevenLabs server on real sockets: the session survives, the turn records what happened, no
audio is repeated or lost across a reconnect, and the next turn works."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from playground.core import events as ev
from playground.servers.elevenlabs import FRAME_S, ElevenLabsServer
from playground.servers.faults import Fault
from playground.tts.base import TTSError
from tests.tts.loopback import (
    RATE,
    REPLY,
    SHORT_REPLY,
    assert_audio_exact,
    loopback_preset,
    open_loopback_session,
    replay,
    run_turn,
    session_events,
    spoken_chunks,
    wait_for_event,
)

pytestmark = pytest.mark.models  # the loopback server speaks with the Piper voice


async def test_opened_before_the_first_turn_and_reused(server):
    session, tap = await open_loopback_session(server)
    try:
        opened = [e for e in session.trace.events if isinstance(e, ev.TtsSession) and e.action == "open"]
        assert len(opened) == 1 and opened[0].turn == ev.SESSION_TURN and opened[0].path == "persistent"
        m1 = await run_turn(session)
        m2 = await run_turn(session)
    finally:
        await session.close()
    assert server.handshakes == 1  # one handshake, before turn 1
    for turn, m in ((1, m1), (2, m2)):
        assert m.status == "ok" and m.tts_path == "persistent", m.errors
        assert m.ttft_tts < m.ttfa
        assert_audio_exact(session, tap, server, turn)
    reuse = session_events(session, 2, "reuse")[0]
    assert reuse.turns_served == 2 and reuse.age_ms > 0
    # One context per turn, each closed at the end of its reply; alignment reaches the trace.
    contexts = [m["context_id"] for m in server.received if m.get("close_context")]
    assert contexts == ["turn-1", "turn-2"]
    # An audio message that starts after the last character's start has no alignment (ElevenLabs
    # sends null there too), so compare the characters covered with the text sent.
    audio = [e for e in session.trace.turn_events(1) if isinstance(e, ev.TtsAudio)]
    aligned = "".join("".join(e.alignment.chars) for e in audio if e.alignment)
    sent = "".join(m["text"] for m in server.received if m.get("context_id") == "turn-1" and m.get("text"))
    assert aligned.split() == sent.split() and aligned.strip()


@pytest.mark.serial  # the case needs the next chunk sent before the tail comes: a busy machine sends it later
@pytest.mark.parametrize("last_message_covers, chars_left", [("the trailing space", 1.5), ("nothing", 0.5)])
async def test_audio_after_the_last_character_stays_with_its_chunk(server, last_message_covers, chars_left):
    """Piper's speech length varies a little, so a chunk's last audio message sometimes aligns only
    its trailing space, or no character at all: that audio is the chunk's tail, not the next
    chunk's start, even when the next chunk was already sent (all tokens arrive at once here)."""
    session, tap = await open_loopback_session(server, llm=replay(REPLY, turns=2, gap_ms=0.0))
    try:
        await run_turn(session)
        step = int(RATE * FRAME_S)
        for text in spoken_chunks(session, 1).values():
            spoken = text.strip() + " "
            # the first message ends `chars_left` characters before the text's end; the second is the tail
            length = round(step * len(spoken) / (len(spoken) - chars_left))
            speech = server.speech(spoken, RATE)[:length]
            server.set_speech(spoken, RATE, np.pad(speech, (0, length - len(speech))))
        m2 = await run_turn(session)
    finally:
        await session.close()
    events = session.trace.turn_events(2)
    tail_chars = [" "] if last_message_covers == "the trailing space" else None
    tails = [e for e in events if isinstance(e, ev.TtsAudio) and (e.alignment.chars if e.alignment else None) == tail_chars]
    last_send = max(e.t_ms for e in events if isinstance(e, ev.TtsSend))
    assert m2.status == "ok" and tails and tails[0].t_ms > last_send
    assert_audio_exact(session, tap, server, 2)


@pytest.mark.parametrize("code, reason", [(1006, "1006"), (1008, "input_timeout_exceeded")])
async def test_server_close_mid_reply_resumes_on_a_new_connection(server, code, reason):
    session, tap = await open_loopback_session(server)
    try:
        server.inject(Fault("close", after=1, code=code))
        m1 = await run_turn(session)
        m2 = await run_turn(session)
    finally:
        await session.close()
    assert m1.status == "ok" and m1.tts_path == "reconnected" and reason in m1.tts_path_reason, m1.errors
    reconnect = session_events(session, 1, "reconnect")[0]
    assert reconnect.resumed_chunks[0] == 0 and reconnect.downtime_ms < 1000
    assert_audio_exact(session, tap, server, 1)  # the re-sent chunk's first samples were not repeated
    assert m2.status == "ok" and m2.tts_path == "persistent"
    assert_audio_exact(session, tap, server, 2)
    assert server.handshakes == 2


async def test_server_close_mid_reply_with_rest_for_the_rest_of_the_turn(server):
    session, tap = await open_loopback_session(server, "tts.on_disconnect=rest")
    try:
        server.inject(Fault("close", after=1, code=1006))
        m1 = await run_turn(session)
        m2 = await run_turn(session)
    finally:
        await session.close()
    assert m1.status == "ok" and m1.tts_path == "fallback_rest", m1.errors
    fallback = session_events(session, 1, "fallback")[0]
    assert "1006" in fallback.reason and "on_disconnect = rest" in fallback.reason
    assert [r["text"].strip() for r in server.rest_requests][:1] == [fallback_text(session)]
    assert_audio_exact(session, tap, server, 1)
    # Reconnected in the background meanwhile, before turn 2, which nothing disturbed.
    reconnects = [e for e in session.trace.events if isinstance(e, ev.TtsSession) and e.action == "reconnect"]
    assert len(reconnects) == 1 and "1006" in reconnects[0].reason
    assert m2.status == "ok" and m2.tts_path == "persistent"
    assert_audio_exact(session, tap, server, 2)


def fallback_text(session) -> str:
    return next(e.text for e in session.trace.turn_events(1) if isinstance(e, ev.Chunk) and e.index == 0)


async def test_stall_is_treated_as_a_dead_connection(server):
    session, tap = await open_loopback_session(server, "tts.stall_timeout_ms=1000")
    try:
        server.inject(Fault("stall", after=1, seconds=5.0))
        m1 = await run_turn(session, limit_s=15)
        m2 = await run_turn(session)
    finally:
        await session.close()
    assert m1.status == "ok" and m1.tts_path == "reconnected" and "stall" in m1.tts_path_reason, m1.errors
    # detected after the 1 s stall timeout, not after the server's 5 s stall
    assert m1.e2e_total - m1.ttfa < 4500
    assert_audio_exact(session, tap, server, 1)
    assert m2.status == "ok" and m2.tts_path == "persistent"
    assert_audio_exact(session, tap, server, 2)


@pytest.mark.parametrize("kind, warning", [("malformed", "malformed"), ("unknown", "unknown message")])
async def test_malformed_and_unknown_messages_are_skipped_and_reported(server, kind, warning):
    session, tap = await open_loopback_session(server)
    try:
        server.inject(Fault(kind, after=1))
        m1 = await run_turn(session)
        m2 = await run_turn(session)
    finally:
        await session.close()
    assert m1.status == "ok" and m1.tts_path == "persistent", m1.errors
    warnings = session_events(session, 1, "warning")
    assert len(warnings) == 1 and warning in warnings[0].message
    assert_audio_exact(session, tap, server, 1)
    assert m2.status == "ok"
    assert_audio_exact(session, tap, server, 2)
    assert server.handshakes == 1


@pytest.mark.parametrize("audio, detail", [("mp3", "MP3 bytes"), ("rate", "sample rate")])
async def test_audio_in_the_wrong_format_is_never_played(server, audio, detail):
    session, tap = await open_loopback_session(server)
    try:
        server.inject(Fault("wrong_format", after=1, audio=audio))
        m1 = await run_turn(session)
        m2 = await run_turn(session)
    finally:
        await session.close()
    assert m1.status == "ok" and m1.tts_path == "fallback_rest", m1.errors
    assert "wrong audio format" in m1.tts_path_reason and detail in m1.tts_path_reason
    assert_audio_exact(session, tap, server, 1)  # the good first message, then the rest over REST
    assert m2.status == "ok" and m2.tts_path == "persistent"
    assert_audio_exact(session, tap, server, 2)


@pytest.mark.parametrize("status", [401, 403])
async def test_handshake_refusal_is_named_at_open(server, status, monkeypatch):
    monkeypatch.setenv("LOOPBACK_TTS_KEY", "not-the-key")
    server.inject(Fault("reject", status=status))
    with pytest.raises(TTSError) as failure:
        async with asyncio.timeout(10):
            await open_loopback_session(server, "tts.api_key_env=LOOPBACK_TTS_KEY")
    message = str(failure.value)
    assert "elevenlabs" in message and "LOOPBACK_TTS_KEY" in message and f"HTTP {status}" in message


async def test_wrong_key_refused_by_the_server(monkeypatch, loopback_voice):
    server = ElevenLabsServer(api_key="right-key", voice=loopback_voice)
    await server.start()
    monkeypatch.setenv("LOOPBACK_TTS_KEY", "wrong-key")
    try:
        with pytest.raises(TTSError, match="refused the API key from LOOPBACK_TTS_KEY.*HTTP 401.*invalid_api_key"):
            async with asyncio.timeout(10):
                await open_loopback_session(server, "tts.api_key_env=LOOPBACK_TTS_KEY")
        monkeypatch.setenv("LOOPBACK_TTS_KEY", "right-key")
        session, _ = await open_loopback_session(server, "tts.api_key_env=LOOPBACK_TTS_KEY", reply=SHORT_REPLY)
        try:
            assert (await run_turn(session)).status == "ok"
        finally:
            await session.close()
    finally:
        await server.stop()


async def test_failed_reconnect_falls_back_to_rest_and_says_why(server):
    session, tap = await open_loopback_session(server)
    try:
        server.inject(Fault("close", after=1, code=1006))
        server.inject(Fault("reject", status=403))  # the reconnect is refused: retrying a refused key is useless
        m1 = await run_turn(session)
        m2 = await run_turn(session)
    finally:
        await session.close()
    assert m1.status == "ok" and m1.tts_path == "fallback_rest", m1.errors
    assert "reconnecting failed" in m1.tts_path_reason and "HTTP 403" in m1.tts_path_reason
    assert_audio_exact(session, tap, server, 1)
    # A refused key stops the attempts. Turn 2 starts with no connection and tries the persistent
    # session first, with an attempt at once: the server takes it now, so turn 2 is spoken over it.
    assert "not connected" in session_events(session, 2, "reuse")[0].reason
    assert m2.status == "ok" and m2.tts_path == "reconnected" and "HTTP 403" in m2.tts_path_reason, m2.errors
    assert not server.rest_requests[len(spoken_chunks(session, 1)):]  # nothing of turn 2 over REST
    assert_audio_exact(session, tap, server, 2)
    assert server.handshakes == 2


async def test_reconnect_failure_with_fallback_none_fails_the_turn_not_the_session(server):
    session, tap = await open_loopback_session(server, "tts.fallback=none")
    try:
        server.inject(Fault("close", after=1, code=1006))
        server.inject(Fault("reject", status=403))
        m1 = await run_turn(session)
        m2 = await run_turn(session)  # no connection at its start: it reconnects first, and is spoken
        m3 = await run_turn(session)
    finally:
        await session.close()
    assert m1.status == "error" and any("tts.fallback = none" in e for e in m1.errors)
    assert m2.status == "ok" and m2.tts_path == "reconnected" and "HTTP 403" in m2.tts_path_reason, m2.errors
    assert_audio_exact(session, tap, server, 2)
    assert m3.status == "ok" and m3.tts_path == "persistent", m3.errors
    assert_audio_exact(session, tap, server, 3)


async def test_idle_session_keeps_its_connection_with_keepalives(server):
    # The server's real inactivity timeout, set short (2 s); keep-alives every 0.5 s; idle for 3 timeouts.
    session, tap = await open_loopback_session(server, "tts.inactivity_timeout_s=2", "tts.keepalive_ms=500",
                                               reply=SHORT_REPLY)
    try:
        m1 = await run_turn(session)
        await asyncio.sleep(6.0)
        m2 = await run_turn(session)
    finally:
        await session.close()
    assert server.handshakes == 1
    assert not [e for e in session.trace.events
                if isinstance(e, ev.TtsSession) and e.action in ("reconnect", "fallback")]
    keepalives = [e for e in session.trace.events if isinstance(e, ev.TtsSession) and e.action == "keepalive"]
    assert len(keepalives) >= 8
    # Between turns a keep-alive context of its own, closed at once: never the default context.
    assert {"text": " ", "context_id": "keepalive-1"} in server.received
    assert {"context_id": "keepalive-1", "close_context": True} in server.received
    assert not [m for m in server.received if "context_id" not in m and not m.get("close_socket")]
    assert server.most_contexts <= 2  # a turn's context while it finishes, and a keep-alive's
    assert m1.status == m2.status == "ok" and m2.tts_path == "persistent"
    assert_audio_exact(session, tap, server, 2)


async def test_a_server_with_a_shorter_idle_limit_closes_once_then_keepalives_fit_inside_it(loopback_voice):
    """A server that does not honour inactivity_timeout (its limit: 2 s; asked for: 20 s, so
    keep-alives every 10 s): its close states the limit, and from then on the keep-alives fit
    inside it. The reconnect is reported, but no turn's audio waited for it."""
    server = ElevenLabsServer(voice=loopback_voice, inactivity_limit_s=2.0)
    await server.start()
    session, tap = await open_loopback_session(server, reply=SHORT_REPLY)
    try:
        reconnect = await wait_for_event(session, "reconnect", limit_s=15)
        idle_from = len(session.trace.events)
        await asyncio.sleep(8.0)  # idle for four of the server's limits
        m1 = await run_turn(session)
    finally:
        await session.close()
        await server.stop()
    assert "input_timeout_exceeded" in reconnect.reason and "2.0 seconds" in reconnect.reason
    assert reconnect.keepalive_ms == 1000.0 and reconnect.turn == ev.SESSION_TURN
    later = [e for e in session.trace.events[idle_from:] if isinstance(e, ev.TtsSession)]
    assert not [e for e in later if e.action in ("reconnect", "fallback")]
    assert len([e for e in later if e.action == "keepalive"]) >= 6
    assert server.handshakes == 2
    assert m1.status == "ok" and m1.tts_path == "persistent", m1.errors
    assert_audio_exact(session, tap, server, 1)


async def test_the_keepalive_interval_is_derived_from_the_inactivity_timeout(server):
    # No tts.keepalive_ms: half the 2 s asked for (the inactivity_timeout query parameter).
    session, tap = await open_loopback_session(server, "tts.inactivity_timeout_s=2", reply=SHORT_REPLY)
    try:
        await asyncio.sleep(5.0)  # idle for two and a half timeouts
        m1 = await run_turn(session)
    finally:
        await session.close()
    opened = next(e for e in session.trace.events if isinstance(e, ev.TtsSession) and e.action == "open")
    assert opened.keepalive_ms == 1000.0
    assert server.handshakes == 1 and not [e for e in session.trace.events
                                          if isinstance(e, ev.TtsSession) and e.action == "reconnect"]
    assert m1.status == "ok" and m1.tts_path == "persistent"
    assert_audio_exact(session, tap, server, 1)


async def test_barge_in_closes_the_context(server):
    # A slow LLM: the barge-in comes while the reply is still being written (no end of reply yet).
    session, _ = await open_loopback_session(server, llm=replay(REPLY, turns=8, gap_ms=120.0))
    try:
        for _ in range(7):  # more barge-ins than the 5 contexts a connection may hold open
            task = session.start_turn("Tell me about my order.")
            async with asyncio.timeout(10):
                while not any(isinstance(e, ev.TtsAudio) for e in session.trace.turn_events(session.turn_count)):
                    await asyncio.sleep(0.01)
            session.cancel_turn("barge-in")
            assert (await task).status == "cancelled"
        m = await run_turn(session)
    finally:
        await session.close()
    closed = [msg["context_id"] for msg in server.received if msg.get("close_context")]
    ended = [msg["context_id"] for msg in server.received if msg.get("flush") and "text" not in msg]
    assert closed == [f"turn-{n}" for n in range(1, 9)] and ended == ["turn-8"]
    assert m.status == "ok" and m.tts_path == "persistent" and server.handshakes == 1


async def test_missing_key_is_named_at_open_before_any_connection(monkeypatch):
    from playground.tts.elevenlabs import ElevenLabsConfig, ElevenLabsSession

    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    session = ElevenLabsSession(ElevenLabsConfig(api_key_env="ELEVENLABS_API_KEY", base_url="https://api.elevenlabs.io",
                                                 voice="21m00Tcm4TlvDq8ikWAM"))
    with pytest.raises(TTSError, match="elevenlabs: no API key: set the environment variable ELEVENLABS_API_KEY"):
        await session.open(lambda action, data: None)


async def test_persistent_false_is_a_deliberate_rest_path(server):
    session, tap = await open_loopback_session(server, "tts.persistent=false")
    try:
        m1 = await run_turn(session)
    finally:
        await session.close()
    opened = next(e for e in session.trace.events if isinstance(e, ev.TtsSession) and e.action == "open")
    assert opened.deliberate and opened.reason == "preset: persistent = false"
    assert m1.status == "ok" and m1.tts_path == "fallback_rest" and m1.tts_path_reason == "preset: persistent = false"
    assert not session_events(session, 1, "fallback")  # not reported as a fault
    assert server.handshakes == 0 and len(server.rest_requests) == m1.spoken_chunks
    assert_audio_exact(session, tap, server, 1)


async def test_single_context_endpoint(server):
    session, tap = await open_loopback_session(server, "tts.contexts=single")
    try:
        m1 = await run_turn(session)
        m2 = await run_turn(session)
    finally:
        await session.close()
    assert m1.status == m2.status == "ok" and m2.tts_path == "persistent", (m1.errors, m2.errors)
    assert_audio_exact(session, tap, server, 1)
    assert_audio_exact(session, tap, server, 2)
    assert server.handshakes == 1 and not any("context_id" in m for m in server.received)


async def test_the_local_llm_is_not_paused_for_a_tts_that_waits_for_more_text(server):
    """llm.pause_until_first_audio (the default) must not apply when chunks are not flushed: the
    server then buffers text until it has enough, and a paused LLM would never give it more."""
    from playground.llm.local import LocalLLM

    preset = loopback_preset(server.url, "chunker.strategy=passthrough", "tts.flush_chunks=false", "llm.max_tokens=40")
    assert preset.llm.pause_until_first_audio
    session, _ = await open_loopback_session(server, "chunker.strategy=passthrough", "tts.flush_chunks=false",
                                             "llm.max_tokens=40", llm=LocalLLM(preset.llm))
    try:
        m = await run_turn(session, "Tell me about your store, please.", limit_s=60)
    finally:
        await session.close()
    assert m.status == "ok" and m.ttfa is not None, m.errors
    events = session.trace.turn_events(1)
    tokens = [e.t_ms for e in events if isinstance(e, ev.LlmToken)]
    first_send = next(e.t_ms for e in events if isinstance(e, ev.TtsSend))
    first_audio = next(e.t_ms for e in events if isinstance(e, ev.TtsAudio))
    assert len([t for t in tokens if first_send < t < first_audio]) > 1  # generation went on
