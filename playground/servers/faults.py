"""The faults every loopback server can inject: one type, one way to arm it.

A test arms a fault with `server.inject(Fault(...))`; a `playground serve-tts` or
`serve-llm` user arms the same faults with `--fault SPEC` at start, or while the server
runs with `POST /loopback/faults` (the SPEC as the body, or the fault as a JSON object).
A SPEC is the kind, then its settings: `close:after=2,code=1006`, `reject:status=429`,
`stall:after=1,seconds=4`, `outage:after=3,seconds=2`.

Each fault strikes once. `reject` strikes the next handshake or request; every other
kind is claimed by the next reply that sends audio (a TTS context, or Deepgram's audio
up to a Flushed) or content (an LLM stream), and strikes when `after` audio frames or
content tokens of that reply have been sent. Faults armed together strike together,
in the order armed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from playground.core.clock import now_ms

FaultKind = Literal["reject", "close", "stall", "outage", "malformed", "unknown", "wrong_format", "error", "burst"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
TTS_FAULTS = frozenset({"reject", "close", "stall", "outage", "malformed", "unknown", "wrong_format"})
LLM_FAULTS = frozenset({"reject", "close", "stall", "malformed", "error", "burst"})
WRONG_AUDIO = ("wav", "mp3", "rate")
FAULTS_PATH = "/loopback/faults"  # the control endpoint every loopback server has


class FaultError(ValueError):
    """A fault that cannot be armed: an unknown kind or setting, or one this server lacks."""


@dataclass
class Fault:
    """One fault. `kind`:

    - "reject": refuse the next WebSocket handshake or HTTP request with HTTP `status`
      (the provider's error body; `retry_after` adds a Retry-After header)
    - "close": end the connection after `after` frames/tokens. On a WebSocket `code` 1006
      drops the TCP connection with no close frame, any other code is a close frame with
      `reason` (the provider's own error message when empty); an LLM stream is cut in the
      middle of the event of token `after`
    - "stall": send nothing for `seconds` after `after` frames/tokens (an LLM's slow first
      token is `after=0`, a gap between tokens `after=N`)
    - "outage": after `after` frames the whole server goes away for `seconds`: it stops
      listening and drops every connection, then listens again on the same port
    - "malformed": a message that is not valid JSON (for the LLM: the event of token `after`)
    - "unknown": a JSON message of a type no client knows
    - "wrong_format": from frame `after` on, the reply's audio as a WAV file ("wav"), MP3
      frames ("mp3") or at twice the sample rate asked for ("rate"), per `audio`
    - "error": the LLM stream ends with an error event instead of token `after`
    - "burst": the LLM holds `count` tokens from token `after` on and sends them at once
    """

    kind: FaultKind
    after: int = 0
    status: int = 401
    retry_after: int | None = None
    code: int = 1006
    reason: str = ""
    seconds: float = 5.0
    audio: str = "wav"
    count: int = 5

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise FaultError(f"fault kind {self.kind!r}: use one of {', '.join(FAULT_KINDS)}")
        if self.after < 0 or self.seconds < 0 or self.count < 1:
            raise FaultError(f"fault {self.kind}: after and seconds must be >= 0 and count >= 1")
        if self.audio not in WRONG_AUDIO:
            raise FaultError(f"fault wrong_format: audio {self.audio!r}: use one of {', '.join(WRONG_AUDIO)}")
        if not 100 <= self.status <= 599:
            raise FaultError(f"fault reject: status {self.status} is not an HTTP status")

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """A fault from `kind:setting=value,...` (the form `--fault` and the control endpoint take)."""
        kind, _, settings = spec.strip().partition(":")
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for pair in filter(None, (s.strip() for s in settings.split(","))):
            name, sep, text = pair.partition("=")
            name = name.strip()
            if not sep or name not in types or name == "kind":
                raise FaultError(f"fault {spec!r}: {pair!r} is not setting=value with a setting of "
                                 f"{', '.join(n for n in types if n != 'kind')}")
            values[name] = _convert(spec, name, str(types[name]), text.strip())
        return cls(kind, **values)  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise FaultError("a fault as JSON is an object such as {\"kind\": \"close\", \"after\": 2}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown or "kind" not in data:
            raise FaultError(f"fault {data!r}: needs `kind`; known settings: {', '.join(sorted(names))}")
        return cls(**data)


def _convert(spec: str, name: str, kind: str, text: str) -> Any:
    try:
        if "int" in kind:
            return None if text == "none" else int(text)
        if "float" in kind:
            return float(text)
    except ValueError:
        raise FaultError(f"fault {spec!r}: {name}={text!r} is not a number") from None
    return text


@dataclass
class _Claimed:
    fault: Fault
    strikes_at: int  # the reply's frame/token count when it strikes


@dataclass
class Faults:
    """The faults armed on one server (those it can inject: `kinds`) and a record of each strike."""

    kinds: frozenset[str]
    armed: list[Fault] = field(default_factory=list)
    struck: list[tuple[str, float]] = field(default_factory=list)  # (kind, now_ms) as each struck

    def inject(self, *faults: Fault) -> None:
        for fault in faults:
            if fault.kind not in self.kinds:
                raise FaultError(f"fault {fault.kind}: this server injects only {', '.join(sorted(self.kinds))}")
        self.armed.extend(faults)

    def take_reject(self) -> Fault | None:
        """The armed `reject` that strikes this handshake or request, if any."""
        for fault in self.armed:
            if fault.kind == "reject":
                self.armed.remove(fault)
                self.strike(fault)
                return fault
        return None

    def take_reply_faults(self) -> list[Fault]:
        taken = [f for f in self.armed if f.kind != "reject"]
        self.armed = [f for f in self.armed if f.kind == "reject"]
        return taken

    def strike(self, fault: Fault) -> None:
        self.struck.append((fault.kind, now_ms()))

    def reply(self) -> ReplyFaults:
        return ReplyFaults(self)


class ReplyFaults:
    """The faults one reply claimed, by the frame or token count at which each strikes."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._claimed: list[_Claimed] = []
        self.sent = 0  # frames or tokens of this reply sent so far
        self.wrong_audio: str | None = None  # set by a `wrong_format` fault: the rest of the reply's audio

    def due(self) -> list[Fault]:
        """The faults that strike before the next frame or token (claiming any newly armed)."""
        self._claimed += [_Claimed(f, self.sent + f.after) for f in self._faults.take_reply_faults()]
        due = [c.fault for c in self._claimed if c.strikes_at == self.sent]
        if due:
            self._claimed = [c for c in self._claimed if c.strikes_at != self.sent]
            for fault in due:
                self._faults.strike(fault)
        return due


def fault_from_request_body(body: bytes) -> Fault:
    """A fault posted to the control endpoint: a JSON object, or a SPEC as plain text."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise FaultError(f"the fault is not valid JSON: {exc}") from None
        return Fault.from_json(data)
    return Fault.parse(text)


def add_fault_argument(parser: argparse.ArgumentParser) -> None:
    """`--fault SPEC` for the commands that start a loopback server."""
    parser.add_argument("--fault", metavar="SPEC", action="append", default=[],
                        help="arm a fault, e.g. close:after=2,code=1006 or reject:status=429 (repeatable; each "
                             f"strikes once; POST a SPEC to {FAULTS_PATH} to arm one while the server runs)")
