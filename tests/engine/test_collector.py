"""Full garbage collections wait for the end of turns, but turns run back to back still get one."""

from __future__ import annotations

import asyncio
import gc
import weakref

from playground.engine import collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def old_cyclic_garbage() -> weakref.ref:
    node = Node()
    gc.collect(1)  # survived a generation-1 collection: now in the oldest generation
    ref = weakref.ref(node)
    del node
    return ref


async def test_back_to_back_turns_get_a_full_collection_every_few_turns():
    collector.turn_started()
    collector.turn_ended()
    await asyncio.sleep(collector.IDLE_COLLECT_DELAY_S + 0.1)  # an idle collection: the count starts at 0
    garbage = old_cyclic_garbage()
    for turn in range(1, collector.COLLECT_AT_LATEST_AFTER_TURNS + 1):
        collector.turn_started()
        gc.collect(1)  # young collections go on during turns, and cannot free old garbage
        assert garbage() is not None, f"collected during turn {turn}"
        collector.turn_ended()
    assert garbage() is None  # the last turn's end collected at once: no idle moment came
    assert gc.get_threshold()[2] < 1_000_000  # automatic full collections are back on between turns
