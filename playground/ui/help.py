"""The help screen: every key binding (from the app's own binding table) and the metrics."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from playground.core.metrics import METRIC_LABELS

METRICS_HELP = {
    "llm_ttft": "first content token received",
    "ttfs": "first chunk emitted by the chunker",
    "ttft_tts": "first text handed to the TTS session",
    "ttfa": "first audio received from TTS",
    "first_play": "first sample handed to the output device",
    "first_sound": "first audible sample (above -45 dBFS) heard, with the device's output latency",
    "llm_total": "last token received",
    "tts_total": "from TTFT_TTS to the last audio",
    "e2e_total": "last audio received",
    "chunker_wait": "how long the chunker held the first text back",
    "handoff": "chunk emitted to text given to TTS",
    "gaps_ms": "playback ran dry after FIRST_PLAY: total silence (the turn's gap count beside it)",
}


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close", id="help.close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; height: 90%; border: round $primary; background: $surface; padding: 0 1; }
    """

    def __init__(self, app: App) -> None:
        super().__init__()
        self._bindings_text = self._describe(app)

    @staticmethod
    def _describe(app: App) -> str:
        rows = ["| key | action |", "| --- | --- |"]
        for binding in app.BINDINGS:
            if isinstance(binding, Binding):
                rows.append(f"| `{binding.key}` | {binding.description} |")
        rows += ["| `Enter` | send the message (interrupts a reply that is playing: barge-in) |",
                 "| `Up` / `Down` | earlier messages |",
                 "| `+` / `-` / `0` | waterfall: zoom in / out / fit (when it has focus) |",
                 "| `Ctrl+P` | command palette: every action, chunker strategies |"]
        return "\n".join(rows)

    def compose(self) -> ComposeResult:
        metrics = "\n".join(f"| {METRIC_LABELS[k]} | {text} |" for k, text in METRICS_HELP.items())
        with VerticalScroll():
            yield Markdown(
                "# playground\n\nEvery turn runs LLM → chunker → persistent TTS → playback. "
                "All times are milliseconds after t0, the moment your message was sent.\n\n"
                f"## Keys\n\n{self._bindings_text}\n\n"
                f"## Metrics\n\n| metric | until |\n| --- | --- |\n{metrics}\n\n"
                "Budget misses are red. The `tts` column says how TTS was reached: persistent, "
                "reconnected, or fallback_rest (with its reason, always in red).\n\n"
                "Chunk reasons (the coloured bars in the conversation and the chunk lane): "
                "strong `. ! ?`, weak `, ; : —`, deadline (no boundary in time), underrun (playback would run dry), "
                "max_chars, flush (end of reply).\n\n"
                "The `why` lane of an ended turn splits what you waited (t0, or your last voiced frame, to the "
                "first sound) into stages that add up to it: endpointing, STT, LLM first token, chunker wait, "
                "hand-off, TTS first audio, to playback, leading silence, device latency. A turn's worst finding "
                "shows on its title; F10 lists every turn's findings with their evidence, cause, setting and what-if."
            )
