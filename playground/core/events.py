"""Trace events: the single record of what happened in a session, one declared type per event.

Everything the CLI prints and the UI draws is computed from these events, so an event is
taken at the moment its data arrives and never changed afterwards.

Each event type is a msgspec `Struct` below, tagged with its `type` ("llm.token"): a trace
line is decoded straight into its struct, validated while it is decoded (no dict built
first), and readers use attributes (`event.text`), so a renamed or missing field fails where
it is written or read instead of reading as None. `playground.core.tracefile` reads and
writes the JSON Lines file (docs/traces.md, "The trace file").

Adding an event type is one declaration here, nothing else:

    class LlmRetry(TraceEvent, tag="llm.retry", kw_only=True):
        \"\"\"The LLM request was sent again.\"\"\"

        attempt: int  # what every such event carries: required
        status: int | None = None  # what only some carry: a default (omitted from the line when default)

    clock.emit(ev.LlmRetry, now_ms(), attempt=2, status=429)   # in a turn; or a session event

The class is registered by `_register` at the end of this module (its `type`, the decoder,
`EVENT_TYPES`). Rules that keep old traces readable (TRACE_VERSION stays 1):
- a field every event of the type has always carried is required; a field added later gets a
  default, and old lines read with it; never rename or retype a field (add a new one);
- a default is a value the writer never writes (None, False, 0, ""), since fields equal to
  their default are left out of the line; a field whose default is a real value (`{}`) is
  required instead;
- a new value of a `Literal` field (a tts.session action) is added to its `Literal`;
- readers that meet a type they do not know (a newer trace) skip it and say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Literal, TypeVar

import msgspec

TRACE_VERSION = 1

# Turn number used for events that belong to the session, not to a turn (opening the TTS
# session, a reconnect between turns). Their t_ms counts from the session's start.
SESSION_TURN = 0


class TraceEvent(msgspec.Struct, tag_field="type", omit_defaults=True, gc=False):
    """What every event has: its turn (SESSION_TURN for the session's own) and its time, ms after
    the turn's t0 (session events: after the session's start), rounded to the microsecond.

    Events hold no reference cycles, so they are kept out of the cyclic garbage collector
    (gc=False): a long session's hundred thousand events cost it nothing."""

    turn: int
    t_ms: float
    type: ClassVar[str] = ""  # the tag ("llm.token"), set by _register


# -- values carried inside events -----------------------------------------------------------


class PromptTokensDetails(msgspec.Struct, omit_defaults=True, gc=False):
    cached_tokens: int | None = None  # prompt tokens the server's (or llama.cpp's) prompt cache held
    audio_tokens: int | None = None


class CompletionTokensDetails(msgspec.Struct, omit_defaults=True, gc=False):
    reasoning_tokens: int | None = None  # spent thinking: billed, never spoken
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class Usage(msgspec.Struct, omit_defaults=True, gc=False):
    """Token usage in the OpenAI shape (every field of its `usage` object), as the provider
    reported it ({} when it reported none). Fields outside that shape that some servers add
    (timings, sources used) are not recorded."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    input_tokens: int | None = None  # the same counts under the names some APIs use
    output_tokens: int | None = None
    unavailable: str | None = None  # why there is no usage (the server sent none, or refused to)


class LlmConnection(msgspec.Struct, omit_defaults=True, gc=False):
    """How a network LLM request reached its server: a reused connection (its requests and age)
    or a new one (what connecting cost): a handshake paid again on a later turn shows here."""

    reused: bool
    requests: int | None = None
    age_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None


class LlmContext(msgspec.Struct, omit_defaults=True, gc=False):
    """What of the conversation the prompt held where the provider fits a context window
    (`playground.llm.context`)."""

    messages: int  # messages sent
    dropped: int  # history messages left out
    budget_tokens: int
    trimmed: int | None = None  # at a turn that dropped more: how many more ...
    how: Literal["shift", "block"] | None = None  # ... and how ("shift" kept the prompt cache)
    truncated_input_tokens: int | None = None  # tokens cut from the front of an over-long last message


class Alignment(msgspec.Struct, gc=False):
    """What a piece of audio speaks, when the service says: per character, its start and duration
    in ms from the start of this piece."""

    chars: list[str]
    start_ms: list[float]
    duration_ms: list[float]


class Played(msgspec.Struct, gc=False):
    """What the user had heard of a cancelled turn."""

    chunks: list[int]  # chunks whose playback started
    ms: float  # for how long, in all


# -- the events ------------------------------------------------------------------------------

ChunkReason = Literal["strong", "weak", "deadline", "underrun", "max_chars", "flush", "words", "fragment"]
TTSPath = Literal["persistent", "reconnected", "fallback_rest"]


class SessionLoad(TraceEvent, tag="session.load", kw_only=True):
    """(session) Opening a component: `loading`, each `progress` message it reports, then `ready`
    or `failed` (with how long it took, and why it failed)."""

    component: str  # llm | tts | stt
    provider: str
    state: Literal["loading", "progress", "ready", "failed"]
    ms: float | None = None  # ready, failed
    message: str | None = None  # progress, failed


class ConfigChange(TraceEvent, tag="config.change", kw_only=True):
    """(session) The preset changed from the next turn on."""

    reason: str
    changes: dict[str, Any]  # "section.key" -> new value
    preset: str


class Mic(TraceEvent, tag="mic", kw_only=True):
    """(session) The microphone's state."""

    status: Literal["listening", "ended", "unavailable"]
    mode: str  # hands_free | push_to_talk
    device: str | None = None  # listening
    rate: int | None = None
    stt: str | None = None
    stt_load_ms: float | None = None
    echo_gate: bool | None = None
    reason: str | None = None  # unavailable


