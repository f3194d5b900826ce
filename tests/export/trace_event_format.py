"""What a Trace Event Format loader (Perfetto's JSON importer, chrome://tracing's catapult)
expects of a file, as rules a test can check. From the format's specification ("Trace Event
Format", the JSON Object Format): no pip-installable validator for it is kept up; Perfetto's
own parser is a native binary that downloads at run time.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

# Every phase the specification defines; anything else a loader rejects or ignores.
KNOWN_PHASES = set("BEXiICbneSTpFsftPONDMVvRc(),=") | {"I"}
METADATA_NAMES = {"process_name", "process_labels", "process_sort_index", "thread_name", "thread_sort_index"}
INSTANT_SCOPES = {"g", "p", "t"}
DISPLAY_TIME_UNITS = {"ms", "ns"}
EPSILON_US = 1e-6


class FormatError(AssertionError):
    pass


def _number(event: dict[str, Any], key: str) -> float:
    value = event.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FormatError(f"{key} must be a finite number: {event}")
    if value < 0:
        raise FormatError(f"{key} must not be negative: {event}")
    return float(value)


def _integer(event: dict[str, Any], key: str) -> int:
    value = event.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(f"{key} must be an integer: {event}")
    return value


def validate(data: bytes) -> dict[str, Any]:
    """Checks a Chrome trace file's bytes against the format; returns the parsed object."""
    trace = json.loads(data.decode("utf-8"))
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        raise FormatError("the JSON Object Format needs an object with a traceEvents array")
    if "displayTimeUnit" in trace and trace["displayTimeUnit"] not in DISPLAY_TIME_UNITS:
        raise FormatError(f"displayTimeUnit must be one of {DISPLAY_TIME_UNITS}")
    named_processes: set[int] = set()
    named_threads: set[tuple[int, int]] = set()
    used_threads: set[tuple[int, int]] = set()
    complete: dict[tuple[int, int], list[tuple[float, float, str]]] = defaultdict(list)
    for event in trace["traceEvents"]:
        if not isinstance(event, dict):
            raise FormatError(f"an event must be an object: {event!r}")
        ph = event.get("ph")
        if ph not in KNOWN_PHASES:
            raise FormatError(f"unknown phase {ph!r}: {event}")
        if not isinstance(event.get("name"), str):
            raise FormatError(f"an event needs a string name: {event}")
        if "args" in event and not isinstance(event["args"], dict):
            raise FormatError(f"args must be an object: {event}")
        pid = _integer(event, "pid")
        if ph == "M":
            if event["name"] not in METADATA_NAMES:
                raise FormatError(f"unknown metadata event {event['name']!r}")
            args = event.get("args", {})
            if event["name"].endswith("_name"):
                if not isinstance(args.get("name"), str) or not args["name"]:
                    raise FormatError(f"{event['name']} needs args.name: {event}")
                if event["name"] == "process_name":
                    named_processes.add(pid)
                else:
                    named_threads.add((pid, _integer(event, "tid")))
            if event["name"].endswith("_sort_index") and not isinstance(args.get("sort_index"), int):
                raise FormatError(f"{event['name']} needs an integer args.sort_index: {event}")
            continue
        tid = _integer(event, "tid")
        used_threads.add((pid, tid))
        ts = _number(event, "ts")
        if ph == "X":
            dur = _number(event, "dur")
            complete[(pid, tid)].append((ts, ts + dur, event["name"]))
        elif ph in ("i", "I") and event.get("s", "t") not in INSTANT_SCOPES:
            raise FormatError(f"instant scope must be one of {INSTANT_SCOPES}: {event}")
    for track, spans in complete.items():
        _check_nesting(track, spans)
    unnamed = used_threads - named_threads
    if unnamed:
        raise FormatError(f"threads without a thread_name: {sorted(unnamed)}")
    if {pid for pid, _ in used_threads} - named_processes:
        raise FormatError("a process without a process_name")
    return trace


def _check_nesting(track: tuple[int, int], spans: list[tuple[float, float, str]]) -> None:
    """Complete events on one thread must nest: a slice that ends after its parent is misdrawn."""
    stack: list[tuple[float, float, str]] = []
    for start, end, name in sorted(spans, key=lambda s: (s[0], -s[1])):
        while stack and stack[-1][1] <= start + EPSILON_US:
            stack.pop()
        if stack and end > stack[-1][1] + EPSILON_US:
            raise FormatError(f"track {track}: {name!r} [{start}, {end}] overlaps {stack[-1][2]!r} "
                              f"[{stack[-1][0]}, {stack[-1][1]}] without nesting in it")
        stack.append((start, end, name))
