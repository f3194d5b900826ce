"""The status bar's view of the persistent TTS session, from its `tts.session` events."""

from __future__ import annotations

import pytest
from rich.cells import cell_len
from rich.text import Text
from textual.app import App, ComposeResult

from playground.core import events as ev
from playground.ui.status import StatusBar, TTSState
from tests.events import event


def session_event(action: str, **data) -> ev.TraceEvent:
    return event(ev.TtsSession, 1, 10.0, action=action, **data)


def test_a_fallback_shows_in_red_until_a_turn_is_back_on_the_connection():
    state = TTSState()
    state.add(session_event("open", path="persistent"))
    state.add(session_event("reuse", path="persistent", turns_served=1))
    state.add(session_event("fallback", path="fallback_rest", reason="server closed (1006)"))
    shown = state.render("elevenlabs")
    assert "FALLBACK (server closed (1006))" in shown.plain
    assert any("red" in str(span.style) for span in shown.spans)
    state.add(session_event("reconnect", path="reconnected"))
    state.add(session_event("reuse", path="reconnected", turns_served=2))
    shown = state.render("elevenlabs").plain
    assert state.state == "open" and "1 reconnects" in shown and "1 fallbacks (last: server closed (1006))" in shown


def test_a_lost_connection_shows_as_reconnecting_until_it_is_back():
    state = TTSState()
    state.add(session_event("open", path="persistent"))
    state.add(session_event("disconnect", path="persistent", reason="server closed the connection (1006)"))
    assert "tts elevenlabs reconnecting" in state.render("elevenlabs", 0).plain
    state.add(session_event("reconnect", path="persistent", attempts=3))
    assert state.state == "open" and "1 reconnects" in state.render("elevenlabs").plain


def test_rest_chosen_in_the_preset_is_not_shown_as_a_fault():
    state = TTSState()
    state.add(session_event("open", path="fallback_rest"))
    state.add(session_event("reuse", path="fallback_rest", reason="preset: persistent = false", turns_served=1))
    shown = state.render("elevenlabs")
    assert "REST by preset" in shown.plain and "FALLBACK" not in shown.plain
    assert not any("red" in str(span.style) for span in shown.spans)


def test_protocol_warnings_are_counted():
    state = TTSState()
    state.add(session_event("open", path="persistent"))
    state.add(session_event("warning", message="unknown message type 'foo'"))
    assert "1 warnings" in state.render("cartesia").plain


class StatusApp(App):
    def compose(self) -> ComposeResult:
        yield StatusBar()


def fill(bar: StatusBar, *tts_events: ev.TraceEvent, mic: Text | None = None) -> None:
    bar.preset, bar.llm, bar.tts_provider, bar.audio = "loopback-elevenlabs", "openai (grok-4-fast-non-reasoning)", \
        "elevenlabs", "pulse (ALSA) default output device"
    for tts_event in tts_events:
        bar.add(tts_event)
    bar.mic = mic or Text("mic hands-free ▂ ● speaking (echo gate)")


@pytest.mark.parametrize("width", [80, 120])
async def test_the_tts_state_and_the_mic_stay_visible_at_every_width(width):
    app = StatusApp()
    async with app.run_test(size=(width, 5)) as pilot:
        bar = app.query_one(StatusBar)
        fill(bar, session_event("open", path="persistent"), session_event("reuse", path="persistent", turns_served=3),
             session_event("reconnect", path="reconnected"), session_event("warning", message="odd frame"))
        bar.redraw()
        await pilot.pause()
        shown = bar.render().plain
        assert "tts elevenlabs open" in shown and "1 reconnects" in shown and "1 warnings" in shown
        assert "mic hands-free" in shown and "speaking" in shown
        assert cell_len(shown) <= width - 2  # padding 1 on each side
        bar.add(session_event("fallback", path="fallback_rest", reason="websocket refused (HTTP 401)"))
        bar.redraw()
        await pilot.pause()
        shown = bar.render().plain
        assert "FALLBACK" in shown and "speaking" in shown
        if width >= 120:
            assert "FALLBACK (websocket refused (HTTP 401))" in shown  # the reason, room permitting


async def test_a_wide_status_bar_shows_everything():
    app = StatusApp()
    async with app.run_test(size=(220, 5)) as pilot:
        bar = app.query_one(StatusBar)
        fill(bar, session_event("open", path="persistent"))
        bar.redraw()
        await pilot.pause()
        shown = bar.render().plain
        assert "preset loopback-elevenlabs" in shown and "grok-4-fast" in shown and "open since" in shown
        assert "audio pulse" in shown and "mic hands-free" in shown
