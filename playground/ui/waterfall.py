"""The waterfall: every turn as a band of lanes on a shared millisecond axis from t0.

A Line API widget: `render_line(y)` draws one terminal row from the `Timeline`, and
rows are cached in an `LRUCache` keyed by the turn's version, so while a reply streams
only the live turn's band is redrawn (the app calls `refresh_timeline` on a ~30 fps
timer; nothing is pushed per event). Spans are drawn with eighth-block glyphs: a cell
shows up to two colours split at any eighth, which places span edges at 1/8 cell.

Layout, top to bottom: a fixed axis row, then per turn a title row and the lanes
`llm` (a tick per token), `chunk` (first token -> emission, coloured by reason),
`tts` (sent -> first audio waiting, first -> last audio receiving), `play` (playback
per chunk, cut ones marked), `marks` (LLM_TTFT, TTFS, TTFA, FIRST_PLAY with values) and,
once the turn has ended, `why`: its diagnosis's breakdown as a stacked bar on the same axis
(stages that add up to the wait, playground.diagnosis), its worst finding on the title row.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.events import Resize
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from playground.core.formatting import REASON_COLORS, visible
from playground.core.metrics import METRIC_LABELS
from playground.core.timeline import CANCELLED, ERROR, OK, RUNNING, Timeline, TurnTimeline

if TYPE_CHECKING:
    from playground.diagnosis.session import TurnDiagnosis

EIGHTHS = " ▏▎▍▌▋▊▉█"  # index = eighths of a cell filled from its left edge
TICKS = "▏│▕"  # a tick in the left, middle or right third of a cell
CUT_MARK = "×"

LANES = ("title", "llm", "chunk", "tts", "play", "marks", "why")
BAND_HEIGHT = len(LANES)
HEADER_HEIGHT = 1  # the axis row, which stays put when the bands scroll

# Milliseconds per cell the zoom steps through (about x1.5 a step).
ZOOM_LADDER = tuple(m * 10**e for e in range(5) for m in (1, 1.5, 2, 3, 5, 7.5))
MIN_FIT_MS = 1000.0  # fit at least a second, so the axis does not rescale every frame at t0
TICK_GAP_CELLS = 8  # room for an axis label ("12.5s") and a gap

WIDE_WIDTH = 120  # from here on, lane labels also carry a per-lane figure
NARROW_LABEL_WIDTH = 6
WIDE_LABEL_WIDTH = 16
LANE_NAMES = {"llm": "llm", "chunk": "chunk", "tts": "tts", "play": "play", "marks": "mark", "why": "why"}
SHORT_MARKER_NAMES = {"llm_ttft": "TTFT", "ttfs": "TTFS", "ttfa": "TTFA", "first_play": "PLAY", "first_sound": "SOUND"}
MIN_TITLE_TEXT = 8  # cells of the user's text kept before the title drops details

REASON_CLASSES = {reason: f"waterfall--reason-{reason.replace('_', '-')}" for reason in REASON_COLORS}
# The reason classes in CSS, from the shared table (DEFAULT_CSS).
_REASON_CSS = "".join(f"        & > .{REASON_CLASSES[reason]} {{ color: ansi_{color}; }}\n"
                      for reason, color in REASON_COLORS.items())
STATUS_CLASSES = {
    RUNNING: "waterfall--live",
    OK: "waterfall--muted",
    CANCELLED: "waterfall--cancelled",
    ERROR: "waterfall--error",
}
# The breakdown's stages (playground.diagnosis.breakdown), each its own colour in the `why` lane.
STAGE_CLASSES = {key: f"waterfall--stage-{key.replace('_', '-')}" for key in (
    "endpointing", "stt", "llm", "chunker", "handoff", "tts", "to_playback", "silence", "device",
    "agent", "network", "agent_network", "residual")}
_STAGE_COLORS = {"endpointing": "ansi_magenta", "stt": "ansi_cyan", "llm": "$text-primary", "chunker": "ansi_yellow",
                 "handoff": "ansi_red", "tts": "$text-secondary", "to_playback": "$primary", "silence": "$foreground 35%",
                 "device": "ansi_blue", "agent": "$text-primary", "network": "ansi_cyan", "agent_network": "$text-primary",
                 "residual": "$foreground 35%"}
_STAGE_CSS = "".join(f"        & > .{STAGE_CLASSES[key]} {{ color: {color}; }}\n" for key, color in _STAGE_COLORS.items())
FINDING_CLASSES = {"CRITICAL": "waterfall--error", "WARNING": "waterfall--cancelled"}
PATH_CLASSES = {
    "persistent": "waterfall--muted",
    "reconnected": "waterfall--cancelled",
    "fallback_rest": "waterfall--error",
}

CellStyle = Callable[[Color | None, Color | None, bool], Style]


def format_duration(ms: float) -> str:
    """A compact duration with its unit: "7.5ms", "250ms", "1.5s" (an axis label, the zoom)."""
    return f"{ms / 1000:g}s" if ms >= 1000 else f"{ms:g}ms"


def fit_zoom(span_ms: float, cells: int) -> float:
    """The finest zoom step that shows `span_ms` (at least MIN_FIT_MS) in `cells`."""
    needed = max(span_ms, MIN_FIT_MS) / max(cells, 1)
    return next((step for step in ZOOM_LADDER if step >= needed), ZOOM_LADDER[-1])


def zoom_step(ms_per_cell: float, direction: int) -> float:
    """The next zoom step finer (direction -1) or coarser (+1) than `ms_per_cell`."""
    index = bisect_left(ZOOM_LADDER, ms_per_cell)
    if direction < 0:
        return ZOOM_LADDER[max(index - 1, 0)]
    at_step = index < len(ZOOM_LADDER) and ZOOM_LADDER[index] == ms_per_cell
    return ZOOM_LADDER[min(index + 1 if at_step else index, len(ZOOM_LADDER) - 1)]


def tick_interval(ms_per_cell: float) -> float:
    """A round axis interval (1, 2, 5 x 10^k ms) leaving room for the labels."""
    needed = ms_per_cell * TICK_GAP_CELLS
    exponent = math.floor(math.log10(needed))
    return next(m * 10.0**e for e in (exponent, exponent + 1) for m in (1, 2, 5) if m * 10.0**e >= needed)


def _details_cells(details: list[tuple[str, str, bool]]) -> int:
    return sum(cell_len(text) + 1 for text, _, _ in details)


Mark = tuple[str, float]  # (label with its value, ms)


def _marker_clusters(marks: list[Mark], ms_per_cell: float) -> list[list[Mark]]:
    """Groups markers (in time order) whose labels would cover the next marker's tick.

    A cluster is drawn as its ticks, then its labels in the same order right after the
    last tick: every tick stays visible and labels read in order, even for markers a
    few ms apart (TTFA, FIRST_PLAY).
    """
    clusters: list[list[Mark]] = []
    labels_end = -math.inf
    for mark in marks:
        cell = math.floor(mark[1] / ms_per_cell)
        if clusters and cell < labels_end:
            clusters[-1].append(mark)
        else:
            clusters.append([mark])
        labels_end = cell + 1 + sum(len(label) + 1 for label, _ in clusters[-1])
    return clusters


class LaneRow:
    """The visible cells of one lane row: plot cells [origin, origin + width) at `ms_per_cell`.

    A cell holds either a glyph in one colour (a tick, a letter) or two colours: `left`
    up to `split` eighths of the cell and `right` after it, drawn as a left-aligned
    eighth block (foreground = left, background = right).
    """

    __slots__ = ("origin", "ms_per_cell", "width", "left", "right", "split", "glyphs")

    def __init__(self, origin: int, ms_per_cell: float, width: int) -> None:
        self.origin = origin
        self.ms_per_cell = ms_per_cell
        self.width = width
        self.left: list[Color | None] = [None] * width
        self.right: list[Color | None] = [None] * width
        self.split = [0] * width
        self.glyphs: list[tuple[str, Color] | None] = [None] * width

    def x(self, ms: float) -> float:
        """The position of `ms` in cells from the row's left edge."""
        return ms / self.ms_per_cell - self.origin

    def span(self, start_ms: float, end_ms: float, color: Color) -> None:
        """Fills [start_ms, end_ms) to the nearest eighth of a cell; never less than an eighth."""
        start = round(self.x(start_ms) * 8)
        end = max(round(self.x(end_ms) * 8), start + 1)
        for cell in range(max(start // 8, 0), min((end - 1) // 8, self.width - 1) + 1):
            lo = max(start - cell * 8, 0)
            hi = min(end - cell * 8, 8)
            if lo == 0 and hi == 8:
                self._paint(cell, color, 8, color)
            elif lo == 0 or (hi < 8 and lo <= 8 - hi):
                # Covers the cell's left part, or a middle piece nearer the left edge.
                self._paint(cell, color, hi, self.right[cell])
            else:
                self._paint(cell, self.left[cell], lo, color)

    def _paint(self, cell: int, left: Color | None, split: int, right: Color | None) -> None:
        self.left[cell], self.split[cell], self.right[cell] = left, split, right
        self.glyphs[cell] = None

    def glyph(self, cell: int, char: str, color: Color) -> None:
        if 0 <= cell < self.width:
            self.glyphs[cell] = (char, color)

    def tick(self, ms: float, color: Color) -> None:
        x = self.x(ms)
        cell = math.floor(x)
        self.glyph(cell, TICKS[min(int((x - cell) * 3), 2)], color)

    def text(self, cell: int, text: str, color: Color) -> None:
        for offset, char in enumerate(text):
            self.glyph(cell + offset, char, color)

    def segments(self, cell_style: CellStyle) -> list[Segment]:
        """The row as segments, one per run of cells with the same style."""
        blank = cell_style(None, None, False)
        segments: list[Segment] = []
        run: list[str] = []
        run_style = blank
        for cell in range(self.width):
            if self.glyphs[cell] is None and self.split[cell] == 0 and self.right[cell] is None:
                char, style = " ", blank  # most cells: nothing happened there
            else:
                char, style = self._cell(cell, cell_style)
            if style is not run_style and run:
                segments.append(Segment("".join(run), run_style))
                run = []
            run.append(char)
            run_style = style
        if run:
            segments.append(Segment("".join(run), run_style))
        return segments

    def _cell(self, cell: int, cell_style: CellStyle) -> tuple[str, Style]:
        glyph = self.glyphs[cell]
        if glyph is not None:
            return glyph[0], cell_style(glyph[1], None, False)
        split = self.split[cell]
        left = self.left[cell] if split > 0 else None
        right = self.right[cell] if split < 8 else None
        if right is None:
            return EIGHTHS[split], cell_style(left, None, False)
        if left is None:
            if split == 0:
                return EIGHTHS[8], cell_style(right, None, False)
            # No right-aligned partial blocks exist: reverse a left-aligned one, so its
            # glyph shows the background and the rest of the cell the span's colour.
            return EIGHTHS[split], cell_style(right, None, True)
        return EIGHTHS[split], cell_style(left, right, False)


class Waterfall(ScrollView, can_focus=True):
    """Turns as bands of lanes on one millisecond axis; reads a `Timeline`, never the engine."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("plus,equals_sign", "zoom_in", "Zoom in", id="waterfall.zoom_in"),
        Binding("minus", "zoom_out", "Zoom out", id="waterfall.zoom_out"),
        Binding("0", "zoom_fit", "Fit", id="waterfall.zoom_fit"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "waterfall--axis",
        "waterfall--label",
        "waterfall--title",
        "waterfall--compare",
        "waterfall--muted",
        "waterfall--live",
        "waterfall--cancelled",
        "waterfall--error",
        "waterfall--token",
        "waterfall--chunk-pending",
        "waterfall--tts-wait",
        "waterfall--tts-audio",
        "waterfall--play",
        "waterfall--play-alt",
        "waterfall--cut",
        "waterfall--gap",
        "waterfall--marker",
        *REASON_CLASSES.values(),
        *STAGE_CLASSES.values(),
    }

    # Reason colours are the terminal's ANSI ones, as in the conversation pane; the rest
    # come from the app's theme.
    DEFAULT_CSS = """
    Waterfall {
        background: $surface;
        /* Always shown, so the plot's width does not jump when the bands outgrow the view. */
        overflow-y: scroll;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 1;
        & > .waterfall--axis { color: $text-muted; }
        & > .waterfall--label { color: $text-muted; }
        & > .waterfall--title { background: $panel; color: $foreground; text-style: bold; }
        & > .waterfall--compare { background: $accent 40%; color: $foreground; text-style: bold; }
        & > .waterfall--muted { color: $text-muted; }
        & > .waterfall--live { color: $text-accent; }
        & > .waterfall--cancelled { color: $text-warning; }
        & > .waterfall--error { color: $text-error; }
        & > .waterfall--token { color: $text-primary; }
""" + _REASON_CSS + """\
        & > .waterfall--chunk-pending { color: $foreground 30%; }
        & > .waterfall--tts-wait { color: $foreground 25%; }
        & > .waterfall--tts-audio { color: $text-secondary; }
        & > .waterfall--play { color: $primary; }
        & > .waterfall--play-alt { color: $primary-lighten-2; }
        & > .waterfall--cut { color: $error; }
        & > .waterfall--gap { color: $warning; }
        & > .waterfall--marker { color: $text-accent; }
""" + _STAGE_CSS + """\
    }
    """

    def __init__(
        self,
        timeline: Timeline,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.timeline = timeline
        self.ms_per_cell = fit_zoom(0.0, 1)
        self.fit = True  # keep the zoom at "everything visible" as turns grow
        self.compared: tuple[int, ...] = ()
        self._bands: list[TurnTimeline] = []
        self._drawn_versions: dict[int, int] = {}  # band uid -> version last drawn
        self._seen_version = -1
        self._follow_y = 0  # where the view follows the live turn; scrolled above it, it stays put
        self._strip_cache: LRUCache[tuple[object, ...], Strip] = LRUCache(2048)
        self._diagnoses: dict[int, TurnDiagnosis] = {}  # band uid -> its diagnosis, once the turn ended
        self._cell_styles: dict[tuple[Color | None, Color | None, bool], Style] = {}

    # -- the app's API --------------------------------------------------------------

    def refresh_timeline(self) -> None:
        """Shows what the timeline gained since the last call: cheap when nothing did."""
        if self.timeline.version != self._seen_version:
            self._sync()

    def set_diagnosis(self, turn: int, diagnosis: TurnDiagnosis) -> None:
        """A turn that ended: its breakdown in the `why` lane, its worst finding on its title."""
        band = self.timeline.turns.get(turn)
        if band is None:
            return
        self._diagnoses[band.uid] = diagnosis
        y = self.band_y(turn)
        if y is not None:
            self.refresh_lines(y, BAND_HEIGHT)

    def compare(self, turn_a: int | None, turn_b: int | None = None) -> None:
        """Puts the bands of `turn_a` and `turn_b` first, side by side and highlighted;
        `compare(None)` restores the order. Turns not in the timeline yet are placed
        when they arrive."""
        self.compared = tuple(turn for turn in (turn_a, turn_b) if turn is not None)
        self._sync(redraw_all=True)
        self.scroll_to(y=0 if self.compared else self._follow_y, animate=False)

    def action_zoom_in(self) -> None:
        self._zoom_to(zoom_step(self.ms_per_cell, -1))

    def action_zoom_out(self) -> None:
        self._zoom_to(zoom_step(self.ms_per_cell, +1))

    def action_zoom_fit(self) -> None:
        self.fit = True
        self._sync(redraw_all=True)
        self.scroll_to(x=0, animate=False)

    # -- layout -----------------------------------------------------------------------

    @property
    def content_width(self) -> int:
        return self.scrollable_content_region.width

    @property
    def label_width(self) -> int:
        return WIDE_LABEL_WIDTH if self.content_width >= WIDE_WIDTH else NARROW_LABEL_WIDTH

    @property
    def plot_width(self) -> int:
        return max(self.content_width - self.label_width, 1)

    def band_y(self, turn: int) -> int | None:
        """The virtual row of a turn's title (what `refresh_lines` and scrolling use)."""
        for index, band in enumerate(self._bands):
            if band.turn == turn:
                return HEADER_HEIGHT + index * BAND_HEIGHT
        return None

    def _ordered_bands(self) -> list[TurnTimeline]:
        turns = self.timeline.turns
        first = [turns[turn] for turn in self.compared if turn in turns]
        return first + [band for band in turns.values() if band.turn not in self.compared]

    def _zoom_to(self, ms_per_cell: float) -> None:
        left_ms = self.scroll_offset.x * self.ms_per_cell  # keep the left edge's time in view
        self.fit = False
        self.ms_per_cell = ms_per_cell
        self._sync(redraw_all=True)
        self.scroll_to(x=left_ms / ms_per_cell, animate=False)

    def _sync(self, redraw_all: bool = False) -> None:
        """Brings bands, zoom and virtual size up to date; refreshes only the rows that changed."""
        self._seen_version = self.timeline.version
        follow = not self.compared and self.scroll_offset.y >= self._follow_y
        bands = self._ordered_bands()
        if [band.uid for band in bands] != [band.uid for band in self._bands]:
            redraw_all = True
        self._bands = bands
        if self.fit:
            ms_per_cell = fit_zoom(self.timeline.max_end_ms, self.plot_width)
            redraw_all = redraw_all or ms_per_cell != self.ms_per_cell
            self.ms_per_cell = ms_per_cell
        plot_cells = self._plot_cells()
        self.virtual_size = Size(self.label_width + plot_cells, HEADER_HEIGHT + len(bands) * BAND_HEIGHT)
        # The newest band, from its title down when the view is shorter than a band.
        self._follow_y = min(self.max_scroll_y, (len(bands) - 1) * BAND_HEIGHT) if bands else 0
        if follow and self.scroll_offset.y < self._follow_y:
            # Only ever down: a user who scrolled below the title (to the marks) stays there.
            self.scroll_to(y=self._follow_y, animate=False)
        if redraw_all:
            self.refresh()
        else:
            for index, band in enumerate(bands):
                if self._drawn_versions.get(band.uid) != band.version:
                    self.refresh_lines(HEADER_HEIGHT + index * BAND_HEIGHT, BAND_HEIGHT)
        self._drawn_versions = {band.uid: band.version for band in bands}

    def _plot_cells(self) -> int:
        """How wide the plot scrolls. Changing the virtual size costs a layout, so a
        growing turn must not change it every frame: fitted, the plot is the view;
        zoomed, it grows a quarter view at a time."""
        if self.fit:
            return self.plot_width
        step = max(self.plot_width // 4, 1)
        return math.ceil(self.timeline.max_end_ms / self.ms_per_cell / step) * step

    def on_mount(self) -> None:
        self._sync(redraw_all=True)

    def on_resize(self, event: Resize) -> None:
        self._sync(redraw_all=True)

    def notify_style_update(self) -> None:
        # A theme or CSS change: every cached row holds old colours.
        super().notify_style_update()
        self._strip_cache.clear()
        self._cell_styles.clear()
        self.refresh()

    # -- rendering --------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.content_width
        scroll_x, scroll_y = self.scroll_offset
        if y < HEADER_HEIGHT:
            key: tuple[object, ...] = ("axis", width, self.ms_per_cell, self.fit, scroll_x)
            return self._cached(key, lambda: self._render_axis(width, scroll_x))
        band_index, lane_index = divmod(y - HEADER_HEIGHT + scroll_y, BAND_HEIGHT)
        if band_index >= len(self._bands):
            return Strip.blank(width, self._base_style)
        band = self._bands[band_index]
        highlighted = band.turn in self.compared
        diagnosed = band.uid in self._diagnoses
        key = (band.uid, band.version, lane_index, width, self.ms_per_cell, scroll_x, highlighted, diagnosed)
        return self._cached(key, lambda: self._render_lane(band, LANES[lane_index], width, scroll_x, highlighted))

    def _cached(self, key: tuple[object, ...], render: Callable[[], Strip]) -> Strip:
        strip = self._strip_cache.get(key)
        if strip is None:
            strip = self._strip_cache[key] = render()
        return strip

    def _render_lane(self, band: TurnTimeline, lane: str, width: int, scroll_x: int, highlighted: bool) -> Strip:
        if lane == "title":
            return self._render_title(band, width, highlighted)
        row = LaneRow(scroll_x, self.ms_per_cell, max(width - self.label_width, 0))
        draw = {
            "llm": self._draw_llm,
            "chunk": self._draw_chunk,
            "tts": self._draw_tts,
            "play": self._draw_play,
            "marks": self._draw_marks,
            "why": self._draw_why,
        }[lane]
        draw(row, band)
        label = set_cell_size(self._lane_label(band, lane), self.label_width)
        return self._strip([Segment(label, self._style("waterfall--label")), *row.segments(self._cell_style)], width)

    def _strip(self, segments: Iterable[Segment], width: int) -> Strip:
        return Strip(segments).adjust_cell_length(width, self._base_style).simplify()

    def _render_axis(self, width: int, scroll_x: int) -> Strip:
        color = self._color("waterfall--axis")
        row = LaneRow(scroll_x, self.ms_per_cell, max(width - self.label_width, 0))
        interval = tick_interval(self.ms_per_cell)
        first = math.floor(scroll_x * self.ms_per_cell / interval)
        last = math.ceil((scroll_x + row.width) * self.ms_per_cell / interval)
        for k in range(first, last + 1):
            t = k * interval
            row.tick(t, color)
            row.text(math.floor(row.x(t)) + 1, format_duration(t), color)
        zoom = format_duration(self.ms_per_cell)
        label = f"{zoom}/cell{' fit' if self.fit else ''}" if self.label_width >= WIDE_LABEL_WIDTH else zoom
        label = set_cell_size(label, self.label_width)
        return self._strip([Segment(label, self._style("waterfall--axis")), *row.segments(self._cell_style)], width)

    def _render_title(self, band: TurnTimeline, width: int, highlighted: bool) -> Strip:
        base = self._style("waterfall--compare" if highlighted else "waterfall--title")
        prefix = f"{'▶' if highlighted else ' '}#{band.turn} "
        details = self._title_details(band, wide=width >= WIDE_WIDTH)
        if width - cell_len(prefix) - _details_cells(details) < MIN_TITLE_TEXT:
            details = [detail for detail in details if detail[2]]
        text_cells = max(width - cell_len(prefix) - _details_cells(details), 0)
        # Newlines and tabs would break the row; control characters (a trace may come from
        # anywhere) are shown escaped, never sent to the terminal.
        text = " ".join(visible(band.text).split())
        if cell_len(text) > text_cells:
            text = set_cell_size(text, max(text_cells - 1, 0)) + "…"
        segments = [Segment(prefix, base), Segment(set_cell_size(text, text_cells), base)]
        for detail, component, _ in details:
            segments += [Segment(" ", base), Segment(detail, base + Style(color=self._color(component)))]
        return self._strip(segments, width)

    def _title_details(self, band: TurnTimeline, wide: bool) -> list[tuple[str, str, bool]]:
        """(text, component class, essential) shown right of the user's text; a narrow
        title keeps only the essential ones: the status and a TTS path that is not the
        persistent session (a fallback is never silent)."""
        details: list[tuple[str, str, bool]] = []
        if band.strategy:
            details.append((band.strategy, "waterfall--muted", False))
        if band.context_trim:
            # A block drop re-evaluated the whole prompt (a slow first token); a shift kept the cache.
            dropped, how = band.context_trim
            block = how != "shift"
            details.append((f"ctx -{dropped} msgs ({how})", "waterfall--cancelled" if block else "waterfall--muted", block))
        path = band.tts_path
        if path:
            name = "FALLBACK" if path == "fallback_rest" else path
            reason = f" ({band.tts_path_reason})" if band.tts_path_reason and (wide or path == "fallback_rest") else ""
            details.append((name + reason, PATH_CLASSES[path], path != "persistent"))
        diagnosis = self._diagnoses.get(band.uid)
        worst = diagnosis.worst if diagnosis is not None else None
        if worst is not None:
            details.append((f"{'✖' if worst.severity == 'CRITICAL' else '⚠'} {worst.label or worst.code}",
                            FINDING_CLASSES[worst.severity], True))
        status = "● live" if band.live else band.status
        if band.stopped_ms is not None:
            status += f" at {band.stopped_ms:.0f}ms"
        if wide and band.status_detail:
            status += f": {band.status_detail}"
        details.append((status, STATUS_CLASSES[band.status], True))
        return [(visible(text), component, essential) for text, component, essential in details]

    def _lane_label(self, band: TurnTimeline, lane: str) -> str:
        name = LANE_NAMES[lane]
        if self.label_width < WIDE_LABEL_WIDTH:
            return name
        figures = {
            "llm": f"{len(band.token_ms)} tok",
            "chunk": f"{sum(1 for c in band.chunks.values() if c.emit_ms is not None)} chunks",
            "tts": f"{sum(1 for c in band.chunks.values() if c.send_ms is not None)} sent",
            "play": f"{self._played_ms(band) / 1000:.1f}s",
            "marks": "ms",
            "why": self._waited(band),
        }
        return f"{name:<6}{figures[lane]:>9}"

    def _waited(self, band: TurnTimeline) -> str:
        diagnosis = self._diagnoses.get(band.uid)
        if diagnosis is None or not diagnosis.breakdown.stages:
            return ""
        return f"{diagnosis.breakdown.total_ms:.0f}ms"

    @staticmethod
    def _played_ms(band: TurnTimeline) -> float:
        return sum(
            c.play_end_ms - c.play_start_ms
            for c in band.chunks.values()
            if c.play_start_ms is not None and c.play_end_ms is not None
        )

    @staticmethod
    def _open_end(band: TurnTimeline) -> float:
        """Where a span still waiting for its end stops: the turn's stop, or its latest event."""
        return band.stopped_ms if band.stopped_ms is not None else band.end_ms

    def _draw_llm(self, row: LaneRow, band: TurnTimeline) -> None:
        times = band.token_ms
        first = bisect_left(times, row.origin * row.ms_per_cell)
        last = bisect_left(times, (row.origin + row.width) * row.ms_per_cell)
        counts: dict[int, int] = {}
        for t in times[first:last]:
            cell = math.floor(row.x(t))
            counts[cell] = counts.get(cell, 0) + 1
        color = self._color("waterfall--token")
        for t in times[first:last]:
            cell = math.floor(row.x(t))
            if counts[cell] == 1:
                row.tick(t, color)  # a lone token keeps its position within the cell
            else:
                # Denser than the zoom resolves: a double tick, then a solid cell.
                row.glyph(cell, "║" if counts[cell] == 2 else "█", color)

    def _draw_chunk(self, row: LaneRow, band: TurnTimeline) -> None:
        for chunk in band.chunks.values():
            if chunk.start_ms is not None and chunk.emit_ms is not None:
                reason_class = REASON_CLASSES.get(chunk.reason, REASON_CLASSES["fragment"])
                row.span(chunk.start_ms, chunk.emit_ms, self._color(reason_class))
        pending = band.pending_chunk_start_ms
        if pending is not None:
            # Text the chunker holds: the wait that the seed's run-on sentence made 6 s long.
            row.span(pending, self._open_end(band), self._color("waterfall--chunk-pending"))

    def _draw_tts(self, row: LaneRow, band: TurnTimeline) -> None:
        waiting = self._color("waterfall--tts-wait")
        receiving = self._color("waterfall--tts-audio")
        for chunk in band.chunks.values():
            if chunk.send_ms is not None:
                end = chunk.first_audio_ms if chunk.first_audio_ms is not None else self._open_end(band)
                row.span(chunk.send_ms, end, waiting)
        # Receiving on top: TTS queues the next chunk's text while it still sends audio.
        for chunk in band.chunks.values():
            if chunk.first_audio_ms is not None and chunk.last_audio_ms is not None:
                row.span(chunk.first_audio_ms, chunk.last_audio_ms, receiving)

    def _draw_play(self, row: LaneRow, band: TurnTimeline) -> None:
        cut = self._color("waterfall--cut")
        for chunk in band.chunks.values():
            if chunk.play_start_ms is None:
                continue
            end = chunk.play_end_ms if chunk.play_end_ms is not None else self._open_end(band)
            # Alternate shades: back-to-back chunks would otherwise merge into one bar.
            shade = "waterfall--play-alt" if chunk.index % 2 else "waterfall--play"
            row.span(chunk.play_start_ms, end, cut if chunk.cut else self._color(shade))
            if chunk.cut:
                row.glyph(math.floor(row.x(end)) + 1, CUT_MARK, cut)
        # Where playback ran dry mid-reply: a stutter the listener heard.
        gap = self._color("waterfall--gap")
        for start_ms, end_ms in band.gaps:
            row.span(start_ms, end_ms, gap)

    def _draw_marks(self, row: LaneRow, band: TurnTimeline) -> None:
        if band.stopped_ms is not None:
            # Drawn first so metric labels win the cell; the title says when the turn stopped.
            row.glyph(math.floor(row.x(band.stopped_ms)), CUT_MARK, self._color(STATUS_CLASSES[band.status]))
        names = METRIC_LABELS if self.label_width >= WIDE_LABEL_WIDTH else SHORT_MARKER_NAMES
        color = self._color("waterfall--marker")
        marks = [(f"{names[key]} {ms:.0f}", ms) for key, ms in band.marker_items()]
        for cluster in _marker_clusters(marks, row.ms_per_cell):
            label_at = math.floor(row.x(cluster[-1][1])) + 1
            for label, ms in cluster:
                row.tick(ms, color)
                row.text(label_at, label, color)
                label_at += len(label) + 1

    def _draw_why(self, row: LaneRow, band: TurnTimeline) -> None:
        diagnosis = self._diagnoses.get(band.uid)
        if diagnosis is None:
            return
        for stage in diagnosis.breakdown.stages:
            if stage.ms > 0:
                row.span(stage.start_ms, stage.end_ms, self._color(STAGE_CLASSES.get(stage.key, "waterfall--muted")))

    # -- styles -----------------------------------------------------------------------

    def _style(self, component: str) -> Style:
        return self.get_component_rich_style(component)

    def _color(self, component: str) -> Color:
        color = self._style(component).color
        return color if color is not None else Color.default()

    @property
    def _base_style(self) -> Style:
        """The widget's own style, cached (`rich_style` is recomputed on every access)."""
        return self._cell_style(None, None, False)

    def _cell_style(self, fg: Color | None, bg: Color | None, reverse: bool) -> Style:
        key = (fg, bg, reverse)
        style = self._cell_styles.get(key)
        if style is None:
            base = self.rich_style
            if reverse and base.bgcolor is not None and not base.bgcolor.is_default:
                # The background is known: the same picture without reverse video, which
                # some renderers (SVG snapshots) draw differently.
                fg, bg, reverse = base.bgcolor, fg, False
            style = self._cell_styles[key] = base + Style(color=fg, bgcolor=bg, reverse=reverse)
        return style