class TurnStart(TraceEvent, tag="turn.start", kw_only=True):
    text: str
    input: str  # typed | voice | call (the caller's line: `playground call`, which runs no chunker)
    strategy: str | None = None  # the chunker's
    chunker: dict[str, Any] | None = None  # the chunker settings in force
    session_ms: float | None = None  # where t0 falls on the session clock (traces before it: None)
    unpaced: bool = False  # the output does not play in real time: no playback timing past the first sample


class VadSpeechStart(TraceEvent, tag="vad.speech_start", kw_only=True):
    onset_ms: float  # where the speech began (ms after t0, negative: before it)
    mode: str
    barge_in: int | None  # the turn this speech cut, if it cut one


class VadSpeechEnd(TraceEvent, tag="vad.speech_end", kw_only=True):
    """In a turn: the end of speech that made it (its t0). At session level: speech that made
    no turn, and why (`ignored`)."""

    speech_ms: float | None
    last_voiced_ms: float | None = None
    trigger: str | None = None
    end_silence_ms: float | None = None
    ignored: str | None = None


class SttInterim(TraceEvent, tag="stt.interim", kw_only=True):
    text: str
    audio_ms: float
    took_ms: float


class SttFinal(TraceEvent, tag="stt.final", kw_only=True):
    text: str
    audio_ms: float
    model: str


class LlmRequest(TraceEvent, tag="llm.request", kw_only=True):
    provider: str
    model: str
    messages: int | None = None  # how many were sent
    prompt_chars: int | None = None


class LlmToken(TraceEvent, tag="llm.token", kw_only=True):
    i: int
    text: str  # may be empty (a token that carried no text)


class LlmDone(TraceEvent, tag="llm.done", kw_only=True):
    tokens: int
    finish_reason: str | None
    usage: Usage
    text: str  # the whole reply
    connection: LlmConnection | None = None  # network providers
    reasoning_chars: int = 0  # reasoning streamed apart from the reply: counted, never spoken
    context: LlmContext | None = None  # providers that fit a context window


class Chunk(TraceEvent, tag="chunk", kw_only=True):
    index: int
    text: str  # cleaned for TTS; "" when nothing in it is speakable
    raw: str  # as the LLM wrote it
    reason: ChunkReason
    start_ms: float  # its first token arrived
    input_ms: float  # the token (or deadline) that cut it arrived
    token_start: int
    token_end: int


class TtsSend(TraceEvent, tag="tts.send", kw_only=True):
    chunk: int
    chars: int


class TtsAudio(TraceEvent, tag="tts.audio", kw_only=True):
    chunk: int
    samples: int
    sample_rate: int
    duration_ms: float
    alignment: Alignment | None = None  # when the provider sends it


class TtsDone(TraceEvent, tag="tts.done", kw_only=True):
    """All of the turn's audio has arrived."""


