"""The waterfall widget, mounted in a small app and read back row by row."""

from __future__ import annotations

from rich.color import Color
from rich.segment import Segment
from textual.app import App, ComposeResult

from playground.core import events as ev
from playground.core.events import TraceEvent
from playground.core.timeline import Timeline
from playground.ui.waterfall import (
    BAND_HEIGHT,
    EIGHTHS,
    HEADER_HEIGHT,
    LANES,
    LANE_NAMES,
    REASON_CLASSES,
    LaneRow,
    Waterfall,
    fit_zoom,
    format_duration,
    zoom_step,
)
from tests.events import event

PARTIAL_BLOCKS = set(EIGHTHS[1:8])
REASONS = ("strong", "weak", "deadline", "max_chars", "flush")


def reply(turn: int, text: str = "Tell me a story", *, chunks: int = 5, upto_ms: float = float("inf"),
          cut_chunk: int | None = None) -> list[TraceEvent]:
    """A turn as the engine records it: 4 tokens 40 ms apart per chunk, one chunk per
    reason, TTS and back-to-back playback; only the events up to `upto_ms`; playback
    cut (a barge-in) at `cut_chunk`. Times avoid cell boundaries, so edges need eighths."""
    events = [
        event(ev.TurnStart, turn, 0.0, text=text, strategy="adaptive"),
        event(ev.TtsSession, turn, 0.2, action="reuse", path="persistent"),
    ]
    play_at = None
    for index in range(chunks):
        start = 205.0 + index * 160.0
        for k in range(4):
            events.append(event(ev.LlmToken, turn, start + 40.0 * k, i=index * 4 + k, text=" w"))
        emit = start + 125.0
        events += [
            event(ev.Chunk, turn, emit, index=index, reason=REASONS[index % len(REASONS)],
                  start_ms=start, token_start=index * 4, token_end=index * 4 + 3),
            event(ev.TtsSend, turn, emit + 0.5, chunk=index),
            event(ev.TtsAudio, turn, emit + 90.0, chunk=index, duration_ms=300.0),
        ]
        play_at = max(play_at or 0.0, emit + 95.0)
        events.append(event(ev.PlayStart, turn, play_at, chunk=index))
        if index == cut_chunk:
            events += [event(ev.PlayEnd, turn, play_at + 100.0, chunk=index, cut=True),
                       event(ev.TurnCancelled, turn, play_at + 101.0, reason="barge-in")]
            break
        play_at += 300.0
        events.append(event(ev.PlayEnd, turn, play_at, chunk=index))
    events.append(event(ev.TurnSummary, turn, events[-1].t_ms + 1.0))
    return [event for event in sorted(events, key=lambda e: e.t_ms) if event.t_ms <= upto_ms]


class WaterfallApp(App):
    def __init__(self, timeline: Timeline, css: str = "") -> None:
        super().__init__()
        self.timeline = timeline
        self.CSS = css

    def compose(self) -> ComposeResult:
        yield Waterfall(self.timeline)


def rows(waterfall: Waterfall) -> list[str]:
    return [waterfall.render_line(y).text for y in range(waterfall.size.height)]


def lane_y(waterfall: Waterfall, turn: int, lane: str) -> int:
    """The screen row of a turn's lane at the current scroll position."""
    return waterfall.band_y(turn) + LANES.index(lane) - waterfall.scroll_offset.y


def lane_segments(waterfall: Waterfall, turn: int, lane: str) -> list[Segment]:
    return list(waterfall.render_line(lane_y(waterfall, turn, lane)))


async def show(pilot, waterfall: Waterfall, events: list[TraceEvent]) -> None:
    for e in events:
        waterfall.timeline.add(e)
    waterfall.refresh_timeline()
    await pilot.pause()


def spy_renders(waterfall: Waterfall, monkeypatch) -> list[tuple[int, str]]:
    """Records (turn, lane) of every row the waterfall actually draws (cache misses)."""
    drawn: list[tuple[int, str]] = []
    render = waterfall._render_lane

    def spy(band, lane, *args):
        drawn.append((band.turn, lane))
        return render(band, lane, *args)

    monkeypatch.setattr(waterfall, "_render_lane", spy)
    return drawn


