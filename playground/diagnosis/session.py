"""A whole trace diagnosed: every turn's breakdown and findings, then the session's summary.

    diagnosis = diagnose_trace(header, events)
    diagnosis.turns[0].findings      # worst first
    diagnosis.top_settings           # the settings that would save the most, with their saving

`Diagnoser` does the same one turn at a time, as turns end (the TUI): each turn is compared
with the session's turns so far.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from playground.chunking.compare import tts_ms_per_char
from playground.core import events as ev
from playground.core.metrics import METRIC_LABELS, percentile
from playground.core.timeline import turn_timeline
from playground.diagnosis.breakdown import Breakdown, turn_breakdown
from playground.diagnosis.evidence import SessionFacts, TurnEvidence, session_facts, turn_evidence, without_events
from playground.diagnosis.findings import SEVERITIES, Finding, SessionContext, base_chunker, turn_findings

TOP_SETTINGS = 3
CALL_METRICS = {"first_audio": "FIRST_AUDIO", "real_latency": "REAL_LATENCY"}


@dataclass
class TurnDiagnosis:
    evidence: TurnEvidence
    breakdown: Breakdown
    findings: list[Finding]

    @property
    def turn(self) -> int:
        return self.evidence.turn

    def without_events(self) -> TurnDiagnosis:
        """The same diagnosis without the turn's events and tokens: what a summary of a long
        session keeps of each turn."""
        return replace(self, evidence=without_events(self.evidence))

    @property
    def worst(self) -> Finding | None:
        """The first CRITICAL or WARNING finding (what the waterfall band shows), if any."""
        return next((f for f in self.findings if f.severity != SEVERITIES[-1]), None)

    def to_json(self) -> dict[str, Any]:
        b = self.breakdown
        return {"turn": self.turn, "kind": self.evidence.kind, "text": self.evidence.text,
                "breakdown": {"from": b.start_label, "to": b.end_label, "complete": b.complete, "missing": b.missing,
                              "total_ms": round(b.total_ms, 3),
                              "stages": [{"stage": s.key, "label": s.label, "ms": round(s.ms, 3), "setting": s.setting}
                                         for s in b.stages]},
                "findings": [f.to_json() for f in self.findings]}


@dataclass
class SettingSaving:
    setting: str
    saving_ms: float
    turns: list[int]
    bases: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"setting": self.setting, "saving_ms": round(self.saving_ms, 1), "turns": self.turns, "bases": self.bases}


@dataclass
class SessionDiagnosis:
    facts: SessionFacts
    turns: list[TurnDiagnosis]
    percentiles: dict[str, tuple[int, float | None, float | None]] = field(default_factory=dict)  # label -> n, p50, p90
    top_settings: list[SettingSaving] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"session": {"kind": self.facts.kind, "preset": self.facts.preset_name, "budgets": self.facts.budgets},
                "turns": [t.to_json() for t in self.turns],
                "summary": {"percentiles": {label: {"turns": n, "p50": _round(p50), "p90": _round(p90)}
                                            for label, (n, p50, p90) in self.percentiles.items()},
                            "top_settings": [s.to_json() for s in self.top_settings]}}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class Diagnoser:
    """Diagnoses turns of one session as they come, each against the session's turns so far.

    The session keeps of each turn what the rules compare with (its metrics and facts), not its
    events: a long session is diagnosed a turn at a time (`add` every turn, then `diagnose` each
    one's evidence, read again) without being held."""

    def __init__(self, header: dict[str, Any], budgets: dict[str, float],
                 session_events: Iterable[ev.TraceEvent] = ()) -> None:
        """`budgets`: those the session ran with (`playground.export.layout.budgets_of` reads a header's)."""
        self.facts = session_facts(header, session_events, budgets)
        self.context = SessionContext(self.facts, base_chunker(header))
        self._rates: list[float] = []

    def evidence(self, turn_events: Sequence[ev.TraceEvent]) -> TurnEvidence:
        """A turn's evidence (not counted in the session: `add` does that)."""
        return turn_evidence(turn_events, self.facts.tts_provider)

    def add(self, turn_events: Sequence[ev.TraceEvent]) -> TurnEvidence:
        """A turn's evidence, counted in the session's medians from now on."""
        evidence = self.evidence(turn_events)
        self.context.turns.append(without_events(evidence))  # the medians read neither
        rate = tts_ms_per_char(turn_timeline(turn_events))
        if rate is not None:
            self._rates.append(rate)
            self.context.trace_ms_per_char = percentile(self._rates, 50)
        return evidence

    def diagnose(self, evidence: TurnEvidence) -> TurnDiagnosis:
        breakdown = turn_breakdown(evidence)
        return TurnDiagnosis(evidence, breakdown, turn_findings(evidence, breakdown, self.context))

    def turn(self, turn_events: Sequence[ev.TraceEvent]) -> TurnDiagnosis:
        """A turn that just ended: added to the session, then diagnosed."""
        return self.diagnose(self.add(turn_events))


def diagnose_trace(header: dict[str, Any], events: Sequence[ev.TraceEvent], budgets: dict[str, float],
                   only_turn: int | None = None) -> SessionDiagnosis:
    """Every turn of a trace (or only `only_turn`, still compared with all of them), and the summary."""
    by_turn = ev.events_by_turn(events)
    diagnoser = Diagnoser(header, budgets, by_turn.get(ev.SESSION_TURN, ()))
    evidences = [diagnoser.add(turn_events) for n, turn_events in sorted(by_turn.items()) if n != ev.SESSION_TURN]
    chosen = [x for x in evidences if only_turn is None or x.turn == only_turn]
    turns = [diagnoser.diagnose(x) for x in chosen]
    return SessionDiagnosis(diagnoser.facts, turns, _percentiles(turns), top_settings(turns))


def _percentiles(turns: Sequence[TurnDiagnosis]) -> dict[str, tuple[int, float | None, float | None]]:
    rows: dict[str, list[float]] = {}
    for t in turns:
        x = t.evidence
        if x.call is not None:
            values = {label: getattr(x.call, key) for key, label in CALL_METRICS.items()}
        else:
            values = {label: x.metrics.value(key) for key, label in METRIC_LABELS.items()}
        for stage in t.breakdown.stages:
            values[f"stage: {stage.label}"] = stage.ms
        for label, value in values.items():
            if value is not None:
                rows.setdefault(label, []).append(value)
    return {label: (len(v), percentile(v, 50), percentile(v, 90)) for label, v in rows.items()}


def top_settings(turns: Sequence[TurnDiagnosis], limit: int = TOP_SETTINGS) -> list[SettingSaving]:
    """The settings whose CRITICAL and WARNING findings would save the most, summed over the turns
    (measured or estimated savings only: a finding that could not compute one counts for nothing;
    an INFO finding's what-if is there to read, not to act on)."""
    by_setting: dict[str, SettingSaving] = {}
    for t in turns:
        for f in t.findings:
            saving = f.what_if.saving_ms
            if f.setting is None or not saving or f.severity == SEVERITIES[-1]:
                continue
            entry = by_setting.setdefault(f.setting, SettingSaving(f.setting, 0.0, [], []))
            entry.saving_ms += saving
            if t.turn not in entry.turns:
                entry.turns.append(t.turn)
            if f.what_if.basis not in entry.bases:
                entry.bases.append(f.what_if.basis)
    return sorted(by_setting.values(), key=lambda s: -s.saving_ms)[:limit]
