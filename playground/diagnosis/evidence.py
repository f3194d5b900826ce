"""What the diagnosis reads of a trace: every event field it uses is read here, and only here.

A turn's events become one `TurnEvidence` (its `TurnMetrics` plus the few facts the metrics do
not hold: how TTS was reached and why, the first chunk, the prompt and its cache, the first
audible sample, playback gaps and cuts, the end of speech, and a phone caller's own events).
The rules (`playground.diagnosis.findings`) and the breakdown only read these objects, so a
change of the trace model is a change of this module.

Each fact keeps where it came from (`Source`: the event type and its time), so a finding can
name the events its numbers come from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from playground.core import events as ev
from playground.core.metrics import TurnMetrics, compute_metrics

# The phone caller's events (`playground call`, playground.phone.events), read by name: the phone
# leg sits above the diagnosis.
CALL_LINE = "call.line"
CALL_AGENT_AUDIO = "call.agent_audio"
CALL_AGENT_AUDIBLE = "call.agent_audible"
CALL_AGENT_TURN = "call.agent_turn"
CALL_REPLY_END = "call.reply_end"
CALL_AGENT_STOPPED = "call.agent_stopped"
CALL_ERROR = "call.error"
CALL_TRACE_KIND = "call"  # the `kind` of a caller's trace header
FRAME_MS = 20.0  # a phone media frame (the caller's underruns count them)


@dataclass(frozen=True)
class Source:
    """Where a number comes from: an event type at a time (ms after t0), or a derived metric."""

    what: str
    t_ms: float | None = None

    def __str__(self) -> str:
        return self.what if self.t_ms is None else f"{self.what} @{self.t_ms:,.1f} ms"


@dataclass(frozen=True)
class TtsSessionFact:
    action: str
    path: str | None
    provider: str | None
    reason: str | None
    deliberate: bool
    downtime_ms: float | None
    source: Source


@dataclass(frozen=True)
class FirstChunk:
    index: int
    text: str  # as sent to TTS
    raw: str  # as the LLM wrote it
    reason: str
    start_ms: float
    source: Source


@dataclass(frozen=True)
class LlmFacts:
    provider: str | None = None
    model: str | None = None
    prompt_chars: int | None = None
    messages: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    context_trimmed: int | None = None
    context_how: str | None = None
    reasoning_chars: int = 0
    request: Source | None = None
    done: Source | None = None


@dataclass(frozen=True)
class Sound:
    silence_ms: float
    device_latency_ms: float
    source: Source


@dataclass(frozen=True)
class Gap:
    chunk: int
    ms: float
    from_ms: float
    source: Source


@dataclass(frozen=True)
class Cancel:
    reason: str
    stop_ms: float | None
    played_ms: float | None
    source: Source


@dataclass(frozen=True)
class SpeechEnd:
    last_voiced_ms: float
    end_silence_ms: float | None
    source: Source


@dataclass(frozen=True)
class CallFacts:
    """A phone caller's turn (`playground call --trace`): t0 is the caller's end of speech."""

    first_audio: float | None = None  # the agent's first media message arrived
    real_latency: float | None = None  # its first audible sample was played
    silent_ms: float | None = None  # agent audio played before that, too quiet to hear
    eos_ms: float | None = None  # from the agent's own trace (call.agent_turn), when it was read
    agent_ms: float | None = None
    net_ms: float | None = None
    residual_ms: float | None = None
    agent_metrics: dict[str, Any] = field(default_factory=dict)
    underruns: int = 0
    barge_in_stop: float | None = None
    clear_ms: float | None = None
    errors: list[tuple[str, str, int]] = field(default_factory=list)  # (kind, message, count)
    sources: dict[str, Source] = field(default_factory=dict)

    @property
    def has_stages(self) -> bool:
        return self.agent_ms is not None


@dataclass
class TurnEvidence:
    turn: int
    kind: str  # typed | voice | call
    text: str
    metrics: TurnMetrics
    events: list[ev.TraceEvent]  # the turn's own, for the chunking tools (compare, oracle)
    strategy: str | None = None
    chunker: dict[str, Any] = field(default_factory=dict)
    tts_provider: str | None = None
    tts_sessions: list[TtsSessionFact] = field(default_factory=list)
    first_chunk: FirstChunk | None = None
    first_send: Source | None = None
    first_sent_chars: int | None = None
    first_audio: Source | None = None
    first_play: Source | None = None
    llm: LlmFacts = field(default_factory=LlmFacts)
    tokens: list[tuple[float, str]] = field(default_factory=list)  # (t_ms, text) with text
    sound: Sound | None = None
    gaps: list[Gap] = field(default_factory=list)
    sends: dict[int, float] = field(default_factory=dict)  # chunk -> text sent to TTS
    play_ends: dict[int, float] = field(default_factory=dict)  # chunk -> its playback ended
    cut: list[int] = field(default_factory=list)  # chunks whose playback was cut
    cancel: Cancel | None = None
    speech_end: SpeechEnd | None = None
    stt_final: Source | None = None
    stt_audio_ms: float | None = None  # the speech the final transcript was made from
    call: CallFacts | None = None

    @property
    def spoken(self) -> bool:
        return self.speech_end is not None


@dataclass(frozen=True)
class SessionFacts:
    """What the header and the session's own events say."""

    kind: str  # session | call
    preset_name: str
    budgets: dict[str, float]
    chunker: dict[str, Any]
    tts_provider: str | None
    end_silence_ms: float | None
    tts_opened: bool  # a session-level `tts.session` open over the persistent session
    tts_session_events: int  # session-level tts.session events: none at all means a trace that does not record them


