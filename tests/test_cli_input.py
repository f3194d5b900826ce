"""Whatever is typed, passed or replied, `playground run` goes on and shows it safely: a real
process on the real Piper voice and the null output, with the `replay` LLM for the replies.

Every line of input is one clear line (a refusal, a decoding note) or a turn; the session
goes on; the trace holds every turn; control characters and escape sequences from a user,
the model or a file are printed visibly escaped, never sent to the terminal raw."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from playground.core.tracefile import read_trace

CLEAR_SCREEN = "\x1b[2J"
SET_TITLE = "\x1b]0;pwned\x07"
# What a terminal would act on: C0 controls but newline (tab is harmless), DEL, C1.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def replay_trace(path, *tokens: str) -> str:
    """A recorded turn whose reply is `tokens`: the `replay` LLM answers every turn with it."""
    lines = [{"type": "session", "version": 1}, {"turn": 1, "t_ms": 0.0, "type": "llm.request", "provider": "local", "model": "m"}]
    lines += [{"turn": 1, "t_ms": 20.0 + 10 * i, "type": "llm.token", "i": i, "text": text} for i, text in enumerate(tokens)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return json.dumps(str(path))  # as a --set value


def run(*args: str | bytes, stdin: bytes = b"", timeout: float = 300) -> tuple[int, str, str]:
    """`playground ...` with raw bytes in (argv and stdin); what it printed must be valid UTF-8."""
    result = subprocess.run([sys.executable, "-m", "playground.cli", *args], input=stdin, capture_output=True,
                            timeout=timeout)
    return result.returncode, result.stdout.decode("utf-8"), result.stderr.decode("utf-8")


def replayed(tmp_path, *tokens: str) -> tuple[str, ...]:
    return ("--no-audio", "--set", "llm.provider=replay", "--set", f"llm.trace={replay_trace(tmp_path / 'reply.jsonl', *tokens)}")


def test_escape_sequences_from_the_user_and_the_model_are_printed_escaped(tmp_path):
    trace = tmp_path / "t.jsonl"
    said = f"hi{CLEAR_SCREEN}{SET_TITLE} there\r\x9b1m"
    status, out, err = run("run", *replayed(tmp_path, f"Sure{CLEAR_SCREEN}", SET_TITLE, " ok\x07."),
                           "--say", said, "--trace", str(trace))
    assert status == 0, err
    assert "you: hi\\x1b[2J\\x1b]0;pwned\\x07 there\\x0d\\x9b1m" in out
    assert "agent: Sure\\x1b[2J\\x1b]0;pwned\\x07 ok\\x07." in out
    assert not CONTROL.search(out) and not CONTROL.search(err)
    _, events = read_trace(trace)  # the trace keeps exactly what was said
    assert next(e for e in events if e.type == "turn.start").text == said


@pytest.mark.parametrize("args, shown", [
    (("view", f"/nonexistent/{SET_TITLE}.jsonl"), "error: /nonexistent/\\x1b]0;pwned\\x07.jsonl: No such file"),
    (("run", "--no-audio", CLEAR_SCREEN), "unrecognized arguments: \\x1b[2J"),
])
def test_errors_quoting_the_command_line_are_printed_escaped(args, shown):
    status, out, err = run(*args, timeout=60)
    assert status in (1, 2) and shown in err
    assert not CONTROL.search(out) and not CONTROL.search(err)


INVALID_UTF8 = b"caf\xe9 \xff\xfe ok?"
# Each input: the turn's text it must become (None: refused in one line, the session goes on).
MATRIX = [
    (b"Hello.", "Hello."),
    (b"", None),
    (b"x" * 120_000, None),
    (f"{CLEAR_SCREEN}{SET_TITLE} clear?\x07".encode(), f"{CLEAR_SCREEN}{SET_TITLE} clear?\x07"),
    (INVALID_UTF8, "caf\ufffd \ufffd\ufffd ok?"),
    ("🎉🎊🥳".encode(), "🎉🎊🥳"),
    ("שלום, מה שלומך? مرحبا".encode(), "שלום, מה שלומך? مرحبا"),
    (b"Bye.", "Bye."),
]


@pytest.mark.parametrize("source", ["stdin", "--say"])
def test_every_kind_of_input_is_a_turn_or_one_clear_line(tmp_path, source):
    trace = tmp_path / "t.jsonl"
    inputs = [raw for raw, _ in MATRIX]
    if source == "stdin":
        status, out, err = run("run", *replayed(tmp_path, "Sure", "."), "--trace", str(trace),
                               stdin=b"".join(raw + b"\n" for raw in inputs))
    else:
        says = [arg for raw in inputs for arg in (b"--say", raw)]
        status, out, err = run("run", *replayed(tmp_path, "Sure", "."), "--trace", str(trace), *says)
    assert status == 0, err
    bad_line = MATRIX.index((INVALID_UTF8, "caf\ufffd \ufffd\ufffd ok?")) + 1
    name = f"stdin line {bad_line}" if source == "stdin" else f"--say #{bad_line}"
    assert f"{name}: not valid utf-8" in err
    assert "refused: nothing to say" in err and "refused: input too long (120,000 characters" in err
    assert not CONTROL.search(out) and not CONTROL.search(err)
    turns = [text for _, text in MATRIX if text is not None]
    _, events = read_trace(trace)
    assert [e.text for e in events if e.type == "turn.start"] == turns
    summaries = [e for e in events if e.type == "turn.summary"]
    assert len(summaries) == len(turns) and all(e.metrics["status"] == "ok" for e in summaries)
    assert out.count("agent: Sure.") == len(turns)
    assert "you: caf\ufffd \ufffd\ufffd ok?" in out and "you: 🎉🎊🥳" in out
