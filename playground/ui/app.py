"""The playground TUI: a live view of the engine's trace, and the controls to steer it.

The engine runs on its own loop in a background thread (`EngineThread`); this app never
awaits the pipeline directly. A 30 fps timer reads the events the trace gained since the
last frame and hands them to the views, which redraw only what changed.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.widgets import Footer, Input

from playground.core import events as ev
from playground.core.formatting import visible
from playground.core.metrics import compute_metrics
from playground.core.presets import STRATEGIES, Preset, PresetError, apply_overrides, load_preset
from playground.diagnosis.session import Diagnoser, TurnDiagnosis
from playground.engine.runner import EngineThread
from playground.engine.session import InputRefused, Session, check_input
from playground.export.formats import export_all
from playground.export.jsonl import JsonlTraceWriter, open_trace_writer
from playground.ui.chunker_settings import ChunkerSettings
from playground.ui.commands import PlaygroundCommands
from playground.ui.conversation import Conversation
from playground.ui.diagnosis import DiagnosisScreen
from playground.ui.help import HelpScreen
from playground.ui.loading import LoadingBar
from playground.ui.metrics_table import MetricsTable
from playground.ui.preset_picker import PresetPicker, needs_new_session
from playground.ui.prompt_editor import PromptEdit, PromptEditor
from playground.ui.rechunk import RechunkScreen
from playground.ui.status import StatusBar, TTSState, mic_text
from playground.core.timeline import Timeline
from playground.ui.waterfall import Waterfall

if TYPE_CHECKING:
    from playground.engine.voice import VoiceLoop

FRAME_S = 1 / 30


class PromptInput(Input):
    """The message box: Enter sends, Up/Down walk through what was sent before."""

    BINDINGS = [
        Binding("up", "history(-1)", "Previous", show=False, id="input.history_previous"),
        Binding("down", "history(1)", "Next", show=False, id="input.history_next"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(placeholder="Type a message and press Enter (F1: help)", **kwargs)
        self.history: list[str] = []
        self._position = 0

    def remember(self, text: str) -> None:
        if not self.history or self.history[-1] != text:
            self.history.append(text)
        self._position = len(self.history)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._position = max(0, min(len(self.history), self._position + step))
        self.value = self.history[self._position] if self._position < len(self.history) else ""
        self.cursor_position = len(self.value)


class Warned(Message):
    """A warning while opening the session (no sound device, ...), from the engine thread."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class SessionCreated(Message):
    """The session exists and starts loading (from the engine thread)."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session


async def replace_turn(session: Session, text: str, input_kind: str = "typed", rerun: bool = False) -> None:
    """Engine side of sending a message: a running reply is interrupted first (barge-in).
    A re-run first forgets the exchange it repeats, so both see the same conversation."""
    if session.busy:
        session.cancel_turn("barge-in: new message")
        await session.wait_idle()
    if rerun:
        session.forget_last_exchange()
    session.start_turn(text, input_kind=input_kind)


class PlaygroundApp(App):
    TITLE = "playground"
    COMMANDS = App.COMMANDS | {PlaygroundCommands}
    CSS = """
    #main { height: 1fr; }
    #upper { height: 1fr; }
    #waterfall { width: 2fr; border: round $primary-muted; border-title-color: $text; }
    #conversation { width: 1fr; border: round $primary-muted; }
    #metrics { border: round $primary-muted; }
    PromptInput { dock: bottom; margin: 0 0 1 0; }
    .narrow #upper { layout: vertical; }
    .narrow #waterfall { width: 1fr; height: 3fr; }
    .narrow #conversation { width: 1fr; height: 2fr; }
    .narrow #metrics { max-height: 6; }
    """
    BINDINGS = [
        Binding("f1", "help", "Help", id="app.help"),
        Binding("f2", "cycle_strategy", "Chunker", id="chunker.cycle"),
        Binding("escape", "stop_reply", "Stop reply", id="turn.stop"),
        Binding("f3", "chunker_settings", "Settings", id="chunker.settings"),
        Binding("f4", "edit_prompt", "Prompt", id="agent.prompt"),
        Binding("f5", "push_to_talk", "Talk", id="voice.talk"),
        Binding("f6", "rechunk", "Re-chunk", id="turn.rechunk"),
        Binding("f7", "switch_preset", "Preset", id="preset.switch"),
        Binding("f8", "toggle_mute", "Mute", id="audio.mute"),
        Binding("f9", "export", "Export", id="trace.export"),
        Binding("f10", "diagnose", "Diagnose", id="turn.diagnose"),
        Binding("ctrl+l", "clear_session", "Clear", id="session.clear"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
    ]

    def __init__(self, preset: Preset, audio: str | None = None, wav_path: str | None = None,
                 trace_path: str | None = None, export_dir: str | Path = ".",
                 attach: tuple[EngineThread, Session] | None = None,
                 view: tuple[dict, list[ev.TraceEvent]] | None = None, view_name: str = "") -> None:
        """`attach` views a session already open on an engine thread (kept open at exit);
        `view` shows a recorded trace (header, events), read-only, with no session at all."""
        super().__init__()
        self.preset = preset
        self.audio = audio
        self.wav_path = wav_path
        self.trace_path = trace_path
        self.export_dir = Path(export_dir)
        self.engine, self.session = attach if attach else (EngineThread(), None)
        self._owns_session = attach is None and view is None
        self._view_name = view_name
        # The trace the views read: the session's (live), or a recorded one.
        self._trace: ev.Trace | None = self.session.trace if self.session is not None else None
        self.budgets = preset.budgets
        if view is not None:
            header, events = view
            self._trace = ev.Trace(header)
            self._trace.events.extend(events)
            self.budgets = header.get("preset", {}).get("budgets") or preset.budgets
        self.timeline = Timeline()
        self._seen = 0
        self._queued: list[str] = []
        self._compare_with: int | None = None  # a re-run's original turn, to compare side by side
        self._writer: JsonlTraceWriter | None = None
        self.voice: VoiceLoop | None = None
        # Each ended turn's breakdown and findings, against the session's turns so far.
        self._diagnoser: Diagnoser | None = None
        self.diagnoses: dict[int, TurnDiagnosis] = {}

    # -- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Vertical(id="main"):
            with Horizontal(id="upper"):
                yield Waterfall(self.timeline, id="waterfall")
                yield Conversation(id="conversation")
            yield MetricsTable(id="metrics")
        yield LoadingBar(id="loading")
        yield PromptInput(id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        # Looked up once: the frame timer uses them 30 times a second (and may tick during shutdown).
        self.waterfall = self.query_one(Waterfall)
        self.conversation = self.query_one(Conversation)
        self.status = self.query_one(StatusBar)
        self.table = self.query_one(MetricsTable)
        self.prompt = self.query_one(PromptInput)
        self.loading = self.query_one(LoadingBar)
        self.loading.display = self._owns_session
        self.waterfall.border_title = "waterfall (ms after t0)"
        self.table.border_title = "turns"
        self.conversation.border_title = "conversation"
        self.status.preset = self.preset.name
        self.status.tts_provider = self.preset.tts.provider
        self.status.redraw()
        self.prompt.focus()
        self._apply_width(self.size.width)
        self.set_interval(FRAME_S, self._frame)
        if self._owns_session:
            self.engine.start()
            self._open_session()
        elif self.session is not None:
            self._session_ready(self.session)
        else:
            self._show_recorded()

    def _show_recorded(self) -> None:
        assert self._trace is not None
        header = self._trace.header
        self.status.preset = f"{header.get('preset', {}).get('name', '?')} (recorded)"
        llm = header.get("providers", {}).get("llm", {})
        self.status.llm = f"{llm.get('name', '?')} ({llm.get('model', '?')})"
        self.status.tts_provider = header.get("providers", {}).get("tts", {}).get("name", "?")
        self.status.tts.recorded = True
        self.status.audio = "recorded trace"
        self.prompt.disabled = True
        self.conversation.note(f"viewing {self._view_name or 'a recorded trace'} (read-only)")
        self._frame()

    def on_resize(self, event) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int) -> None:
        self.set_class(width < 110, "narrow")

    def notify_plain(self, message: str, severity: SeverityLevel = "information", timeout: float | None = None) -> None:
        """A notification quoting outside text (an error, a reason, a path): shown escaped, not read as markup."""
        self.notify(visible(message), severity=severity, timeout=timeout, markup=False)

    # -- the session ----------------------------------------------------------------------

    @work(exclusive=True, group="session")
    async def _open_session(self) -> None:
        from playground.engine.build import open_session
        self.status.extra = "loading models…"
        self.status.redraw()

        def warn(text: str) -> None:
            self.post_message(Warned(text))

        # Loading progress is in the session's `session.load` events: the loading bar shows it.
        try:
            session = await asyncio.wrap_future(self.engine.submit(open_session(
                self.preset, audio=self.audio, wav_path=self.wav_path, warn=warn,
                on_created=self._follow_loading)))
        except Exception as exc:  # a preset or provider problem: say it, keep the app up
            self.conversation.note(f"could not open the session: {exc}")
            self.status.extra = "session failed: see the conversation pane"
            self.status.redraw()
            return
        self.session = session
        self._trace = session.trace
        if self.trace_path:
            self._writer = open_trace_writer(self.trace_path, session.trace.header)
            self.engine.call(self._writer.follow, session.trace)
        self._session_ready(session)
        for text in self._queued:
            self._send(text)
        self._queued.clear()
        if session.preset.input.mode != "off":
            await self._open_voice(session)

    async def _open_voice(self, session: Session) -> None:
        """Spoken input (the preset's [input] mode): loads VAD and STT, then listens; the mic's
        state shows in the status bar, and typed input works whatever happens here."""
        from playground.engine.voice import VoiceLoop

        async def open_on_engine() -> VoiceLoop:
            voice = VoiceLoop(session, session.preset.input)
            self.voice = voice  # its state (loading…) shows while it opens
            await voice.open()
            return voice

        try:
            voice = await asyncio.wrap_future(self.engine.submit(open_on_engine()))
        except Exception as exc:  # the STT could not load: say so, keep typing
            self.voice = None
            self.status.mic = Text(visible(f"mic unavailable ({exc})"), style="bold red")
            self.status.redraw()
            return
        if voice.state.mic == "unavailable":
            self.notify_plain(f"mic unavailable ({voice.state.reason}); typed input still works", severity="warning")

    async def _close_voice(self) -> None:
        voice, self.voice = self.voice, None
        if voice is not None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(self.engine.submit(voice.close())), 10)
            except Exception as exc:  # closing must go on
                self.notify_plain(f"closing the mic failed: {exc}", severity="error")

    def _follow_loading(self, session: Session) -> None:
        """On the engine thread, before the session opens."""
        self.post_message(SessionCreated(session))

    def on_session_created(self, message: SessionCreated) -> None:
        # From here on the frame timer shows the session's `session.load` events.
        self._trace = message.session.trace

    def _session_ready(self, session: Session) -> None:
        # The screen's widgets live as long as the app: out of the cyclic collector's way,
        # as the session's models are (see Session.open).
        gc.freeze()
        self.status.llm = f"{session.llm.name} ({session.llm.model})"
        self.status.audio = session.output.name
        self.status.extra = ""
        self.status.redraw()

    def on_warned(self, message: Warned) -> None:
        self.notify(message.text, severity="warning", timeout=10)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value
        try:
            check_input(text)
        except InputRefused as exc:
            self.notify_plain(str(exc), severity="warning")
            return
        self.prompt.remember(text)
        self.prompt.value = ""
        if self.session is None:
            self._queued.append(text)
            self.conversation.note(f"queued until the models are loaded: {text[:60]}")
            return
        self._send(text)

    def _send(self, text: str) -> None:
        assert self.session is not None
        self.engine.submit(replace_turn(self.session, text))

    # -- the frame: new trace events to the views -----------------------------------------

    def _frame(self) -> None:
        trace = self._trace
        if trace is None:
            return
        events = trace.events
        end = len(events)
        if end > self._seen:
            for event in events[self._seen:end]:
                self.timeline.add(event)
                if isinstance(event, ev.TurnStart) and self._compare_with is not None:
                    self.waterfall.compare(self._compare_with, event.turn)
                    self._compare_with = None
                self.conversation.add(event)
                self.status.add(event)
                self.loading.add(event)
                if isinstance(event, ev.TurnSummary):
                    budgets = self.session.preset.budgets if self.session else self.budgets
                    turn_events = trace.turn_events(event.turn)
                    self.table.set_turn(compute_metrics(turn_events), budgets)
                    self._diagnose(trace, turn_events, budgets)
                elif isinstance(event, ev.TtsSession) and event.action == "fallback":
                    self.notify_plain(f"TTS fell back to REST: {event.reason}", severity="error", timeout=10)
                elif isinstance(event, ev.Error):
                    self.notify_plain(f"{event.where}: {event.message}", severity="error", timeout=10)
            self._seen = end
            self.status.redraw()
        if self.loading.display:
            self.loading.tick()
        if self.voice is not None:
            self.status.mic = mic_text(self.voice.state)
            self.status.redraw()
        self.waterfall.refresh_timeline()
        self.conversation.refresh_turns()

    def _diagnose(self, trace: ev.Trace, turn_events: list[ev.TraceEvent], budgets: dict[str, float]) -> None:
        """A turn that ended: its diagnosis, shown on its waterfall band at once."""
        if self._diagnoser is None:
            self._diagnoser = Diagnoser(trace.header, budgets, trace.turn_events(ev.SESSION_TURN))
        diagnosis = self._diagnoser.turn(turn_events)
        self.diagnoses[diagnosis.turn] = diagnosis
        self.waterfall.set_diagnosis(diagnosis.turn, diagnosis)

    # -- actions --------------------------------------------------------------------------

    def action_diagnose(self) -> None:
        self.push_screen(DiagnosisScreen(self.diagnoses))

    def action_push_to_talk(self) -> None:
        """Push-to-talk: F5 starts listening (cutting a reply that plays), F5 again ends the
        utterance. Terminals report no key release, so it is a toggle, not hold-to-talk."""
        voice = self.voice
        if voice is None or voice.state.mic != "listening":
            reason = voice.state.reason if voice is not None and voice.state.reason else "the mic is not listening"
            self.notify_plain(f"push-to-talk: {reason}", severity="warning")
        elif voice.mode != "push_to_talk":
            self.notify("hands-free: just speak (a pause ends what you say)")
        else:
            self.engine.call(voice.toggle_listening)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self))

    def action_cycle_strategy(self) -> None:
        current = self.preset.chunker.strategy
        self.set_strategy(STRATEGIES[(STRATEGIES.index(current) + 1) % len(STRATEGIES)])

    def set_strategy(self, strategy: str) -> None:
        self._use_preset(apply_overrides(self.preset, [f"chunker.strategy={strategy}"]), "chunker strategy chosen in the UI")
        self.notify(f"chunker: {strategy} (from the next turn)")

    def _use_preset(self, preset: Preset, reason: str) -> None:
        """The preset for the next turn; the change is recorded in the trace."""
        self.preset = preset
        if self.session is not None:
            self.engine.call(self.session.change_preset, preset, reason)

    def action_switch_preset(self) -> None:
        self.push_screen(PresetPicker(self.preset.name), self._preset_chosen)

    def _preset_chosen(self, name: str | None) -> None:
        if name is None:
            return
        try:
            chosen = load_preset(name)
        except PresetError as exc:
            self.notify_plain(str(exc), severity="error", timeout=10)
            return
        if self.session is None or not needs_new_session(self.preset, chosen):
            self._use_preset(chosen, f"preset {name} chosen in the UI")
            self.status.preset = chosen.name
            self.status.redraw()
            self.notify(f"preset {name} (from the next turn)")
            return
        self._restart_session(chosen)

    @work(exclusive=True, group="restart")
    async def _restart_session(self, preset: Preset) -> None:
        """Other providers: close this session, clear the views, open one for `preset`."""
        await self._close_voice()
        old, self.session, self._trace = self.session, None, None
        if old is not None:
            await asyncio.wrap_future(self.engine.submit(old.close()))
        self.preset = preset
        self._seen = 0
        self._diagnoser = None
        self.diagnoses.clear()
        self.timeline.clear()
        self.conversation.clear()
        self.table.clear_turns()
        self.status.preset = preset.name
        self.status.llm = "loading…"
        self.status.tts_provider = preset.tts.provider
        self.status.tts = TTSState()
        self.loading.reset()
        self.conversation.note(f"preset {preset.name}: opening a new session")
        self._open_session()

    def action_chunker_settings(self) -> None:
        def saved(preset: Preset | None) -> None:
            if preset is not None:
                self._use_preset(preset, "chunker parameters edited in the UI")
                self.notify("chunker parameters saved (from the next turn)")

        self.push_screen(ChunkerSettings(self.preset), saved)

    def action_zoom_waterfall(self, how: str) -> None:
        {"in": self.waterfall.action_zoom_in, "out": self.waterfall.action_zoom_out, "fit": self.waterfall.action_zoom_fit}[how]()

    def last_turn(self) -> int | None:
        turns = self.session.trace.turns() if self.session else []
        return turns[-1] if turns else None

    def action_edit_prompt(self) -> None:
        self.push_screen(PromptEditor(self.preset.agent.system_prompt), self._prompt_edited)

    def _prompt_edited(self, edit: PromptEdit | None) -> None:
        if edit is None:
            return
        preset = copy.deepcopy(self.preset)
        preset.agent.system_prompt = edit.prompt
        self._use_preset(preset, "system prompt edited in the UI")
        if self.session is None:
            return
        text = self.session.last_user_text()
        if not edit.rerun:
            self.notify("system prompt saved: it applies from the next turn")
        elif text is None:
            self.notify("system prompt saved; there is no message to re-run yet", severity="warning")
        else:
            self._compare_with = self.last_turn()
            self.engine.submit(replace_turn(self.session, text, rerun=True))

    def action_rechunk(self) -> None:
        turn = self.last_turn()
        if turn is None or self.session is None:
            self.notify("no turn to re-chunk yet", severity="warning")
            return
        self.push_screen(RechunkScreen(self.session, self.engine, turn))

    def action_stop_reply(self) -> None:
        if self.session is not None and self.session.busy:
            self.engine.call(self.session.cancel_turn, "stopped (Esc)")

    def action_toggle_mute(self) -> None:
        if self.session is None:
            return
        self.session.muted = not self.session.muted
        self.status.extra = "MUTED" if self.session.muted else ""
        self.status.redraw()

    def action_clear_session(self) -> None:
        """A new conversation: the LLM forgets it, the views start empty; the trace keeps everything."""
        if self.session is not None:
            self.engine.call(self.session.history.clear)
            self.engine.call(self.session.cancel_turn, "session cleared")
        self.conversation.clear()
        self.table.clear_turns()
        self.conversation.note("session cleared: the agent starts a new conversation")

    @work(exclusive=True, group="export")
    async def action_export(self) -> None:
        """The whole session in every export format (JSONL, Chrome/Perfetto, OTLP, CSV,
        Markdown), written in a thread with progress, secrets scrubbed."""
        if self.session is None:
            self.notify("nothing to export yet", severity="warning")
            return
        stem = time.strftime("playground-%Y%m%d-%H%M%S")
        events = list(self.session.trace.events)
        self.notify(f"exporting {len(events):,} events to {self.export_dir}/{stem}.*…")

        def progress(stage: str, fraction: float | None = None) -> None:
            self.call_from_thread(self._export_progress, stage, fraction)

        try:
            paths = await asyncio.to_thread(export_all, self.export_dir, stem, self.session.trace.header, events,
                                            progress=progress)
        except (OSError, ValueError, RuntimeError) as exc:
            self.notify_plain(f"export failed: {exc}", severity="error", timeout=10)
            return
        finally:
            self.status.extra = ""
            self.status.redraw()
        self.notify("exported: " + ", ".join(p.name for p in paths), timeout=8)

    def _export_progress(self, stage: str, fraction: float | None) -> None:
        self.status.extra = f"export {stage}" + ("" if fraction is None else f" {fraction:.0%}")
        self.status.redraw()

    async def on_unmount(self) -> None:
        """However the app ends: close the session (TTS, LLM, audio), the trace, the engine."""
        if not self._owns_session:
            return
        await self._close_voice()
        session, self.session = self.session, None
        if session is not None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(self.engine.submit(session.close())), 10)
            except Exception as exc:  # shutting down: report, don't hang
                print(f"playground: closing the session failed: {exc}")
        if self._writer is not None:
            self._writer.close()
        self.engine.stop()


def run_app(preset: Preset, audio: str | None = None, wav_path: str | None = None, trace_path: str | None = None) -> None:
    PlaygroundApp(preset, audio=audio, wav_path=wav_path, trace_path=trace_path).run()


def view_trace(path: str, trace: tuple[dict, list[ev.TraceEvent]], preset: Preset) -> None:
    """Shows a recorded trace (`path`, read: header and events) in the TUI, read-only."""
    PlaygroundApp(preset, view=trace, view_name=str(path)).run()
