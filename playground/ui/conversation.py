"""The conversation pane: user and agent turns, chunk boundaries and what was spoken.

The agent's text is drawn chunk by chunk: a bar after each chunk coloured by the
reason it was cut, the part already played highlighted (within the playing chunk by
elapsed time), text not yet chunked dimmed.

It is a Line API widget: each turn (and each note from the app) is wrapped to the
pane's width once per change and kept as strips; the screen asks only for the
visible lines. With one `Static` per turn, every change re-measured every turn's
text to lay out the pane, which blocked the UI loop for 20-45 ms in long sessions
(`python -m playground.bench.tui`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import ClassVar

from rich.text import Text
from textual.events import Resize
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from playground.core import events as ev
from playground.core.clock import now_ms
from playground.core.formatting import REASON_COLORS, visible


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
        """Takes in one event; text from the user, the model or a trace is kept `visible` (escaped)."""
        if isinstance(event, ev.LlmToken):
            self.tokens.append(visible(event.text))
        elif isinstance(event, ev.TurnStart):
            self.user = visible(event.text)
        elif isinstance(event, ev.Chunk):
            self.chunks.append((visible(event.raw), event.reason))
        elif isinstance(event, ev.TtsAudio):
            self.audio_ms[event.chunk] = self.audio_ms.get(event.chunk, 0.0) + event.duration_ms
        elif isinstance(event, ev.PlayStart):
            self.play_start[event.chunk] = event.t_ms
        elif isinstance(event, ev.PlayEnd):
            self.played.add(event.chunk)
        elif isinstance(event, ev.TurnCancelled):
            self.status = visible(f"cancelled: {event.reason}")
        elif isinstance(event, ev.Error):
            self.status = visible(f"error: {event.where}: {event.message}")

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
            text.append("▏", style=REASON_COLORS.get(reason, "white"))
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


@dataclass
class _Block:
    """One turn or note as drawn: its strips at `width`, for the text of `signature`."""

    turn: int | None  # None for a note
    text: Text
    signature: tuple = ()
    width: int = 0
    strips: list[Strip] = field(default_factory=list)


class Conversation(ScrollView, can_focus=True):
    """All turns of the session; `refresh_turns()` is called by the app's frame timer."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"conversation--note"}
    DEFAULT_CSS = """
    Conversation {
        padding: 0 1;
        /* Always shown, so the wrap width does not change when the text outgrows the view. */
        overflow-y: scroll;
        scrollbar-size-vertical: 1;
        & > .conversation--note { color: $text-muted; }
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.turns: dict[int, TurnText] = {}
        self._blocks: list[_Block] = []
        self._turn_blocks: dict[int, _Block] = {}
        self._starts: list[int] = []  # first line of each block (a blank line follows each)
        self._dirty: set[int] = set()
        # The view stays on the newest text until the user scrolls up, and again once they
        # scroll back to the bottom. Kept as state, not derived from the scroll position:
        # a resize that shrinks the pane moves the bottom away without anyone scrolling.
        self.following = True

    # -- the app's API ----------------------------------------------------------------

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
        self._blocks.append(_Block(None, Text(visible(message))))
        self._relayout(follow=self.following)

    def clear(self) -> None:
        self.turns.clear()
        self._blocks.clear()
        self._turn_blocks.clear()
        self._dirty.clear()
        self._set_following(True)
        self._relayout(follow=True)

    def text_of_notes(self) -> str:
        """Every note the pane shows, as plain text."""
        return "\n".join(block.text.plain for block in self._blocks if block.turn is None)

    def turn_text(self, number: int) -> str:
        """The turn as the pane shows it, as plain text."""
        block = self._turn_blocks.get(number)
        return block.text.plain if block else ""

    def refresh_turns(self) -> None:
        now = now_ms()
        live = {n for n, t in self.turns.items() if t.playing}
        changed = False
        for number in sorted(self._dirty | live):
            turn = self.turns[number]
            turn_now = now - turn.t0_seen
            # Re-wrap only what changed: most frames of a live turn change nothing visible.
            signature = turn.signature(turn_now)
            block = self._turn_blocks.get(number)
            if block is not None and block.signature == signature:
                continue
            if block is None:
                block = self._turn_blocks[number] = _Block(number, Text())
                self._blocks.append(block)
            block.text, block.signature, block.width = turn.render(turn_now), signature, 0
            changed = True
        self._dirty.clear()
        if changed:
            self._relayout(follow=self.following)

    # -- layout -----------------------------------------------------------------------

    @property
    def _wrap_width(self) -> int:
        return max(self.scrollable_content_region.width, 1)

    def _wrap(self, block: _Block, width: int) -> None:
        if block.width == width and block.strips:
            return
        console = self.app.console
        base = self.rich_style
        if block.turn is None:  # a note: in the theme's muted colour, which may have changed
            block.text.style = self.get_component_rich_style("conversation--note")
        lines = console.render_lines(block.text, console.options.update_width(width), style=base, pad=False)
        block.strips = [Strip(line).adjust_cell_length(width, base).simplify() for line in lines]
        block.width = width

    def _relayout(self, follow: bool) -> None:
        """Wraps blocks that changed, recomputes where each starts, refreshes the view."""
        if not self.is_mounted:
            return
        width = self._wrap_width
        self._starts = []
        line = 0
        for block in self._blocks:
            self._wrap(block, width)
            self._starts.append(line)
            line += len(block.strips) + 1
        self.virtual_size = Size(width, max(line - 1, 0))
        if follow:
            self.scroll_to(y=self.max_scroll_y, animate=False)
        self.refresh()

    def on_mount(self) -> None:
        self._relayout(follow=True)

    def on_resize(self, event: Resize) -> None:
        self._relayout(follow=self.following)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        for block in self._blocks:
            block.width = 0  # every wrapped strip holds old colours
        self._relayout(follow=self.following)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Only the user scrolls anywhere but the bottom: the pane itself only ever follows.
        self._set_following(round(new_value) >= self.max_scroll_y)

    def _set_following(self, following: bool) -> None:
        if following != self.following:
            self.following = following
            self.border_subtitle = "" if following else "↓ not following the live turn: End or scroll down"

    # -- rendering --------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self._wrap_width
        line = y + self.scroll_offset.y
        index = bisect.bisect_right(self._starts, line) - 1
        if index >= 0:
            block = self._blocks[index]
            offset = line - self._starts[index]
            if offset < len(block.strips) and block.width == width:
                return block.strips[offset]
        return Strip.blank(width, self.rich_style)
