"""The oracle bound of recorded turns: real traces of the offline preset, and turns built as the session records them."""

from __future__ import annotations

from pathlib import Path

import pytest

from playground.chunking import Chunker
from playground.chunking.compare import Variant, compare_turns, recorded_turns
from playground.chunking.oracle import median_ratios, oracle_bound
from playground.core.events import TraceEvent, Usage
from playground.core.tracefile import read_trace
from playground.core.presets import ChunkerConfig
from playground.data import find
from tests.events import event

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH_DATA = ROOT / "playground" / "bench" / "data"  # recorded sessions the benchmarks are built from
TWO_TURNS = BENCH_DATA / "two-turns.jsonl"  # two adaptive turns of the offline preset
SESSION = BENCH_DATA / "session.jsonl"  # five turns of ~120 tokens, turn 4 cancelled
VOICE = ROOT / "tests" / "export" / "data" / "voice.jsonl"  # one spoken turn on a busy machine: deadline cuts
ADAPTIVE = ChunkerConfig()  # what every recorded turn here ran with (first_min_chars 10)


def turn_events(path: Path, turn: int) -> list[TraceEvent]:
    return [e for e in read_trace(path)[1] if e.turn == turn]


def test_own_and_best_bound_of_real_adaptive_turns():
    # Turn 1: chunk 0 "Just a couple of guys from the local gym," (41 chars, weak) ends with token 9 ","
    # at 207.179; tts.send 207.474, first audio 403.285: TTS latency 195.811.
    # own bound = 207.179 + 195.811 = 402.990; TTFA / own = 403.285 / 402.990 = 1.000732.
    # It is also the earliest acceptable first chunk ("," after 41 >= 10 characters), so best = own.
    b = oracle_bound(turn_events(TWO_TURNS, 1), ADAPTIVE)
    assert b.unknown is None and b.measured_ttfa == pytest.approx(403.285)
    assert b.tts_latency_ms == pytest.approx(195.811)
    assert b.own_chunk_text == "Just a couple of guys from the local gym,"
    assert b.own_bound == pytest.approx(402.990)
    assert b.own_ratio == pytest.approx(403.285 / 402.990)
    assert b.best_chunk_text == b.own_chunk_text and b.best_bound == pytest.approx(402.990)

    # Turn 2: chunk 0 ends with token 16 "." at 156.466, but a "." is only confirmed by the next
    # token (162.989): tts.send 163.262, first audio 309.688, TTS latency 146.426.
    # own bound = 156.466 + 146.426 = 302.892; TTFA / own = 309.688 / 302.892 = 1.022437.
    b = oracle_bound(turn_events(TWO_TURNS, 2), ADAPTIVE)
    assert b.tts_latency_ms == pytest.approx(146.426)
    assert b.own_bound == pytest.approx(302.892)
    assert b.own_ratio == pytest.approx(1.022437, abs=1e-6)
    assert b.best_chunk_text == "He's a guy who's been working out with Joe for a few years now."
    assert b.best_bound == pytest.approx(302.892) and b.best_ratio == pytest.approx(b.own_ratio)


def test_a_deadline_cut_can_beat_every_boundary_and_a_time_is_no_boundary():
    # The spoken turn's adaptive chunker cut "The" (token 0, at 2379.088) by its deadline: tts.send
    # 2923.559, first audio 3189.661, TTS latency 266.102. own bound = 2379.088 + 266.102 = 2645.190,
    # TTFA / own = 3189.661 / 2645.190 = 1.205834 (the deadline fired 136 ms late on the busy machine).
    b = oracle_bound(turn_events(VOICE, 1), ADAPTIVE)
    assert b.own_chunk_text == "The" and b.own_bound == pytest.approx(2645.190)
    assert b.own_ratio == pytest.approx(1.205834, abs=1e-6)
    # The ":" of "10:00" is no boundary, so the first acceptable chunk is the whole reply, ending with
    # token 13 "." at 6675.668: 39 chars x 266.102 / 3 ms per char = 3459.326 -> best 10134.994.
    assert b.best_chunk_text == "The museum opens on Sunday at 10:00 AM."
    assert b.best_bound == pytest.approx(6675.668 + 39 * 266.102 / 3)
    assert b.best_ratio == pytest.approx(3189.661 / 10134.994)