def session_facts(header: dict[str, Any], events: Iterable[ev.TraceEvent], budgets: dict[str, float]) -> SessionFacts:
    preset = header.get("preset") or {}
    tts_section = preset.get("tts") or {}
    providers = header.get("providers") or {}
    opened = False
    count = 0
    for e in events:
        if e.turn == ev.SESSION_TURN and e.type == ev.TTS_SESSION:
            count += 1
            opened = opened or (e.get("action") == "open" and e.get("path") == "persistent")
    return SessionFacts(
        kind=CALL_TRACE_KIND if header.get("kind") == CALL_TRACE_KIND else "session",
        preset_name=str(preset.get("name", "?")), budgets=budgets, chunker=dict(preset.get("chunker") or {}),
        tts_provider=(providers.get("tts") or {}).get("name") or tts_section.get("provider"),
        end_silence_ms=(preset.get("input") or {}).get("end_silence_ms"), tts_opened=opened,
        tts_session_events=count)


def turn_evidence(turn_events: Sequence[ev.TraceEvent], session_tts_provider: str | None = None) -> TurnEvidence:
    """One turn's evidence, from its events in trace order."""
    events = list(turn_events)
    metrics = compute_metrics(events)
    evidence = TurnEvidence(turn=metrics.turn, kind="typed", text="", metrics=metrics, events=events,
                            tts_provider=session_tts_provider)
    llm: dict[str, Any] = {}
    call: dict[str, Any] = {}
    for e in events:
        _READERS.get(e.type, _ignore)(evidence, e, llm, call)
    evidence.llm = LlmFacts(**llm)
    if call or evidence.kind == "call":
        evidence.kind = "call"
        evidence.call = CallFacts(**call)
    return evidence


def _ignore(*_: Any) -> None:
    pass


def _source(e: ev.TraceEvent, what: str | None = None) -> Source:
    return Source(what or e.type, e.t_ms)


