"""Every trace event the phone leg adds, declared in one place, and `emit`, the one way to record them.

Each event type is a frozen dataclass: its `TYPE` is the trace's `type`, its fields are the
keys the JSON line carries beside `turn`, `t_ms` and `type`, and its docstring says when it
is recorded and what `t_ms` is. Turn events count from the turn's t0 like every trace event.

Two sides write them:
- `call.*`: the caller (`playground call`), which plays the carrier and the person calling. A
  turn's t0 is the caller's end of speech: the moment the last frame of its line was sent.
- `phone.*`: the agent (`playground serve-agent`), beside the engine's usual events. A turn's
  t0 is the engine's: the end of the caller's speech detected by the agent's VAD.

Stream times (`*stream_ms`) are positions in the caller's audio stream, the carrier's own
clock: milliseconds of caller audio since the stream started (`media.timestamp`), at the end
of a frame. Both sides can name them, so they relate the two traces without a shared clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from playground.core import events as ev

# -- the caller (`playground call`) ----------------------------------------------------------


@dataclass(frozen=True)
class CallDial:
    """`call.dial`, session: the WebSocket to the agent is open and `connected` + `start` were sent.
    t_ms: when `start` was sent. url; dialect (twilio | telnyx); stream_id and call_id as `start`
    announced them; connect_ms: the WebSocket handshake; network: the simulated network leg
    ({"profile", "latency_ms", "jitter_ms"} each way) or None."""

    TYPE: ClassVar[str] = "call.dial"
    url: str
    dialect: str
    stream_id: str
    call_id: str
    connect_ms: float
    network: dict[str, Any] | None


@dataclass(frozen=True)
class CallGreeting:
    """`call.greeting`, session: the agent spoke before the caller's first line. t_ms: its first
    audible sample heard. first_audio_ms: `start` -> its first media message; heard_ms: how much was heard."""

    TYPE: ClassVar[str] = "call.greeting"
    first_audio_ms: float
    heard_ms: float


@dataclass(frozen=True)
class CallLine:
    """`call.line`, turn: the caller's line. t_ms: its first frame sent (negative: before t0).
    text; source (script | say | stdin | mic); speech_ms: its audio; start_stream_ms / end_stream_ms:
    where it lies in the stream (t0 is the send of the frame ending at end_stream_ms);
    barge_in_after_ms: the line was meant to cut in after this much of the agent's reply (else None)."""

    TYPE: ClassVar[str] = "call.line"
    text: str
    source: str
    speech_ms: float
    start_stream_ms: float
    end_stream_ms: float
    barge_in_after_ms: float | None


@dataclass(frozen=True)
class CallAgentAudio:
    """`call.agent_audio`, turn: the agent's first media message after t0 arrived (FIRST_AUDIO).
    payload_bytes: its size."""

    TYPE: ClassVar[str] = "call.agent_audio"
    payload_bytes: int


@dataclass(frozen=True)
class CallAgentAudible:
    """`call.agent_audible`, turn: the first audible sample of the reply was played to the caller
    (REAL_LATENCY: what the person on the phone waits for). peak_db: the frame's peak level;
    silent_ms: agent audio played before it that was too quiet to hear."""

    TYPE: ClassVar[str] = "call.agent_audible"
    peak_db: float
    silent_ms: float


@dataclass(frozen=True)
class CallAgentSpeech:
    """`call.agent_speech`, turn: a stretch of agent speech the caller's VAD heard (Silero).
    t_ms: its last voiced frame; start_ms: its first voiced frame (after t0); speech_ms: its length."""

    TYPE: ClassVar[str] = "call.agent_speech"
    start_ms: float
    speech_ms: float


@dataclass(frozen=True)
class CallMark:
    """`call.mark`, turn: an agent `mark` echoed back, as the carrier does. t_ms: the echo.
    name; received_ms: when the mark arrived; by: played (the audio before it finished playing)
    or clear (a `clear` dropped the audio before it)."""

    TYPE: ClassVar[str] = "call.mark"
    name: str
    received_ms: float
    by: str


