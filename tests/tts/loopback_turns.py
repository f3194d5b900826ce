"""The Cartesia and Deepgram session tests' common part: full engine turns (replayed LLM
tokens, the null output) against a loopback server, exact audio checks, and the fault
tests every provider passes (`SessionContract`)."""

from __future__ import annotations

import asyncio
import re
from typing import Any, ClassVar

import numpy as np
import pytest

from playground.audio.output import open_output
from playground.core import events as ev
from playground.core.presets import apply_overrides, load_preset
from playground.engine.session import Session
from playground.llm.replay import ReplayLLM, ReplayLLMConfig
from playground.servers.base import LoopbackTTSServer
from playground.servers.faults import Fault
from playground.tts.base import TTSError
from tests.tts.loopback import RATE, AudioTap, session_events, spoken_chunks

# Every chunk of these ends at a boundary, so the servers speak each chunk as it comes.
REPLIES = ["Hello there, this is the loopback voice. How can I help you today?",
           "Sure, I can do that. It will take a moment."]
LONG_REPLY = "This reply goes on for a long while, so that it can be interrupted. " * 4
__all__ = ["RATE", "REPLIES", "AudioTap", "SessionContract", "session_events", "spoken_chunks"]


def tokens(text: str, gap_ms: float = 10.0) -> list[tuple[float, str]]:
    return [(i * gap_ms, word) for i, word in enumerate(re.findall(r"\s*\S+", text))]


async def open_turns(preset_name: str, provider: type, server: LoopbackTTSServer, replies: list[str],
                     *overrides: str) -> tuple[Session, AudioTap]:
    """A session on the loopback preset, pointed at `server`, replaying `replies` as the LLM."""
    preset = apply_overrides(load_preset(preset_name), [
        f'tts.base_url="{server.url}"', f"tts.output_format=pcm_{RATE}",
        "tts.reconnect_backoff_ms=20", *overrides])
    tap = AudioTap(provider(preset.tts))
    session = Session(preset, ReplayLLM(ReplayLLMConfig(), turns=[tokens(reply) for reply in replies]), tap,
                      await open_output("null"))
    await session.open()
    return session, tap


def errors(session: Session, turn: int) -> list[ev.TraceEvent]:
    return [e for e in session.trace.turn_events(turn) if isinstance(e, ev.Error)]


def turn_audio(tap: AudioTap, turn: int) -> np.ndarray:
    pieces = [np.concatenate(p) for (t, _), p in sorted(tap.samples.items()) if t == turn and p]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)


def assert_reply_spoken_once(session: Session, tap: AudioTap, server: LoopbackTTSServer, turn: int) -> None:
    """The turn ended without an error and its audio is exactly the server's speech of every
    chunk sent, in order: nothing lost, nothing repeated (also across a reconnect)."""
    assert errors(session, turn) == []
    chunks = spoken_chunks(session, turn)
    assert chunks, f"turn {turn} sent nothing to TTS"
    expected = np.concatenate([server.speech(text.strip() + " ", RATE) for _, text in sorted(chunks.items())])
    got = turn_audio(tap, turn)
    assert len(got) == len(expected), f"turn {turn}: {len(got)} samples, expected {len(expected)}"
    assert np.array_equal(got, expected), f"turn {turn}: the audio differs from what the server spoke"


def actions(session: Session, turn: int) -> list[str]:
    return [e.action for e in session_events(session, turn)]


