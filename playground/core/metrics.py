"""Turn metrics (docs/metrics.md), computed from a turn's events only.

`compute_metrics` is a pure function of the event list: the CLI table, the TUI,
the trace's `turn.summary` and the benchmarks all use it, so a number means the
same thing everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, get_args

from playground.core import events as ev

# Metric key -> label shown to users (the seed's names).
METRIC_LABELS: dict[str, str] = {
    "vad_end": "VAD_END",
    "stt": "STT",
    "llm_ttft": "LLM_TTFT",
    "ttfs": "TTFS",
    "ttft_tts": "TTFT_TTS",
    "ttfa": "TTFA",
    "first_play": "FIRST_PLAY",
    "first_sound": "FIRST_SOUND",
    "llm_total": "LLM_TOTAL",
    "tts_total": "TTS_TOTAL",
    "e2e_total": "E2E_TOTAL",
    "chunker_wait": "TTFS-LLM_TTFT",
    "handoff": "TTFT_TTS-TTFS",
    "user_latency": "USER_LATENCY",
    "gaps_ms": "GAPS_MS",
}

TTS_PATHS: tuple[str, ...] = get_args(ev.TTSPath)  # best to worst


@dataclass
class TurnMetrics:
    turn: int
    status: str = "ok"  # ok | cancelled | error
    strategy: str | None = None
    # spoken turns: speech end detected after the last voiced frame; end of speech -> FIRST_PLAY
    vad_end: float | None = None
    user_latency: float | None = None
    stt: float | None = None
    llm_ttft: float | None = None
    ttfs: float | None = None
    ttft_tts: float | None = None
    ttfa: float | None = None
    first_play: float | None = None
    # the first audible sample reached the listener (device latency included where known)
    first_sound: float | None = None
    llm_total: float | None = None
    tts_total: float | None = None
    e2e_total: float | None = None
    chunker_wait: float | None = None
    handoff: float | None = None
    # playback ran dry after FIRST_PLAY: how often and for how long in all (None: not measured,
    # the output did not play in real time)
    gaps: int | None = None
    gaps_ms: float | None = None
    tokens: int = 0
    tokens_per_s: float | None = None
    chunks: int = 0
    spoken_chunks: int = 0
    tts_path: str | None = None
    tts_path_reason: str | None = None
    errors: list[str] = field(default_factory=list)
    # Per spoken chunk: chunk emitted -> text given to TTS (ms).
    handoffs: list[float] = field(default_factory=list)

    @property
    def tts_path_fault(self) -> bool:
        """The turn did not get the persistent session it should have had. REST chosen in
        the preset (`persistent = false`) is a deliberate choice, not a fault."""
        if self.tts_path == "fallback_rest":
            return not (self.tts_path_reason or "").startswith("preset:")
        return False

    def value(self, key: str) -> float | None:
        return getattr(self, key)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("turn")
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in data.items()}


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def worse_tts_path(current: str | None, event: ev.TtsSession) -> bool:
    """Whether `event`'s path is at least as bad as `current`: the worst way TTS was reached
    during a turn is the one that counts (compute_metrics, the timeline)."""
    path = event.path
    return path is not None and (current is None or TTS_PATHS.index(path) >= TTS_PATHS.index(current))


def compute_metrics(turn_events: Iterable[ev.TraceEvent]) -> TurnMetrics:
    events = [e for e in turn_events if not isinstance(e, ev.TurnSummary)]
    m = TurnMetrics(turn=events[0].turn if events else 0)
    start: ev.TurnStart | None = None
    speech_end: ev.VadSpeechEnd | None = None
    first_audio: ev.TtsAudio | None = None
    last_audio: ev.TtsAudio | None = None
    play: ev.PlayStart | None = None
    tokens: list[float] = []
    chunk_time: dict[int, float] = {}
    sends: list[ev.TtsSend] = []
    gaps: list[float] = []
    cancelled = False
    for e in events:
        if isinstance(e, ev.LlmToken):
            if e.text:
                tokens.append(e.t_ms)
        elif isinstance(e, ev.Chunk):
            if not chunk_time:
                m.ttfs = e.t_ms
            chunk_time[e.index] = e.t_ms
            m.chunks += 1
        elif isinstance(e, ev.TtsSend):
            sends.append(e)
        elif isinstance(e, ev.TtsAudio):
            first_audio = first_audio or e
            last_audio = e
        elif isinstance(e, ev.TurnStart):
            start = start or e
        elif isinstance(e, ev.SttFinal):
            m.stt = e.t_ms if m.stt is None else m.stt
        elif isinstance(e, ev.VadSpeechEnd):
            speech_end = speech_end or e
        elif isinstance(e, ev.PlayStart):
            play = play or e
        elif isinstance(e, ev.PlaySound):
            m.first_sound = e.t_ms if m.first_sound is None else m.first_sound
        elif isinstance(e, ev.PlayGap):
            gaps.append(e.ms)
        elif isinstance(e, ev.TtsSession):
            if worse_tts_path(m.tts_path, e):
                m.tts_path = e.path
                m.tts_path_reason = e.reason or m.tts_path_reason
        elif isinstance(e, ev.Error):
            m.errors.append(f"{e.where}: {e.message}")
        elif isinstance(e, ev.TurnCancelled):
            cancelled = True

    if start is not None:
        m.strategy = start.strategy
    last_voiced = speech_end.last_voiced_ms if speech_end else None

    m.tokens = len(tokens)
    if tokens:
        m.llm_ttft = tokens[0]
        m.llm_total = tokens[-1]
        span = tokens[-1] - tokens[0]
        if len(tokens) > 1 and span > 0:
            m.tokens_per_s = (len(tokens) - 1) * 1000.0 / span

    m.spoken_chunks = len(sends)
    if sends:
        m.ttft_tts = sends[0].t_ms
    m.handoffs = [s.t_ms - chunk_time[s.chunk] for s in sends if s.chunk in chunk_time]

    if first_audio is not None and last_audio is not None:
        m.ttfa = first_audio.t_ms
        m.e2e_total = last_audio.t_ms
        m.tts_total = _diff(last_audio.t_ms, m.ttft_tts)

    m.first_play = play.t_ms if play else None
    if play is not None and not (start is not None and start.unpaced):
        m.gaps, m.gaps_ms = len(gaps), round(sum(gaps), 1)
    # What the caller waits for: from the moment they stopped speaking, not from when it was detected.
    m.vad_end = _diff(speech_end.t_ms if speech_end else None, last_voiced)
    m.user_latency = _diff(m.first_play, last_voiced)

    m.chunker_wait = _diff(m.ttfs, m.llm_ttft)
    m.handoff = _diff(m.ttft_tts, m.ttfs)

    if cancelled:
        m.status = "cancelled"
    elif m.errors:
        m.status = "error"
    return m


def budget_misses(m: TurnMetrics, budgets: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """Metrics over their budget: key -> (value, budget). Missing values never miss."""
    misses: dict[str, tuple[float, float]] = {}
    for key, limit in budgets.items():
        value = m.value(key)
        if value is not None and value > limit:
            misses[key] = (value, limit)
    return misses


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear-interpolated percentile (p in 0..100); None for no values."""
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return None
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * p / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)
