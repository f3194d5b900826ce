"""Text from a user, a model or a trace file is shown in the TUI, never obeyed: a recorded
trace full of terminal escape sequences is viewed, and nothing of them reaches the screen."""

from __future__ import annotations

import re

from playground.core import events as ev
from playground.core.events import TraceEvent
from playground.ui.app import PlaygroundApp
from playground.ui.conversation import Conversation
from playground.ui.waterfall import Waterfall
from tests.conftest import local_preset
from tests.events import event

CLEAR_SCREEN = "\x1b[2J"
SET_TITLE = "\x1b]0;pwned\x07"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def hostile_turn() -> list[TraceEvent]:
    reply = f"Sure{CLEAR_SCREEN}, done.\x07"
    return [
        event(ev.TurnStart, 1, 0.0, text=f"hi {CLEAR_SCREEN}{SET_TITLE} there\x9b1m", strategy="adaptive"),
        event(ev.TtsSession, 1, 0.5, action="fallback", path="fallback_rest", reason=f"ws{SET_TITLE}"),
        event(ev.LlmToken, 1, 100.0, i=0, text=reply[:8]),
        event(ev.LlmToken, 1, 120.0, i=1, text=reply[8:]),
        event(ev.Chunk, 1, 130.0, index=0, reason="flush", raw=reply, start_ms=100.0, token_start=0, token_end=1),
        event(ev.Error, 1, 140.0, where="tts", message=f"boom{CLEAR_SCREEN}\x07"),
        event(ev.TurnSummary, 1, 150.0),
    ]


def drawn(widget, lines: int) -> list[str]:
    """The text of a Line API widget's rows, exactly as they go to the terminal."""
    return [segment.text for y in range(lines) for segment in widget.render_line(y)]


async def test_escape_sequences_in_a_trace_are_shown_escaped_in_every_view():
    app = PlaygroundApp(local_preset(), view=({"type": "session", "version": 1}, hostile_turn()), view_name="hostile")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.2)
        conversation = app.query_one(Conversation)
        waterfall = app.query_one(Waterfall)
        shown = conversation.turn_text(1)
        assert "hi \\x1b[2J\\x1b]0;pwned\\x07 there\\x9b1m" in shown
        assert "Sure\\x1b[2J, done.\\x07" in shown and "boom\\x1b[2J\\x07" in shown
        texts = drawn(conversation, conversation.size.height) + drawn(waterfall, waterfall.size.height)
        assert any("\\x1b[2J" in text for text in drawn(waterfall, waterfall.size.height))  # the band's title
        assert not [text for text in texts if CONTROL.search(text)]
        # The whole screen as written: panes, table, status bar and the error's notification.
        screen = app.export_screenshot()
        assert "boom\\x1b[2J" in screen.replace("&#160;", " ")
        assert not CONTROL.search(screen)
