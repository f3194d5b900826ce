"""Helpers for the Cartesia and Deepgram session tests: full engine turns (replayed LLM
tokens, the null output) against a loopback server, and exact audio checks."""

from __future__ import annotations

import re

import numpy as np

from playground.audio.output import open_output
from playground.core import events as ev
from playground.core.presets import apply_overrides, load_preset
from playground.engine.session import Session
from playground.llm.replay import ReplayLLM
from playground.servers.base import LoopbackTTSServer
from tests.tts.loopback import RATE, AudioTap, session_events, spoken_chunks

# Every chunk of these ends at a boundary, so the servers speak each chunk as it comes.
REPLIES = ["Hello there, this is the loopback voice. How can I help you today?",
           "Sure, I can do that. It will take a moment."]
LONG_REPLY = "This reply goes on for a long while, so that it can be interrupted. " * 4
__all__ = ["LONG_REPLY", "RATE", "REPLIES", "AudioTap", "session_events", "spoken_chunks"]


def tokens(text: str, gap_ms: float = 10.0) -> list[tuple[float, str]]:
    return [(i * gap_ms, word) for i, word in enumerate(re.findall(r"\s*\S+", text))]


async def open_turns(preset_name: str, provider: type, server: LoopbackTTSServer, replies: list[str],
                     *overrides: str) -> tuple[Session, AudioTap]:
    """A session on the loopback preset, pointed at `server`, replaying `replies` as the LLM."""
    preset = apply_overrides(load_preset(preset_name), [
        f'tts.base_url="{server.url}"', f"tts.output_format=pcm_{RATE}", "tts.stall_timeout_ms=1500",
        "tts.reconnect_backoff_ms=20", *overrides])
    tap = AudioTap(provider(preset.tts))
    session = Session(preset, ReplayLLM(preset.llm, turns=[tokens(reply) for reply in replies]), tap,
                      await open_output("null"))
    await session.open()
    return session, tap


def errors(session: Session, turn: int) -> list[ev.TraceEvent]:
    return [e for e in session.trace.turn_events(turn) if e.type == ev.ERROR]


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