class TtsSession(TraceEvent, tag="tts.session", kw_only=True):
    """The persistent TTS session: in the turn it happened in, or at session level between turns.

    Per action (beside `provider`, and `path` but for warnings):
      open       voice, sample_rate, load_ms (local) | url, connect_ms, sample_rate, keepalive_ms,
                 on_disconnect | reason, deliberate (persistent = false: REST by choice)
      reuse      turns_served, age_ms, reconnects; reason when the turn does not get the session
      keepalive  context (the open context, or None), age_ms
      disconnect reason, age_ms (the connection dropped: recovery goes on in the background)
      reconnect  reason, downtime_ms, reconnects, attempts, keepalive_ms, resumed_chunks
      fallback   reason, resent_chunks
      warning    message, code (Deepgram)
      close      turns_served, reconnects
    """

    action: Literal["open", "reuse", "keepalive", "disconnect", "reconnect", "fallback", "warning", "close"]
    path: TTSPath | None = None  # (fields in the order the sessions have always written them)
    provider: str
    reason: str | None = None
    deliberate: bool = False
    voice: str | None = None
    url: str | None = None
    sample_rate: int | None = None
    load_ms: float | None = None
    connect_ms: float | None = None
    keepalive_ms: float | None = None
    on_disconnect: str | None = None
    age_ms: float | None = None
    turns_served: int | None = None
    reconnects: int | None = None
    downtime_ms: float | None = None
    attempts: int | None = None  # connection attempts the reconnect took
    resumed_chunks: list[int] | None = None
    resent_chunks: list[int] | None = None
    # written for every keepalive, None when no context was open
    context: str | None | msgspec.UnsetType = msgspec.UNSET
    message: str | None = None
    code: str | None = None


class PlayStart(TraceEvent, tag="play.start", kw_only=True):
    chunk: int


class PlayEnd(TraceEvent, tag="play.end", kw_only=True):
    chunk: int
    cut: bool = False  # playback was stopped (barge-in, cancel)


class PlayGap(TraceEvent, tag="play.gap", kw_only=True):
    """Playback ran dry between two pieces of a reply (at the start of the piece after the gap)."""

    chunk: int
    ms: float  # how long
    from_ms: float  # when the gap began (ms after t0)


class PlaySound(TraceEvent, tag="play.sound", kw_only=True):
    """The first audible sample reached the listener (FIRST_SOUND): the piece's start on the
    device, plus its leading silence, plus the output latency the device reports."""

    chunk: int
    silence_ms: float
    device_latency_ms: float


class Error(TraceEvent, tag="error", kw_only=True):
    where: str  # llm | tts | audio | stt | engine | close
    message: str


class TurnCancelled(TraceEvent, tag="turn.cancelled", kw_only=True):
    reason: str
    stop_ms: float  # from the cancel's request to everything stopped
    played: Played
    reply_so_far: str


class TurnSummary(TraceEvent, tag="turn.summary", kw_only=True):
    metrics: dict[str, Any]  # `TurnMetrics.to_json()`: every metric
    # metric -> its value, over the budget then in force (the caller's turns, which have no budgets: None)
    budget_misses: dict[str, float] | None = None


# -- the phone leg (`playground call`, `playground serve-agent`) -------------------------------
#
# Two sides write them. `call.*`: the caller, which plays the carrier and the person calling;
# a turn's t0 is the caller's end of speech, the moment the last frame of its line was sent.
# `phone.*`: the agent, beside the engine's usual events; a turn's t0 is the engine's, the end
# of the caller's speech detected by the agent's VAD.
#
# Stream times (`*stream_ms`) are positions in the caller's audio stream, the carrier's own
# clock: milliseconds of caller audio since the stream started (`media.timestamp`), at the end
# of a frame. Both sides can name them, so they relate the two traces without a shared clock.
# Every field is written, None included.


class CallDial(TraceEvent, tag="call.dial", kw_only=True):
    """(session) The WebSocket to the agent is open and `connected` + `start` were sent; t_ms:
    when `start` was sent."""

    url: str
    dialect: str  # twilio | telnyx
    stream_id: str  # as `start` announced them
    call_id: str
    connect_ms: float  # the WebSocket handshake
    network: dict[str, Any] | None  # the simulated network leg ({"profile", "latency_ms", "jitter_ms"} each way)


class CallGreeting(TraceEvent, tag="call.greeting", kw_only=True):
    """(session) The agent spoke before the caller's first line; t_ms: its first audible sample heard."""

    first_audio_ms: float  # `start` -> its first media message
    heard_ms: float  # how much was heard


class CallLine(TraceEvent, tag="call.line", kw_only=True):
    """The caller's line; t_ms: its first frame sent (negative: before t0)."""

    text: str
    source: str  # script | say | stdin | mic
    speech_ms: float  # its audio
    start_stream_ms: float  # where it lies in the stream (t0 is the send of the frame ending at end_stream_ms)
    end_stream_ms: float
    barge_in_after_ms: float | None  # the line was meant to cut in after this much of the agent's reply


class CallAgentAudio(TraceEvent, tag="call.agent_audio", kw_only=True):
    """The agent's first media message after t0 arrived (FIRST_AUDIO)."""

    payload_bytes: int


