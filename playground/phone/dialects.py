"""The carriers' media-stream WebSocket protocols, message for message: Twilio Media Streams and
Telnyx media streaming.

Both carriers open a WebSocket to the agent and send JSON text messages: `connected`, then
`start` (the stream and call ids and the media format), then a `media` message every 20 ms
(base64 μ-law, 8 kHz, mono: 160 bytes), the agent's own `mark`s back once the audio before
them has played (or was dropped by a `clear`), and `stop` when the call ends. The agent sends
`media` (its speech, any length), `mark` (a named point in its audio) and `clear` (drop the
audio not played yet: barge-in).

| | Twilio | Telnyx |
| --- | --- | --- |
| stream id | `streamSid` (`MZ…`), on every message but `connected` | `stream_id` (a UUID) |
| counter | `sequenceNumber` (string, 1 at `start`) | `sequence_number` |
| call id | `start.callSid` (`CA…`), `start.accountSid` | `start.call_control_id`, `start.user_id` |
| media format | `start.mediaFormat` {encoding `audio/x-mulaw`, sampleRate, channels} | `start.media_format` {encoding `PCMU`, sample_rate, channels} |
| custom parameters | `start.customParameters` | `start.custom_parameters` |
| agent's messages | must carry `streamSid` | `stream_id` optional |
| agent's media size | not limited | 20 ms to 30 s |

`media.chunk` counts the carrier's media messages from 1 and `media.timestamp` is the
milliseconds since the stream started (both strings). Sources: twilio.com/docs/voice/media-
streams/websocket-messages; developers.telnyx.com/api-reference/websockets/stream-call-media-
over-websocket; Pipecat's TwilioFrameSerializer and TelnyxFrameSerializer read them the same way.

A message that breaks the protocol raises `ProtocolError` with a `kind` a report can count.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from playground.phone.codec import FRAME_BYTES, FRAME_MS, RATE

# ProtocolError kinds
NOT_JSON = "not_json"  # not a JSON text message
UNKNOWN_EVENT = "unknown_event"  # an event the protocol does not have (in this direction)
MISSING_FIELD = "missing_field"  # a documented field is absent or of the wrong type
BAD_PAYLOAD = "bad_payload"  # media.payload is not base64
PAYLOAD_SIZE = "payload_size"  # media.payload has a size the protocol does not allow
WRONG_STREAM = "wrong_stream"  # the message names another stream (or none where one is required)
NO_START = "no_start"  # media before `start`
BAD_FORMAT = "bad_format"  # `start` announces audio other than 8 kHz mono μ-law
SEQUENCE = "sequence"  # a sequence number or chunk out of order, or skipped

MAX_AGENT_PAYLOAD_MS = 30_000  # Telnyx: an agent's media message holds 20 ms to 30 s of audio


class ProtocolError(ValueError):
    """A message that breaks the protocol. `kind` names the fault; `parsed` is the message
    as far as it could be read (media with an unusual size still carries its audio)."""

    def __init__(self, kind: str, message: str, parsed: Any = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.parsed = parsed


@dataclass(frozen=True)
class Connected:
    protocol: str | None
    version: str | None


@dataclass(frozen=True)
class Start:
    stream_id: str
    call_id: str
    account_id: str
    sequence: int | None
    media_format: dict[str, Any]
    custom_parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Media:
    payload: bytes  # μ-law
    sequence: int | None = None  # carrier -> agent only
    chunk: int | None = None
    timestamp_ms: int | None = None
    track: str | None = None


@dataclass(frozen=True)
class Mark:
    name: str
    sequence: int | None = None


@dataclass(frozen=True)
class Clear:
    pass


@dataclass(frozen=True)
class Stop:
    sequence: int | None


@dataclass(frozen=True)
class Dtmf:
    digit: str
    sequence: int | None


def _loads(text: str | bytes) -> dict[str, Any]:
    if not isinstance(text, str):
        raise ProtocolError(NOT_JSON, f"a binary message of {len(text)} bytes (the protocol sends JSON text)")
    try:
        message = json.loads(text)
    except ValueError:
        raise ProtocolError(NOT_JSON, f"not JSON: {text[:80]!r}") from None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        raise ProtocolError(MISSING_FIELD, f"no `event` in {text[:80]!r}")
    return message


def _section(message: dict[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(MISSING_FIELD, f"`{message['event']}` without its `{key}` object")
    return value


def _number(value: Any, what: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ProtocolError(MISSING_FIELD, f"{what} is not a number: {value!r}") from None


def _payload(media: dict[str, Any]) -> bytes:
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise ProtocolError(MISSING_FIELD, "`media` without `media.payload`")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(BAD_PAYLOAD, f"media.payload is not base64 ({payload[:24]!r}…)") from None


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


class Dialect:
    """One carrier's field names and rules; the subclasses only name them."""

    name = ""
    stream_key = ""
    sequence_key = ""
    start_call_key = ""
    start_account_key = ""
    format_key = ""
    rate_key = ""
    custom_key = ""
    encoding = ""
    agent_needs_stream = False  # the agent's messages must name the stream
    min_agent_payload = 1

    # -- ids a carrier would assign --------------------------------------------------

    def new_stream_id(self) -> str:
        raise NotImplementedError

    def new_call_id(self) -> str:
        raise NotImplementedError

    def new_account_id(self) -> str:
        raise NotImplementedError

    # -- carrier -> agent (what `playground call` sends) -----------------------------

    def connected(self) -> str:
        raise NotImplementedError

    def start(self, sequence: int, stream_id: str, call_id: str, account_id: str,
              custom_parameters: dict[str, Any] | None = None) -> str:
        start = {self.start_account_key: account_id, self.start_call_key: call_id,
                 self.custom_key: custom_parameters or {},
                 self.format_key: {"encoding": self.encoding, self.rate_key: RATE, "channels": 1},
                 **self._start_extra(stream_id)}
        return _dump({"event": "start", self.sequence_key: str(sequence), self.stream_key: stream_id, "start": start})

    def _start_extra(self, stream_id: str) -> dict[str, Any]:
        return {}

    def media(self, sequence: int, stream_id: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
        return _dump({"event": "media", self.sequence_key: str(sequence), self.stream_key: stream_id,
                      "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(timestamp_ms),
                                "payload": base64.b64encode(payload).decode("ascii")}})

    def mark(self, sequence: int, stream_id: str, name: str) -> str:
        return _dump({"event": "mark", self.sequence_key: str(sequence), self.stream_key: stream_id,
                      "mark": {"name": name}})

    def stop(self, sequence: int, stream_id: str, call_id: str, account_id: str) -> str:
        return _dump({"event": "stop", self.sequence_key: str(sequence), self.stream_key: stream_id,
                      "stop": {self.start_account_key: account_id, self.start_call_key: call_id}})

    # -- agent -> carrier (what `playground serve-agent` sends) ----------------------

    def agent_media(self, stream_id: str, payload: bytes) -> str:
        return _dump({"event": "media", self.stream_key: stream_id,
                      "media": {"payload": base64.b64encode(payload).decode("ascii")}})

    def agent_mark(self, stream_id: str, name: str) -> str:
        return _dump({"event": "mark", self.stream_key: stream_id, "mark": {"name": name}})

    def agent_clear(self, stream_id: str) -> str:
        return _dump({"event": "clear", self.stream_key: stream_id})

    # -- parsing ----------------------------------------------------------------------

    def parse_from_carrier(self, text: str | bytes) -> Connected | Start | Media | Mark | Stop | Dtmf:
        """A message the carrier sent to the agent."""
        message = _loads(text)
        event = message["event"]
        sequence = _number(message.get(self.sequence_key), self.sequence_key)
        if event == "connected":
            return Connected(message.get("protocol"), message.get("version"))
        if event == "start":
            start = _section(message, "start")
            stream_id = message.get(self.stream_key) or start.get(self.stream_key)
            if not isinstance(stream_id, str) or not stream_id:
                raise ProtocolError(MISSING_FIELD, f"`start` without `{self.stream_key}`")
            media_format = start.get(self.format_key)
            if not isinstance(media_format, dict):
                raise ProtocolError(MISSING_FIELD, f"`start` without `start.{self.format_key}`")
            parsed = Start(stream_id, str(start.get(self.start_call_key, "")), str(start.get(self.start_account_key, "")),
                           sequence, media_format, dict(start.get(self.custom_key) or {}))
            rate, channels = media_format.get(self.rate_key), media_format.get("channels", 1)
            if media_format.get("encoding") != self.encoding or _number(rate, self.rate_key) != RATE or channels != 1:
                raise ProtocolError(BAD_FORMAT, f"`start` announces {media_format}; this agent takes "
                                                f"{self.encoding} at {RATE} Hz, mono", parsed)
            return parsed
        if event == "media":
            media = _section(message, "media")
            parsed_media = Media(_payload(media), sequence, _number(media.get("chunk"), "media.chunk"),
                                 _number(media.get("timestamp"), "media.timestamp"), media.get("track"))
            if len(parsed_media.payload) != FRAME_BYTES:
                raise ProtocolError(PAYLOAD_SIZE, f"a caller media message of {len(parsed_media.payload)} bytes "
                                                  f"(the carrier sends {FRAME_MS} ms = {FRAME_BYTES} bytes)", parsed_media)
            return parsed_media
        if event == "mark":
            return Mark(str(_section(message, "mark").get("name", "")), sequence)
        if event == "stop":
            return Stop(sequence)
        if event == "dtmf":
            return Dtmf(str(_section(message, "dtmf").get("digit", "")), sequence)
        raise ProtocolError(UNKNOWN_EVENT, f"unknown event {event!r} from the carrier")

    def parse_from_agent(self, text: str | bytes, stream_id: str) -> Media | Mark | Clear:
        """A message the agent sent to the carrier on stream `stream_id`."""
        message = _loads(text)
        event = message["event"]
        if event not in ("media", "mark", "clear"):
            raise ProtocolError(UNKNOWN_EVENT, f"unknown event {event!r} from the agent (it may send media, mark, clear)")
        named = message.get(self.stream_key)
        if named != stream_id and (named is not None or self.agent_needs_stream):
            raise ProtocolError(WRONG_STREAM, f"`{event}` for {self.stream_key} {named!r}, not this call's {stream_id!r}"
                                              " (the agent did not take it from `start`): dropped, as the carrier would")
        if event == "clear":
            return Clear()
        if event == "mark":
            name = _section(message, "mark").get("name")
            if not isinstance(name, str) or not name:
                raise ProtocolError(MISSING_FIELD, "`mark` without `mark.name`")
            return Mark(name)
        media = Media(_payload(_section(message, "media")))
        size = len(media.payload)
        limit = MAX_AGENT_PAYLOAD_MS * RATE // 1000
        if size < self.min_agent_payload or size > limit:
            raise ProtocolError(PAYLOAD_SIZE, f"an agent media message of {size} bytes ({self.name} takes "
                                              f"{self.min_agent_payload} to {limit} bytes of μ-law)", media)
        return media