async def test_a_turn_shows_its_title_lanes_and_marker_values():
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(100, 30)) as pilot:
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, reply(1))
        screen = rows(waterfall)

        assert screen[0].startswith(format_duration(waterfall.ms_per_cell))  # the zoom, over the lane labels
        assert "0ms" in screen[0] and "1s" in screen[0]
        title = screen[lane_y(waterfall, 1, "title")]
        assert "#1 Tell me a story" in title and title.rstrip().endswith("adaptive persistent ok")
        marks = screen[lane_y(waterfall, 1, "marks")]
        for label in ("TTFT 205", "TTFS 330", "TTFA 420", "PLAY 425"):
            assert label in marks
        assert [screen[lane_y(waterfall, 1, lane)][:6].strip() for lane in LANES[1:]] == ["llm", "chunk", "tts", "play", "mark", "why"]


async def test_chunks_are_coloured_by_reason_from_component_classes():
    css = "Waterfall > .waterfall--reason-weak { color: #123456; }"  # the app's CSS wins
    app = WaterfallApp(Timeline(), css=css)
    async with app.run_test(size=(100, 30)) as pilot:
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, reply(1))

        colours = {segment.style.color for segment in lane_segments(waterfall, 1, "chunk")}
        for reason in REASONS:
            assert waterfall.get_component_rich_style(REASON_CLASSES[reason]).color in colours
        assert waterfall.get_component_rich_style(REASON_CLASSES["weak"]).color.name == "#123456"


def test_span_edges_fall_on_eighths_of_a_cell():
    row = LaneRow(origin=0, ms_per_cell=10.0, width=5)
    row.span(5.0, 32.5, color := Color.parse("red"))
    cells = [row._cell(cell, lambda fg, bg, reverse: (fg, bg, reverse)) for cell in range(5)]

    # Starts mid-cell: a left half block reversed shows the background, then the span.
    assert cells[0] == ("▌", (color, None, True))
    assert [char for char, _ in cells[1:3]] == ["█", "█"]
    assert cells[3][0] == "▎"  # ends a quarter into the cell
    assert cells[4][0] == " "


async def test_span_edges_mid_cell_render_partial_blocks():
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(100, 30)) as pilot:
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, reply(1))
        for lane in ("chunk", "tts", "play"):
            text = waterfall.render_line(lane_y(waterfall, 1, lane)).text
            assert PARTIAL_BLOCKS & set(text), lane


async def test_zoom_changes_ms_per_cell_and_the_drawing():
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(100, 30)) as pilot:
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, reply(1))
        fitted = waterfall.ms_per_cell
        assert waterfall.fit and fitted == fit_zoom(waterfall.timeline.max_end_ms, waterfall.plot_width)
        assert waterfall.max_scroll_x == 0  # everything fits: no horizontal scrolling
        before = waterfall.render_line(lane_y(waterfall, 1, "chunk")).text

        waterfall.focus()
        await pilot.press("plus", "plus")
        assert waterfall.ms_per_cell == zoom_step(zoom_step(fitted, -1), -1) < fitted
        assert not waterfall.fit
        zoomed = waterfall.render_line(lane_y(waterfall, 1, "chunk")).text
        assert zoomed != before
        assert waterfall.max_scroll_x > 0  # the turn is now wider than the view

        waterfall.scroll_to(x=waterfall.max_scroll_x, animate=False)
        await pilot.pause()
        assert waterfall.render_line(lane_y(waterfall, 1, "chunk")).text != zoomed

        await pilot.press("minus")
        assert waterfall.ms_per_cell == zoom_step(fitted, -1)
        await pilot.press("0")
        assert waterfall.fit and waterfall.ms_per_cell == fitted and waterfall.scroll_offset.x == 0
        assert waterfall.render_line(lane_y(waterfall, 1, "chunk")).text == before


async def test_nothing_is_redrawn_when_nothing_changed(monkeypatch):
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(100, 30)) as pilot:
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, reply(1) + reply(2))
        drawn = spy_renders(waterfall, monkeypatch)
        refreshed = []
        monkeypatch.setattr(waterfall, "refresh", lambda *a, **k: refreshed.append(a))

        waterfall.refresh_timeline()
        rows(waterfall)
        assert drawn == [] and refreshed == []


