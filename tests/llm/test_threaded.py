"""The worker-thread bridge: a closed gate pauses a lazy token iterator between tokens."""

from __future__ import annotations

import asyncio
import threading

from playground.llm.threaded import stream_from_thread


class Handshake:
    """Holds the worker inside token 1 (past the gate) until the test has closed the gate."""

    def __init__(self) -> None:
        self.in_token_1 = threading.Event()
        self.gate_closed = threading.Event()

    async def close(self, gate: threading.Event) -> None:
        await asyncio.to_thread(self.in_token_1.wait)
        gate.clear()
        self.gate_closed.set()


def counting_iterator(pulled: list[int], handshake: Handshake):
    def make(stop: threading.Event):
        for i in range(100):
            if i == 1:
                handshake.in_token_1.set()
                handshake.gate_closed.wait()
            pulled.append(i)  # the "generation" of token i happens here, when it is pulled
            yield f"t{i} "
    return make


async def paused_after_token_1(name: str):
    """A gated stream of 100 counted tokens, read up to its first token, its gate closed while
    the worker is inside token 1: (stream, first token, gate, tokens pulled)."""
    pulled: list[int] = []
    gate = threading.Event()
    gate.set()
    handshake = Handshake()
    stream = stream_from_thread(counting_iterator(pulled, handshake), name, gate=gate)
    first = await anext(stream)
    await handshake.close(gate)
    return stream, first, gate, pulled


async def test_a_closed_gate_pauses_generation_and_an_open_one_resumes_it():
    stream, first, gate, pulled = await paused_after_token_1("test-gated")
    assert first.text == "t0 "
    await asyncio.sleep(0.5)
    assert len(pulled) == 2  # nothing generated while the gate is closed
    gate.set()
    texts = [first.text] + [token.text async for token in stream]
    assert texts == [f"t{i} " for i in range(100)] and len(pulled) == 100  # nothing lost or repeated


async def test_closing_the_stream_ends_a_paused_worker():
    stream, _, _, pulled = await paused_after_token_1("test-gated-close")
    await asyncio.sleep(0.1)
    await stream.aclose()
    workers = [t for t in threading.enumerate() if t.name == "test-gated-close"]
    for worker in workers:
        await asyncio.to_thread(worker.join, 2.0)  # the worker polls its stop flag while paused
    assert not any(worker.is_alive() for worker in workers) and len(pulled) == 2
