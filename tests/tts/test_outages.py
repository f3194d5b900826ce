"""The persistent ElevenLabs session when the server goes away (an outage of the whole server on
real sockets: it stops listening and drops every connection, then listens again on the same
port) and when barge-ins come faster than closed contexts finish. What the listener hears is
compared sample for sample with an undisturbed run of the same reply (the output's WAV capture)."""

from __future__ import annotations

import asyncio
import wave

import numpy as np
import pytest

from playground.core import events as ev
from playground.servers.elevenlabs import FRAME_S, ElevenLabsServer
from playground.servers.faults import Fault
from tests.tts.loopback import (
    RATE,
    REPLY,
    assert_audio_exact,
    open_loopback_session,
    replay,
    run_turn,
    session_events,
    spoken_chunks,
    wait_for_event,
)

pytestmark = pytest.mark.models  # the loopback server speaks with the Piper voice
OUTAGE_S = 2.0


def wav_samples(path) -> np.ndarray:
    with wave.open(str(path), "rb") as f:
        assert f.getframerate() == RATE
        return np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")


async def played_reply(server: ElevenLabsServer, wav_path, *overrides: str):
    """One turn speaking REPLY on a new session: (what the output played, the session, the turn's metrics)."""
    session, _ = await open_loopback_session(server, *overrides, turns=1, wav_path=wav_path)
    try:
        metrics = await run_turn(session, limit_s=40)
    finally:
        await session.close()  # closes the output: the WAV is complete
    return wav_samples(wav_path), session, metrics


def end_first_chunk_on_silence(server: ElevenLabsServer, session) -> int:
    """Makes chunk 0's speech two messages long, the second covering no character (the audio after its
    last character, as ElevenLabs sends it too); returns the messages chunk 0 is spoken in."""
    text = spoken_chunks(session, 1)[0].strip() + " "
    step = int(RATE * FRAME_S)
    length = round(step * len(text) / (len(text) - 0.5))  # the last character starts inside the first message
    speech = server.speech(text, RATE)[:length]
    server.set_speech(text, RATE, np.pad(speech, (0, length - len(speech))))
    return 2


@pytest.mark.parametrize("strikes", ["mid-chunk", "after the last aligned character"])
async def test_an_outage_mid_reply_is_bridged_without_losing_or_repeating_a_sample(server, tmp_path, strikes):
    _, first, _ = await played_reply(server, tmp_path / "learn.wav")
    after = 2 if strikes == "mid-chunk" else end_first_chunk_on_silence(server, first) - 1
    undisturbed, _, m0 = await played_reply(server, tmp_path / "undisturbed.wav")
    assert m0.status == "ok" and m0.tts_path == "persistent", m0.errors

    server.inject(Fault("outage", after=after, seconds=OUTAGE_S))
    heard, session, m1 = await played_reply(server, tmp_path / "outage.wav")

    assert m1.status == "ok" and m1.tts_path == "reconnected", m1.errors
    (reconnect,) = session_events(session, 1, "reconnect")
    # downtime counts from when the drop was noticed (late on a loaded machine) to the new connection
    assert reconnect.downtime_ms >= OUTAGE_S * 1000 / 2 and reconnect.attempts > 1
    assert not session_events(session, 1, "fallback") and not server.rest_requests
    assert_same_sound(heard, undisturbed)


def assert_same_sound(heard: np.ndarray, undisturbed: np.ndarray) -> None:
    """Nothing lost, nothing repeated: sample for sample what an undisturbed run played."""
    assert len(heard) == len(undisturbed), f"{(len(heard) - len(undisturbed)) / RATE * 1000:+.0f} ms of speech"
    assert np.array_equal(heard, undisturbed)


async def test_a_reply_moved_to_rest_after_its_last_aligned_character_loses_no_sample(server, tmp_path):
    """tts.on_disconnect = rest: the chunk whose trailing audio had not arrived is spoken over REST
    too (its delivered samples skipped), not dropped because its characters were all aligned."""
    _, first, _ = await played_reply(server, tmp_path / "learn.wav", "tts.on_disconnect=rest")
    messages = end_first_chunk_on_silence(server, first)
    undisturbed, _, _ = await played_reply(server, tmp_path / "undisturbed.wav", "tts.on_disconnect=rest")
    server.inject(Fault("close", after=messages - 1, code=1006))
    heard, session, m1 = await played_reply(server, tmp_path / "rest.wav", "tts.on_disconnect=rest")
    assert m1.status == "ok" and m1.tts_path == "fallback_rest", m1.errors
    assert session_events(session, 1, "fallback")[0].resent_chunks[0] == 0
    assert_same_sound(heard, undisturbed)


