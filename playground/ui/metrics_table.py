"""The metrics table: one row per turn, budget misses in red, p50/p90 across the session."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from playground.core.formatting import format_ms, visible
from playground.core.metrics import METRIC_LABELS, TurnMetrics, budget_misses, percentile
from playground.ui.styles import PATH_STYLES

COLUMNS = ("llm_ttft", "ttfs", "ttft_tts", "ttfa", "first_play", "llm_total", "tts_total", "e2e_total")


class MetricsTable(DataTable):
    DEFAULT_CSS = "MetricsTable { height: auto; max-height: 12; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(zebra_stripes=True, cursor_type="row", **kwargs)
        self.metrics: dict[int, TurnMetrics] = {}
        self.budgets: dict[str, float] = {}

    def on_mount(self) -> None:
        self.add_column("turn", key="turn")
        self.add_column("chunker", key="strategy")
        for key in COLUMNS:
            self.add_column(METRIC_LABELS[key], key=key)
        self.add_column("chunks", key="chunks")
        self.add_column("tts", key="tts")

    def set_turn(self, m: TurnMetrics, budgets: dict[str, float]) -> None:
        self.metrics[m.turn] = m
        self.budgets = budgets
        self._rebuild()

    def clear_turns(self) -> None:
        self.metrics.clear()
        self._rebuild()

    def _row(self, m: TurnMetrics) -> list[Text | str]:
        misses = budget_misses(m, self.budgets)
        cells: list[Text | str] = [str(m.turn), visible(m.strategy or "-")]
        for key in COLUMNS:
            cells.append(Text(format_ms(m.value(key)) + ("!" if key in misses else ""),
                              style="bold red" if key in misses else "", justify="right"))
        cells.append(f"{m.spoken_chunks}/{m.chunks}")
        path = m.tts_path or "-"
        if m.tts_path_reason:
            path += f" ({m.tts_path_reason})"
        if m.status != "ok":
            path += f" {m.status.upper()}"
        deliberate_rest = m.tts_path == "fallback_rest" and not m.tts_path_fault
        style = "" if deliberate_rest else PATH_STYLES.get(m.tts_path or "", "")
        cells.append(Text(visible(path), style=style if m.status == "ok" else "bold red"))
        return cells

    def _rebuild(self) -> None:
        self.clear()
        for number in sorted(self.metrics):
            self.add_row(*self._row(self.metrics[number]), key=f"turn-{number}")
        if len(self.metrics) > 1:
            for p in (50, 90):
                values = [percentile([v for m in self.metrics.values() if (v := m.value(k)) is not None], p) for k in COLUMNS]
                self.add_row(Text(f"p{p}", style="bold"), "", *[Text(format_ms(v), justify="right", style="bold") for v in values],
                             "", "", key=f"p{p}")
        if self.row_count:
            self.move_cursor(row=len(self.metrics) - 1)
