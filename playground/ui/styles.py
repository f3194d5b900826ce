"""Colours shared by the UI's views, so a chunk reason looks the same everywhere."""

REASON_STYLES = {
    "strong": "green",
    "weak": "yellow",
    "deadline": "magenta",
    "underrun": "bright_magenta",
    "max_chars": "red",
    "flush": "blue",
    "words": "cyan",
    "fragment": "cyan",
}
PATH_STYLES = {"persistent": "green", "reconnected": "yellow", "fallback_rest": "bold red"}
