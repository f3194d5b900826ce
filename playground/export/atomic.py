"""Files written atomically: the content goes to a temporary file in the target's folder,
renamed into place only once complete, so a reader (or a crash) never sees a partial file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", newline: str | None = None,
                errors: str | None = None) -> Iterator[IO[Any]]:
    """Opens a temporary file next to `path` ("w" text, "wb" bytes; `errors` as for `open`); on a
    clean exit it replaces `path`, on an exception it is removed and `path` is left as it was."""
    path = Path(path)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file the user asked for, not the temporary one
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        # mkstemp creates the file private (0600); an export is meant to be shared, so it gets the
        # mode of the file it replaces, or the usual 0644.
        os.chmod(temp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding, newline=newline, errors=errors) as f:
            yield f
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
