"""`playground run` as a user runs it: a real process, the real offline models, the null output."""

from __future__ import annotations

import json
import subprocess
import sys
import wave

import pytest

from playground.core.tracefile import read_trace


def playground(*args: str, stdin: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "playground.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout,
    )


SHORT = ("--set", "llm.max_tokens=24")


def test_run_two_turns_with_trace_and_wav(tmp_path):
    trace, wav = tmp_path / "turns.jsonl", tmp_path / "played.wav"
    result = playground("run", "--preset", "local", "--say", "Hi, who is this?", "--say", "How so?",
                        "--trace", str(trace), "--no-audio", "--wav", str(wav), *SHORT)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    header = next(line for line in out.splitlines() if line.startswith("turn"))
    for label in ("LLM_TTFT", "TTFS", "TTFT_TTS", "TTFA", "FIRST_PLAY", "LLM_TOTAL", "TTS_TOTAL", "E2E_TOTAL", "chunks", "tts"):
        assert label in header
    rows = [line for line in out.splitlines() if line.lstrip().startswith(("1 ", "2 "))]
    assert len(rows) == 2 and all("persistent" in row for row in rows)
    assert "you: Hi, who is this?" in out and out.count("agent: ") == 2
    assert " p50 " in out and "loading SmolLM2" in result.stderr
    # The trace: a session header, both turns with summaries, the session's TTS open.
    session, events = read_trace(trace)
    assert session["type"] == "session" and session["preset"]["name"] == "local"
    summaries = [e for e in events if e.type == "turn.summary"]
    assert [e.turn for e in summaries] == [1, 2]
    assert any(e.type == "tts.session" and e.action == "open" and e.turn == 0 for e in events)
    # The WAV holds exactly the audio TTS produced (the null output played all of it).
    audio_samples = sum(e.samples for e in events if e.type == "tts.audio")
    with wave.open(str(wav)) as w:
        assert w.getframerate() == 22050 and w.getnframes() == audio_samples


def test_set_overrides_reach_the_turn(tmp_path):
    trace = tmp_path / "t.jsonl"
    result = playground("run", "--say", "Hello there.", "--no-audio", "--trace", str(trace),
                        "--set", "chunker.strategy=sentence", *SHORT)
    assert result.returncode == 0, result.stderr
    _, events = read_trace(trace)
    start = next(e for e in events if e.type == "turn.start")
    assert start.strategy == "sentence"
    assert {e.reason for e in events if e.type == "chunk"} <= {"strong", "flush"}


