"""The native trace format (JSON Lines): the session header, then one event a line.

One writer for both ways a trace is written, and like every export it holds no secret
(`playground.core.scrub`): a trace is made to be shared.

- live, while a session runs (`run --trace`, the TUI): `open_trace_writer(path, header)`
  following the session's trace; events are buffered and written when a turn ends;
- a whole trace at once (`replay --trace`, the benchmarks, `export`): `write_trace_jsonl`,
  atomically, never a partial file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from playground.core.events import ConfigChange, Trace, TraceEvent, TtsSession, TurnSummary
from playground.core.scrub import Scrubber, known_secrets
from playground.core.tracefile import encode_json, header_line
from playground.export.atomic import atomic_open

# Events after which what is buffered is written: the end of a turn, and what a reader of a
# session cut short most needs (how TTS was reached, the preset in force).
_FLUSH_AFTER = (TurnSummary, TtsSession, ConfigChange)


class JsonlTraceWriter:
    """Writes a trace to `file`: the scrubbed header at once, then each event given (`writer(event)`).

    Events are buffered and written when a turn ends, a TTS session changes or the preset
    changes (never a file write per token on the event loop); `flush` writes whatever is left.
    """

    def __init__(self, file: IO[bytes], header: dict[str, Any], ahead: Iterable[TraceEvent] = ()) -> None:
        """`ahead`: the events to come, when known (a whole trace): their secrets are removed from the start."""
        self._file = file
        self._pending: list[TraceEvent] = []
        self._header = header
        # a preset change may name another key's variable
        self._config_changes = [e for e in ahead if isinstance(e, ConfigChange)]
        self._scrubber = Scrubber(known_secrets(header, self._config_changes))
        self._file.write(encode_json(self._scrubber.value(header_line(header))) + b"\n")
        self._file.flush()

    def __call__(self, event: TraceEvent) -> None:
        self._pending.append(event)
        if isinstance(event, ConfigChange):
            self._config_changes.append(event)
            self._scrubber.secrets = known_secrets(self._header, self._config_changes)
        if isinstance(event, _FLUSH_AFTER):
            self.flush()

    def follow(self, trace: Trace) -> None:
        """Writes what `trace` holds so far, then every event it gets (call on the trace's thread)."""
        for event in trace.events:
            self(event)
        trace.subscribe(self)

    def flush(self) -> None:
        if self._pending and not self._file.closed:
            line = self._scrubber.line
            self._file.write(b"".join(line(event) + b"\n" for event in self._pending))
            self._file.flush()
            self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._file.close()


def open_trace_writer(path: str | Path, header: dict[str, Any]) -> JsonlTraceWriter:
    """A live writer on a new file at `path`; `close()` it when the session ends."""
    return JsonlTraceWriter(Path(path).open("wb"), header)


def write_trace_jsonl(path: str | Path, header: dict[str, Any], events: Iterable[TraceEvent]) -> Path:
    """Writes the session header and `events` to `path`, scrubbed, atomically. `events` is read
    twice (first for the preset changes, whose keys are scrubbed from the start): a list or a
    `TraceFile`, which is read from disk each time rather than held."""
    if iter(events) is events:
        events = list(events)
    path = Path(path)
    with atomic_open(path, "wb") as f:
        writer = JsonlTraceWriter(f, header, ahead=events)
        for event in events:
            writer(event)
        writer.flush()
    return path