async def test_an_outage_between_turns_is_bridged_in_the_background(server):
    session, tap = await open_loopback_session(server)
    try:
        m1 = await run_turn(session)
        since = len(session.trace.events)
        await server.outage(OUTAGE_S)  # returns once the server listens again
        reconnect = await wait_for_event(session, "reconnect", limit_s=20, since=since)
        m2 = await run_turn(session)
    finally:
        await session.close()
    assert m1.status == "ok" and reconnect.turn == ev.SESSION_TURN
    assert reconnect.downtime_ms >= OUTAGE_S * 1000 / 2
    # The next turn found the connection back, and nothing of it waited for one.
    assert m2.status == "ok" and m2.tts_path == "persistent", m2.errors
    assert_audio_exact(session, tap, server, 2)
    assert server.handshakes == 2 and not server.rest_requests


async def test_a_turn_during_an_outage_fails_and_the_next_tries_the_session_first(server):
    # Background attempts once a minute: only a turn's own attempt can reconnect in this test (and
    # no stall may be detected on a loaded machine: its reconnect would wait that minute too).
    session, tap = await open_loopback_session(server, "tts.reconnect_backoff_ms=60000", "tts.stall_timeout_ms=20000")
    try:
        host, port = "127.0.0.1", server.port
        await server.stop()
        await wait_for_event(session, "disconnect")
        m1 = await run_turn(session)  # tries the session (refused), then REST: the server is down too
        await server.start(host, port)
        m2 = await run_turn(session)
    finally:
        await session.close()
    assert m1.status == "error" and any("REST synthesis" in e for e in m1.errors), m1.errors
    assert "not connected" in session_events(session, 1, "reuse")[0].reason
    assert m2.status == "ok" and m2.tts_path == "reconnected", m2.errors
    assert session_events(session, 2, "reconnect")  # its own attempt, at once
    assert_audio_exact(session, tap, server, 2)
    assert not server.rest_requests  # turn 2 went over the session it reconnected at once


async def test_twenty_rapid_barge_ins_never_reach_the_context_cap(loopback_voice):
    """Each barge-in closes its context, but a closed context goes on speaking its flushed text
    (at twice real time here) and holds its slot until its final message. Keep-alives go out
    between some of the barge-ins (every 1.5 s: half the 3 s inactivity timeout)."""
    server = ElevenLabsServer(voice=loopback_voice, generation_speed=2.0)
    await server.start()
    session, tap = await open_loopback_session(server, "tts.inactivity_timeout_s=3",
                                               llm=replay(REPLY, turns=21))
    try:
        for n in range(1, 21):
            task = session.start_turn("Tell me about my order.")
            async with asyncio.timeout(10):
                while not any(isinstance(e, ev.TtsSend) for e in session.trace.turn_events(n)):
                    await asyncio.sleep(0.005)
            session.cancel_turn("barge-in")
            assert (await task).status == "cancelled"
            if n % 5 == 0:  # a pause: a keep-alive goes out between turns
                await wait_for_event(session, "keepalive", limit_s=10, since=len(session.trace.events))
        m = await run_turn(session, limit_s=40)
    finally:
        await session.close()
        await server.stop()
    problems = [e for e in session.trace.events if isinstance(e, ev.Error) or (
        isinstance(e, ev.TtsSession) and e.action in ("reconnect", "fallback"))]
    assert not problems, problems
    assert server.handshakes == 1 and server.most_contexts <= 5
    assert not [m for m in server.received if "context_id" not in m and not m.get("close_socket")]
    assert [m for m in server.received if str(m.get("context_id", "")).startswith("keepalive-")]
    assert m.status == "ok" and m.tts_path == "persistent", m.errors
    assert_audio_exact(session, tap, server, 21)
