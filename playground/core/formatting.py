"""How the commands, benchmarks and the TUI write numbers and quotes in their tables."""

from __future__ import annotations


def format_ms(value: float | None) -> str:
    """Milliseconds, whole: "123", or "-" when not measured."""
    return "-" if value is None else f"{value:.0f}"


def format_ratio(value: float | None) -> str:
    """A factor: "x1.23", or "-" when there is none."""
    return "-" if value is None else f"x{value:.2f}"


def shorten(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def format_gaps(metrics) -> str:
    """A turn's playback gaps (`TurnMetrics`): "0", "2/180ms", or "-" when not measured."""
    if metrics.gaps is None:
        return "-"
    return f"{metrics.gaps}/{metrics.gaps_ms:.0f}ms" if metrics.gaps else "0"