@dataclass(frozen=True)
class CallClear:
    """`call.clear`, turn: the agent sent `clear`. dropped_ms: agent audio not played yet,
    dropped; marks_returned: marks echoed because of it."""

    TYPE: ClassVar[str] = "call.clear"
    dropped_ms: float
    marks_returned: int


@dataclass(frozen=True)
class CallBargeIn:
    """`call.barge_in`, the turn whose reply is cut: the caller started its next line over the
    agent. t_ms: the line's first frame sent (the onset). heard_ms: agent audio heard in this
    reply before; after_ms: the script's wish; missed: the reply ended before after_ms."""

    TYPE: ClassVar[str] = "call.barge_in"
    heard_ms: float
    after_ms: float | None
    missed: bool


@dataclass(frozen=True)
class CallAgentStopped:
    """`call.agent_stopped`, the turn that was cut: how fast the agent went quiet. t_ms: its last
    audio played. stop_ms: onset -> that (BARGE_STOP); clear_ms: onset -> its `clear` (None: no
    clear); audio_stop_ms: onset -> its last media message received."""

    TYPE: ClassVar[str] = "call.agent_stopped"
    stop_ms: float
    clear_ms: float | None
    audio_stop_ms: float | None


@dataclass(frozen=True)
class CallReplyEnd:
    """`call.reply_end`, turn: the agent's reply is over (the caller speaks again or hangs up).
    t_ms: its last audible sample played. received_ms / heard_ms: agent audio received / played;
    underruns: 20 ms ticks inside the reply with no agent audio to play (a stutter)."""

    TYPE: ClassVar[str] = "call.reply_end"
    received_ms: float
    heard_ms: float
    underruns: int


@dataclass(frozen=True)
class CallTranscript:
    """`call.transcript`, turn: what the caller heard the agent say (faster-whisper).
    text; audio_ms: the audio transcribed; took_ms: the transcription."""

    TYPE: ClassVar[str] = "call.transcript"
    text: str
    audio_ms: float
    took_ms: float


@dataclass(frozen=True)
class CallError:
    """`call.error`, turn or session: the agent broke the protocol or the call. kind: no_answer,
    agent_closed, connect_failed, barge_in_ignored, max_duration, or a `dialects` ProtocolError kind
    (payload_size, wrong_stream, not_json, ...); message: one line; count: how many times in the turn."""

    TYPE: ClassVar[str] = "call.error"
    kind: str
    message: str
    count: int


@dataclass(frozen=True)
class CallAgentTurn:
    """`call.agent_turn`, turn: the agent's own trace for this turn (written after the call, when
    its trace is readable), and the caller's FIRST_AUDIO cut into stages:
    FIRST_AUDIO = eos_ms + agent_ms + net_ms (+ residual_ms, what the three do not explain).
    agent_turn: its turn number; eos_ms: the agent's end-of-speech detection (the caller's last
    frame received -> its t0); agent_ms: its t0 -> first audio frame sent; net_ms: both network legs,
    measured from the stream position the agent had received when it sent that frame;
    eos_net_ms: FIRST_AUDIO - agent_ms (the stage the agent's own trace cannot see);
    metrics: the agent's turn.summary metrics."""

    TYPE: ClassVar[str] = "call.agent_turn"
    agent_turn: int
    eos_ms: float | None
    agent_ms: float | None
    net_ms: float | None
    eos_net_ms: float | None
    residual_ms: float | None
    metrics: dict[str, Any]


@dataclass(frozen=True)
class CallHangup:
    """`call.hangup`, session: the call ended. reason: done | agent_closed | max_duration |
    interrupted | connect_failed; turns; frames_sent / media_received: media messages each way."""

    TYPE: ClassVar[str] = "call.hangup"
    reason: str
    turns: int
    frames_sent: int
    media_received: int


# -- the agent (`playground serve-agent`) ----------------------------------------------------


