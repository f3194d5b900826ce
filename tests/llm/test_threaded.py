"""The worker-thread bridge: a closed gate pauses a lazy token iterator between tokens."""

from __future__ import annotations

import asyncio
import threading

from playground.llm.threaded import stream_from_thread


def counting_iterator(pulled: list[int]):
    def make(stop: threading.Event):
        for i in range(100):
            pulled.append(i)  # the "generation" of token i happens here, when it is pulled
            yield f"t{i} "
    return make


async def test_a_closed_gate_pauses_generation_and_an_open_one_resumes_it():
    pulled: list[int] = []
    gate = threading.Event()
    gate.set()
    stream = stream_from_thread(counting_iterator(pulled), "test-gated", gate=gate)
    first = await anext(stream)
    assert first.text == "t0 "
    gate.clear()
    await asyncio.sleep(0.3)
    paused_at = len(pulled)
    await asyncio.sleep(0.3)
    assert len(pulled) == paused_at < 100  # nothing generated while the gate is closed
    gate.set()
    texts = [first.text] + [token.text async for token in stream]
    assert texts == [f"t{i} " for i in range(100)] and len(pulled) == 100  # nothing lost or repeated


async def test_closing_the_stream_ends_a_paused_worker():
    pulled: list[int] = []
    gate = threading.Event()
    gate.set()
    stream = stream_from_thread(counting_iterator(pulled), "test-gated-close", gate=gate)
    await anext(stream)
    gate.clear()
    await asyncio.sleep(0.1)
    await stream.aclose()
    await asyncio.sleep(0.2)  # the worker polls its stop flag while paused
    workers = [t for t in threading.enumerate() if t.name == "test-gated-close"]
    assert not workers and len(pulled) < 100
