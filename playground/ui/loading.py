"""The loading bar: what the session is still loading, shown until everything is ready.

It reads the session's `session.load` events (component loading, its progress messages,
ready / failed), so the same record a trace keeps is what the user watches while the
models load; none of it goes to the conversation pane.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import ProgressBar, Static

from playground.core import events as ev
from playground.core.clock import now_ms


@dataclass
class _Component:
    provider: str
    state: str  # loading | ready | failed
    seen_ms: float  # UI clock when loading was seen
    took_ms: float | None = None
    detail: str = ""  # the last progress message it reported


class LoadingBar(Horizontal):
    DEFAULT_CSS = """
    LoadingBar { height: 1; padding: 0 1; background: $panel; }
    LoadingBar > #loading-bar { width: 24; }
    LoadingBar > #loading-label { width: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.components: dict[str, _Component] = {}
        self._shown: Text | None = None

    def compose(self) -> ComposeResult:
        # No total until something finishes: an animated bar says "working" without a made-up fraction.
        yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="loading-bar")
        yield Static("starting…", id="loading-label")

    def reset(self) -> None:
        """A new session is opening."""
        self.components.clear()
        self.query_one(ProgressBar).update(total=None, progress=0)
        self.display = True

    @property
    def done(self) -> bool:
        return bool(self.components) and all(c.state == "ready" for c in self.components.values())

    def add(self, event: ev.TraceEvent) -> None:
        if not isinstance(event, ev.SessionLoad):
            return
        name, state = event.component, event.state
        if state == "loading":
            self.components[name] = _Component(event.provider, state, now_ms())
            self.display = True  # a component loading later (speech recognition) shows again
            return
        if state == "progress":
            if name in self.components:
                self.components[name].detail = event.message or ""
            return
        component = self.components.setdefault(name, _Component(event.provider, state, now_ms()))
        component.state, component.took_ms = state, event.ms
        ready = sum(c.state == "ready" for c in self.components.values())
        bar = self.query_one(ProgressBar)
        bar.update(total=len(self.components), progress=ready)

    def tick(self) -> None:
        """Redraws the label (elapsed times); hides the bar once everything is ready."""
        if self.done:
            self.display = False
            return
        now = now_ms()
        parts = []
        for name, c in self.components.items():
            if c.state == "loading":
                detail = f": {c.detail}" if c.detail else ""
                parts.append(Text(f"{name} {c.provider}{detail} {(now - c.seen_ms) / 1000:.1f} s…"))
            elif c.state == "ready":
                parts.append(Text(f"{name} {c.provider} ready in {(c.took_ms or 0) / 1000:.1f} s", style="green"))
            else:
                parts.append(Text(f"{name} {c.provider} FAILED", style="bold red"))
        text = Text("loading: ").append_text(Text(" · ").join(parts)) if parts else Text("starting…")
        if text != self._shown:
            self._shown = text
            self.query_one("#loading-label", Static).update(text)
