"""Real traces for the export tests: recorded sessions, and a 200-turn one built from them."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from playground.core.events import TraceEvent
from playground.core.tracefile import read_trace
from playground.bench.export import synthetic_session
from playground.bench.harness import DATA as BENCH_DATA

DATA = Path(__file__).parent / "data"
TWO_TURNS = BENCH_DATA / "two-turns.jsonl"
SESSION = BENCH_DATA / "session.jsonl"  # 5 turns of ~120 tokens, turn 4 cancelled mid-playback
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
