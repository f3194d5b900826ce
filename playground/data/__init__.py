"""Files shipped with the package, reachable by name: example traces and conversation scripts.

    playground compare seed-turn4          # playground/data/traces/seed-turn4.jsonl
    playground bench --script phone-call   # playground/data/scripts/phone-call.txt

A path to an existing file always wins over a shipped name.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_KINDS = {"trace": ("traces", ".jsonl"), "script": ("scripts", ".txt")}


def shipped(kind: str) -> dict[str, Path]:
    """Name -> file of the shipped traces or scripts."""
    folder, suffix = _KINDS[kind]
    root = resources.files(__name__) / folder
    return {Path(p.name).stem: Path(str(p)) for p in root.iterdir() if p.name.endswith(suffix)}


def find(kind: str, name_or_path: str) -> Path:
    """The file `name_or_path` names: an existing path, or the name of a shipped `kind` file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        inside = sorted(p.name for p in path.glob(f"*{_KINDS[kind][1]}"))
        raise ValueError(f"{name_or_path}: a folder, not a {kind} file" + (
            f" (it holds: {', '.join(inside[:5])}{', …' if len(inside) > 5 else ''})" if inside else ""))
    found = shipped(kind)
    if name_or_path in found:
        return found[name_or_path]
    raise ValueError(f"{name_or_path}: no such {kind} file, and no shipped {kind} of that name "
                     f"(shipped: {', '.join(sorted(found)) or 'none'})")
