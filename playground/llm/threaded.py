"""Bridging a blocking token iterator (llama.cpp) into an async stream.

The iterator runs in a worker thread; each token is timestamped there, on arrival,
and handed to the event loop with `call_soon_threadsafe` (never blocking the worker).
Closing the async stream sets a stop flag the worker checks between tokens. An optional
`gate` (a threading.Event) pauses the worker between tokens while it is clear: a lazy
iterator such as llama.cpp's then computes nothing until the gate opens again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator

from playground.aio import iterate_queue
from playground.core.clock import now_ms
from playground.llm.base import Token

_DONE = object()
GATE_POLL_S = 0.05  # a paused worker still notices a closed stream this soon


async def stream_from_thread(make_iterator: Callable[[threading.Event], Iterator[str]], name: str,
                             gate: threading.Event | None = None) -> AsyncIterator[Token]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    stop = threading.Event()

    def work() -> None:
        try:
            tokens = make_iterator(stop)
            while True:
                while gate is not None and not gate.is_set() and not stop.is_set():
                    gate.wait(GATE_POLL_S)
                if stop.is_set():
                    break  # not one more token computed for a closed stream
                text = next(tokens, None)
                if text is None or stop.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, Token(text, now_ms()))
        except BaseException as exc:  # handed to the consumer, raised there
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        async for token in iterate_queue(queue, _DONE):
            yield token
    finally:
        stop.set()
