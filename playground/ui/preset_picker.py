"""The preset switcher: shipped presets and the user's own (~/.config/playground/presets)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from playground.core.presets import Preset, available_presets
from playground.core.scrub import home_as_tilde

# Changing any of these needs a new session (load another model, connect elsewhere). Settings
# of one provider only (threads, trace, ...) are compared when both presets have them: a
# different provider needs a new session anyway.
SESSION_FIELDS = {
    "llm": ("provider", "model", "base_url", "api_key_env", "threads", "context", "trace", "replay_turn"),
    "tts": ("provider", "voice", "model", "base_url", "api_key_env", "persistent", "fallback", "output_format", "speed"),
    "audio": ("output",),
}


def needs_new_session(current: Preset, chosen: Preset) -> bool:
    return any(getattr(getattr(current, section), key, None) != getattr(getattr(chosen, section), key, None)
               for section, keys in SESSION_FIELDS.items() for key in keys)


class PresetPicker(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="presets.cancel")]
    DEFAULT_CSS = """
    PresetPicker { align: center middle; }
    PresetPicker > Vertical { width: 80%; height: auto; max-height: 80%; border: round $primary; background: $surface; padding: 0 1; }
    PresetPicker OptionList { height: auto; max-height: 20; }
    """

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Switch preset (Enter). A preset with other providers opens a new session. Esc cancels.")
            yield OptionList(*[
                Option(f"{name}{'  (current)' if name == self.current else ''}   {home_as_tilde(str(path))}",
                       id=name)
                for name, path in available_presets().items()
            ])

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