async def test_a_growing_live_turn_only_redraws_its_own_band(monkeypatch):
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(100, 30)) as pilot:
        waterfall = app.query_one(Waterfall)
        live = reply(2, upto_ms=600.0)
        await show(pilot, waterfall, reply(1) + live)
        zoom = waterfall.ms_per_cell
        assert "● live" in rows(waterfall)[lane_y(waterfall, 2, "title")]
        drawn = spy_renders(waterfall, monkeypatch)
        refreshed_lines = []
        refresh_lines = waterfall.refresh_lines
        monkeypatch.setattr(waterfall, "refresh_lines", lambda y, n=1: (refreshed_lines.append((y, n)), refresh_lines(y, n)))

        await show(pilot, waterfall, [e for e in reply(2, upto_ms=900.0) if e.t_ms > 600.0])

        assert waterfall.ms_per_cell == zoom  # still fits: no reason to redraw the rest
        assert refreshed_lines == [(waterfall.band_y(2), BAND_HEIGHT)]
        assert drawn and {turn for turn, _ in drawn} == {2}
        chunk_row = waterfall.render_line(lane_y(waterfall, 2, "chunk"))
        pending = waterfall.get_component_rich_style("waterfall--chunk-pending").color
        assert pending in {segment.style.color for segment in chunk_row}  # the text the chunker holds


async def test_the_view_follows_new_turns_unless_scrolled_up():
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(100, 30)) as pilot:
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, [e for turn in range(1, 6) for e in reply(turn)])
        assert waterfall.virtual_size.height == HEADER_HEIGHT + 5 * BAND_HEIGHT
        assert waterfall.scroll_offset.y == waterfall.max_scroll_y > 0
        assert any("#5 " in row for row in rows(waterfall))

        waterfall.scroll_home(animate=False, immediate=True)
        await show(pilot, waterfall, reply(6))
        assert waterfall.scroll_offset.y == 0
        assert "#1 " in rows(waterfall)[HEADER_HEIGHT]


async def test_a_view_shorter_than_a_band_follows_the_newest_title():
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(80, BAND_HEIGHT)) as pilot:  # the axis and all but one of a band's rows
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, reply(1) + reply(2, upto_ms=300.0))
        assert rows(waterfall)[HEADER_HEIGHT].startswith(" #2 ")

        waterfall.scroll_to(y=waterfall.scroll_offset.y + 1, animate=False)  # down to the band's last lane
        await show(pilot, waterfall, [e for e in reply(2) if e.t_ms > 300.0])
        assert rows(waterfall)[-1].startswith(LANE_NAMES[LANES[-1]])  # not pulled back up while turn 2 streams

        await show(pilot, waterfall, reply(3, upto_ms=300.0))
        assert rows(waterfall)[HEADER_HEIGHT].startswith(" #3 ")


async def test_compare_puts_two_turns_first_and_highlights_them():
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(100, 30)) as pilot:
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, [e for turn in (1, 2, 3) for e in reply(turn)])

        waterfall.compare(3, 1)
        await pilot.pause()
        titles = [rows(waterfall)[HEADER_HEIGHT + i * BAND_HEIGHT] for i in range(2)]
        assert titles[0].startswith("▶#3") and titles[1].startswith("▶#1")
        highlight = waterfall.get_component_rich_style("waterfall--compare").bgcolor
        assert list(waterfall.render_line(HEADER_HEIGHT))[0].style.bgcolor == highlight
        assert waterfall.band_y(2) == HEADER_HEIGHT + 2 * BAND_HEIGHT

        waterfall.compare(None)
        await pilot.pause()
        assert [waterfall.band_y(turn) for turn in (1, 2, 3)] == [HEADER_HEIGHT + i * BAND_HEIGHT for i in range(3)]


async def test_a_barge_in_marks_the_cut_playback():
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(100, 30)) as pilot:
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, reply(1, cut_chunk=2))
        assert "cancelled at " in rows(waterfall)[lane_y(waterfall, 1, "title")]
        play = lane_segments(waterfall, 1, "play")
        cut = waterfall.get_component_rich_style("waterfall--cut").color
        assert any("×" in segment.text and segment.style.color == cut for segment in play)


