"""The conversation pane follows the live turn unless the user scrolled up, and says when it stopped."""

from __future__ import annotations

from textual.app import App, ComposeResult

from playground.core import events as ev
from playground.ui.conversation import Conversation
from tests.events import event


class ConversationApp(App):
    CSS = "Conversation { height: 10; border: round white; }"

    def compose(self) -> ComposeResult:
        yield Conversation()


async def stream_turn(pilot, pane: Conversation, turn: int, words: int = 150) -> None:
    pane.add(event(ev.TurnStart, turn, 0.0, text=f"question {turn}"))
    for i in range(words):
        pane.add(event(ev.LlmToken, turn, 10.0 + i, i=i, text=f" t{turn}w{i}"))
        if i % 10 == 9:
            pane.refresh_turns()
            await pilot.pause()


def visible(pane: Conversation) -> str:
    return "\n".join(pane.render_line(y).text for y in range(pane.size.height))


async def test_it_follows_the_live_turn_when_the_pane_shrinks_between_turns():
    app = ConversationApp()
    async with app.run_test(size=(60, 24)) as pilot:
        pane = app.query_one(Conversation)
        await stream_turn(pilot, pane, 1)
        # What happens in the app after turn 1: the turns table grows and the pane gets shorter.
        pane.styles.height = 6
        await pilot.pause()
        await stream_turn(pilot, pane, 2)
        await stream_turn(pilot, pane, 3)
        assert "t3w149" in visible(pane) and pane.following and not pane.border_subtitle


async def test_scrolling_up_stops_following_and_says_so_until_back_at_the_bottom():
    app = ConversationApp()
    async with app.run_test(size=(60, 24)) as pilot:
        pane = app.query_one(Conversation)
        await stream_turn(pilot, pane, 1)
        pane.scroll_to(y=0, animate=False)
        await pilot.pause()
        await stream_turn(pilot, pane, 2)
        assert not pane.following and "t2w149" not in visible(pane)
        assert "not following" in pane.border_subtitle
        pane.focus()
        await pilot.press("end")
        await pilot.pause()
        await stream_turn(pilot, pane, 3)
        assert pane.following and "t3w149" in visible(pane) and not pane.border_subtitle
