"""Real traces for the export tests: recorded sessions, and a 200-turn one built from them."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from playground.core.events import TraceEvent, read_trace
from playground.export.bench import synthetic_session

DATA = Path(__file__).parent / "data"
TWO_TURNS = Path(__file__).parents[1] / "data" / "two-turns.jsonl"
SESSION = DATA / "session.jsonl"  # 5 turns of ~120 tokens, turn 4 cancelled mid-playback
VOICE = DATA / "voice.jsonl"  # one spoken turn: VAD, interim and final STT


@functools.cache
def load(path: Path) -> tuple[dict, list[TraceEvent]]:
    return read_trace(path)


@functools.cache
def long_session() -> tuple[dict, list[TraceEvent]]:
    header, events = load(SESSION)
    return synthetic_session(header, events, 200)


@pytest.fixture(params=[TWO_TURNS, SESSION, VOICE], ids=lambda p: p.name)
def recorded(request) -> Path:
    return request.param
