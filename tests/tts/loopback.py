"""Helpers for tests of the persistent WebSocket TTS session against the loopback ElevenLabs server."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import numpy as np

from playground.audio.output import open_output
from playground.core import events as ev
from playground.core.presets import Preset, apply_overrides, load_preset
from playground.engine.session import Session
from playground.llm.replay import ReplayLLM, ReplayLLMConfig
from playground.servers.elevenlabs import ElevenLabsServer
from playground.tts.base import AudioChunk
from playground.tts.elevenlabs import ElevenLabsSession

RATE = 22050
# Two chunks; the first is ~2.5 s of speech, i.e. several 0.5 s audio messages, so a fault
# after the first message strikes in the middle of a chunk.
REPLY = "Sure, I can help you with that order today. It ships on Monday!"
SHORT_REPLY = "Okay, done."


def replay(text: str, turns: int = 1, gap_ms: float = 15.0) -> ReplayLLM:
    tokens = [(30.0 + i * gap_ms, word + " ") for i, word in enumerate(text.split(" "))]
    return ReplayLLM(ReplayLLMConfig(), turns=[tokens] * turns)


class AudioTap:
    """The TTS session as the engine sees it, keeping every sample it delivers per (turn, chunk)."""

    def __init__(self, inner: ElevenLabsSession) -> None:
        self.inner = inner
        self.turn = 0
        self.samples: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    async def begin_turn(self, turn: int) -> None:
        self.turn = turn
        await self.inner.begin_turn(turn)

    def audio(self) -> AsyncIterator[AudioChunk]:
        async def tapped() -> AsyncIterator[AudioChunk]:
            async for audio in self.inner.audio():
                self.samples[(self.turn, audio.chunk)].append(audio.samples)
                yield audio
        return tapped()

    def received(self, turn: int, chunk: int) -> np.ndarray:
        pieces = self.samples.get((turn, chunk), [])
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)


def loopback_preset(url: str, *overrides: str) -> Preset:
    # The preset's own stall timeout: the loopback synthesizes with Piper in this process, and a
    # long sentence on a busy machine owes its first audio for more than a short one (1.5 s read a
    # run-on as a stall with six test workers on two cores). A stall test sets its own.
    return apply_overrides(load_preset("loopback-elevenlabs"), [f"tts.base_url={url}", *overrides])


async def open_loopback_session(server: ElevenLabsServer, *overrides: str, llm=None, reply: str = REPLY,
                                turns: int = 3, wav_path=None) -> tuple[Session, AudioTap]:
    preset = loopback_preset(server.url, *overrides)
    tap = AudioTap(ElevenLabsSession(preset.tts))
    session = Session(preset, llm or replay(reply, turns), tap, await open_output("null", wav_path=wav_path))
    await session.open()
    return session, tap


def spoken_chunks(session: Session, turn: int) -> dict[int, str]:
    """chunk index -> text, of the chunks the turn sent to TTS."""
    texts = {e.index: e.text for e in session.trace.turn_events(turn) if isinstance(e, ev.Chunk)}
    return {e.chunk: texts[e.chunk] for e in session.trace.turn_events(turn) if isinstance(e, ev.TtsSend)}


def assert_audio_exact(session: Session, tap: AudioTap, server: ElevenLabsServer, turn: int) -> None:
    """Every chunk's audio arrived exactly once: the samples equal what the server speaks for its text
    (the loopback speaks a text the same way every time), nothing repeated, nothing missing."""
    chunks = spoken_chunks(session, turn)
    assert chunks, f"turn {turn} sent nothing to TTS"
    for index, text in chunks.items():
        expected = server.speech(text.strip() + " ", RATE)
        got = tap.received(turn, index)
        assert len(got) == len(expected), f"turn {turn} chunk {index}: {len(got)} samples, expected {len(expected)}"
        assert np.array_equal(got, expected), f"turn {turn} chunk {index}: audio differs from what was synthesized"


def session_events(session: Session, turn: int, action: str | None = None) -> list[ev.TraceEvent]:
    return [e for e in session.trace.turn_events(turn)
            if isinstance(e, ev.TtsSession) and (action is None or e.action == action)]


async def run_turn(session: Session, text: str = "Hello?", limit_s: float = 20.0):
    async with asyncio.timeout(limit_s):
        return await session.run_turn(text)


async def wait_for_event(session: Session, action: str, limit_s: float = 20.0, since: int = 0) -> ev.TraceEvent:
    """The first `tts.session` event with `action` among the trace's events from index `since` on,
    waited for (the trace only grows)."""
    async with asyncio.timeout(limit_s):
        while True:
            for event in session.trace.events[since:]:
                if isinstance(event, ev.TtsSession) and event.action == action:
                    return event
            await asyncio.sleep(0.02)