class SessionContract:
    """What every loopback provider's session does, in full turns. A test module subclasses
    it (as `Test...`), names its preset, session and server classes and the message a
    barge-in sends, and adds the tests of its own protocol."""

    preset: ClassVar[str]
    session_class: ClassVar[type]
    server_class: ClassVar[type[LoopbackTTSServer]]
    cancel_message: ClassVar[dict[str, Any]]  # what the client sends to stop turn 1's audio

    @pytest.fixture
    async def server(self, loopback_voice):
        server = self.server_class(voice=loopback_voice)
        await server.start()
        yield server
        await server.stop()

    async def open_session(self, server, replies=REPLIES, *overrides: str) -> tuple[Session, AudioTap]:
        return await open_turns(self.preset, self.session_class, server, replies, *overrides)

    async def run_turns(self, server, *texts: str, replies=REPLIES, overrides=()) -> tuple[Session, AudioTap]:
        async with asyncio.timeout(60):
            session, tap = await self.open_session(server, replies, *overrides)
            try:
                for text in texts:
                    await session.run_turn(text)
            finally:
                await session.close()
        return session, tap

    async def test_barge_in_stops_the_audio_and_the_next_turn_is_clean(self, server):
        async with asyncio.timeout(60):
            session, tap = await self.open_session(server, [LONG_REPLY, REPLIES[1]])
            try:
                task = session.start_turn("Tell me a long story.")
                while not any(isinstance(e, ev.PlayStart) for e in session.trace.turn_events(1)):
                    await asyncio.sleep(0.02)
                session.cancel_turn("barge-in")
                await task
                await asyncio.sleep(0.3)  # audio of turn 1 still in flight must not reach turn 2
                await session.run_turn("Something else.")
            finally:
                await session.close()
        assert self.cancel_message in server.received
        assert any(isinstance(e, ev.TurnCancelled) for e in session.trace.turn_events(1))
        assert_reply_spoken_once(session, tap, server, 2)

    @pytest.mark.parametrize("code, reason", [(1006, ""), (1008, "policy violation (injected)")])
    async def test_server_close_mid_reply_reconnects_and_resumes(self, server, code, reason):
        server.inject(Fault("close", code=code, reason=reason, after=3))
        session, tap = await self.run_turns(server, "Hi!", "Again?")
        reconnect = session_events(session, 1, "reconnect")
        assert len(reconnect) == 1 and str(code) in reconnect[0].reason and reason in reconnect[0].reason
        assert server.handshakes == 2
        assert_reply_spoken_once(session, tap, server, 1)
        assert_reply_spoken_once(session, tap, server, 2)

    async def test_a_stall_is_detected_and_the_turn_resumes(self, server):
        server.inject(Fault("stall", after=2, seconds=4.0))
        session, tap = await self.run_turns(server, "Hi!", "Again?", overrides=("tts.stall_timeout_ms=1500",))
        assert "stall" in session_events(session, 1, "reconnect")[0].reason
        assert_reply_spoken_once(session, tap, server, 1)
        assert_reply_spoken_once(session, tap, server, 2)

    async def test_malformed_and_unknown_messages_are_reported_and_skipped(self, server):
        server.inject(Fault("malformed"), Fault("unknown"))
        session, tap = await self.run_turns(server, "Hi!")
        reasons = [e.message for e in session_events(session, 1, "warning")]
        assert any("malformed" in r for r in reasons) and any("loopback_unknown" in r for r in reasons)
        assert "reconnect" not in actions(session, 1)
        assert_reply_spoken_once(session, tap, server, 1)

    async def test_wrong_audio_format_falls_back_to_rest_for_the_turn(self, server):
        server.inject(Fault("wrong_format", audio="wav"))
        session, tap = await self.run_turns(server, "Hi!", "Again?")
        fallback = session_events(session, 1, "fallback")
        assert len(fallback) == 1 and "WAV" in fallback[0].reason
        assert self.cancel_message in server.received  # the broken audio was stopped
        assert_reply_spoken_once(session, tap, server, 1)
        assert session_events(session, 2, "reuse")[0].path == "persistent"
        assert_reply_spoken_once(session, tap, server, 2)

    async def test_a_refused_reconnect_falls_back_to_rest(self, server):
        async with asyncio.timeout(60):
            session, tap = await self.open_session(server)
            server.inject(Fault("close", code=1006, after=2), Fault("reject", status=403))
            try:
                await session.run_turn("Hi!")
                await session.run_turn("Again?")
            finally:
                await session.close()
        fallback = session_events(session, 1, "fallback")
        assert fallback and "403" in fallback[-1].reason
        assert_reply_spoken_once(session, tap, server, 1)
        assert errors(session, 2) == [] and len(turn_audio(tap, 2)) > 0

    async def test_a_refused_key_is_named_at_open(self, loopback_voice, monkeypatch):
        server = self.server_class(api_key="right", voice=loopback_voice)
        await server.start()
        monkeypatch.setenv("LOOPBACK_TTS_KEY", "wrong")
        try:
            async with asyncio.timeout(20):
                with pytest.raises(TTSError, match=rf"{server.name}.*LOOPBACK_TTS_KEY.*401"):
                    await self.open_session(server, REPLIES, "tts.api_key_env=LOOPBACK_TTS_KEY")
                monkeypatch.setenv("LOOPBACK_TTS_KEY", "right")
                session, _ = await self.open_session(server, REPLIES, "tts.api_key_env=LOOPBACK_TTS_KEY")
                await session.close()
        finally:
            await server.stop()
        assert server.handshakes == 1

    async def test_persistent_false_speaks_every_turn_over_rest(self, server):
        session, tap = await self.run_turns(server, "Hi!", overrides=["tts.persistent=false"])
        assert server.handshakes == 0
        assert session_events(session, 1, "reuse")[0].path == "fallback_rest"
        assert_reply_spoken_once(session, tap, server, 1)
