"""The trace file (JSON Lines, docs/traces.md, "The trace file"): a session header, then one event a line.

Reading checks what it reads and says, in one line naming the file, what it cannot:

- a file that is not UTF-8 JSON Lines, or whose first line is not a session header;
- a trace version this playground does not read (TRACE_VERSION; older ones it does);
- an event line that is not an event of a declared type with its declared fields (file:line).

Two things a trace from a crash or a newer playground has are skipped, and said: a last line
cut off mid-write (with the events of the turn it left incomplete: every complete turn is
read), and events of a type this playground does not know. They are said through the
reader's `warn` callback; a reader given none refuses such a file instead (nothing is ever
skipped silently).

    header, events = read_trace("turns.jsonl", warn=console.note)
    trace = TraceFile("long.jsonl", warn=console.note)   # re-read on each pass, a turn at a time
    for event in trace: ...
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Union

import msgspec

from playground.core import events as ev

SESSION = "session"  # the header line's type
READABLE_VERSIONS = (1,)

Warn = Callable[[str], None]

_decoder = msgspec.json.Decoder(Union[tuple(ev.EVENT_TYPES.values())])  # type: ignore[valid-type]
_encoder = msgspec.json.Encoder()
# A line's turn number, to know which turn a line cut off mid-write belonged to.
_TURN = re.compile(rb'"turn"\s*:\s*(\d+)')
# The start of an event as msgspec encodes it: its tag, turn and time.
_COMPACT_HEAD = re.compile(rb'\{"type":("[^"]*"),"turn":(-?\d+),"t_ms":([^,}]+)')


class TraceError(ValueError):
    """A trace that cannot be read; the message names the file (and line)."""


def header_line(header: dict[str, Any]) -> dict[str, Any]:
    return {"type": SESSION, "version": ev.TRACE_VERSION, **header}


def encode_event(event: ev.TraceEvent) -> bytes:
    """The event's line (without the line end), laid out as trace lines always were: turn, t_ms
    and type first, a space after each separator (docs/traces.md, "The trace file")."""
    try:
        compact = _encoder.encode(event)  # {"type":..,"turn":..,"t_ms":..,<fields>}: the tag comes first
    except UnicodeEncodeError:  # text that was never valid Unicode (a lone surrogate)
        data = msgspec.to_builtins(event)
        return encode_json({"turn": data.pop("turn"), "t_ms": data.pop("t_ms"), "type": data.pop("type"), **data})
    head = _COMPACT_HEAD.match(compact)
    assert head is not None, compact
    return msgspec.json.format(b'{"turn":%s,"t_ms":%s,"type":%s%s' % (head[2], head[3], head[1], compact[head.end():]),
                               indent=0)


def encode_json(obj: Any, compact: bool = False) -> bytes:
    """Any JSON value as one line, as Python's json module writes it (a space after each
    separator; none when `compact`); a lone surrogate is written as its JSON escape ("\\udce9"),
    which reads back as the same string, instead of failing the whole write."""
    try:
        line = _encoder.encode(obj)
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":") if compact else None
                          ).encode("utf-8", "backslashreplace")
    return line if compact else msgspec.json.format(line, indent=0)


def decode_event(line: bytes) -> ev.TraceEvent:
    """One event line; raises msgspec.DecodeError (not JSON) or msgspec.ValidationError (not an event)."""
    try:
        return _decoder.decode(line)
    except msgspec.DecodeError:
        # msgspec refuses a lone surrogate's escape, which the writer produces (encode_json)
        obj = json.loads(line)
        return msgspec.convert(obj, type=_decoder.type)


def _not_utf8(path: Path, lineno: int, line: bytes) -> str | None:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"{path}:{lineno}: not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1}): "
                f"not a trace (JSON Lines, as --trace and export write them)")
    return None


def _lines(f: IO[bytes]) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, line, is the file's last line) of each non-blank line."""
    previous: tuple[int, bytes] | None = None
    for lineno, line in enumerate(f, 1):
        if not line.strip():
            continue
        if previous is not None:
            yield previous[0], previous[1], False
        previous = (lineno, line)
    if previous is not None:
        yield previous[0], previous[1], True