# A `sentence` turn as the session records it: tokens 10 ms apart from 100 ms, TTS at 5 ms per character.
TOKENS = ["Well", ",", " Dr", ".", " Smith", " sees", " you", " at", " 3", ".", "5", ",", " okay", "?", " Bye", "."]
FIRST = "Well, Dr. Smith sees you at 3.5, okay?"  # 38 chars, completed by token 13 "?" at 230


def sentence_turn() -> list[TraceEvent]:
    def turn_event(t_ms: float, type_: str, **fields) -> TraceEvent:
        return event(type_, 1, t_ms, **fields)

    chunker = ChunkerConfig(strategy="sentence")
    events = [turn_event(0.0, "turn.start", text="When can I come?", input="typed", strategy="sentence",
                         chunker=dict(vars(chunker))),
              turn_event(0.1, "llm.request", provider="local", model="m", messages=2, prompt_chars=40)]
    for i, text in enumerate(TOKENS):
        events.append(turn_event(100.0 + 10 * i, "llm.token", i=i, text=text))
        if i == 13:  # "?" cuts at once; the chunk, its send and its first audio (38 x 5 ms later)
            events += [turn_event(230.2, "chunk", index=0, text=FIRST, raw=FIRST, reason="strong", start_ms=100.0,
                                  input_ms=230.0, token_start=0, token_end=13),
                       turn_event(230.3, "tts.send", chunk=0, chars=38)]
    events += [turn_event(260.0, "llm.done", tokens=16, finish_reason="stop", usage=Usage(), text="".join(TOKENS)),
               turn_event(260.1, "chunk", index=1, text="Bye.", raw=" Bye.", reason="flush", start_ms=240.0,
                          input_ms=260.0, token_start=14, token_end=15),
               turn_event(260.2, "tts.send", chunk=1, chars=4),
               turn_event(420.3, "tts.audio", chunk=0, samples=4410, sample_rate=22050, duration_ms=200.0),
               turn_event(440.0, "tts.audio", chunk=1, samples=2205, sample_rate=22050, duration_ms=100.0),
               turn_event(440.1, "tts.done")]
    # The recorded chunk 0 is what the real sentence chunker cuts from these tokens.
    cutter = Chunker(chunker)
    (recorded,) = [c for i, text in enumerate(TOKENS) for c in cutter.push(text, 100.0 + 10 * i)]
    assert (recorded.raw, recorded.token_end, recorded.end_ms) == (FIRST, 13, 230.0)
    return events


def test_best_first_chunk_skips_short_weak_boundaries_abbreviations_and_decimals():
    # own bound = 230 (token 13) + 190 (38 x 5) = 420; TTFA 420.3 -> 420.3 / 420 = 1.000714.
    # Acceptable earlier: "Well," has 5 < 10 chars; "Dr." is an abbreviation and "3." a decimal, no
    # boundaries; "Well, Dr. Smith sees you at 3.5," (32 chars, token 11 at 210) is:
    # best = 210 + 32 x 5 = 370; TTFA / best = 420.3 / 370 = 1.135946.
    b = oracle_bound(sentence_turn(), ChunkerConfig(strategy="sentence"))
    assert b.tts_latency_ms == pytest.approx(190.0) and b.own_bound == pytest.approx(420.0)
    assert b.own_ratio == pytest.approx(420.3 / 420.0)
    assert b.best_chunk_text == "Well, Dr. Smith sees you at 3.5,"
    assert b.best_bound == pytest.approx(370.0) and b.best_ratio == pytest.approx(420.3 / 370.0)
    # first_min_chars 40: the 32-char comma is too short, the "?" (token 13) is the best: 420, as own.
    b = oracle_bound(sentence_turn(), ChunkerConfig(strategy="sentence", first_min_chars=40))
    assert b.best_chunk_text == FIRST and b.best_bound == pytest.approx(420.0)
    # first_min_chars 5: "Well," (token 1 at 110) is acceptable: 110 + 5 x 5 = 135.
    b = oracle_bound(sentence_turn(), ChunkerConfig(strategy="sentence", first_min_chars=5))
    assert b.best_chunk_text == "Well," and b.best_bound == pytest.approx(135.0)