async def test_an_80x24_terminal_fits_every_row():
    turns = [
        *reply(1, "A long question\nwith a newline, wide 漢字 and emoji 🎉 " * 4),
        *reply(2, cut_chunk=1),
        event(ev.TurnStart, 3, 0.0, text="fails", strategy="sentence"),
        event(ev.TtsSession, 3, 1.0, path="fallback_rest", reason="websocket refused"),
        event(ev.Error, 3, 9.0, where="tts", message="boom"),
        *reply(4, upto_ms=500.0),
    ]
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(80, 24)) as pilot:
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, turns)
        assert waterfall.label_width <= 6
        screen = []
        for scroll_y in (0, waterfall.max_scroll_y):
            waterfall.scroll_to(y=scroll_y, animate=False)
            strips = [waterfall.render_line(y) for y in range(waterfall.size.height)]
            assert {strip.cell_length for strip in strips} == {waterfall.content_width}
            screen += [strip.text for strip in strips]
        title = next(row for row in screen if row.startswith(" #3 "))
        assert "fails" in title and "FALLBACK (websocket refused) error at 9ms" in title


async def test_a_wide_terminal_adds_figures_to_the_lane_labels():
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(200, 50)) as pilot:
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, reply(1))
        screen = rows(waterfall)
        assert "/cell fit" in screen[0]
        assert "20 tok" in screen[lane_y(waterfall, 1, "llm")]
        assert "5 chunks" in screen[lane_y(waterfall, 1, "chunk")]
        assert "LLM_TTFT 205" in screen[lane_y(waterfall, 1, "marks")]


async def test_a_theme_change_redraws_in_the_new_colours():
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(100, 30)) as pilot:
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, reply(1))
        dark = {segment.style.color for segment in lane_segments(waterfall, 1, "play")}

        app.theme = "textual-light"
        await pilot.pause()
        light = {segment.style.color for segment in lane_segments(waterfall, 1, "play")}
        assert waterfall.get_component_rich_style("waterfall--play").color in light
        assert light != dark


async def test_a_turn_whose_context_window_moved_says_so_in_its_title():
    def with_context(turn: int, context: dict) -> list[TraceEvent]:
        events = reply(turn)
        done_at = max(e.t_ms for e in events if isinstance(e, ev.LlmToken)) + 1.0
        return sorted([*events, event(ev.LlmDone, turn, done_at, context=ev.LlmContext(budget_tokens=1900, **context))], key=lambda e: e.t_ms)

    turns = [*with_context(1, {"messages": 9, "dropped": 0}),
             *with_context(2, {"messages": 9, "dropped": 2, "trimmed": 2, "how": "shift"}),
             *with_context(3, {"messages": 5, "dropped": 8, "trimmed": 6, "how": "block"})]
    app = WaterfallApp(Timeline())
    async with app.run_test(size=(80, 24)) as pilot:
        waterfall = app.query_one(Waterfall)
        await show(pilot, waterfall, turns)
        screen = []
        for scroll_y in range(0, waterfall.max_scroll_y + 1):
            waterfall.scroll_to(y=scroll_y, animate=False)
            screen += [waterfall.render_line(y).text for y in range(waterfall.size.height)]
    titles = {row.split()[0].lstrip("▶"): row for row in screen if row.lstrip("▶ ").startswith("#")}
    assert "ctx" not in titles["#1"]
    assert "ctx -6 msgs (block)" in titles["#3"]  # a re-evaluated prompt stays visible at 80 columns


def test_every_chunker_reason_has_a_colour():
    """A new chunk reason (e.g. `underrun`) is coloured in the waterfall and the conversation."""
    from playground.chunking import REASONS as CHUNKER_REASONS
    from playground.core.formatting import REASON_COLORS

    assert set(REASON_CLASSES) == set(CHUNKER_REASONS) == set(REASON_COLORS)
    css = Waterfall.DEFAULT_CSS
    for reason, component in REASON_CLASSES.items():
        assert f".{component} {{ color:" in css, f"no colour for {reason} in the waterfall's CSS"
