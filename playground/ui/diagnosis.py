"""The diagnosis view (F10, or the palette): every ended turn, and the selected one's breakdown
and findings as `playground diagnose` writes them."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Markdown, Static

from playground.core.formatting import format_ms, shorten, visible
from playground.diagnosis.report import turn_lines
from playground.diagnosis.session import TurnDiagnosis

SEVERITY_STYLES = {"CRITICAL": "bold red", "WARNING": "yellow", "INFO": ""}


class DiagnosisScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f10,q", "dismiss", "Close", id="diagnosis.close")]
    DEFAULT_CSS = """
    DiagnosisScreen { align: center middle; }
    DiagnosisScreen > Vertical { width: 95%; height: 90%; border: round $primary; background: $surface; padding: 0 1; }
    DiagnosisScreen #diagnosis-turns { width: 44; height: 1fr; }
    DiagnosisScreen VerticalScroll { height: 1fr; }
    """

    def __init__(self, diagnoses: dict[int, TurnDiagnosis], selected: int | None = None) -> None:
        super().__init__()
        self.diagnoses = dict(sorted(diagnoses.items()))
        self.selected = selected if selected in self.diagnoses else next(reversed(self.diagnoses), None)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Diagnosis: where each turn's wait went and what went wrong "
                              "(as `playground diagnose` writes it). Esc closes.", style="bold"))
            with Horizontal():
                yield DataTable(id="diagnosis-turns", cursor_type="row")
                with VerticalScroll():
                    yield Markdown(id="diagnosis-turn")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label in ("turn", "waited", "worst finding"):
            table.add_column(label, key=label)
        for turn, d in self.diagnoses.items():
            worst = d.findings[0] if d.findings else None
            finding = Text(shorten(visible(worst.title), 28), style=SEVERITY_STYLES[worst.severity]) if worst else Text("-")
            table.add_row(str(turn), format_ms(d.breakdown.total_ms if d.breakdown.stages else None), finding, key=str(turn))
        if self.selected is None:
            self.query_one(Markdown).update("No turn has ended yet.")
            return
        table.move_cursor(row=list(self.diagnoses).index(self.selected))
        self._show(self.selected)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self._show(int(event.row_key.value))

    def _show(self, turn: int) -> None:
        self.selected = turn
        self.query_one(Markdown).update(visible("\n".join(turn_lines(self.diagnoses[turn]))))
