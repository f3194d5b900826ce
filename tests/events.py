"""Trace events for tests that build a turn by hand: the fields a test sets, and neutral values
("", 0, None, the first allowed value ...) for the required ones it does not care about."""

from __future__ import annotations

import types
import typing
from typing import Any

from msgspec import structs

from playground.core import events as ev


# Times that are the event's own unless a test says otherwise.
_AT_T_MS = {(ev.Chunk, "start_ms"), (ev.Chunk, "input_ms"), (ev.PlayGap, "from_ms")}


def _neutral(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return typing.get_args(annotation)[0]
    if origin in (typing.Union, types.UnionType):
        return None
    if origin is not None:
        return origin()  # dict, list
    if isinstance(annotation, type) and issubclass(annotation, (ev.Played,)):
        return ev.Played(chunks=[], ms=0.0)
    return annotation()  # str, int, float, bool, Usage


def event(kind: str | type[ev.TraceEvent], turn: int, t_ms: float, /, **fields: Any) -> ev.TraceEvent:
    """A `kind` event ("chunk" or ev.Chunk) with `fields`, the other required fields neutral."""
    cls = ev.EVENT_TYPES[kind] if isinstance(kind, str) else kind
    hints = typing.get_type_hints(cls)
    for field in structs.fields(cls):
        if field.required and field.name not in fields and field.name not in ("turn", "t_ms"):
            fields[field.name] = t_ms if (cls, field.name) in _AT_T_MS else _neutral(hints[field.name])
    return cls(turn=turn, t_ms=t_ms, **fields)