class CallAgentAudible(TraceEvent, tag="call.agent_audible", kw_only=True):
    """The first audible sample of the reply was played to the caller (REAL_LATENCY: what the
    person on the phone waits for)."""

    peak_db: float  # the frame's peak level
    silent_ms: float  # agent audio played before it that was too quiet to hear


class CallAgentSpeech(TraceEvent, tag="call.agent_speech", kw_only=True):
    """A stretch of agent speech the caller's VAD heard (Silero); t_ms: its last voiced frame."""

    start_ms: float  # its first voiced frame (after t0)
    speech_ms: float


class CallMark(TraceEvent, tag="call.mark", kw_only=True):
    """An agent `mark` echoed back, as the carrier does; t_ms: the echo."""

    name: str
    received_ms: float  # when the mark arrived
    by: str  # played (the audio before it finished playing) | clear (a `clear` dropped the audio before it)


class CallClear(TraceEvent, tag="call.clear", kw_only=True):
    """The agent sent `clear`."""

    dropped_ms: float  # agent audio not played yet, dropped
    marks_returned: int  # marks echoed because of it


class CallBargeIn(TraceEvent, tag="call.barge_in", kw_only=True):
    """(the turn whose reply is cut) The caller started its next line over the agent; t_ms: the
    line's first frame sent (the onset)."""

    heard_ms: float  # agent audio heard in this reply before
    after_ms: float | None  # the script's wish
    missed: bool  # the reply ended before after_ms


class CallAgentStopped(TraceEvent, tag="call.agent_stopped", kw_only=True):
    """(the turn that was cut) How fast the agent went quiet; t_ms: its last audio played."""

    stop_ms: float  # onset -> that (BARGE_STOP)
    clear_ms: float | None  # onset -> its `clear` (None: no clear)
    audio_stop_ms: float | None  # onset -> its last media message received


class CallReplyEnd(TraceEvent, tag="call.reply_end", kw_only=True):
    """The agent's reply is over (the caller speaks again or hangs up); t_ms: its last audible
    sample played."""

    received_ms: float  # agent audio received ...
    heard_ms: float  # ... and played
    underruns: int  # 20 ms ticks inside the reply with no agent audio to play (a stutter)


class CallTranscript(TraceEvent, tag="call.transcript", kw_only=True):
    """What the caller heard the agent say (faster-whisper)."""

    text: str
    audio_ms: float  # the audio transcribed
    took_ms: float  # the transcription


class CallError(TraceEvent, tag="call.error", kw_only=True):
    """(turn or session) The agent broke the protocol or the call."""

    # no_answer, agent_closed, connect_failed, barge_in_ignored, max_duration, or a
    # `playground.phone.dialects` ProtocolError kind (payload_size, wrong_stream, not_json, ...)
    kind: str
    message: str  # one line
    count: int  # how many times in the turn


class CallAgentTurn(TraceEvent, tag="call.agent_turn", kw_only=True):
    """The agent's own trace for this turn (written after the call, when its trace is readable),
    and the caller's FIRST_AUDIO cut into stages:
    FIRST_AUDIO = eos_ms + agent_ms + net_ms (+ residual_ms, what the three do not explain)."""

    agent_turn: int  # its turn number
    eos_ms: float | None  # the agent's end-of-speech detection (the caller's last frame received -> its t0)
    agent_ms: float | None  # its t0 -> first audio frame sent
    # both network legs, measured from the stream position the agent had received when it sent that frame
    net_ms: float | None
    eos_net_ms: float | None  # FIRST_AUDIO - agent_ms (the stage the agent's own trace cannot see)
    residual_ms: float | None
    metrics: dict[str, Any]  # the agent's turn.summary metrics


class CallHangup(TraceEvent, tag="call.hangup", kw_only=True):
    """(session) The call ended."""

    reason: str  # done | agent_closed | max_duration | interrupted | connect_failed
    turns: int
    frames_sent: int  # media messages each way
    media_received: int


class PhoneCall(TraceEvent, tag="phone.call", kw_only=True):
    """(session) The carrier's `start` arrived (its fields as it gave them)."""

    dialect: str
    stream_id: str
    call_id: str
    account_id: str
    media_format: dict[str, Any]
    custom_parameters: dict[str, Any]


class PhoneEndOfSpeech(TraceEvent, tag="phone.eos", kw_only=True):
    """Where t0 lies in the caller's stream (recorded with the VAD's events, t_ms 0)."""

    stream_ms: float | None  # the end of the caller audio that completed the end-of-speech silence
    last_voiced_stream_ms: float | None  # the end of the last voiced VAD frame
    lag_ms: float | None  # t0 - when that audio arrived