@dataclass(frozen=True)
class PhoneCall:
    """`phone.call`, session: the carrier's `start` arrived. dialect; stream_id; call_id;
    account_id; media_format and custom_parameters as `start` gave them."""

    TYPE: ClassVar[str] = "phone.call"
    dialect: str
    stream_id: str
    call_id: str
    account_id: str
    media_format: dict[str, Any]
    custom_parameters: dict[str, Any]


@dataclass(frozen=True)
class PhoneEndOfSpeech:
    """`phone.eos`, turn (recorded with the VAD's events, t_ms 0): where t0 lies in the caller's
    stream. stream_ms: the end of the caller audio that completed the end-of-speech silence;
    last_voiced_stream_ms: the end of the last voiced VAD frame; lag_ms: t0 - when that audio arrived."""

    TYPE: ClassVar[str] = "phone.eos"
    stream_ms: float | None
    last_voiced_stream_ms: float | None
    lag_ms: float | None


@dataclass(frozen=True)
class PhoneAudioOut:
    """`phone.audio_out`, turn: the reply's first media message was sent on the socket. stream_ms:
    the end of the latest caller audio received then; since_ms: how long before it had arrived."""

    TYPE: ClassVar[str] = "phone.audio_out"
    stream_ms: float | None
    since_ms: float | None


@dataclass(frozen=True)
class PhoneMark:
    """`phone.mark`, turn: a `mark` sent after the last frame of a chunk. name; chunk."""

    TYPE: ClassVar[str] = "phone.mark"
    name: str
    chunk: int


@dataclass(frozen=True)
class PhoneMarkEcho:
    """`phone.mark_echo`, turn of the mark: the carrier echoed a mark (its audio was played or
    cleared). name; rtt_ms: mark sent -> echo received."""

    TYPE: ClassVar[str] = "phone.mark_echo"
    name: str
    rtt_ms: float


@dataclass(frozen=True)
class PhoneClear:
    """`phone.clear`, turn: `clear` sent (the reply was cut: barge-in). reason."""

    TYPE: ClassVar[str] = "phone.clear"
    reason: str


@dataclass(frozen=True)
class PhoneError:
    """`phone.error`, turn or session: the carrier broke the protocol. kind (a `dialects`
    ProtocolError kind, or start_timeout); message."""

    TYPE: ClassVar[str] = "phone.error"
    kind: str
    message: str


@dataclass(frozen=True)
class PhoneStop:
    """`phone.stop`, session: the call ended. reason: stop (the carrier's `stop`) | closed (the
    socket closed without it) | no_start | bad_format | start_timeout | server_stopped;
    media_received / frames_sent: media messages each way."""

    TYPE: ClassVar[str] = "phone.stop"
    reason: str
    media_received: int
    frames_sent: int


EVENT_TYPES: tuple[type, ...] = (
    CallDial, CallGreeting, CallLine, CallAgentAudio, CallAgentAudible, CallAgentSpeech, CallMark, CallClear,
    CallBargeIn, CallAgentStopped, CallReplyEnd, CallTranscript, CallError, CallAgentTurn, CallHangup,
    PhoneCall, PhoneEndOfSpeech, PhoneAudioOut, PhoneMark, PhoneMarkEcho, PhoneClear, PhoneError, PhoneStop,
)


def _json_value(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def fields_of(event: Any) -> dict[str, Any]:
    """An event's fields as the trace line carries them."""
    return {f.name: _json_value(getattr(event, f.name)) for f in dataclasses.fields(event)}


def emit(clock: ev.TurnClock, event: Any, t_mono_ms: float) -> ev.TraceEvent:
    """Records `event` (one of EVENT_TYPES) in `clock`'s turn at monotonic time `t_mono_ms`."""
    return clock.emit(event.TYPE, t_mono_ms, **fields_of(event))


def prelude_entry(event: Any, t_mono_ms: float) -> tuple[str, float, dict[str, Any]]:
    """`event` as an entry of `Session.start_turn`'s prelude (recorded right after turn.start)."""
    return event.TYPE, t_mono_ms, fields_of(event)
