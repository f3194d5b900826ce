"""The metrics table: one row per turn, budget misses in red, p50/p90 across the session.

Laid out by priority at every width: when the columns do not fit, the least telling ones
leave first, so how TTS was reached (and a turn's failure) and the first-audio metrics stay
visible instead of being cut off at the right edge.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.events import Resize
from textual.widgets import DataTable

from playground.core.formatting import format_gaps, format_ms, visible
from playground.core.metrics import METRIC_LABELS, TurnMetrics, budget_misses, percentile
from playground.ui.styles import PATH_STYLES

COLUMNS = ("llm_ttft", "ttfs", "ttft_tts", "ttfa", "first_play", "first_sound", "llm_total", "tts_total", "e2e_total")
ORDER = ("turn", "strategy", *COLUMNS, "gaps", "chunks", "tts")
LABELS = {"turn": "turn", "strategy": "chunker", "gaps": "GAPS", "chunks": "chunks", "tts": "tts", **METRIC_LABELS}
# Most telling first: the columns at the end of this list are the first to leave a narrow table.
PRIORITY = ("turn", "tts", "ttfa", "first_sound", "first_play", "ttfs", "gaps", "llm_ttft", "strategy", "e2e_total",
            "chunks", "ttft_tts", "llm_total", "tts_total")
ALWAYS_SHOWN = 3  # turn, tts, TTFA: even when they alone do not fit
CELL_PADDING = 2  # DataTable's default cell padding, both sides


class MetricsTable(DataTable):
    DEFAULT_CSS = "MetricsTable { height: auto; max-height: 12; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(zebra_stripes=True, cursor_type="row", **kwargs)
        self.metrics: dict[int, TurnMetrics] = {}
        self.budgets: dict[str, float] = {}
        self.shown: tuple[str, ...] = ()

    def on_mount(self) -> None:
        self._rebuild()

    def on_resize(self, event: Resize) -> None:
        self._rebuild()

    def set_turn(self, m: TurnMetrics, budgets: dict[str, float]) -> None:
        self.metrics[m.turn] = m
        self.budgets = budgets
        self._rebuild()

    def clear_turns(self) -> None:
        self.metrics.clear()
        self._rebuild()

    def _row(self, m: TurnMetrics) -> dict[str, Text | str]:
        misses = budget_misses(m, self.budgets)
        cells: dict[str, Text | str] = {"turn": str(m.turn), "strategy": visible(m.strategy or "-")}
        for key in COLUMNS:
            cells[key] = Text(format_ms(m.value(key)) + ("!" if key in misses else ""),
                              style="bold red" if key in misses else "", justify="right")
        cells["gaps"] = Text(format_gaps(m), style="yellow" if m.gaps else "", justify="right")
        cells["chunks"] = f"{m.spoken_chunks}/{m.chunks}"
        path = m.tts_path or "-"
        if m.tts_path_reason:
            path += f" ({m.tts_path_reason})"
        if m.status != "ok":
            path += f" {m.status.upper()}"
        deliberate_rest = m.tts_path == "fallback_rest" and not m.tts_path_fault
        style = "" if deliberate_rest else PATH_STYLES.get(m.tts_path or "", "")
        cells["tts"] = Text(visible(path), style=style if m.status == "ok" else "bold red")
        return cells

    def _percentile_rows(self) -> list[tuple[str, dict[str, Text | str]]]:
        if len(self.metrics) < 2:
            return []
        rows = []
        for p in (50, 90):
            cells: dict[str, Text | str] = {key: "" for key in ORDER}
            cells["turn"] = Text(f"p{p}", style="bold")
            for key in COLUMNS:
                value = percentile([v for m in self.metrics.values() if (v := m.value(key)) is not None], p)
                cells[key] = Text(format_ms(value), justify="right", style="bold")
            rows.append((f"p{p}", cells))
        return rows

    def _columns_that_fit(self, rows: list[dict[str, Text | str]]) -> tuple[tuple[str, ...], int | None]:
        """The columns to show at this width, and a width for the `tts` column when even the
        columns that always show do not fit (it is then truncated, never left out)."""
        widths = {key: max([cell_len(LABELS[key]), *(cell_len(str(row[key])) for row in rows)]) + CELL_PADDING
                  for key in ORDER}
        room = self.scrollable_content_region.width or self.size.width
        if not room:
            return ORDER, None
        kept = list(PRIORITY)
        while len(kept) > ALWAYS_SHOWN and sum(widths[k] for k in kept) > room:
            kept.pop()
        tts_width = None
        overflow = sum(widths[k] for k in kept) - room
        if overflow > 0:
            tts_width = max(widths["tts"] - overflow - CELL_PADDING, 8)
        return tuple(key for key in ORDER if key in kept), tts_width

    def _rebuild(self) -> None:
        if not self.is_mounted:
            return
        turn_rows = [(f"turn-{n}", self._row(self.metrics[n])) for n in sorted(self.metrics)]
        rows = [*turn_rows, *self._percentile_rows()]
        shown, tts_width = self._columns_that_fit([cells for _, cells in rows])
        self.clear(columns=True)
        for key in shown:
            self.add_column(LABELS[key], key=key, width=tts_width if key == "tts" else None)
        self.shown = shown
        for row_key, cells in rows:
            self.add_row(*(cells[key] for key in shown), key=row_key)
        if turn_rows:
            self.move_cursor(row=len(turn_rows) - 1)