@pytest.mark.parametrize("args, message", [
    (("--preset", "nope"), "error: unknown preset 'nope' (known: "),
    (("--set", "chunker.strategy=fast"), "error: --set chunker.strategy=fast: unknown strategy 'fast'"),
    (("--set", "chunker.bogus=1"), "error: --set chunker.bogus=1: unknown field 'bogus' in [chunker]"),
    (("--set", "chunker.deadline_ms=soon"), "error: --set chunker.deadline_ms=soon: expected a number"),
    (("--set", "llm.provider=gpt"), "error: --set llm.provider=gpt: unknown provider 'gpt' (available: local, openai, replay)"),
])
def test_configuration_errors_are_one_clear_line(args, message):
    result = playground("run", "--say", "hi", "--no-audio", *args, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_repl_reads_turns_from_stdin_and_refuses_empty_lines():
    result = playground("run", "--no-audio", *SHORT, stdin="Hello?\n   \nBye.\n")
    assert result.returncode == 0, result.stderr
    assert "refused: nothing to say" in result.stderr
    assert result.stdout.count("agent: ") == 2


def test_replay_provider_reruns_a_trace_under_another_chunker(tmp_path):
    first = tmp_path / "first.jsonl"
    assert playground("run", "--say", "Tell me about your day.", "--no-audio", "--trace", str(first), *SHORT).returncode == 0
    second = tmp_path / "second.jsonl"
    result = playground("run", "--say", "(replayed)", "--no-audio", "--trace", str(second),
                        "--set", "llm.provider=replay", "--set", f"llm.trace={json.dumps(str(first))}",
                        "--set", "chunker.strategy=words")
    assert result.returncode == 0, result.stderr
    _, recorded = read_trace(first)
    _, replayed = read_trace(second)
    original = [e.text for e in recorded if e.type == "llm.token"]
    assert [e.text for e in replayed if e.type == "llm.token"] == original
    assert {e.reason for e in replayed if e.type == "chunk"} <= {"words", "flush"}


def test_presets_lists_the_offline_preset():
    result = playground("presets", timeout=60)
    assert result.returncode == 0 and any(line.startswith("local ") for line in result.stdout.splitlines())


def test_presets_schema_writes_the_committed_schema(tmp_path):
    from playground.cli import main
    from playground.core.presets import builtin_presets_dir

    out = tmp_path / "schema.json"
    assert main(["presets", "--schema", str(out)]) == 0
    assert out.read_text() == (builtin_presets_dir() / "schema.json").read_text()


def test_ctrl_c_cancels_the_playing_reply_and_the_repl_goes_on(tmp_path):
    import os
    import signal
    import time

    trace = tmp_path / "t.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "playground.cli", "run", "--no-audio", "--trace", str(trace)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("Tell me a long story about the sea.\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 120
        line = ""
        while "agent: " not in line and time.monotonic() < deadline:  # the reply is playing
            line = proc.stdout.readline()
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(input="Hello again.\n", timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "turn 1 cancelled" in err and "interrupted (Ctrl-C)" in err
    assert "CANCELLED" in out and "agent: " in out  # the second turn was answered
    _, events = read_trace(trace)
    cancelled = next(e for e in events if e.type == "turn.cancelled")
    assert cancelled.turn == 1 and cancelled.stop_ms < 100
    assert any(e.type == "turn.summary" and e.turn == 2 and e.metrics["status"] == "ok" for e in events)


def _default_output_device() -> str | None:
    from playground.audio.output import list_devices

    devices = [d for d in list_devices() if d["max_output_channels"] > 0 and d.get("default_output")]
    return devices[0]["name"] if devices else None


@pytest.mark.serial  # playback on a busy machine falls behind real time
def test_run_plays_on_the_default_sound_device(tmp_path):
    device = _default_output_device()
    if device is None:
        pytest.skip("no sound device (scripts/virtual-audio.sh start makes a virtual one)")
    trace = tmp_path / "t.jsonl"
    result = playground("run", "--say", "Hello there.", "--trace", str(trace), *SHORT)
    assert result.returncode == 0, result.stderr
    assert "null output" not in result.stderr
    _, events = read_trace(trace)
    summary = next(e for e in events if e.type == "turn.summary")
    assert summary.metrics["first_play"] is not None
    assert any(e.type == "play.end" for e in events)


def test_view_reports_a_broken_trace_in_one_line(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text("not json\n")
    result = playground("view", str(broken), timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: {broken}:1: not a trace: its first line is not JSON "
                                     "(JSON is malformed: invalid character (byte 4))")
    missing = playground("view", str(tmp_path / "missing.jsonl"), timeout=60)
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr


async def test_run_exits_1_and_names_the_failed_turns(tmp_path, loopback_voice):
    """A turn whose TTS fails (its server is down, tts.fallback = none) fails; the session goes on,
    and `run` ends with a line naming the failed turn and exit status 1."""
    import asyncio

    from playground.servers.elevenlabs import ElevenLabsServer

    server = ElevenLabsServer(voice=loopback_voice)
    await server.start()
    host, port = "127.0.0.1", server.port
    trace = tmp_path / "t.jsonl"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "playground.cli", "run", "--preset", "loopback-elevenlabs", "--no-audio",
        "--set", f"tts.base_url={server.url}", "--set", "tts.fallback=none", "--trace", str(trace), *SHORT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    err: list[str] = []

    async def stderr_until(text: str) -> None:
        while not any(text in line for line in err):
            line = await child.stderr.readline()
            assert line, f"the session ended before {text!r}: {err}"
            err.append(line.decode())

    try:
        async with asyncio.timeout(180):
            await stderr_until("ready: ")
            await server.stop()  # the TTS server goes away
            child.stdin.write(b"Hi, who is this?\n")
            await child.stdin.drain()
            await stderr_until("error in turn 1")
            await server.start(host, port)  # and comes back
            child.stdin.write(b"Are you there?\n")
            child.stdin.close()
            out, rest = await child.communicate()
    finally:
        if child.returncode is None:
            child.kill()
        await server.stop()
    stderr = "".join(err) + rest.decode()
    assert child.returncode == 1, stderr
    assert "1 of 2 turns failed: turn 1 (tts: elevenlabs: " in stderr and "tts.fallback = none" in stderr
    assert out.decode().count("you: ") == 2 and "agent: " in out.decode()  # the session went on
    _, events = read_trace(trace)
    statuses = [e.metrics["status"] for e in events if e.type == "turn.summary"]
    assert statuses == ["error", "ok"]


def test_ctrl_c_cancels_a_said_turn_and_a_second_ends_run(tmp_path):
    """`run --say` x3: Ctrl-C during turn 1 cancels it and turn 2 starts; Ctrl-C during turn 2
    ends the session (exit 130) with both turns in the trace and turn 3 never started."""
    import os
    import signal
    import time

    from tests.processes import Child

    trace = tmp_path / "t.jsonl"
    child = Child("run", "--no-audio", "--trace", str(trace), "--say", "Tell me a long story about the sea.",
                  "--say", "And another one about the mountains.", "--say", "One more?", *SHORT)
    for turn in (1, 2):
        child.wait_for(lambda lines: sum(line.startswith("you: ") for line in lines) == turn, timeout=120)
        time.sleep(0.3)  # into the turn: llama.cpp generating in its thread
        os.kill(child.process.pid, signal.SIGINT)
    status, out, err = child.finish(timeout=60)
    assert status == 130, err
    assert "Traceback" not in err and "terminate called" not in err and "trace written to" in err
    _, events = read_trace(trace)
    cancelled = [e for e in events if e.type == "turn.cancelled"]
    assert [(e.turn, e.reason) for e in cancelled] == [
        (1, "interrupted (Ctrl-C)"), (2, "interrupted (Ctrl-C): the command ends")]
    assert {e.turn for e in events if e.type == "turn.start"} == {1, 2} and "you: One more?" not in out
