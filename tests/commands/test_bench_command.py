"""`playground bench`: a scripted conversation on the offline preset, the budget gate, A/B order."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from playground.bench.commands.bench import Variant, schedule
from playground.bench.harness import read_script
from playground.core import events as ev
from playground.core.tracefile import read_trace
from playground.core.presets import load_preset

ROOT = Path(__file__).resolve().parent.parent.parent
SHORT = ("--set", "llm.max_tokens=24", "--runs", "1", "--warmup", "0")
# Budgets no machine misses: the gate must pass on a busy test machine too.
GENEROUS = [arg for key in ("ttfs", "handoff", "ttfa", "e2e_total") for arg in ("--set", f"budgets.{key}=600000")]


def bench(tmp_path: Path, *args: str, lines: str = "# two short turns\nHi, who is this?\n\nHow so?\n",
          audio: tuple[str, ...] = ("--no-audio",)) -> subprocess.CompletedProcess:
    script = tmp_path / "script.txt"
    script.write_text(lines)
    return subprocess.run([sys.executable, "-m", "playground.cli", "bench", "--preset", "local", "--script",
                           str(script), "--out", str(tmp_path / "traces"), *SHORT, *audio, *args],
                          check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.models
def test_bench_passes_within_budget_and_writes_every_trace(tmp_path):
    result = bench(tmp_path, *GENEROUS)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "A: preset local, llm.max_tokens=24" in out and "(2 turns)" in out
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert header.split()[:4] == ["metric", "p50", "p90", "p99"]
    for label in ("LLM_TTFT", "TTFS", "TTFA", "FIRST_PLAY", "E2E_TOTAL"):
        assert any(line.startswith(label + " ") for line in out.splitlines()), label
    assert "PASS: every p50 within its budget" in out
    # progress, a line per step: the session opening, each turn, the run's end with its TTFA p50
    progress = result.stderr.splitlines()
    assert any(line.startswith("[1/1] A-run01: session open in ") for line in progress), result.stderr
    assert [line.split(":")[0] for line in progress if " turn " in line] == ["[1/1] A-run01 turn 1/2",
                                                                            "[1/1] A-run01 turn 2/2"]
    assert any(line.startswith("[1/1] A-run01 finished in ") and ": TTFA p50 " in line for line in progress)
    # the null output plays every reply in real time: the way around it is named, and nothing is left unmeasured
    assert "--audio unpaced measures the same metrics without that wait" in result.stderr
    assert "Not measured" not in out
    (trace,) = sorted((tmp_path / "traces").iterdir())
    assert trace.name == "A-run01.jsonl"
    _, events = read_trace(trace)
    assert [e.text for e in events if e.type == "turn.start"] == ["Hi, who is this?", "How so?"]
    assert sum(e.type == "turn.summary" for e in events) == 2


@pytest.mark.models
def test_bench_fails_a_p50_over_budget_and_compares_a_b(tmp_path):
    result = bench(tmp_path, "--set", "budgets.ttfa=1", "--vs", "chunker.strategy=sentence")
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "FAIL A: TTFA p50 " in out and "> budget 1 ms" in out and "FAIL B: TTFA p50 " in out
    assert "B: A with chunker.strategy=sentence" in out
    ratios = out.split("B/A ratios")[1].splitlines()
    ttfs = next(line for line in ratios if line.startswith("TTFS "))
    assert ttfs.split()[3].startswith("x")
    assert sorted(p.name for p in (tmp_path / "traces").iterdir()) == ["A-run01.jsonl", "B-run01.jsonl"]
    _, b_events = read_trace(tmp_path / "traces" / "B-run01.jsonl")
    assert {e.strategy for e in b_events if e.type == "turn.start"} == {"sentence"}
    # the trade-off side by side: each variant's playback gaps, as its traces recorded them
    for name in "AB":
        _, events = read_trace(tmp_path / "traces" / f"{name}-run01.jsonl")
        summaries = [e.metrics for e in events if e.type == "turn.summary"]
        gaps, total = sum(m["gaps"] for m in summaries), sum(m["gaps_ms"] for m in summaries)
        with_gaps = sum(1 for m in summaries if m["gaps"])
        assert f"{name} playback gaps: {gaps} in {with_gaps} of 2 turns, {total:.0f} ms in all" in out, out


@pytest.mark.models
def test_bench_oracle_sets_each_turn_against_its_bound(tmp_path):
    result = bench(tmp_path, *GENEROUS, "--oracle", lines="Hi, who is this?\n")
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("A: oracle bound (earliest possible first audio")[1].splitlines()
    assert section[1].split() == ["run", "turn", "TTFA", "own", "bound", "TTFA/own", "best", "bound", "TTFA/best",
                                  "best", "first", "chunk"]
    cells = section[2].split()
    # The own bound from the run's trace by hand: arrival of the token with the first chunk's last
    # character + that chunk's tts.send -> first tts.audio.
    _, events = read_trace(tmp_path / "traces" / "A-run01.jsonl")
    chunk = next(e for e in events if isinstance(e, ev.Chunk) and e.text)
    send = next(e for e in events if isinstance(e, ev.TtsSend) and e.chunk == chunk.index)
    audio = next(e for e in events if isinstance(e, ev.TtsAudio) and e.chunk == chunk.index)
    token = next(e for e in events if isinstance(e, ev.LlmToken) and e.i == chunk.token_end)
    ttfa = next(e for e in events if isinstance(e, ev.TurnSummary)).metrics["ttfa"]
    own = token.t_ms + audio.t_ms - send.t_ms
    assert cells[:5] == ["A-run01", "1", f"{ttfa:.0f}", f"{own:.0f}", f"x{ttfa / own:.2f}"]
    assert float(cells[5]) > 0 and re.fullmatch(r"x\d+\.\d\d", cells[6]) and len(cells) > 7  # best bound, its text
    # TTFA is the send plus the same TTS time, and the chunk is sent after its last token arrived.
    assert ttfa >= own - 0.001
    median = next(line for line in section if line.startswith("median over 1 turn(s): "))
    verdict = "within the 1.15x target" if ttfa / own <= 1.15 else "NOT within the 1.15x target"
    assert f"TTFA/own bound x{ttfa / own:.2f}" in median and median.endswith(verdict)


@pytest.mark.models
def test_bench_on_the_unpaced_output_says_what_it_does_not_measure(tmp_path):
    result = bench(tmp_path, *GENEROUS, lines="Hi, who is this?\n", audio=("--audio", "unpaced"))
    assert result.returncode == 0, result.stderr
    assert "session open in " in result.stderr and "(audio: unpaced output)" in result.stderr
    out = " ".join(result.stdout.split())  # the note is wrapped
    assert "On the unpaced output (--audio unpaced) no reply is played in real time" in out
    assert "Not measured: what follows a reply's first played sample" in out and "playback gaps" in out
    assert "playback gaps after the first sample: not measured (the output did not play in real time)" in out
    assert any(line.startswith("TTFA ") for line in result.stdout.splitlines())  # still measured
    _, events = read_trace(tmp_path / "traces" / "A-run01.jsonl")
    assert [e.unpaced for e in events if e.type == "turn.start"] == [True]


def test_runs_alternate_in_abba_order_after_the_warm_up():
    preset = load_preset("local")
    variants = [Variant("A", preset, "a"), Variant("B", preset, "b")]
    assert [r.label for r in schedule(variants, runs=3, warmup=1)] == [
        "A-warmup1", "B-warmup1", "A-run01", "B-run01", "B-run02", "A-run02", "A-run03", "B-run03"]
    assert [r.measured for r in schedule(variants[:1], runs=2, warmup=1)] == [False, True, True]


def test_scripts_by_name_or_path_and_empty_ones(tmp_path):
    assert read_script("phone-call")[0] == "Hi, who is this?"
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing but a comment\n\n")
    with pytest.raises(ValueError, match="empty.txt: no turns"):
        read_script(str(empty))


@pytest.mark.models
def test_ctrl_c_cancels_a_turn_and_a_second_ends_the_bench_with_its_trace_so_far(tmp_path):
    import os
    import signal
    import time

    from tests.processes import Child

    script = tmp_path / "script.txt"
    script.write_text("Tell me a long story about the sea.\nAnd one about the mountains.\nOne more?\n")
    trace = tmp_path / "traces" / "A-run01.jsonl"
    child = Child("bench", "--preset", "local", "--script", str(script), "--out", str(tmp_path / "traces"), *SHORT)

    def turn_began(turn: int) -> bool:  # the live trace is flushed at each tts.session event (reuse: a turn began)
        return trace.exists() and f'{{"turn": {turn}, ' in trace.read_text() and '"reuse"' in trace.read_text()

    for turn in (1, 2):
        deadline = time.monotonic() + 120
        while not turn_began(turn):
            assert time.monotonic() < deadline and child.process.poll() is None, child.err[-10:]
            time.sleep(0.02)
        time.sleep(0.3)  # into the turn: llama.cpp generating, Piper synthesizing
        os.kill(child.process.pid, signal.SIGINT)
    status, out, err = child.finish(timeout=60)
    assert status == 130, err
    assert "Traceback" not in err and "terminate called" not in err and "bench interrupted" in err
    assert "PASS" not in out and "FAIL" not in out  # no report for a bench that did not run out
    _, events = read_trace(trace)
    assert [e.metrics["status"] for e in events if e.type == "turn.summary"] == ["cancelled", "cancelled"]
