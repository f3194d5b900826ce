"""Command palette (Ctrl+P): every action of the footer, and each chunker strategy by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from playground.core.presets import STRATEGIES
from playground.ui.chunker_settings import PARAMETERS

STRATEGY_HELP = {
    "sentence": "cut at . ! ? only (the seed's behaviour)",
    "clause": "also at , ; : — once min_chars are pending",
    "adaptive": "clause + a short first chunk + a deadline + max_chars (default)",
    "words": "every N words",
    "passthrough": "every LLM fragment as it arrives",
}


class PlaygroundCommands(Provider):
    def _commands(self) -> Iterator[tuple[str, Callable[[], object], str]]:
        app = self.app
        for strategy in STRATEGIES:
            yield f"Chunker: {strategy}", partial(app.set_strategy, strategy), STRATEGY_HELP[strategy]
        yield "Switch preset", app.action_switch_preset, "shipped presets and your own"
        yield "Chunker settings", app.action_chunker_settings, ", ".join(PARAMETERS)
        yield "Edit the system prompt", app.action_edit_prompt, "then apply it, or re-run the last message with it"
        yield "Re-chunk last turn", app.action_rechunk, "its recorded tokens through every strategy, side by side"
        yield ("Diagnose turns", app.action_diagnose,
               "where each turn's wait went, its findings and what would fix them (F10)")
        yield ("Export session (JSONL, Chrome/Perfetto, OTLP, CSV, Markdown)", app.action_export,
               "write the whole session in every export format, secrets scrubbed")
        yield "Stop the reply", app.action_stop_reply, "cancel LLM, TTS and playback of the running turn"
        yield "Mute / unmute audio", app.action_toggle_mute, "silence playback (timing is still measured)"
        yield "Clear session", app.action_clear_session, "start a new conversation"
        yield "Waterfall: zoom in", partial(app.run_action, "zoom_waterfall('in')"), "fewer ms per cell"
        yield "Waterfall: zoom out", partial(app.run_action, "zoom_waterfall('out')"), "more ms per cell"
        yield "Waterfall: fit", partial(app.run_action, "zoom_waterfall('fit')"), "show whole turns"
        yield "Help", app.action_help, "keys and metric definitions"

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
