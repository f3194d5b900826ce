"""SVG snapshots of the main screen, drawn from a recorded trace (deterministic: no live
session, no clock). Update after an intended change with `pytest --snapshot-update`."""

from pathlib import Path

from playground.core.tracefile import read_trace
from playground.ui.app import PlaygroundApp
from tests.conftest import local_preset

TRACE = Path(__file__).resolve().parents[2] / "playground" / "bench" / "data" / "two-turns.jsonl"


def recorded_app() -> PlaygroundApp:
    return PlaygroundApp(local_preset(), view=read_trace(TRACE), view_name="two-turns.jsonl")


def test_main_screen_at_160x48(snap_compare):
    assert snap_compare(recorded_app(), terminal_size=(160, 48))


def test_main_screen_at_80x24(snap_compare):
    assert snap_compare(recorded_app(), terminal_size=(80, 24))


def test_help_screen(snap_compare):
    assert snap_compare(recorded_app(), press=["f1"], terminal_size=(100, 30))
