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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from playground.core import events as ev
from playground.core.metrics import TurnMetrics, compute_metrics

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
        if e.turn == ev.SESSION_TURN and isinstance(e, ev.TtsSession):
            count += 1
            opened = opened or (e.action == "open" and e.path == "persistent")
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
        _READERS.get(type(e), _ignore)(evidence, e, llm, call)
    evidence.llm = LlmFacts(**llm)
    if call or evidence.kind == "call":
        evidence.kind = "call"
        evidence.call = CallFacts(**call)
    return evidence


def without_events(evidence: TurnEvidence) -> TurnEvidence:
    """The evidence without the turn's events and tokens (what the session's medians and its
    summary read of a turn need neither)."""
    return replace(evidence, events=[], tokens=[])


def _ignore(*_: Any) -> None:
    pass


def _source(e: ev.TraceEvent, what: str | None = None) -> Source:
    return Source(what or e.type, e.t_ms)


def _start(x: TurnEvidence, e: ev.TurnStart, *_: Any) -> None:
    x.text = e.text
    x.strategy = e.strategy
    x.chunker = dict(e.chunker or {})
    x.kind = {"typed": "typed", "call": "call"}.get(e.input, "voice")


def _tts_session(x: TurnEvidence, e: ev.TtsSession, *_: Any) -> None:
    x.tts_provider = e.provider or x.tts_provider
    x.tts_sessions.append(TtsSessionFact(e.action, e.path, e.provider, e.reason,
                                         e.deliberate or (e.reason or "").startswith("preset:"),
                                         e.downtime_ms, _source(e, f"tts.session {e.action}")))


def _request(x: TurnEvidence, e: ev.LlmRequest, llm: dict[str, Any], _: Any) -> None:
    llm.update(provider=e.provider, model=e.model, prompt_chars=e.prompt_chars, messages=e.messages,
               request=_source(e))


def _token(x: TurnEvidence, e: ev.LlmToken, *_: Any) -> None:
    if e.text:
        x.tokens.append((e.t_ms, e.text))


def _done(x: TurnEvidence, e: ev.LlmDone, llm: dict[str, Any], _: Any) -> None:
    usage, context = e.usage, e.context
    llm.update(prompt_tokens=usage.prompt_tokens if usage.prompt_tokens is not None else usage.input_tokens,
               cached_tokens=usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else None,
               context_trimmed=context.trimmed if context else None, context_how=context.how if context else None,
               reasoning_chars=e.reasoning_chars, done=_source(e))


def _chunk(x: TurnEvidence, e: ev.Chunk, *_: Any) -> None:
    if x.first_chunk is None:
        x.first_chunk = FirstChunk(e.index, e.text, e.raw, e.reason, e.start_ms, _source(e, f"chunk #{e.index}"))


def _send(x: TurnEvidence, e: ev.TtsSend, *_: Any) -> None:
    x.sends.setdefault(e.chunk, e.t_ms)
    if x.first_send is None:
        x.first_send = _source(e, f"tts.send #{e.chunk}")
        x.first_sent_chars = e.chars


def _audio(x: TurnEvidence, e: ev.TtsAudio, *_: Any) -> None:
    if x.first_audio is None:
        x.first_audio = _source(e, f"tts.audio #{e.chunk}")


def _play_start(x: TurnEvidence, e: ev.PlayStart, *_: Any) -> None:
    if x.first_play is None:
        x.first_play = _source(e)


def _play_end(x: TurnEvidence, e: ev.PlayEnd, *_: Any) -> None:
    x.play_ends.setdefault(e.chunk, e.t_ms)
    if e.cut:
        x.cut.append(e.chunk)


def _gap(x: TurnEvidence, e: ev.PlayGap, *_: Any) -> None:
    x.gaps.append(Gap(e.chunk, e.ms, e.from_ms, _source(e)))


def _sound(x: TurnEvidence, e: ev.PlaySound, *_: Any) -> None:
    if x.sound is None:
        x.sound = Sound(e.silence_ms, e.device_latency_ms, _source(e))


def _cancelled(x: TurnEvidence, e: ev.TurnCancelled, *_: Any) -> None:
    if x.cancel is None:
        x.cancel = Cancel(e.reason, e.stop_ms, e.played.ms, _source(e))


def _speech_end(x: TurnEvidence, e: ev.VadSpeechEnd, *_: Any) -> None:
    if x.speech_end is None and e.last_voiced_ms is not None:
        x.speech_end = SpeechEnd(e.last_voiced_ms, e.end_silence_ms, _source(e))


def _stt_final(x: TurnEvidence, e: ev.SttFinal, *_: Any) -> None:
    if x.stt_final is None:
        x.stt_final = _source(e)
        x.stt_audio_ms = e.audio_ms


def _call_audio(x: TurnEvidence, e: ev.CallAgentAudio, _: Any, call: dict[str, Any]) -> None:
    if "first_audio" not in call:
        call["first_audio"] = e.t_ms
        call.setdefault("sources", {})["first_audio"] = _source(e)


def _call_audible(x: TurnEvidence, e: ev.CallAgentAudible, _: Any, call: dict[str, Any]) -> None:
    if "real_latency" not in call:
        call.update(real_latency=e.t_ms, silent_ms=e.silent_ms)
        call.setdefault("sources", {})["real_latency"] = _source(e)


def _call_agent_turn(x: TurnEvidence, e: ev.CallAgentTurn, _: Any, call: dict[str, Any]) -> None:
    call.update(eos_ms=e.eos_ms, agent_ms=e.agent_ms, net_ms=e.net_ms, residual_ms=e.residual_ms,
                agent_metrics=dict(e.metrics))
    call.setdefault("sources", {})["stages"] = _source(e)


def _call_reply_end(x: TurnEvidence, e: ev.CallReplyEnd, _: Any, call: dict[str, Any]) -> None:
    call["underruns"] = e.underruns
    call.setdefault("sources", {})["reply_end"] = _source(e)


def _call_stopped(x: TurnEvidence, e: ev.CallAgentStopped, _: Any, call: dict[str, Any]) -> None:
    call.update(barge_in_stop=e.stop_ms, clear_ms=e.clear_ms)
    call.setdefault("sources", {})["stopped"] = _source(e)


def _call_error(x: TurnEvidence, e: ev.CallError, _: Any, call: dict[str, Any]) -> None:
    call.setdefault("errors", []).append((e.kind, e.message, e.count or 1))


_READERS: dict[type[ev.TraceEvent], Callable[..., None]] = {
    ev.TurnStart: _start,
    ev.TtsSession: _tts_session,
    ev.LlmRequest: _request,
    ev.LlmToken: _token,
    ev.LlmDone: _done,
    ev.Chunk: _chunk,
    ev.TtsSend: _send,
    ev.TtsAudio: _audio,
    ev.PlayStart: _play_start,
    ev.PlayEnd: _play_end,
    ev.PlayGap: _gap,
    ev.PlaySound: _sound,
    ev.TurnCancelled: _cancelled,
    ev.VadSpeechEnd: _speech_end,
    ev.SttFinal: _stt_final,
    ev.CallAgentAudio: _call_audio,
    ev.CallAgentAudible: _call_audible,
    ev.CallAgentTurn: _call_agent_turn,
    ev.CallReplyEnd: _call_reply_end,
    ev.CallAgentStopped: _call_stopped,
    ev.CallError: _call_error,
}
