"""CSV of the per-turn metrics and the Markdown summary, checked against compute_metrics."""

from __future__ import annotations

import csv
import dataclasses

import pytest

from playground.core.metrics import (
    METRIC_LABELS,
    TurnMetrics,
    budget_misses,
    compute_metrics,
    percentile,
)
from playground.diagnosis.breakdown import TURN_STAGES
from playground.diagnosis.session import diagnose_trace
from playground.export.formats import export
from playground.export.layout import budgets_of
from tests.export.conftest import SESSION, VOICE, load, long_session


def turn_metrics(events) -> list[TurnMetrics]:
    return [compute_metrics([e for e in events if e.turn == n]) for n in sorted({e.turn for e in events} - {0})]


def test_csv_has_every_metric_field_per_turn(tmp_path):
    header, events = load(SESSION)
    path = export("csv", tmp_path / "turns.csv", header, events)
    rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    expected = turn_metrics(events)
    assert len(rows) == len(expected) == 5
    assert list(rows[0]) == ([f.name for f in dataclasses.fields(TurnMetrics)] + ["budget_misses"]
                             + [f"stage_{key}_ms" for key, _, _, _ in TURN_STAGES] + ["waited_ms", "waited_to", "findings"])
    for row, m in zip(rows, expected, strict=True):
        assert int(row["turn"]) == m.turn and row["status"] == m.status
        assert row["strategy"] == m.strategy and row["tts_path"] == m.tts_path
        for key in ("llm_ttft", "ttfs", "ttfa", "first_play", "e2e_total", "chunker_wait"):
            assert float(row[key]) == pytest.approx(getattr(m, key), abs=1e-3)
        assert int(row["tokens"]) == m.tokens and int(row["chunks"]) == m.chunks
        assert row["budget_misses"] == "; ".join(budget_misses(m, budgets_of(header)))
        assert len(row["handoffs"].split("; ")) == m.spoken_chunks
    assert rows[3]["status"] == "cancelled"


def test_markdown_percentiles_and_budget_misses(tmp_path):
    header, events = long_session()
    text = export("markdown", tmp_path / "summary.md", header, events).read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert all(line.count("|") == table[0].count("|") for line in table)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table[2:]}
    metrics = turn_metrics(events)
    budgets = budgets_of(header)
    ttfs = [m.ttfs for m in metrics]
    turns, p50, p90, p99, budget, missed = rows["TTFS"]
    assert int(turns) == 200 and budget == "500"
    ttfs_misses = sum(1 for m in metrics if "ttfs" in budget_misses(m, budgets))
    assert missed == (f"**{ttfs_misses}**" if ttfs_misses else "0")
    assert [float(v.replace(",", "")) for v in (p50, p90, p99)] == pytest.approx(
        [percentile(ttfs, p) for p in (50, 90, 99)], abs=0.5)
    e2e_misses = sum(1 for m in metrics if "e2e_total" in budget_misses(m, budgets))
    assert e2e_misses > 0 and rows["E2E_TOTAL"][-1] == f"**{e2e_misses}**"
    assert rows["E2E_TOTAL"][-2] == f"{budgets['e2e_total']:,.0f}"
    assert rows["LLM_TTFT"][-1] == "–"  # no budget
    assert "STT" not in rows  # typed turns: no STT value
    assert "**Turns** 200: 40 cancelled, 160 ok" in text


def test_markdown_of_a_spoken_turn_has_the_voice_metrics(tmp_path):
    header, events = load(VOICE)
    text = export("markdown", tmp_path / "voice.md", header, events).read_text(encoding="utf-8")
    for key in ("vad_end", "stt", "user_latency"):
        assert f"| {METRIC_LABELS[key]} | 1 |" in text


def test_csv_rows_carry_each_turn_s_breakdown_and_findings(tmp_path):
    header, events = load(SESSION)
    rows = list(csv.DictReader(export("csv", tmp_path / "turns.csv", header, events).read_text().splitlines()))
    diagnosed = diagnose_trace(header, events, budgets_of(header)).turns
    assert len(rows) == len(diagnosed) == 5
    for row, d in zip(rows, diagnosed, strict=True):
        stages = [float(row[f"stage_{key}_ms"]) for key, _, _, _ in TURN_STAGES if row[f"stage_{key}_ms"]]
        assert stages == pytest.approx([s.ms for s in d.breakdown.stages], abs=1e-3)
        assert sum(stages) == pytest.approx(float(row["waited_ms"]), abs=1.0)
        assert row["waited_to"] == d.breakdown.end_label
        assert row["findings"] == "; ".join(f"{f.severity} {f.code}" for f in d.findings)
    assert "INFO cut" in rows[3]["findings"]  # turn 4 was cancelled mid-playback


def test_markdown_says_where_the_wait_went(tmp_path):
    header, events = long_session()
    text = export("markdown", tmp_path / "summary.md", header, events).read_text(encoding="utf-8")
    d = diagnose_trace(header, events, budgets_of(header))
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ")}
    chunker = [t.breakdown.ms("chunker") for t in d.turns if t.breakdown.ms("chunker") is not None]
    turns, p50, p90, p99, setting, largest = rows["chunker wait"]
    assert int(turns) == len(chunker) and setting == "`chunker.deadline_ms`"
    assert float(p50.replace(",", "")) == pytest.approx(percentile(chunker, 50), abs=0.5)
    assert int(largest) == sum(1 for t in d.turns if t.breakdown.largest().key == "chunker")
    assert "**Findings** " in text and "`playground diagnose`" in text
