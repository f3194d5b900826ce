"""How the commands, benchmarks and the TUI write numbers, quotes and outside text, and the
colour of each chunk reason: shared so that every view says the same thing the same way."""

from __future__ import annotations

import re

# Chunk reasons (docs/chunker.md) by colour: the conversation pane, the waterfall and the
# CLI use these names (rich / ANSI standard colours; the waterfall's CSS prefixes `ansi_`).
REASON_COLORS = {
    "strong": "green",
    "weak": "yellow",
    "deadline": "magenta",
    "underrun": "bright_magenta",
    "max_chars": "red",
    "flush": "blue",
    "words": "cyan",
    "fragment": "cyan",
}

# Control characters (C0 but newline and tab, DEL, C1) and lone surrogates: what a terminal
# would act on (a clear-screen, a title change, a bell) or could not encode.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` safe to show in a terminal: control characters and escape sequences from a user,
    a model or a trace are written as escapes (`\\x1b[2J`), never acted on."""
    return _UNPRINTABLE.sub(_escape, text)


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
