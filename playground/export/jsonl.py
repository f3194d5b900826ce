"""The native trace format as a file, written atomically: never a partial file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from playground.core.events import TraceEvent, header_line


def write_trace_jsonl(path: str | Path, header: dict[str, Any], events: Iterable[TraceEvent]) -> Path:
    """Writes the session header and `events` to `path` through a temporary file in the
    same folder, renamed into place only once complete."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(header_line(header), ensure_ascii=False) + "\n")
            for event in events:
                f.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
