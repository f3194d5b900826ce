"""The TUI on the real offline models (null output), driven with Pilot; asserts on widget state."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from playground.core import events as ev
from playground.core.tracefile import read_trace
from playground.ui.app import PlaygroundApp
from playground.ui.conversation import Conversation
from playground.ui.loading import LoadingBar
from playground.ui.metrics_table import MetricsTable
from playground.ui.status import StatusBar
from tests.conftest import local_preset


def make_app(tmp_path, *overrides: str) -> PlaygroundApp:
    return PlaygroundApp(local_preset("llm.max_tokens=24", *overrides), audio="null", export_dir=tmp_path)


async def wait_for(pilot, predicate, timeout: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def summaries(app: PlaygroundApp) -> list[ev.TraceEvent]:
    return [e for e in app.session.trace.events if isinstance(e, ev.TurnSummary)] if app.session else []


async def send(pilot, text: str) -> None:
    await pilot.click("#prompt")
    for ch in text:
        await pilot.press(ch if ch != " " else "space")
    await pilot.press("enter")


async def converse(pilot, app: PlaygroundApp, text: str) -> int:
    """Waits for the session, sends `text`, waits for its row in the table; its turn number."""
    await wait_for(pilot, lambda: app.session is not None, what="the session")
    turn = len(app.table.metrics) + 1
    await send(pilot, text)
    await wait_for(pilot, lambda: turn in app.table.metrics, what=f"turn {turn} in the table")
    return turn


async def test_typing_a_turn_fills_every_view(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        started = time.monotonic()
        await pilot.pause()
        assert time.monotonic() - started < 1.5  # interactive while the models still load
        loading = app.query_one(LoadingBar)
        await send(pilot, "Hi there")  # typed before the session is ready: queued, not lost
        table = app.query_one(MetricsTable)
        await wait_for(pilot, lambda: 1 in table.metrics, what="turn 1 in the table")
        assert table.row_count == 1 and table.metrics[1].ttfa is not None
        conversation = app.query_one(Conversation)
        turn = conversation.turns[1]
        assert turn.user == "Hi there" and turn.chunks and turn.played
        await wait_for(pilot, lambda: conversation.turn_text(1), timeout=5, what="the turn's text")
        rendered = conversation.turn_text(1)
        assert "Hi there" in rendered and turn.chunks[0][0].strip()[:10] in rendered
        # The preset's push-to-talk loads speech recognition after the session: a third component.
        await wait_for(pilot, lambda: loading.done, what="every component loaded")
        await pilot.pause(0.1)
        assert set(loading.components) == {"llm", "tts", "stt"} and not loading.display
        loads = [e for e in app.session.trace.events if isinstance(e, ev.SessionLoad)]
        ready = [e for e in loads if e.state == "ready"]
        assert {e.component for e in ready} == {"llm", "tts", "stt"} and all(e.ms > 0 for e in ready)
        # Loading progress is in the trace and the loading bar, never in the conversation pane.
        messages = [e.message for e in loads if e.state == "progress"]
        assert any("llama.cpp" in m for m in messages) and any("speech recognition" in m for m in messages)
        assert not any(m in conversation.text_of_notes() for m in messages)
        status = app.query_one(StatusBar)
        assert status.tts.state == "open" and status.tts.turns_served == 1 and status.audio == "null output"
        # Up recalls what was sent.
        await pilot.click("#prompt")
        await pilot.press("up")
        assert app.query_one("#prompt").value == "Hi there"


async def test_strategy_toggle_applies_to_the_next_turn_and_is_traced(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.session is not None, what="the session")
        await pilot.press("f2")  # adaptive -> words
        assert app.preset.chunker.strategy == "words"
        await converse(pilot, app, "Hello")
        events = app.session.trace.events
        change = next(e for e in events if isinstance(e, ev.ConfigChange))
        assert change.changes == {"chunker.strategy": "words"}
        start = next(e for e in events if isinstance(e, ev.TurnStart))
        assert start.strategy == "words"
        assert app.table.metrics[1].strategy == "words"


async def test_a_new_message_while_the_agent_speaks_barges_in(tmp_path):
    app = make_app(tmp_path, "llm.max_tokens=80")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.session is not None, what="the session")
        await send(pilot, "Tell me a story")
        await wait_for(pilot, lambda: any(isinstance(e, ev.PlayStart) for e in app.session.trace.events), what="playback")
        await send(pilot, "Stop")
        table = app.query_one(MetricsTable)
        await wait_for(pilot, lambda: 2 in table.metrics, what="both turns in the table")
        cancelled = next(e for e in app.session.trace.events if isinstance(e, ev.TurnCancelled))
        assert cancelled.turn == 1 and cancelled.reason.startswith("barge-in")
        assert cancelled.stop_ms < 100
        assert any(isinstance(e, ev.PlayEnd) and e.turn == 1 and e.cut for e in app.session.trace.events)
        assert table.metrics[1].status == "cancelled" and table.metrics[2].status == "ok"
        conversation = app.query_one(Conversation)
        await wait_for(pilot, lambda: "cancelled" in conversation.turn_text(1), timeout=5, what="the turn's status")


async def test_export_writes_the_whole_session_in_every_format(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await converse(pilot, app, "Hello")
        await pilot.press("f9")
        await wait_for(pilot, lambda: list(tmp_path.glob("playground-*.md")), timeout=10, what="the export")
        exported = next(tmp_path.glob("playground-*.jsonl"))
        header, events = read_trace(exported)
        assert header["preset"]["name"] == "local"
        assert [e.type for e in events] == [e.type for e in app.session.trace.events]
        stem = exported.name.removesuffix(".jsonl")
        for suffix in (".chrome.json", ".otlp.json", ".csv", ".md"):  # every format, beside it
            assert (tmp_path / f"{stem}{suffix}").stat().st_size > 0
        assert not list(tmp_path.glob(".*.tmp"))  # written atomically


@pytest.mark.serial  # the mic must hear silence: nothing else may play on the shared device
async def test_push_to_talk_key_and_the_mic_in_the_status_bar(tmp_path):
    app = make_app(tmp_path, "input.mode=push_to_talk")
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.voice is not None and app.voice.state.mic in ("listening", "unavailable"),
                       what="the mic to open")
        voice = app.voice
        # The status bar shows the state at its next redraw (a timer), not at once.
        if voice.state.mic == "unavailable":  # no input device here: said, and typing still works
            await wait_for(pilot, lambda: "mic unavailable" in app.status.mic.plain, timeout=5,
                           what="the status bar to show the mic unavailable")
            assert voice.state.reason
            await converse(pilot, app, "Hello")
            return
        await wait_for(pilot, lambda: "F5 to talk" in app.status.mic.plain, timeout=5,
                       what="the status bar to show the push-to-talk key")
        await pilot.press("f5")
        await wait_for(pilot, lambda: voice.state.key_down and "F5: talking" in app.status.mic.plain, timeout=5,
                       what="push-to-talk down")
        await pilot.pause(0.5)
        await pilot.press("f5")
        await wait_for(pilot, lambda: not voice.state.key_down, timeout=5, what="push-to-talk up")
        # The virtual device's monitor heard silence: no words, no turn, and it is counted, not lost.
        await wait_for(pilot, lambda: voice.state.ignored >= 1, timeout=20, what="the silent utterance")
        assert not [e for e in app.session.trace.events if isinstance(e, ev.TurnStart)]
        mics = [e for e in app.session.trace.events if isinstance(e, ev.Mic)]
        assert mics and mics[0].status == "listening"


async def test_help_lists_the_bindings_and_closes(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HelpScreen"
        text = app.screen._bindings_text
        for key in ("f2", "f8", "f9", "escape", "ctrl+l"):
            assert f"`{key}`" in text
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.__class__.__name__ != "HelpScreen"


@pytest.mark.serial  # the measured TTFS within 5 ms of the one rechunked from the tokens
async def test_rechunk_shows_every_strategy_on_the_last_turns_tokens(tmp_path):
    from textual.widgets import DataTable

    from playground.core.presets import STRATEGIES
    from playground.ui.rechunk import RechunkScreen

    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await converse(pilot, app, "Hello, how are you?")
        await pilot.press("f6")
        await wait_for(pilot, lambda: isinstance(app.screen, RechunkScreen), timeout=5, what="the re-chunk screen")
        screen = app.screen
        table = screen.query_one(DataTable)
        assert [str(k.value) for k in table.rows] == list(STRATEGIES)
        # The strategy the turn used cuts the first chunk where the live chunker did (same tokens, same
        # times): at the same input time for a token's cut; a live deadline timer can only fire late.
        # The measured TTFS (the chunk event) comes after that input, when the loop got to it.
        used = next(r for r in screen.results if r.strategy == "adaptive")
        live = next(e for e in app.session.trace.events if isinstance(e, ev.Chunk))
        assert used.chunks[0].reason == live.reason
        if live.reason in ("deadline", "underrun"):
            assert 0 <= live.input_ms - used.ttfs < 100
        else:
            assert used.chunks[0].raw == live.raw
            assert used.ttfs == pytest.approx(live.input_ms, abs=0.01)
        assert app.table.metrics[1].ttfs >= live.input_ms
        await wait_for(pilot, lambda: table.get_cell("adaptive", "TTFA (est.)") != "…", timeout=20, what="TTFA estimates")
        assert float(table.get_cell("adaptive", "TTFA (est.)")) > used.ttfs
        await pilot.press("escape")


async def test_edited_prompt_reruns_the_last_message_and_compares_both_turns(tmp_path):
    from playground.ui.prompt_editor import PromptEditor

    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await converse(pilot, app, "What do you sell?")
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptEditor), timeout=5, what="the editor")
        editor = app.screen.query_one("#prompt-text")
        editor.text = "You sell shoes.\nAnswer in five words."
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: 2 in app.table.metrics, what="the re-run")
        starts = [e for e in app.session.trace.events if isinstance(e, ev.TurnStart)]
        assert [e.text for e in starts] == ["What do you sell?", "What do you sell?"]
        change = next(e for e in app.session.trace.events if isinstance(e, ev.ConfigChange))
        assert change.changes == {"agent.system_prompt": "You sell shoes.\nAnswer in five words."}
        # The re-run saw the conversation as turn 1 did, with the new prompt.
        assert [m.role for m in app.session.history] == ["user", "assistant"]
        assert app.waterfall.compared == (1, 2)


async def test_chunker_settings_are_validated_and_apply_to_the_next_turn(tmp_path):
    from textual.widgets import Input

    from playground.ui.chunker_settings import ChunkerSettings

    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.session is not None, what="the session")
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, ChunkerSettings), timeout=5, what="the settings")
        deadline = app.screen.query_one("#param-deadline_ms", Input)
        deadline.value = "soon"
        await pilot.press("ctrl+s")
        await pilot.pause()
        error = str(app.screen.query_one("#settings-error").render())
        assert isinstance(app.screen, ChunkerSettings) and "chunker.deadline_ms=soon: expected a number" in error
        deadline.value = "250"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, ChunkerSettings) and app.preset.chunker.deadline_ms == 250.0
        await converse(pilot, app, "Hello")
        start = next(e for e in app.session.trace.events if isinstance(e, ev.TurnStart))
        assert start.chunker["deadline_ms"] == 250.0
        change = next(e for e in app.session.trace.events if isinstance(e, ev.ConfigChange))
        assert change.changes == {"chunker.deadline_ms": 250.0}


async def test_preset_switch_applies_or_reopens_the_session(tmp_path, monkeypatch):
    from playground.ui.preset_picker import PresetPicker

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    folder = tmp_path / "playground" / "presets"
    folder.mkdir(parents=True)
    local = (Path(__file__).resolve().parents[2] / "presets" / "local.toml").read_text()
    (folder / "terse.toml").write_text(local.replace('strategy = "adaptive"', 'strategy = "clause"')
                                       .replace("max_tokens = 96", "max_tokens = 16"))
    recorded = tmp_path / "recorded.jsonl"
    recorded.write_text('{"type": "session", "version": 1}\n'
                        '{"turn": 1, "t_ms": 50.0, "type": "llm.token", "i": 0, "text": "Recorded"}\n'
                        '{"turn": 1, "t_ms": 60.0, "type": "llm.token", "i": 1, "text": " reply."}\n')
    (folder / "replayed.toml").write_text(f'[llm]\nprovider = "replay"\ntrace = "{recorded}"\n')

    async def choose(pilot, app, name: str) -> None:
        await pilot.press("f7")
        await wait_for(pilot, lambda: isinstance(app.screen, PresetPicker), timeout=5, what="the picker")
        options = app.screen.query_one("OptionList")
        options.highlighted = next(i for i in range(options.option_count) if options.get_option_at_index(i).id == name)
        await pilot.press("enter")

    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.session is not None, what="the session")
        first_session = app.session
        # Same providers: applies from the next turn, same session.
        await choose(pilot, app, "terse")
        await converse(pilot, app, "Hello")
        assert app.session is first_session
        assert next(e for e in app.session.trace.events if isinstance(e, ev.TurnStart)).strategy == "clause"
        # Another LLM provider: a new session on it.
        await choose(pilot, app, "replayed")
        await wait_for(pilot, lambda: app.session is not None and app.session is not first_session, what="the new session")
        assert app.session.llm.name == "replay" and not first_session.busy
        await converse(pilot, app, "Play it back")
        done = next(e for e in app.session.trace.events if isinstance(e, ev.LlmDone))
        assert done.text == "Recorded reply."
