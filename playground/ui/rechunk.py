"""Re-chunk the last turn: its recorded tokens through every strategy, side by side.

No LLM call: the tokens arrive at their recorded times. With the local voice, the TTFA
each strategy would have had is its TTFS plus the time Piper takes to the first audio
of that strategy's first chunk (synthesized now, on the engine's thread).
"""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from playground.chunking.compare import Rechunked, rechunk_all, turn_tokens
from playground.core import events as ev
from playground.core.formatting import format_ms
from playground.engine.runner import EngineThread
from playground.engine.session import Session


async def estimate_ttfa(session: Session, results: list[Rechunked]) -> dict[str, float]:
    """strategy -> TTFS + the local voice's time to first audio of its first spoken chunk."""
    measure = getattr(session.tts, "time_to_first_audio", None)
    estimates: dict[str, float] = {}
    if measure is None:
        return estimates
    for result in results:
        first = next((c for c in result.chunks if c.text), None)
        if first is not None:
            estimates[result.strategy] = first.end_ms + await measure(first.text)
    return estimates


class RechunkScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f6,q", "dismiss", "Close", id="rechunk.close")]
    DEFAULT_CSS = """
    RechunkScreen { align: center middle; }
    RechunkScreen > Vertical { width: 95%; height: auto; max-height: 90%; border: round $primary;
                               background: $surface; padding: 0 1; }
    RechunkScreen DataTable { height: auto; }
    """

    def __init__(self, session: Session, engine: EngineThread, turn: int) -> None:
        super().__init__()
        self.session = session
        self.engine = engine
        self.turn = turn
        events = session.trace.turn_events(turn)
        tokens, done = turn_tokens(events)
        self.results = rechunk_all(tokens, done, session.preset.chunker)
        start = ev.first(events, ev.TurnStart)
        self.used = start.strategy if start else None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"Turn {self.turn} re-chunked: its recorded tokens through every strategy "
                              f"(it ran with {self.used}). Esc closes.", style="bold"))
            yield DataTable(id="rechunk-table", cursor_type="row")
            yield Static("", id="rechunk-note")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label in ("strategy", "TTFS", "chunker wait", "TTFA (est.)", "chunks", "shortest", "longest", "first chunk"):
            table.add_column(label, key=label)
        best = min((r for r in self.results if r.ttfs is not None), key=lambda r: r.ttfs, default=None)
        for r in self.results:
            first = next((c.text for c in r.chunks if c.text), "")
            name = Text(r.strategy + (" (used)" if r.strategy == self.used else ""),
                        style="bold green" if best is not None and r is best else "")
            table.add_row(name, format_ms(r.ttfs), format_ms(r.chunker_wait), "…", str(len(r.chunks)),
                          str(r.shortest or "-"), str(r.longest or "-"), first[:60], key=r.strategy)
        self.query_one("#rechunk-note", Static).update("estimating TTFA with the local voice…")
        self._fill_ttfa()

    def _fill_ttfa(self) -> None:
        async def run() -> None:
            estimates = await asyncio.wrap_future(self.engine.submit(estimate_ttfa(self.session, self.results)))
            table = self.query_one(DataTable)
            for strategy, value in estimates.items():
                table.update_cell(strategy, "TTFA (est.)", format_ms(value))
            note = ("TTFA (est.) = TTFS + the local voice's time to the first audio of that first chunk"
                    if estimates else "TTFA can only be estimated with a local voice")
            self.query_one("#rechunk-note", Static).update(note)

        self.run_worker(run(), exclusive=True)
