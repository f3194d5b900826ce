"""The status bar: preset, LLM, the persistent TTS session's state, audio device, mic."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from playground.core import events as ev
from playground.core.formatting import visible


class TTSState:
    """What the persistent TTS session is doing, from its `tts.session` events."""

    def __init__(self) -> None:
        self.state = "connecting"
        self.opened_wall: str | None = None
        self.turns_served = 0
        self.reconnects = 0
        self.fallback_reason: str | None = None
        self.fallbacks = 0
        self.warnings = 0
        self.rest_by_choice = False  # the preset asks for REST (persistent = false)
        self.recorded = False  # a recorded trace: times from the trace, not the wall clock

    def add(self, event: ev.TtsSession) -> None:
        action = event.action
        if action == "open":
            self.state = "open"
            self.opened_wall = f"+{event.t_ms / 1000:.1f}s" if self.recorded else time.strftime("%H:%M:%S")
        elif action == "reuse":
            self.turns_served = event.turns_served if event.turns_served is not None else self.turns_served + 1
            self.rest_by_choice = (event.reason or "").startswith("preset:")
            # Each turn starts on whatever path the session has now: a later turn back on
            # the persistent connection clears the red FALLBACK (the count stays).
            if event.path != "fallback_rest":
                self.state = "open"
        elif action == "disconnect" and self.state == "open":
            self.state = "reconnecting"  # a fallback stays shown: it is the worse news
        elif action == "reconnect":
            self.reconnects += 1
            if self.state == "reconnecting":
                self.state = "open"
        elif action == "fallback":
            self.state = "fallback"
            self.fallbacks += 1
            self.fallback_reason = visible(event.reason or "no reason given")
        elif action == "warning":
            self.warnings += 1
        elif action == "close":
            self.state = "closed"

    def render(self, provider: str, detail: int = 2) -> Text:
        """The session's state at a level of detail: 2 everything, 1 the counts that matter
        (reconnects, fallbacks, warnings), 0 the state alone. A fault shows at every level."""
        text = Text(f"tts {provider} ")
        if self.rest_by_choice:
            text.append("REST by preset" + (f" (persistent = false), {self.turns_served} turns" if detail else ""))
        elif self.state == "fallback":
            text.append(f"FALLBACK ({self.fallback_reason})" if detail else "FALLBACK", style="bold red")
        elif self.state == "open":
            if detail == 2:
                text.append(f"open since {self.opened_wall}, {self.turns_served} turns, {self.reconnects} reconnects",
                            style="green")
            else:
                text.append("open", style="green")
                if self.reconnects:
                    text.append(f", {self.reconnects} reconnects", style="yellow")
            if self.fallbacks:
                last = f" (last: {self.fallback_reason})" if detail == 2 else ""
                text.append(f", {self.fallbacks} fallbacks{last}", style="yellow")
        else:
            text.append(self.state, style="yellow")
        if self.warnings:
            text.append(f", {self.warnings} warnings", style="yellow")
        return text


LEVEL_CELLS = " ▁▂▃▄▅▆▇█"
LEVEL_FLOOR_DB = -60.0


def mic_text(state) -> Text:
    """The mic as the status bar shows it, from the voice loop's `VoiceState` (or None: off)."""
    if state is None or state.mic == "off":
        return Text("mic off")
    if state.mic == "unavailable":
        return Text(visible(f"mic unavailable ({state.reason})"), style="bold red")
    if state.mic != "listening":
        return Text(f"mic {state.mic}…", style="yellow")
    text = Text(f"mic {state.mode.replace('_', '-')} ")
    # One cell per 7.5 dB from -60 dBFS: enough to see speech against silence and playback.
    fraction = max(0.0, min(1.0, (state.level_db - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB))
    text.append(LEVEL_CELLS[round(fraction * (len(LEVEL_CELLS) - 1))], style="green" if state.speaking else "dim")
    if state.mode == "push_to_talk":
        text.append(" F5: talking" if state.key_down else " F5 to talk", style="bold" if state.key_down else "dim")
    if state.speaking:
        text.append(" ● speaking", style="bold green")
    elif state.transcribing:
        text.append(" transcribing…", style="italic")
    if state.echo_gated:
        text.append(" (echo gate)", style="dim")
    return text


class StatusBar(Static):
    """One line, laid out by priority at every width: the TTS session's state and the mic
    are what must stay visible (a fallback is never silent); the preset, the LLM and the
    audio device give way first, shortened, then left out."""

    DEFAULT_CSS = "StatusBar { height: 1; background: $panel; color: $foreground; padding: 0 1; }"

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.preset = ""
        self.llm = "loading…"
        self.tts_provider = "…"
        self.tts = TTSState()
        self.audio = "…"
        self.mic = Text("mic off")
        self.extra = ""
        self._shown: Text | None = None

    def add(self, event: ev.TraceEvent) -> None:
        if isinstance(event, ev.TtsSession):
            self.tts.add(event)

    def _parts(self) -> list[list[Text | None]]:
        """Each part's forms, longest first (None: left out), in display order, with the
        order in which parts give way: the lowest priority first."""
        return [
            [Text(f"preset {self.preset}"), None],
            [Text(f"llm {self.llm}"), Text(f"llm {self.llm.split(' (')[0]}"), None],
            [self.tts.render(self.tts_provider, 2), self.tts.render(self.tts_provider, 1),
             self.tts.render(self.tts_provider, 0)],
            [Text(f"audio {self.audio}"), None],
            [self.mic],
            *([[Text(self.extra, style="italic"), None]] if self.extra else []),
        ]

    # Parts in the order they give way (indices into _parts): preset, audio, llm, extra, then tts detail.
    _YIELD_ORDER = (0, 3, 1, 5, 2)

    def layout(self, width: int) -> Text:
        parts = self._parts()
        chosen = [0] * len(parts)
        sep = Text(" │ ", style="dim")

        def joined() -> Text:
            return sep.join(forms[i] for forms, i in zip(parts, chosen) if forms[i] is not None)

        for index in self._YIELD_ORDER:
            if index >= len(parts):
                continue
            while joined().cell_len > width and chosen[index] < len(parts[index]) - 1:
                chosen[index] += 1
        text = joined()
        text.truncate(max(width, 1), overflow="ellipsis")
        return text

    def redraw(self) -> None:
        text = self.layout(self.content_size.width or 200)
        if text != self._shown:  # most frames change nothing here
            self._shown = text
            self.update(text)

    def on_resize(self) -> None:
        self.redraw()