def test_turns_without_a_bound_say_why():
    cancelled = oracle_bound(turn_events(SESSION, 4), ADAPTIVE)  # Esc after its first audio at 338.163
    assert cancelled.measured_ttfa == pytest.approx(338.163)
    assert (cancelled.own_bound, cancelled.best_bound, cancelled.own_ratio) == (None, None, None)
    assert cancelled.unknown == "turn cancelled (user pressed Esc): its reply is incomplete"

    _, events = read_trace(find("trace", "seed-turn4"))  # the seed's REST fallback: no audio
    seed = oracle_bound(events, ChunkerConfig(strategy="sentence"))
    assert (seed.measured_ttfa, seed.own_bound, seed.best_bound, seed.best_ratio) == (None, None, None, None)
    assert seed.unknown.startswith("no TTS audio for the first chunk sent")

    silent = [event("turn.start", 1, 0.0, text="Hi"), event("llm.request", 1, 0.1),
              event("llm.done", 1, 90.0, tokens=0, text=""), event("tts.done", 1, 90.2)]
    assert oracle_bound(silent, ADAPTIVE).unknown == "no chunk: the reply had no text"
    assert oracle_bound([], ADAPTIVE).own_bound is None


def test_median_ratios_over_a_real_session():
    # TTFA / own bound of turns 1, 2, 3, 5 (turn 4 was cancelled: no bound):
    #   1: 233.899 / (108.632 + 124.961) = 1.001310    2: 238.654 / (107.376 + 131.064) = 1.000898
    #   3: 610.216 / 610.034 = 1.000298                5: 480.186 / 472.956 = 1.015287
    # median of four = (1.000898 + 1.001310) / 2 = 1.001104. Every best chunk here is the turn's own.
    _, events = read_trace(SESSION)
    bounds = [oracle_bound([e for e in events if e.turn == n], ADAPTIVE) for n in range(1, 6)]
    own, best = median_ratios(bounds)
    assert own == pytest.approx((238.654 / 238.440 + 233.899 / 233.593) / 2)
    assert own == pytest.approx(1.001104, abs=1e-6) and best == pytest.approx(own)
    assert median_ratios([bounds[3]]) == (None, None)


@pytest.mark.parametrize("path", [TWO_TURNS, SESSION])
def test_no_boundary_strategy_beats_the_best_bound_as_compare_estimates_it(path):
    # Same TTS estimate as `playground compare`: sentence and clause first chunks end at boundaries,
    # so their estimated TTFA is never below the best bound.
    _, events = read_trace(path)
    turns = [t for t in recorded_turns(events) if t.turn != 4]  # session.jsonl's turn 4 has no bound
    variants = [Variant(s, {"strategy": s}) for s in ("sentence", "clause")]
    for c in compare_turns(turns, variants, ADAPTIVE):
        bound = oracle_bound([e for e in events if e.turn == c.turn.turn], ADAPTIVE)
        for o in c.outcomes:
            assert o.ttfa_estimate >= bound.best_bound - 1e-6, (c.turn.turn, o.variant.label)


def test_compare_estimates_the_bound_of_a_chunk_cut_when_its_token_arrives():
    # clause (min_chars 24) cuts two-turns' turn 1 at its 41-char comma the moment token 9 arrives:
    # compare's TTFA est. = 207.179 + 41 x 195.811 / 41 = 402.990, the best bound.
    turn_1 = [t for t in recorded_turns(read_trace(TWO_TURNS)[1]) if t.turn == 1]
    (comparison,) = compare_turns(turn_1, [Variant("clause", {"strategy": "clause"})], ADAPTIVE)
    assert comparison.outcomes[0].ttfa_estimate == pytest.approx(402.990)
    assert oracle_bound(turn_events(TWO_TURNS, 1), ADAPTIVE).best_bound == pytest.approx(402.990)
