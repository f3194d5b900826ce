"""Secrets never leave in an export: a fake key planted where a user could put one is in no
format's bytes, and the OTLP/HTTP request carries none either."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from playground.core import events as ev
from playground.core.scrub import REDACTED, scrub
from playground.core.tracefile import read_trace
from playground.export.formats import FORMATS, export_all
from playground.export.jsonl import open_trace_writer, write_trace_jsonl
from tests.events import event
from tests.export.conftest import SESSION, load
from tests.export.test_otel import Collector

ENV_KEY = "sk-planted-ENVIRONMENT-0123456789abcdef"  # in the variable the preset names
PASTED_KEY = "xai-pasted-into-the-preset-9f8e7d6c5b4a"  # a key put where a name belongs
HOME = str(Path.home())


@pytest.fixture
def leaky_trace(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_TEST_API_KEY", ENV_KEY)
    header, events = load(SESSION)
    header = copy.deepcopy(header)
    header["preset"]["llm"]["api_key_env"] = "PLAYGROUND_TEST_API_KEY"
    header["preset"]["llm"]["base_url"] = f"https://api.example.com/v1?key={ENV_KEY}"
    header["preset"]["tts"]["api_key_env"] = PASTED_KEY
    header["providers"]["tts"]["authorization"] = f"Bearer {PASTED_KEY}"
    events = list(events)
    # A --set recorded mid-session, and an error message that echoes the key back.
    events.insert(1, event(ev.ConfigChange, 0, 300.0, reason="--set", preset="local",
                           changes={"tts.api_key_env": PASTED_KEY, "llm.api_token": ENV_KEY}))
    last_turn = max(e.turn for e in events)
    at = max(e.t_ms for e in events if e.turn == last_turn)
    events.append(event(ev.Error, last_turn, at + 1, where="llm", message=f"401 for key {ENV_KEY}"))
    events.append(event(ev.SessionLoad, 0, at + 2, component="tts", provider="piper", state="failed",
                        message=f"piper: voice file {HOME}/voices/x.onnx not found"))
    return header, events


def test_the_live_trace_file_contains_no_planted_key(tmp_path, leaky_trace):
    """`--trace` writes while the session runs (JsonlTraceWriter): scrubbed the same way."""
    header, events = leaky_trace
    path = tmp_path / "live.jsonl"
    writer = open_trace_writer(path, header)
    for e in events:
        writer(e)
    writer.close()
    data = path.read_text(encoding="utf-8")
    assert ENV_KEY not in data and PASTED_KEY not in data and f"{HOME}/voices" not in data
    read_header, read_events = read_trace(path)
    assert len(read_events) == len(events) and read_header["preset"]["llm"]["api_key_env"] == "PLAYGROUND_TEST_API_KEY"
    assert f"401 for key {REDACTED}" in data and "voice file ~/voices/x.onnx not found" in data


def test_no_format_contains_a_planted_key(tmp_path, leaky_trace):
    header, events = leaky_trace
    with Collector() as collector:
        paths = export_all(tmp_path, "leaky", header, events, otlp_endpoint=collector.url)
    assert len(paths) == len(FORMATS)
    for path in paths:
        data = path.read_bytes()
        assert data
        for key in (ENV_KEY, PASTED_KEY):
            assert key.encode() not in data, f"{key} in {path.name}"
        assert f"{HOME}/voices".encode() not in data, f"the home folder in {path.name}"
    sent = b"".join(request.SerializeToString() for _, _, request in collector.requests)
    assert sent and ENV_KEY.encode() not in sent and PASTED_KEY.encode() not in sent
    # What is not a secret stays: the variable's name, the rest of the URL, the error's text.
    native = (tmp_path / "leaky.jsonl").read_text(encoding="utf-8")
    assert "PLAYGROUND_TEST_API_KEY" in native and "https://api.example.com/v1?key=[redacted]" in native
    assert f"401 for key {REDACTED}" in native and "voice file ~/voices/x.onnx not found" in native


def test_scrub_keeps_names_and_shares_clean_events(monkeypatch):
    monkeypatch.delenv("UNSET_FOR_THIS_TEST", raising=False)
    header = {"preset": {"llm": {"api_key_env": "XAI_API_KEY", "max_tokens": 96, "secret_note": ""},
                         "tts": {"api_key_env": "UNSET_FOR_THIS_TEST", "password": "hunter2-long"}},
              "notes": {"token_times": "as measured", "key_points": "the seed's numbers"},
              "providers": {"tts": {"accessToken": "at-123456789", "client_secret": "cs-123456789",
                                    "x-api-key": "xk-123456789"}}}
    events = [event(ev.LlmToken, 1, 1.0, i=0, text="token")]
    clean_header, clean_events = scrub(header, events)
    assert clean_header["preset"]["llm"] == header["preset"]["llm"]
    assert clean_header["preset"]["tts"] == {"api_key_env": "UNSET_FOR_THIS_TEST", "password": REDACTED}
    assert clean_header["notes"] == header["notes"]  # about tokens and keys, not one
    assert set(clean_header["providers"]["tts"].values()) == {REDACTED}
    assert clean_events[0] is events[0]


def test_a_whole_trace_written_at_once_contains_no_planted_key(tmp_path, leaky_trace):
    """`replay --trace` and the benchmarks write a session's trace in one go: scrubbed too."""
    header, events = leaky_trace
    path = write_trace_jsonl(tmp_path / "replayed.jsonl", header, events)
    data = path.read_text(encoding="utf-8")
    assert ENV_KEY not in data and PASTED_KEY not in data and f"{HOME}/voices" not in data
    assert len(read_trace(path)[1]) == len(events)