class PhoneAudioOut(TraceEvent, tag="phone.audio_out", kw_only=True):
    """The reply's first media message was sent on the socket."""

    stream_ms: float | None  # the end of the latest caller audio received then
    since_ms: float | None  # how long before it had arrived


class PhoneMark(TraceEvent, tag="phone.mark", kw_only=True):
    """A `mark` sent after the last frame of a chunk."""

    name: str
    chunk: int


class PhoneMarkEcho(TraceEvent, tag="phone.mark_echo", kw_only=True):
    """(the turn of the mark) The carrier echoed a mark (its audio was played or cleared)."""

    name: str
    rtt_ms: float  # mark sent -> echo received


class PhoneClear(TraceEvent, tag="phone.clear", kw_only=True):
    """`clear` sent (the reply was cut: barge-in)."""

    reason: str


class PhoneError(TraceEvent, tag="phone.error", kw_only=True):
    """(turn or session) The carrier broke the protocol."""

    kind: str  # a `playground.phone.dialects` ProtocolError kind, or start_timeout
    message: str


class PhoneStop(TraceEvent, tag="phone.stop", kw_only=True):
    """(session) The call ended."""

    # stop (the carrier's `stop`) | closed (the socket closed without it) | no_start | bad_format |
    # start_timeout | server_stopped
    reason: str
    media_received: int  # media messages each way
    frames_sent: int


# -- the registry ----------------------------------------------------------------------------

E = TypeVar("E", bound=TraceEvent)
EVENT_TYPES: dict[str, type[TraceEvent]] = {}  # tag -> its struct


def _register() -> None:
    for cls in TraceEvent.__subclasses__():
        tag = cls.__struct_config__.tag
        if not isinstance(tag, str) or tag == cls.__name__:
            raise TypeError(f"trace event {cls.__name__} has no tag: declare it as "
                            f"`class {cls.__name__}(TraceEvent, tag=\"area.what\", kw_only=True)`")
        if tag in EVENT_TYPES:
            raise TypeError(f"trace event type {tag!r} is declared twice ({EVENT_TYPES[tag].__name__}, {cls.__name__})")
        cls.type = tag
        EVENT_TYPES[tag] = cls


_register()


def event_fields(event: TraceEvent) -> dict[str, Any]:
    """The event's own fields as JSON values, as its trace line has them (without turn, t_ms, type)."""
    data = msgspec.to_builtins(event)
    del data["type"], data["turn"], data["t_ms"]
    return data


# -- the trace in memory ---------------------------------------------------------------------

Listener = Callable[[TraceEvent], None]


class Trace:
    """The ordered events of a session, with listeners (trace writer, UI model).

    Only the event loop's thread appends; producers on other threads hand their
    timestamps over to it. Listeners must be cheap: they run on the hot path.
    """

    def __init__(self, header: dict[str, Any] | None = None) -> None:
        self.header: dict[str, Any] = header or {}
        self.events: list[TraceEvent] = []
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def add(self, event: TraceEvent) -> TraceEvent:
        self.events.append(event)
        for listener in self._listeners:
            listener(event)
        return event

    def turn_events(self, turn: int) -> list[TraceEvent]:
        return [e for e in self.events if e.turn == turn]

    def turns(self) -> list[int]:
        return sorted({e.turn for e in self.events if e.turn != SESSION_TURN})


class TurnClock:
    """Stamps a turn's events: monotonic timestamps become t_ms, milliseconds after t0."""

    def __init__(self, trace: Trace, turn: int, t0_mono_ms: float) -> None:
        self.trace = trace
        self.turn = turn
        self.t0 = t0_mono_ms

    def emit(self, kind: type[E], t_mono_ms: float, /, **fields: Any) -> E:
        """Records a `kind` event that happened at `t_mono_ms` (a missing or unknown field is a TypeError)."""
        event = kind(turn=self.turn, t_ms=round(t_mono_ms - self.t0, 3), **fields)
        self.trace.add(event)
        return event


def session_event(kind: type[E], t_ms: float, /, **fields: Any) -> E:
    """A session-level `kind` event `t_ms` after the session's start."""
    return kind(turn=SESSION_TURN, t_ms=round(t_ms, 3), **fields)


def events_by_turn(events: Iterable[TraceEvent]) -> dict[int, list[TraceEvent]]:
    """Each turn's events in trace order, by turn number (the session's own under SESSION_TURN)."""
    by_turn: dict[int, list[TraceEvent]] = {}
    for e in events:
        by_turn.setdefault(e.turn, []).append(e)
    return by_turn


def first(events: Iterable[TraceEvent], kind: type[E]) -> E | None:
    """The first `kind` event of `events`, or None."""
    return next((e for e in events if isinstance(e, kind)), None)
