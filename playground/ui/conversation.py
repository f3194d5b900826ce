"""The conversation pane: user and agent turns, chunk boundaries and what was spoken.

Each turn is one `Static`, updated only when its text changed (never one widget or
message per token). The agent's text is drawn chunk by chunk: a bar after each chunk
coloured by the reason it was cut, the part already played highlighted (within the
playing chunk by elapsed time), text not yet chunked dimmed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from playground.core import events as ev
from playground.core.clock import now_ms
from playground.ui.styles import REASON_STYLES


@dataclass
class TurnText:
    turn: int
    user: str = ""
    tokens: list[str] = field(default_factory=list)
    chunks: list[tuple[str, str]] = field(default_factory=list)  # (raw, reason)
    audio_ms: dict[int, float] = field(default_factory=dict)
    play_start: dict[int, float] = field(default_factory=dict)  # chunk -> t_ms
    played: set[int] = field(default_factory=set)
    status: str = ""
    t0_seen: float = 0.0  # now_ms() - t_ms of the first event seen: maps t_ms to the UI's clock

    def add(self, event: ev.TraceEvent) -> None:
        kind = event.type
        if kind == ev.TURN_START:
            self.user = event.get("text", "")
        elif kind == ev.LLM_TOKEN:
            self.tokens.append(event.get("text", ""))
        elif kind == ev.CHUNK:
            self.chunks.append((event.get("raw", ""), event.get("reason", "")))
        elif kind == ev.TTS_AUDIO:
            chunk = event.get("chunk")
            self.audio_ms[chunk] = self.audio_ms.get(chunk, 0.0) + event.get("duration_ms", 0.0)
        elif kind == ev.PLAY_START:
            self.play_start[event.get("chunk")] = event.t_ms
        elif kind == ev.PLAY_END:
            self.played.add(event.get("chunk"))
        elif kind == ev.TURN_CANCELLED:
            self.status = f"cancelled: {event.get('reason')}"
        elif kind == ev.ERROR:
            self.status = f"error: {event.get('where')}: {event.get('message')}"

    @property
    def playing(self) -> bool:
        return any(c not in self.played for c in self.play_start)

    def signature(self, now_turn_ms: float) -> tuple:
        """Everything the rendering depends on: equal signatures draw the same text."""
        spoken = tuple(self._spoken_chars(i, len(raw), now_turn_ms) for i, (raw, _) in enumerate(self.chunks))
        return len(self.tokens), len(self.chunks), spoken, self.status

    def render(self, now_turn_ms: float) -> Text:
        text = Text()
        text.append("you  ", style="bold")
        text.append(self.user.strip() + "\n")
        text.append("agent ", style="bold")
        done = 0
        for index, (raw, reason) in enumerate(self.chunks):
            spoken = self._spoken_chars(index, len(raw), now_turn_ms)
            text.append(raw[:spoken], style="bold underline")
            text.append(raw[spoken:])
            text.append("▏", style=REASON_STYLES.get(reason, "white"))
            done += len(raw)
        pending = "".join(self.tokens)[done:]
        if pending:
            text.append(pending, style="dim italic")
        if self.status:
            text.append(f"\n[{self.status}]", style="bold red")
        return text

    def _spoken_chars(self, chunk: int, length: int, now_turn_ms: float) -> int:
        if chunk in self.played:
            return length
        start = self.play_start.get(chunk)
        duration = self.audio_ms.get(chunk)
        if start is None or not duration:
            return 0
        return max(0, min(length, int(length * (now_turn_ms - start) / duration)))


class Conversation(VerticalScroll):
    """All turns of the session; `refresh_turns()` is called by the app's frame timer."""

    DEFAULT_CSS = """
    Conversation { padding: 0 1; }
    Conversation > Static { margin-bottom: 1; }
    Conversation > .note { color: $text-muted; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.turns: dict[int, TurnText] = {}
        self._widgets: dict[int, Static] = {}
        self._drawn: dict[int, tuple] = {}  # turn -> signature of what its widget shows
        self._dirty: set[int] = set()

    def add(self, event: ev.TraceEvent) -> None:
        if event.turn == ev.SESSION_TURN:
            return
        turn = self.turns.get(event.turn)
        if turn is None:
            turn = self.turns[event.turn] = TurnText(event.turn, t0_seen=now_ms() - event.t_ms)
        turn.add(event)
        self._dirty.add(event.turn)

    def note(self, message: str) -> None:
        """A line from the app (loading progress, refusals), between turns."""
        self.mount(Static(message, classes="note"))
        self.scroll_end(animate=False)

    def clear(self) -> None:
        self.turns.clear()
        self._widgets.clear()
        self._drawn.clear()
        self._dirty.clear()
        self.remove_children()

    def refresh_turns(self) -> None:
        now = now_ms()
        live = {n for n, t in self.turns.items() if t.playing}
        for number in sorted(self._dirty | live):
            turn = self.turns[number]
            turn_now = now - turn.t0_seen
            # Redraw only what changed: every redraw makes Textual render (and later
            # garbage-collect) the widget's lines, which stalls the engine thread too.
            signature = turn.signature(turn_now)
            if self._drawn.get(number) == signature:
                continue
            self._drawn[number] = signature
            rendered = turn.render(turn_now)
            widget = self._widgets.get(number)
            if widget is None:
                widget = self._widgets[number] = Static(rendered, id=f"turn-{number}")
                self.mount(widget)
            else:
                widget.update(rendered)
        if self._dirty:
            self.scroll_end(animate=False)
        self._dirty.clear()
