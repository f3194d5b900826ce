"""Ctrl-C (SIGINT) for the headless commands that run turns (`run`, `replay`, `bench`).

The first Ctrl-C cancels the running turn and the command goes on; a second one before a
turn has finished normally (or one with no turn running) ends the command: the running
turn is cancelled, no other starts, the session closes and the trace keeps every turn
that ran. Later ones are ignored: the command is already ending.

No Ctrl-C ever raises KeyboardInterrupt. That would unwind the event loop and let the
interpreter exit while a worker thread is still inside a native call (Piper's
onnxruntime, llama.cpp, faster-whisper), which aborts the process ("terminate called
without an active exception") and loses what was not written yet. Instead the session
closes normally and waits for those calls to finish.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, TypeVar

from playground.core import events as ev
from playground.engine.session import Session

T = TypeVar("T")
EXIT_INTERRUPTED = 130  # the shell's status for a command ended by SIGINT
CANCEL_REASON = "interrupted (Ctrl-C)"
END_REASON = "interrupted (Ctrl-C): the command ends"


class Interrupts:
    """Installs the Ctrl-C handling for the duration of a `with` block (main thread only).

    `run(main)` runs the command's coroutine; `attach(session)` tells it which session's
    turns to cancel; `ending` (and the event `ended`) says the command must stop."""

    def __init__(self, note: Callable[[str], None] = lambda message: None) -> None:
        self.note = note
        self.presses = 0
        self.ending = False
        self.ended = asyncio.Event()  # set (on the loop) when the command must stop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[Any] | None = None
        self._session: Session | None = None
        self._cancelled_one = False  # a Ctrl-C cancelled a turn, and no turn has finished normally since
        self._previous: Any = None

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def run(self, main: Callable[[], Coroutine[Any, Any, T]]) -> T | None:
        """`asyncio.run(main())`; None when a Ctrl-C ended it before it returned (while loading)."""
        async def bound() -> T:
            self._loop = asyncio.get_running_loop()
            self._main = asyncio.current_task()
            if self.ending:
                self.ended.set()
            return await main()

        try:
            return asyncio.run(bound())
        except asyncio.CancelledError:
            if self.ending:
                return None
            raise
        finally:
            self._loop = self._main = None

    def attach(self, session: Session) -> None:
        """The session whose running turn a Ctrl-C cancels (call on its loop)."""
        self._session = session
        session.trace.subscribe(self._on_event)

    def status(self, status: int) -> int:
        """The command's exit status: EXIT_INTERRUPTED once a Ctrl-C ended it."""
        return EXIT_INTERRUPTED if self.ending else status

    def _on_event(self, event: ev.TraceEvent) -> None:
        if isinstance(event, ev.TurnSummary) and event.metrics.get("status") != "cancelled":
            self._cancelled_one = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # A Python signal handler runs in the main thread between bytecodes: hand over to the loop.
        self.presses += 1
        loop = self._loop
        if loop is None or loop.is_closed():
            self.ending = True  # before or after the loop: the command stops at its next step
            return
        loop.call_soon_threadsafe(self._on_loop)

    def _on_loop(self) -> None:
        if self.ending:
            self.note("Ctrl-C: already stopping (waiting for the session to close)")
            return
        session = self._session
        if session is not None and session.busy and not self._cancelled_one:
            self._cancelled_one = True
            session.cancel_turn(CANCEL_REASON)
            return
        self.ending = True
        self.ended.set()
        if session is not None:
            session.cancel_turn(END_REASON)
        elif self._main is not None:
            self._main.cancel()  # still opening the session: opening stops (and closes what it opened)
