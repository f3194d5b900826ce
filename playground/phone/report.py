"""What `playground call` prints, and where the agent's time went according to its own trace.

The caller measures FIRST_AUDIO from its end of speech to the agent's first media message.
When the agent is `playground serve-agent`, its trace of the same call (found by the call id
in `--agent-traces DIR`) says what happened inside, and the caller's number splits into
stages that were measured apart:

    FIRST_AUDIO = EOS + AGENT + NET (+ rest)

- AGENT: the agent's t0 -> its first media frame sent (`phone.audio_out`): what its own trace sees.
- EOS: the agent's end-of-speech detection, from the caller's last speech frame received to
  its t0, placed by stream position (`phone.eos`).
- NET: both network legs, from the caller's send of the stream position the agent had when it
  sent its first frame (`phone.audio_out.stream_ms`, `since_ms`) to that frame's arrival.
- rest: what the three do not explain (a few ms: frame cadence).

EOS + NET, the difference between what the caller waits and what the agent's trace shows, is
its own stage: the part of the seed's "Real Latency" no agent-side log can measure.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playground.core import events as ev
from playground.core.metrics import percentile
from playground.core.tracefile import read_trace
from playground.phone.codec import FRAME_MS

CALL_LABELS = {
    "first_audio": "FIRST_AUDIO",
    "real_latency": "REAL_LATENCY",
    "agent_speech": "AGENT_SPEECH",
    "barge_in_stop": "BARGE_STOP",
    "clear_ms": "CLEAR",
}
ROW_METRICS = ("first_audio", "real_latency", "agent_speech", "barge_in_stop")
STAGE_LABELS = {"first_audio": "FIRST_AUDIO", "agent_ms": "AGENT", "eos_net_ms": "EOS+NET", "eos_ms": "EOS",
                "net_ms": "NET", "residual_ms": "rest"}
AGENT_METRICS = {"vad_end": "VAD_END", "stt": "STT", "llm_ttft": "LLM_TTFT", "ttfa": "TTFA", "first_play": "FIRST_PLAY"}
AGENT_TRACE_WAIT_S = 10.0


def trace_file_name(call_id: str) -> str:
    """The agent's trace of a call (in serve-agent's --trace folder): its call id, with what a
    file name cannot hold replaced."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", call_id) + ".jsonl"


def _cell(value: float | None, width: int = 12) -> str:
    return f"{'-' if value is None else f'{value:.0f}':>{width}}"


def row_header() -> str:
    return "turn " + "".join(f"{CALL_LABELS[k]:>13}" for k in ROW_METRICS) + "  marks  status"


def row(m: Any) -> str:
    status = m.status if not m.errors else "; ".join(m.errors)
    return f"{m.turn:>4} " + "".join(" " + _cell(m.value(k)) for k in ROW_METRICS) + f"  {m.marks:>5}  {status}"


def percentile_rows(metrics: Sequence[Any], keys: Sequence[str] = ROW_METRICS) -> list[str]:
    rows = []
    for name, q in (("p50", 50), ("p95", 95), ("max", 100)):
        values = [percentile([v for m in metrics if (v := m.value(k)) is not None], q) for k in keys]
        rows.append(f" {name:<4}" + "".join(" " + _cell(v) for v in values))
    return rows


# -- the agent's trace -----------------------------------------------------------------------------


@dataclass
class AgentTurn:
    turn: int
    eos: ev.PhoneEndOfSpeech | None
    audio_out: ev.PhoneAudioOut | None  # its t_ms: t0 -> first frame sent
    metrics: dict[str, Any]


@dataclass
class Stages:
    """One caller turn cut into stages (ms); None where a part is missing."""

    turn: int
    agent_turn: int
    first_audio: float | None
    agent_ms: float | None
    eos_ms: float | None
    net_ms: float | None
    metrics: dict[str, Any]

    @property
    def eos_net_ms(self) -> float | None:
        return None if self.first_audio is None or self.agent_ms is None else self.first_audio - self.agent_ms

    @property
    def residual_ms(self) -> float | None:
        parts = (self.first_audio, self.agent_ms, self.eos_ms, self.net_ms)
        if any(p is None for p in parts):
            return None
        return self.first_audio - self.agent_ms - self.eos_ms - self.net_ms  # type: ignore[operator]

    def value(self, key: str) -> float | None:
        """A stage (STAGE_LABELS) or one of the agent's metrics (AGENT_METRICS)."""
        return self.metrics.get(key) if key in AGENT_METRICS else getattr(self, key)


def agent_turns(events: Sequence[ev.TraceEvent]) -> list[AgentTurn]:
    """The turns of an agent trace with what the stages need."""
    turns = []
    for number, events_of_turn in sorted(ev.events_by_turn(events).items()):
        if number == ev.SESSION_TURN:
            continue
        summary = ev.first(events_of_turn, ev.TurnSummary)
        turns.append(AgentTurn(number, ev.first(events_of_turn, ev.PhoneEndOfSpeech),
                               ev.first(events_of_turn, ev.PhoneAudioOut), summary.metrics if summary else {}))
    return turns


