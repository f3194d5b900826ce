"""The system prompt editor: edit, then apply from the next turn or re-run the last message."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea


@dataclass
class PromptEdit:
    prompt: str
    rerun: bool  # re-run the last user message with it


class PromptEditor(ModalScreen[PromptEdit | None]):
    BINDINGS = [
        Binding("ctrl+s", "save(False)", "Save (next turn)", id="prompt.save"),
        Binding("ctrl+r", "save(True)", "Save & re-run last message", id="prompt.rerun"),
        Binding("escape", "dismiss(None)", "Cancel", id="prompt.cancel"),
    ]
    DEFAULT_CSS = """
    PromptEditor { align: center middle; }
    PromptEditor > Vertical { width: 90%; height: 80%; border: round $primary; background: $surface; padding: 0 1; }
    PromptEditor TextArea { height: 1fr; }
    """

    def __init__(self, prompt: str) -> None:
        super().__init__()
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("System prompt. Ctrl+S saves it for the next turn; Ctrl+R saves it and re-runs your last "
                         "message (compare both turns in the waterfall); Esc cancels.")
            yield TextArea(self.prompt, id="prompt-text", soft_wrap=True)

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self, rerun: bool) -> None:
        self.dismiss(PromptEdit(self.query_one(TextArea).text, rerun))