def _start(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    x.text = e.get("text", "")
    x.strategy = e.get("strategy")
    x.chunker = dict(e.get("chunker") or {})
    x.kind = {"typed": "typed", "call": "call"}.get(e.get("input"), "voice")


def _tts_session(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    provider = e.get("provider")
    x.tts_provider = provider or x.tts_provider
    x.tts_sessions.append(TtsSessionFact(e.get("action", "?"), e.get("path"), provider, e.get("reason"),
                                         bool(e.get("deliberate")) or str(e.get("reason") or "").startswith("preset:"),
                                         e.get("downtime_ms"), _source(e, f"tts.session {e.get('action', '?')}")))


def _request(x: TurnEvidence, e: ev.TraceEvent, llm: dict[str, Any], _: Any) -> None:
    llm.update(provider=e.get("provider"), model=e.get("model"), prompt_chars=e.get("prompt_chars"),
               messages=e.get("messages"), request=_source(e))


def _token(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    if e.get("text"):
        x.tokens.append((e.t_ms, e.get("text")))


def _done(x: TurnEvidence, e: ev.TraceEvent, llm: dict[str, Any], _: Any) -> None:
    usage = e.get("usage") or {}
    context = e.get("context") or {}
    llm.update(prompt_tokens=usage.get("prompt_tokens", usage.get("input_tokens")),
               cached_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
               context_trimmed=context.get("trimmed"), context_how=context.get("how"),
               reasoning_chars=e.get("reasoning_chars") or 0, done=_source(e))


def _chunk(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    if x.first_chunk is None:
        x.first_chunk = FirstChunk(e.get("index", 0), e.get("text", ""), e.get("raw", e.get("text", "")),
                                   e.get("reason", "?"), e.get("start_ms", e.t_ms), _source(e, f"chunk #{e.get('index', 0)}"))


def _send(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    x.sends.setdefault(e.get("chunk"), e.t_ms)
    if x.first_send is None:
        x.first_send = _source(e, f"tts.send #{e.get('chunk')}")
        x.first_sent_chars = e.get("chars")


def _audio(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    if x.first_audio is None:
        x.first_audio = _source(e, f"tts.audio #{e.get('chunk')}")


def _play_start(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    if x.first_play is None:
        x.first_play = _source(e)


def _play_end(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    x.play_ends.setdefault(e.get("chunk"), e.t_ms)
    if e.get("cut"):
        x.cut.append(e.get("chunk"))


def _gap(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    x.gaps.append(Gap(e.get("chunk", 0), e.get("ms", 0.0), e.get("from_ms", e.t_ms), _source(e)))


def _sound(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    if x.sound is None:
        x.sound = Sound(e.get("silence_ms", 0.0), e.get("device_latency_ms", 0.0), _source(e))


def _cancelled(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    if x.cancel is None:
        played = e.get("played") or {}
        x.cancel = Cancel(e.get("reason", "cancelled"), e.get("stop_ms"), played.get("ms"), _source(e))


def _speech_end(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    if x.speech_end is None and e.get("last_voiced_ms") is not None:
        x.speech_end = SpeechEnd(e.get("last_voiced_ms"), e.get("end_silence_ms"), _source(e))


def _stt_final(x: TurnEvidence, e: ev.TraceEvent, *_: Any) -> None:
    if x.stt_final is None:
        x.stt_final = _source(e)
        x.stt_audio_ms = e.get("audio_ms")


def _call_audio(x: TurnEvidence, e: ev.TraceEvent, _: Any, call: dict[str, Any]) -> None:
    if "first_audio" not in call:
        call["first_audio"] = e.t_ms
        call.setdefault("sources", {})["first_audio"] = _source(e)


def _call_audible(x: TurnEvidence, e: ev.TraceEvent, _: Any, call: dict[str, Any]) -> None:
    if "real_latency" not in call:
        call.update(real_latency=e.t_ms, silent_ms=e.get("silent_ms"))
        call.setdefault("sources", {})["real_latency"] = _source(e)


def _call_agent_turn(x: TurnEvidence, e: ev.TraceEvent, _: Any, call: dict[str, Any]) -> None:
    call.update(eos_ms=e.get("eos_ms"), agent_ms=e.get("agent_ms"), net_ms=e.get("net_ms"),
                residual_ms=e.get("residual_ms"), agent_metrics=dict(e.get("metrics") or {}))
    call.setdefault("sources", {})["stages"] = _source(e)


def _call_reply_end(x: TurnEvidence, e: ev.TraceEvent, _: Any, call: dict[str, Any]) -> None:
    call["underruns"] = e.get("underruns") or 0
    call.setdefault("sources", {})["reply_end"] = _source(e)


def _call_stopped(x: TurnEvidence, e: ev.TraceEvent, _: Any, call: dict[str, Any]) -> None:
    call.update(barge_in_stop=e.get("stop_ms"), clear_ms=e.get("clear_ms"))
    call.setdefault("sources", {})["stopped"] = _source(e)


def _call_error(x: TurnEvidence, e: ev.TraceEvent, _: Any, call: dict[str, Any]) -> None:
    call.setdefault("errors", []).append((e.get("kind", "?"), e.get("message", ""), e.get("count") or 1))


_READERS = {
    ev.TURN_START: _start,
    ev.TTS_SESSION: _tts_session,
    ev.LLM_REQUEST: _request,
    ev.LLM_TOKEN: _token,
    ev.LLM_DONE: _done,
    ev.CHUNK: _chunk,
    ev.TTS_SEND: _send,
    ev.TTS_AUDIO: _audio,
    ev.PLAY_START: _play_start,
    ev.PLAY_END: _play_end,
    ev.PLAY_GAP: _gap,
    ev.PLAY_SOUND: _sound,
    ev.TURN_CANCELLED: _cancelled,
    ev.VAD_SPEECH_END: _speech_end,
    ev.STT_FINAL: _stt_final,
    CALL_AGENT_AUDIO: _call_audio,
    CALL_AGENT_AUDIBLE: _call_audible,
    CALL_AGENT_TURN: _call_agent_turn,
    CALL_REPLY_END: _call_reply_end,
    CALL_AGENT_STOPPED: _call_stopped,
    CALL_ERROR: _call_error,
}