async def read_agent_trace(path: Path, timeout_s: float = AGENT_TRACE_WAIT_S) -> list[ev.TraceEvent] | None:
    """The agent's trace of a call, once the agent has closed it (its `phone.stop`); None if it
    does not appear in time."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if path.is_file():
            try:
                _header, events = read_trace(path)
            except ValueError:  # a line being written
                events = []
            if any(isinstance(e, ev.PhoneStop) for e in events):
                return events
        if asyncio.get_running_loop().time() >= deadline:
            return None
        await asyncio.sleep(0.05)


def stages(turn_ends: Sequence[float], first_audio: Sequence[float | None], t0s: Sequence[float],
           frame_sent_at: Sequence[float], agent: Sequence[AgentTurn]) -> list[Stages | None]:
    """Each caller turn matched with the agent turn whose end of speech lies after its line and
    before the next line's end (stream positions), then cut into stages."""
    result: list[Stages | None] = []
    for index, end_ms in enumerate(turn_ends):
        next_end = turn_ends[index + 1] if index + 1 < len(turn_ends) else float("inf")
        match = next((a for a in agent if a.eos and a.eos.stream_ms is not None
                      and end_ms <= a.eos.stream_ms < next_end), None)
        if match is None:
            result.append(None)
            continue
        received = first_audio[index]
        first = None if received is None else received - t0s[index]
        eos = match.eos
        assert eos is not None and eos.stream_ms is not None
        eos_ms = None if eos.lag_ms is None else eos.stream_ms - end_ms + eos.lag_ms
        net_ms = None
        out = match.audio_out
        position, since = (out.stream_ms, out.since_ms) if out is not None else (None, None)
        if received is not None and position is not None and since is not None:
            frame = round(position / FRAME_MS) - 1
            if 0 <= frame < len(frame_sent_at):
                net_ms = received - frame_sent_at[frame] - since
        result.append(Stages(index + 1, match.turn, first, out.t_ms if out is not None else None, eos_ms, net_ms,
                             match.metrics))
    return result


STAGE_COLUMNS = ("first_audio", "agent_ms", "eos_net_ms", "eos_ms", "net_ms", "residual_ms")


def stage_header() -> str:
    return ("turn " + "".join(f"{STAGE_LABELS[k]:>12}" for k in STAGE_COLUMNS)
            + "  |" + "".join(f"{label:>11}" for label in AGENT_METRICS.values()))


def stage_row(turn: int, s: Stages | None) -> str:
    if s is None:
        return f"{turn:>4}  (no matching turn in the agent's trace)"
    agent = "".join(_cell(s.metrics.get(k), 11) for k in AGENT_METRICS)
    return f"{turn:>4} " + "".join(_cell(s.value(k)) for k in STAGE_COLUMNS) + "  |" + agent


# -- many calls ----------------------------------------------------------------------------------

LEVEL_METRICS = ("first_audio", "real_latency")
AGENT_LEVEL_COLUMNS = ("eos_ms", "agent_ms", "net_ms", "residual_ms", *AGENT_METRICS)


def _p(values: Sequence[float], q: float) -> str:
    value = percentile(values, q)
    return "-" if value is None else f"{value:.0f}"


def level_header() -> str:
    spans = "".join(f"{CALL_LABELS[k] + ' p50/p95/max':>28}" for k in LEVEL_METRICS)
    return f"{'calls':>5} {'ended ok':>8} {'turns':>6} {'answered':>8}{spans}  errors"


def level_row(n: int, results: Sequence[Any]) -> str:
    turns = [m for r in results for m in r.turns]
    answered = sum(1 for m in turns if m.first_audio is not None)
    cells = ""
    for key in LEVEL_METRICS:
        values = [v for m in turns if (v := m.value(key)) is not None]
        cells += f"{_p(values, 50) + '/' + _p(values, 95) + '/' + _p(values, 100):>28}"
    kinds: Counter[str] = Counter()
    for r in results:
        kinds.update(r.errors.keys())  # a call's fault once per call, a turn's once per turn
        for m in r.turns:
            kinds.update(m.error_counts.keys())
    errors = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())) or "none"
    ok = sum(1 for r in results if r.reason == "done")
    return f"{n:>5} {ok:>8} {len(turns):>6} {answered:>8}{cells}  {errors}"


def agent_level_header() -> str:
    labels = [STAGE_LABELS.get(k) or AGENT_METRICS[k] for k in AGENT_LEVEL_COLUMNS]
    return f"{'calls':>5} {'turns':>6}" + "".join(f"{label:>11}" for label in labels)


def agent_level_row(n: int, results: Sequence[Any]) -> str:
    matched = [s for r in results for s in r.stages if s is not None]
    cells = "".join(f"{_p([v for s in matched if (v := s.value(k)) is not None], 50):>11}" for k in AGENT_LEVEL_COLUMNS)
    return f"{n:>5} {len(matched):>6}" + cells


def tick_lateness(late_ms: Sequence[float]) -> str:
    """How late the caller's 20 ms ticks ran: the caller's own health as an instrument."""
    p99, top = percentile(late_ms, 99), percentile(late_ms, 100)
    if p99 is None or top is None:
        return "the caller sent no audio frames"
    verdict = "" if p99 < 2 * FRAME_MS else " (the caller itself is loaded: spread the calls over more machines)"
    return f"the caller's 20 ms ticks late by p99 {p99:.1f} ms, max {top:.0f} ms{verdict}"
