"""`playground run --mic-file` / `--mic` as a user runs them: a real process, real models, the null output."""

from __future__ import annotations

from playground.core import events as ev
from playground.core.tracefile import read_trace
from tests.speech import mostly_heard, silence, speech, write_wav
from tests.test_cli import SHORT, playground

QUESTION = "What is the capital of France?"


def test_run_with_a_mic_file_prints_the_transcript_and_the_voice_metrics(tmp_path):
    wav = write_wav(tmp_path / "q.wav", silence(0.4), speech(QUESTION), silence(1.5))
    trace = tmp_path / "voice.jsonl"
    result = playground("run", "--no-audio", "--mic-file", str(wav), "--mode", "hands_free",
                        "--trace", str(trace), *SHORT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    [spoken] = [line for line in lines if line.startswith("you (spoken): ")]
    assert mostly_heard(spoken.removeprefix("you (spoken): "), QUESTION, share=0.8)
    header = next(line for line in lines if line.startswith("turn"))
    labels = header.split()
    assert labels[1:3] == ["VAD_END", "STT"] and "USER_LATENCY" in labels
    [row] = [line for line in lines if line.startswith("   1 ")]
    assert len(row.split()) >= len(labels) - 1  # every metric has a value (or a -)
    assert "speech recognition ready" in result.stderr and "mic: file q.wav, hands_free" in result.stderr
    _, events = read_trace(trace)
    summary = next(e for e in events if isinstance(e, ev.TurnSummary))
    assert summary.metrics["user_latency"] > summary.metrics["vad_end"] > 0
    assert any(isinstance(e, ev.SttFinal) and e.turn == 1 for e in events)


def test_no_mic_device_is_reported_and_typed_turns_still_run():
    result = playground("run", "--no-audio", "--mic", "--set", "input.device=no such microphone xyz",
                        "--say", "Hello?", *SHORT, stdin="")
    assert result.returncode == 0, result.stderr
    assert "mic unavailable (" in result.stderr and "typed input still works" in result.stderr
    assert "you: Hello?" in result.stdout and "agent: " in result.stdout


def test_a_mic_file_with_the_presets_push_to_talk_is_heard_hands_free(tmp_path):
    """The README's example as written: the default preset is push-to-talk, which a file never presses."""
    wav = write_wav(tmp_path / "question.wav", silence(0.4), speech(QUESTION), silence(1.5))
    trace = tmp_path / "voice.jsonl"
    result = playground("run", "--no-audio", "--mic-file", str(wav), "--trace", str(trace), *SHORT)
    assert result.returncode == 0, result.stderr
    assert "mic: file question.wav, hands_free (a mic file cannot press the push-to-talk key)" in result.stderr
    [spoken] = [line for line in result.stdout.splitlines() if line.startswith("you (spoken): ")]
    assert mostly_heard(spoken.removeprefix("you (spoken): "), QUESTION, share=0.8)
    _, events = read_trace(trace)
    assert any(isinstance(e, ev.TurnSummary) and e.turn == 1 for e in events)


def test_push_to_talk_asked_for_with_a_mic_file_is_refused_before_anything_loads(tmp_path):
    wav = write_wav(tmp_path / "q.wav", speech("Hello."))
    result = playground("run", "--no-audio", "--mic-file", str(wav), "--mode", "push_to_talk")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: push-to-talk waits for a key press, and a mic file never presses one: "
                                     "use --mode hands_free with --mic-file (a pause ends each utterance)")
