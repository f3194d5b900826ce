"""The chunker settings panel: the strategy's parameters, validated like `--set` values."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from playground.core.presets import ChunkerConfig, Preset, PresetError, apply_overrides

# The strategy's parameters (F2 changes the strategy), described as the preset's fields are.
PARAMETERS = {key: info.description for key, info in ChunkerConfig.__pydantic_fields__.items() if key != "strategy"}


class ChunkerSettings(ModalScreen[Preset | None]):
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="chunker_settings.save"),
        Binding("escape", "dismiss(None)", "Cancel", id="chunker_settings.cancel"),
    ]
    DEFAULT_CSS = """
    ChunkerSettings { align: center middle; }
    ChunkerSettings > Vertical { width: 90%; height: auto; border: round $primary; background: $surface; padding: 0 1; }
    ChunkerSettings Grid { grid-size: 3; grid-columns: 18 12 1fr; height: auto; grid-gutter: 0 1; }
    ChunkerSettings Label { padding: 1 0; }
    ChunkerSettings #settings-error { color: $error; }
    """

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.preset = preset

    def compose(self) -> ComposeResult:
        chunker = self.preset.chunker
        with Vertical():
            yield Static(f"Chunker parameters (strategy: {chunker.strategy}; F2 changes it). "
                         "They apply from the next turn. Ctrl+S saves, Esc cancels.")
            with Grid():
                for key, meaning in PARAMETERS.items():
                    value = getattr(chunker, key)
                    yield Label(key)
                    yield Input(f"{value:g}" if isinstance(value, float) else str(value), id=f"param-{key}")
                    yield Label(meaning)
            yield Static("", id="settings-error")

    def action_save(self) -> None:
        overrides = [f"chunker.{key}={self.query_one(f'#param-{key}', Input).value.strip()}" for key in PARAMETERS]
        try:
            self.dismiss(apply_overrides(self.preset, overrides))
        except PresetError as exc:
            self.query_one("#settings-error", Static).update(str(exc).replace("--set ", ""))