class TraceFile:
    """A trace on disk, read a line at a time: `header` at once (and its version checked), the
    events on each iteration (a new pass over the file, so a long trace is never all in memory)."""

    def __init__(self, path: str | Path, warn: Warn | None = None) -> None:
        self.path = Path(path)
        self.warn = warn
        self._said: set[str] = set()  # what was skipped is said once, however many passes read it
        if self.path.is_dir():
            raise TraceError(f"{self.path}: a folder, not a trace file")
        with self.path.open("rb") as f:
            first = next(_lines(f), None)
        if first is None:
            raise TraceError(f"{self.path}: empty, not a trace")
        self.header = self._header(*first[:2])

    def _header(self, lineno: int, line: bytes) -> dict[str, Any]:
        problem = _not_utf8(self.path, lineno, line)
        if problem:
            raise TraceError(problem)
        try:
            header = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            raise TraceError(f"{self.path}:{lineno}: not a trace: its first line is not JSON ({exc})") from None
        if not isinstance(header, dict) or header.get("type") != SESSION:
            kind = f"a {header['type']!r} event" if isinstance(header, dict) and "type" in header else "no session header"
            raise TraceError(f"{self.path}:{lineno}: not a trace: it starts with {kind}, not the session header")
        version = header.get("version")
        if version not in READABLE_VERSIONS:
            newer = isinstance(version, int) and not isinstance(version, bool) and version > ev.TRACE_VERSION
            raise TraceError(
                f"{self.path}: trace version {version!r}, this playground reads version "
                f"{', '.join(map(str, READABLE_VERSIONS))}" + (
                    f" (written by playground {header.get('playground', '?')}: upgrade to read it)" if newer else ""))
        return header

    def _skip(self, message: str) -> None:
        if self.warn is None:
            raise TraceError(message)
        if message not in self._said:
            self._said.add(message)
            self.warn(message)

    def __iter__(self) -> Iterator[ev.TraceEvent]:
        unknown: dict[str, int] = {}
        # The events since the current turn's first one: a last line cut off mid-write drops
        # its turn, which never got to its end, from here.
        pending: list[ev.TraceEvent] = []
        current: int | None = None
        with self.path.open("rb") as f:
            lines = _lines(f)
            next(lines)  # the header
            for lineno, line, last in lines:
                try:
                    event = decode_event(line)
                except msgspec.ValidationError as exc:  # JSON, but not an event (caught first: a DecodeError too)
                    kind = _type_of(line)
                    if kind is not None and kind not in ev.EVENT_TYPES and kind != SESSION:
                        unknown[kind] = unknown.get(kind, 0) + 1
                        continue
                    raise TraceError(_problem(self.path, lineno, line, exc)) from None
                except (msgspec.DecodeError, ValueError) as exc:  # json.loads' errors are ValueErrors
                    if last and not line.endswith(b"\n"):
                        self._cut(lineno, line, pending, current)
                        break
                    raise TraceError(_problem(self.path, lineno, line, exc)) from None
                if event.turn != ev.SESSION_TURN and event.turn != current:
                    yield from pending
                    pending.clear()
                    current = event.turn
                if current is None:
                    yield event
                else:
                    pending.append(event)
        yield from pending
        if unknown:
            counts = ", ".join(f"{kind} x{n}" for kind, n in sorted(unknown.items()))
            self._skip(f"{self.path}: skipped {sum(unknown.values())} event(s) of types this playground does not "
                       f"know ({counts}): written by a newer playground?")

    def _cut(self, lineno: int, line: bytes, pending: list[ev.TraceEvent], current: int | None) -> None:
        found = _TURN.search(line)
        turn = int(found.group(1)) if found else None
        what = f"{self.path}:{lineno}: the last line is cut off (the trace was not closed: a crash while writing?)"
        incomplete = turn is not None and turn != ev.SESSION_TURN and turn == current and not any(
            isinstance(e, ev.TurnSummary) for e in pending if e.turn == turn)
        if incomplete:
            kept = [e for e in pending if e.turn != turn]
            pending[:] = kept
            self._skip(f"{what}; skipped it and turn {turn}, which it left incomplete; every complete turn is read")
        else:
            self._skip(f"{what}; skipped it")


def _type_of(line: bytes) -> str | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind if isinstance(kind, str) else None


def _problem(path: Path, lineno: int, line: bytes, exc: Exception) -> str:
    return _not_utf8(path, lineno, line) or f"{path}:{lineno}: not a trace event ({exc})"


def read_trace(path: str | Path, warn: Warn | None = None) -> tuple[dict[str, Any], list[ev.TraceEvent]]:
    """A whole trace: (session header, events). Errors (TraceError) name the file and line; what
    is skipped is said through `warn` (without one, such a trace is refused)."""
    trace = TraceFile(path, warn)
    return trace.header, list(trace)
