"""Recording the phone leg's events. They are declared with every other trace event, in
`playground.core.events` (its section "the phone leg": `ev.CallLine`, `ev.PhoneMark`, ...);
here they are recorded with their values to the microsecond, as the phone's trace lines have
always had them."""

from __future__ import annotations

from typing import Any, TypeVar

from playground.core import events as ev
from playground.engine.session import Prelude

E = TypeVar("E", bound=ev.TraceEvent)


def _rounded(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: round(value, 3) if isinstance(value, float) else value for name, value in fields.items()}


def emit(clock: ev.TurnClock, kind: type[E], t_mono_ms: float, /, **fields: Any) -> E:
    """Records a `kind` event in `clock`'s turn at monotonic time `t_mono_ms`."""
    return clock.emit(kind, t_mono_ms, **_rounded(fields))


def prelude_entry(kind: type[ev.TraceEvent], t_mono_ms: float, /, **fields: Any) -> Prelude:
    """A `kind` event as an entry of `Session.start_turn`'s prelude (recorded right after turn.start)."""
    return kind, t_mono_ms, _rounded(fields)
