"""The turns table keeps its most telling columns, the TTS path and the turn's status among them, at every width."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from playground.core.metrics import TurnMetrics
from playground.ui.metrics_table import ORDER, MetricsTable


class TableApp(App):
    def compose(self) -> ComposeResult:
        yield MetricsTable()


def turn(number: int, **values) -> TurnMetrics:
    base = dict(strategy="adaptive", llm_ttft=115.0, ttfs=206.0, ttft_tts=206.0, ttfa=406.0, first_play=411.0,
                llm_total=1688.0, tts_total=1585.0, e2e_total=1723.0, chunks=9, spoken_chunks=9,
                tts_path="persistent")
    return TurnMetrics(turn=number, **{**base, **values})


def table_text(table: MetricsTable) -> list[str]:
    return [table.render_line(y).text for y in range(table.size.height)]


@pytest.mark.parametrize("width", [80, 120])
async def test_the_status_of_a_cancelled_or_failed_turn_is_never_cut(width):
    app = TableApp()
    async with app.run_test(size=(width, 12)) as pilot:
        table = app.query_one(MetricsTable)
        table.set_turn(turn(1), {"ttfa": 1500.0})
        table.set_turn(turn(2, status="cancelled"), {"ttfa": 1500.0})
        table.set_turn(turn(3, status="error", tts_path="fallback_rest", tts_path_reason="websocket refused",
                            ttfa=1900.0), {"ttfa": 1500.0})
        await pilot.pause()
        screen = "\n".join(table_text(table))
        assert "persistent CANCELLED" in screen
        assert "fallback_rest (websocket refused) ERROR" in screen and "1900!" in screen
        assert table.virtual_size.width <= table.scrollable_content_region.width  # nothing off the right edge
        assert {"turn", "tts", "ttfa", "first_play"} <= set(table.shown)
        if width == 80:
            assert len(table.shown) < len(ORDER)  # the least telling columns left


async def test_a_wide_table_shows_every_column():
    app = TableApp()
    async with app.run_test(size=(200, 12)) as pilot:
        table = app.query_one(MetricsTable)
        table.set_turn(turn(1), {})
        table.set_turn(turn(2), {})
        await pilot.pause()
        assert table.shown == ORDER
        assert any(line.strip().startswith("p50") for line in table_text(table))
