"""`playground compare`: recorded turns re-chunked under every strategy, and the shipped seed trace."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from playground.chunking.compare import Variant, compare_turns, recorded_turns
from playground.cli import build_parser
from playground.console import Console
from playground.core.tracefile import read_trace
from playground.core.presets import PresetError
from playground.data import find

ROOT = Path(__file__).resolve().parent.parent.parent
TWO_TURNS = ROOT / "playground" / "bench" / "data" / "two-turns.jsonl"
SESSION = ROOT / "playground" / "bench" / "data" / "session.jsonl"  # turn 4 cancelled


def compare(*argv: str) -> str:
    args = build_parser().parse_args(["compare", *argv])
    console = Console(io.StringIO(), io.StringIO())
    assert args.plugin.run(args, console) == 0
    return console.out.getvalue()


def row(output: str, label: str) -> list[str]:
    """The cells of a variant's row: [TTFS, chunker wait, chunks, shortest, longest, TTFA est., vs oracle]."""
    line = next(line for line in output.splitlines() if re.match(rf"^  [* ] {re.escape(label)}\s{{2}}", line))
    return line[4 + len(label):].split()[:7]


def test_seed_turn4_by_name_sentence_waits_6_6_s_and_adaptive_under_1_s():
    out = compare("seed-turn4")
    sentence, adaptive = row(out, "sentence"), row(out, "adaptive")
    assert abs(float(sentence[0]) - 6621) <= 1 and abs(float(sentence[1]) - 6087) <= 1
    # adaptive's first chunk has first_min_words (3) complete words: " a" (1,236 ms) completes "out";
    # at 1,000 ms only "You" and " filled" had arrived, so no 3-word chunk can come sooner.
    assert float(adaptive[0]) == 1236 and float(adaptive[1]) == 702
    assert "You filled out" in next(line for line in out.splitlines() if line.lstrip("* ").startswith("adaptive"))
    assert "winner: adaptive, earliest TTFS" in out and row(out, "passthrough")[5] == "-"
    assert "TTFA can't be estimated for turn(s) 4" in out  # the seed's REST fallback measured no TTFA
    assert "recorded with sentence: LLM_TTFT 534, TTFS 6621, TTFA -, LLM_TOTAL 6793 ms" in out
    assert "  oracle bound -: no TTS audio for the first chunk sent" in out and row(out, "adaptive")[6] == "-"


def test_seed_trace_matches_the_seed_numbers():
    _, events = read_trace(find("trace", "seed-turn4"))
    (turn,) = recorded_turns(events)
    assert turn.turn == 4 and turn.tokens[0][0] == 534.0 and turn.tokens[-1][0] == 6793.0
    summary = next(e for e in events if e.type == "turn.summary").metrics
    assert (summary["llm_ttft"], summary["ttfs"], summary["ttft_tts"], summary["llm_total"]) == (534, 6621, 6621, 6793)
    assert summary["chunker_wait"] == 6087 and summary["tts_path"] == "fallback_rest" and summary["ttfa"] is None
    text = "".join(t for _, t in turn.tokens)
    assert text.startswith("You filled out a Facebook ad about creating passive income without adding more hours "
                           "to your day\u2014that's how we got your info.")


def test_seed_trace_is_reproduced_by_its_generator(tmp_path):
    out = tmp_path / "seed.jsonl"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_seed_trace.py"), str(out)], check=True,
                   capture_output=True, timeout=60)
    assert out.read_bytes() == find("trace", "seed-turn4").read_bytes()


def test_estimated_ttfa_of_the_recorded_strategy_matches_the_recorded_turn():
    # Re-chunked with the strategy and parameters it ran with, a real turn gets its recorded TTFS
    # back, and TTFS + its first chunk at the recorded TTS speed is its recorded TTFA. Turn 2 was
    # recorded before a "." after "now" was confirmed on arrival: it is cut by the "." token itself
    # (156.466 ms) instead of the next one (162.989 ms), and its TTFA estimate is that much earlier.
    turns = recorded_turns(read_trace(TWO_TURNS)[1])
    comparisons = compare_turns(turns, [Variant("adaptive", {"strategy": "adaptive"})])
    earlier = {1: 0.0, 2: 162.989 - 156.466}
    for c in comparisons:
        (outcome,) = c.outcomes
        assert abs(outcome.result.ttfs - (c.turn.ttfs - earlier[c.turn.turn])) < 1.0
        assert abs(outcome.ttfa_estimate - (c.turn.ttfa - earlier[c.turn.turn])) < 1.0


