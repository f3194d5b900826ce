"""Per-turn metrics as CSV (one row per turn) and a Markdown summary fit for a pull request:
p50/p90/p99 of every metric and how many turns missed its budget, then where the wait went
(the diagnosis's breakdown stages) and how many findings `playground diagnose` has."""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from playground.core.metrics import METRIC_LABELS, TurnMetrics, percentile
from playground.diagnosis.breakdown import TURN_STAGES
from playground.diagnosis.findings import SEVERITIES
from playground.diagnosis.session import Diagnoser, TurnDiagnosis, top_settings
from playground.export.atomic import atomic_open
from playground.export.layout import Mark, SessionPlan, TurnLayout

# Each turn's breakdown (docs/diagnose.md): its stages, what they add up to, its findings.
STAGE_COLUMNS = [f"stage_{key}_ms" for key, _, _, _ in TURN_STAGES]
CSV_FIELDS = ([f.name for f in dataclasses.fields(TurnMetrics)] + ["budget_misses"] + STAGE_COLUMNS
              + ["waited_ms", "waited_to", "findings"])
PERCENTILES = (50, 90, 99)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, list):
        return "; ".join(str(_cell(v)) for v in value)
    return value


def _turns(layouts: Iterable[TurnLayout | Mark]) -> Iterable[TurnLayout]:
    return (item for item in layouts if isinstance(item, TurnLayout))


def _diagnosed(layouts: Iterable[TurnLayout | Mark], diagnoser: Diagnoser) -> Iterator[tuple[TurnLayout, TurnDiagnosis]]:
    """Each turn laid out, and diagnosed against the whole session (`diagnoser` learned every turn)."""
    for turn in layouts:
        if isinstance(turn, TurnLayout):
            yield turn, diagnoser.diagnose(diagnoser.evidence(turn.events))


def write_csv(path: Path, layouts: Iterable[TurnLayout | Mark], diagnoser: Diagnoser) -> None:
    metric_fields = [f.name for f in dataclasses.fields(TurnMetrics)]
    with atomic_open(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for turn, d in _diagnosed(layouts, diagnoser):
            m = turn.metrics
            row = [_cell(getattr(m, name)) for name in metric_fields]
            row.append("; ".join(turn.misses))
            b = d.breakdown
            row += [_cell(b.ms(key)) for key, _, _, _ in TURN_STAGES]
            row += [_cell(b.total_ms if b.stages else None), b.end_label,
                    "; ".join(f"{f.severity} {f.code}" for f in d.findings)]
            writer.writerow(row)


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def markdown_summary(plan: SessionPlan, layouts: Iterable[TurnLayout | Mark], diagnoser: Diagnoser) -> str:
    # what the tables need of each turn: its metrics, which budgets it missed, its diagnosis without its events
    turns = [(turn.metrics, turn.misses, d.without_events()) for turn, d in _diagnosed(layouts, diagnoser)]
    metrics = [m for m, _, _ in turns]
    header, budgets = plan.header, plan.budgets
    preset = header.get("preset", {})
    providers = header.get("providers", {})
    statuses = Counter(m.status for m in metrics)
    paths = Counter(m.tts_path or "unknown" for m in metrics)
    strategies = Counter(m.strategy or "unknown" for m in metrics)
    llm = providers.get("llm", {})
    tts = providers.get("tts", {})
    lines = [
        (f"**Session** {header.get('started_at', '?')} · preset `{preset.get('name', '?')}` · "
         f"LLM `{llm.get('name', '?')}` ({llm.get('model', '?')}) · TTS `{tts.get('name', '?')}` "
         f"({tts.get('voice', '?')})"),
        "",
        f"**Turns** {len(metrics)}: " + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        + " · chunker " + ", ".join(f"`{s}` ×{n}" for s, n in sorted(strategies.items()))
        + " · TTS path " + ", ".join(f"{p} ×{n}" for p, n in sorted(paths.items())),
        "",
        "| metric | turns | p50 ms | p90 ms | p99 ms | budget ms | over budget |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in METRIC_LABELS.items():
        values = [v for m in metrics if (v := m.value(key)) is not None]
        if not values:
            continue
        cells = [_ms(percentile(values, p)) for p in PERCENTILES]
        limit = budgets.get(key)
        misses = sum(1 for _, missed, _ in turns if key in missed)
        missed = "–" if limit is None else (f"**{misses}**" if misses else "0")
        lines.append(f"| {label} | {len(values)} | " + " | ".join(cells) + f" | {_ms(limit)} | {missed} |")
    lines += ["", *_breakdown_lines([d for _, _, d in turns]), ""]
    return "\n".join(lines)


def _breakdown_lines(diagnosed: list[TurnDiagnosis]) -> list[str]:
    """Where the wait went: each stage's percentiles, its setting, and in how many turns it was the largest."""
    lines = ["| stage | turns | p50 ms | p90 ms | p99 ms | setting | largest in |",
             "| --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    largest = Counter(s.key for t in diagnosed if (s := t.breakdown.largest()) is not None)
    for key, label, _, setting in TURN_STAGES:
        stages = [s for t in diagnosed if (s := t.breakdown.stage(key)) is not None]
        if not stages:
            continue
        cells = [_ms(percentile([s.ms for s in stages], p)) for p in PERCENTILES]
        owners = sorted({s.setting for s in stages if s.setting}) or [setting]
        lines.append(f"| {label} | {len(stages)} | " + " | ".join(cells)
                     + f" | {', '.join(f'`{o}`' for o in owners)} | {largest[key]} |")
    counts = Counter(f.severity for t in diagnosed for f in t.findings)
    found = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s]) or "none"
    lines += ["", f"**Findings** {found} (`playground diagnose` explains each turn's)"]
    if settings := top_settings(diagnosed):
        lines.append("**Settings that would save the most** " + ", ".join(
            f"`{s.setting}` {_ms(s.saving_ms)} ms" for s in settings))
    return lines


def write_markdown(path: Path, plan: SessionPlan, layouts: Iterable[TurnLayout | Mark], diagnoser: Diagnoser) -> None:
    text = markdown_summary(plan, layouts, diagnoser)
    with atomic_open(path) as f:
        f.write(text)
