"""The status bar's view of the persistent TTS session, from its `tts.session` events."""

from __future__ import annotations

from playground.core import events as ev
from playground.ui.status import TTSState


def session_event(action: str, **data) -> ev.TraceEvent:
    return ev.TraceEvent(1, 10.0, ev.TTS_SESSION, {"action": action, **data})


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