def test_oracle_bound_per_turn_and_each_variant_against_it():
    out = compare(str(TWO_TURNS))
    # Turn 1: the comma ending "...local gym," (41 chars) arrived at 207.179, TTS took 195.811 ms for it:
    # bound 402.990, recorded TTFA 403.285 -> x1.00. sentence waits for " He" (446.738) to confirm
    # "Joe.": est. 446.738 + 46 x 195.811 / 41 = 666.427 -> x1.65; words cuts before any boundary: x0.74.
    assert "  oracle bound 403 ms (recorded TTFA x1.00), first chunk: Just a couple of guys from the local gym," in out
    turn_1 = out.split("turn 2 ")[0]
    assert row(turn_1, "sentence")[5:] == ["666", "x1.65"]
    assert row(turn_1, "adaptive")[5:] == ["403", "x1.00"] and row(turn_1, "words")[6] == "x0.74"
    assert row(turn_1, "passthrough")[5:] == ["-", "-"]
    # Turn 2: "." at 156.466 + 146.426 = 302.892; recorded TTFA 309.688 -> x1.02.
    assert "  oracle bound 303 ms (recorded TTFA x1.02), first chunk: He's a guy who's" in out
    cancelled = compare(str(SESSION), "--turn", "4", "--strategies", "adaptive")
    assert "  oracle bound -: turn cancelled (user pressed Esc): its reply is incomplete" in cancelled


def test_strategies_and_set_variants():
    out = compare(str(TWO_TURNS), "--strategies", "sentence,words", "--set", "chunker.words=2",
                  "--set", "chunker.strategy=clause,chunker.min_chars=200", "--turn", "1")
    assert "turn 1 " in out and "turn 2 " not in out
    sentence, words = row(out, "sentence"), row(out, "words")
    assert float(words[0]) < float(sentence[0])
    # words=2 over the turn's recorded strategy (adaptive) changes nothing: the recorded turn again.
    assert row(out, "+words=2")[:2] == ["207", "92"]
    # min_chars=200 keeps clause from cutting at the comma: it waits for the period, like sentence.
    assert row(out, "clause min_chars=200")[0] == sentence[0]


@pytest.mark.parametrize("argv, message", [
    (["--set", "llm.max_tokens=3"], "--set llm.max_tokens=3: compare only re-runs the chunker"),
    (["--set", "chunker.strategy=fast"], "unknown strategy 'fast'"),
    (["--strategies", "sentence,fast"], "--strategies: unknown strategy 'fast'"),
])
def test_bad_variants_are_clear_errors(argv, message):
    args = build_parser().parse_args(["compare", "seed-turn4", *argv])
    with pytest.raises(PresetError, match=re.escape(message)):
        args.plugin.run(args, Console(io.StringIO(), io.StringIO()))


def test_an_unknown_trace_name_lists_the_shipped_ones():
    names = sorted(p.stem for p in (Path(__file__).parents[2] / "playground" / "data" / "traces").glob("*.jsonl"))
    assert "seed-turn4" in names
    with pytest.raises(ValueError, match=re.escape("nope: no such trace file, and no shipped trace of that name "
                                                   f"(shipped: {', '.join(names)})")):
        find("trace", "nope")


async def test_seed_trace_opens_in_the_viewer():
    from playground.core.presets import load_preset
    from playground.ui.app import PlaygroundApp

    app = PlaygroundApp(load_preset("local"), view=read_trace(find("trace", "seed-turn4")), view_name="seed-turn4")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.2)
        m = app.table.metrics[4]
        assert (m.ttfs, m.llm_ttft, m.tts_path) == (6621.0, 534.0, "fallback_rest")
