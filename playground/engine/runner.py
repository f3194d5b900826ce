"""The engine on its own event loop, in a background thread.

A front end (the TUI) runs its own loop for drawing; the pipeline runs here, so a slow
frame can never delay a token, a chunk or an audio block. The front end submits
coroutines (open a session, start or cancel a turn) and reads the session's trace,
which only ever grows: reading `trace.events[n:]` from another thread is safe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EngineThread:
    def __init__(self, name: str = "engine") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def start(self) -> "EngineThread":
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Runs `coro` on the engine loop; await it elsewhere with `asyncio.wrap_future`."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Calls a plain function on the engine loop (never blocks the caller)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        if self._started and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
