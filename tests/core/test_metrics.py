"""compute_metrics on hand-written event lists: every DESIGN.md metric, by definition."""

import pytest

from playground.core.metrics import budget_misses, compute_metrics, percentile
from tests.events import event


def e(t, type_, **fields):
    return event(type_, 3, t, **fields)


SEED_TURN_4 = [
    e(0.0, "turn.start", text="Well, it...", strategy="sentence"),
    e(0.5, "tts.session", action="reuse", path="persistent"),
    e(1.0, "llm.request"),
    e(534.0, "llm.token", i=0, text="You"),
    e(3000.0, "llm.token", i=1, text=" filled"),
    e(6600.0, "llm.token", i=2, text=" info."),
    e(6621.0, "chunk", index=0, text="You filled info.", reason="strong"),
    e(6621.4, "tts.send", chunk=0, chars=16),
    e(6793.0, "llm.done", tokens=3),
    e(6900.0, "tts.audio", chunk=0, samples=2205),
    e(6904.0, "play.start", chunk=0),
    e(7500.0, "tts.audio", chunk=0, samples=2205),
    e(8124.4, "tts.audio", chunk=0, samples=2205),
    e(8125.0, "tts.done"),
    e(9000.0, "play.end", chunk=0),
]


def test_every_metric_by_its_definition():
    m = compute_metrics(SEED_TURN_4)
    assert m.turn == 3 and m.status == "ok" and m.strategy == "sentence"
    assert m.llm_ttft == 534.0  # first content token
    assert m.ttfs == 6621.0  # first chunk emitted
    assert m.ttft_tts == 6621.4  # first text sent to TTS
    assert m.ttfa == 6900.0  # first audio received
    assert m.first_play == 6904.0  # first sample handed to the device
    assert m.llm_total == 6600.0  # last token received
    assert m.e2e_total == 8124.4  # last audio received
    assert m.tts_total == pytest.approx(8124.4 - 6621.4)  # TTFT_TTS -> last audio
    assert m.chunker_wait == 6087.0  # the seed's 6,087 ms run-on sentence
    assert m.handoff == pytest.approx(0.4)
    assert m.handoffs == [pytest.approx(0.4)]
    assert m.tokens == 3 and m.chunks == 1 and m.spoken_chunks == 1
    assert m.tokens_per_s == pytest.approx(2 * 1000 / (6600 - 534))
    assert m.tts_path == "persistent"


def test_missing_stages_stay_none_and_never_miss_a_budget():
    m = compute_metrics([e(0.0, "turn.start"), e(1.0, "llm.request"), e(80.0, "llm.token", text="Hi")])
    assert m.llm_ttft == 80.0 and m.ttfs is None and m.ttfa is None and m.first_play is None
    assert m.chunker_wait is None and m.tts_total is None
    assert budget_misses(m, {"ttfs": 500, "ttfa": 1500}) == {}


def test_empty_tokens_do_not_start_llm_ttft():
    m = compute_metrics([e(0.0, "turn.start"), e(50.0, "llm.token", text=""), e(90.0, "llm.token", text="Hi")])
    assert m.llm_ttft == 90.0 and m.tokens == 1


def test_a_fallback_is_the_turns_path_with_its_reason():
    events = [
        e(0.0, "turn.start"),
        e(0.1, "tts.session", action="reuse", path="persistent"),
        e(900.0, "tts.session", action="fallback", path="fallback_rest", reason="socket closed 1006"),
        e(950.0, "tts.session", action="reconnect", path="reconnected"),
    ]
    m = compute_metrics(events)
    assert m.tts_path == "fallback_rest" and m.tts_path_reason == "socket closed 1006"


def test_cancelled_and_error_status():
    cancelled = compute_metrics([e(0.0, "turn.start"), e(10.0, "turn.cancelled", reason="barge-in")])
    failed = compute_metrics([e(0.0, "turn.start"), e(10.0, "error", where="llm", message="HTTP 429")])
    assert cancelled.status == "cancelled"
    assert failed.status == "error" and failed.errors == ["llm: HTTP 429"]


def test_budget_misses_name_metric_value_and_budget():
    m = compute_metrics(SEED_TURN_4)
    misses = budget_misses(m, {"ttfs": 500, "handoff": 100, "ttfa": 1500, "e2e_total": 2500})
    assert misses == {"ttfs": (6621.0, 500), "ttfa": (6900.0, 1500), "e2e_total": (8124.4, 2500)}


def test_summary_is_ignored_and_metrics_are_reproducible_from_json():
    m = compute_metrics(SEED_TURN_4)
    again = compute_metrics([*SEED_TURN_4, e(9001.0, "turn.summary", metrics=m.to_json())])
    assert again == m


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0, 20.0], 90) == pytest.approx(19.0)


def test_rest_by_preset_is_a_choice_and_any_other_fallback_is_a_fault():
    from playground.core.metrics import TurnMetrics

    assert TurnMetrics(turn=1, tts_path="fallback_rest", tts_path_reason="server closed (1006)").tts_path_fault
    assert not TurnMetrics(turn=1, tts_path="fallback_rest", tts_path_reason="preset: persistent = false").tts_path_fault
    assert not TurnMetrics(turn=1, tts_path="reconnected").tts_path_fault
