"""Keeps full garbage collections out of turns.

A full (generation-2) collection holds the GIL for 10-30 ms on this project's
2-core machines, stalling every thread at once: the engine loop, the synthesis
thread, the audio callback and the UI. Young generations stay automatic (they are
cheap and keep memory bounded); full collections are held back while any turn runs
and done once, shortly after the last turn ends, when a pause is harmless. Turns that
follow each other with no pause (a script, a benchmark) get one at a turn's end every
few turns, so cyclic garbage cannot pile up. Measured with `python -m playground.bench.tui`.
"""

from __future__ import annotations

import asyncio
import gc

IDLE_COLLECT_DELAY_S = 0.25
COLLECT_AT_LATEST_AFTER_TURNS = 5
_NO_AUTOMATIC_FULL = 1_000_000_000

_running_turns = 0
_threshold2: int | None = None
_turns_since_collection = 0


def turn_started() -> None:
    global _running_turns, _threshold2
    _running_turns += 1
    if _running_turns == 1:
        gen0, gen1, gen2 = gc.get_threshold()
        if _threshold2 is None:
            _threshold2 = gen2
        gc.set_threshold(gen0, gen1, _NO_AUTOMATIC_FULL)


def turn_ended() -> None:
    global _running_turns, _turns_since_collection
    _running_turns = max(0, _running_turns - 1)
    _turns_since_collection += 1
    if _running_turns == 0:
        if _turns_since_collection >= COLLECT_AT_LATEST_AFTER_TURNS:
            _collect_if_idle()
        else:
            asyncio.get_running_loop().call_later(IDLE_COLLECT_DELAY_S, _collect_if_idle)


def _collect_if_idle() -> None:
    global _threshold2, _turns_since_collection
    if _running_turns or _threshold2 is None:
        return  # a new turn started meanwhile: its end schedules the collection
    gc.collect()
    _turns_since_collection = 0
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, _threshold2)
    _threshold2 = None
