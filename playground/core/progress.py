"""The one progress callback type: loading models, opening sessions, writing exports."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Work under way: what is happening now, in a few words, and how far along it is
    (0 to 1) when that is known. Called from the thread doing the work."""

    def __call__(self, message: str, fraction: float | None = None) -> None: ...
