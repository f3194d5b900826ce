"""The native trace format as a file, written atomically: never a partial file."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from playground.core.events import TraceEvent, header_line
from playground.export.atomic import atomic_open


def write_trace_jsonl(path: str | Path, header: dict[str, Any], events: Iterable[TraceEvent]) -> Path:
    """Writes the session header and `events` to `path` (JSON Lines, one object a line)."""
    path = Path(path)
    with atomic_open(path) as f:
        f.write(json.dumps(header_line(header), ensure_ascii=False) + "\n")
        f.writelines(json.dumps(event.to_json(), ensure_ascii=False) + "\n" for event in events)
    return path