class Twilio(Dialect):
    name = "twilio"
    stream_key = "streamSid"
    sequence_key = "sequenceNumber"
    start_call_key = "callSid"
    start_account_key = "accountSid"
    format_key = "mediaFormat"
    rate_key = "sampleRate"
    custom_key = "customParameters"
    encoding = "audio/x-mulaw"
    agent_needs_stream = True  # Twilio routes the agent's messages by streamSid

    def new_stream_id(self) -> str:
        return "MZ" + uuid.uuid4().hex

    def new_call_id(self) -> str:
        return "CA" + uuid.uuid4().hex

    def new_account_id(self) -> str:
        return "AC" + uuid.uuid4().hex

    def connected(self) -> str:
        return _dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def _start_extra(self, stream_id: str) -> dict[str, Any]:
        return {"streamSid": stream_id, "tracks": ["inbound"]}


class Telnyx(Dialect):
    name = "telnyx"
    stream_key = "stream_id"
    sequence_key = "sequence_number"
    start_call_key = "call_control_id"
    start_account_key = "user_id"
    format_key = "media_format"
    rate_key = "sample_rate"
    custom_key = "custom_parameters"
    encoding = "PCMU"
    min_agent_payload = FRAME_BYTES  # at least 20 ms

    def new_stream_id(self) -> str:
        return str(uuid.uuid4())

    def new_call_id(self) -> str:
        return "v3:" + uuid.uuid4().hex

    def new_account_id(self) -> str:
        return str(uuid.uuid4())

    def connected(self) -> str:
        return _dump({"event": "connected", "version": "1.0.0"})

    def _start_extra(self, stream_id: str) -> dict[str, Any]:
        return {"call_session_id": str(uuid.uuid4()), "from": "+15550100000", "to": "+15550100001"}

    def agent_media(self, stream_id: str, payload: bytes) -> str:
        return _dump({"event": "media", "media": {"payload": base64.b64encode(payload).decode("ascii")}})

    def agent_mark(self, stream_id: str, name: str) -> str:
        return _dump({"event": "mark", "mark": {"name": name}})

    def agent_clear(self, stream_id: str) -> str:
        return _dump({"event": "clear"})


DIALECTS: dict[str, Dialect] = {d.name: d for d in (Twilio(), Telnyx())}


def dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r} (choose {' or '.join(DIALECTS)})") from None
