"""Per-turn metrics as CSV (one row per turn) and a Markdown summary fit for a pull request:
p50/p90/p99 of every metric and how many turns missed its budget."""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from playground.core.metrics import METRIC_LABELS, TurnMetrics, percentile
from playground.export.atomic import atomic_open
from playground.export.layout import Mark, SessionPlan, TurnLayout

CSV_FIELDS = [f.name for f in dataclasses.fields(TurnMetrics)] + ["budget_misses"]
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


def write_csv(path: Path, layouts: Iterable[TurnLayout | Mark]) -> None:
    with atomic_open(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for turn in _turns(layouts):
            m = turn.metrics
            row = [_cell(getattr(m, name)) for name in CSV_FIELDS[:-1]]
            row.append("; ".join(turn.misses))
            writer.writerow(row)


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def markdown_summary(plan: SessionPlan, layouts: Iterable[TurnLayout | Mark]) -> str:
    # what the table needs of each turn: its metrics and which budgets it missed
    turns = [(turn.metrics, turn.misses) for turn in _turns(layouts)]
    metrics = [m for m, _ in turns]
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
        misses = sum(1 for _, missed in turns if key in missed)
        missed = "–" if limit is None else (f"**{misses}**" if misses else "0")
        lines.append(f"| {label} | {len(values)} | " + " | ".join(cells) + f" | {_ms(limit)} | {missed} |")
    lines.append("")
    return "\n".join(lines)


def write_markdown(path: Path, plan: SessionPlan, layouts: Iterable[TurnLayout | Mark]) -> None:
    text = markdown_summary(plan, layouts)
    with atomic_open(path) as f:
        f.write(text)
