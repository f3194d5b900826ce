"""The `openai` provider through the engine, against the loopback server on real sockets:
whole turns (replay- and model-backed), usage, reasoning kept apart, connection reuse,
tolerated stream variations, and faults (each bounded; the next turn must work)."""

from __future__ import annotations

import asyncio
import re
import socket
from contextlib import asynccontextmanager

import pytest

from playground.core import events as ev
from playground.core.clock import now_ms
from playground.engine.build import open_session
from playground.llm.base import LLMError, Message
from playground.llm.local import LocalLLM, LocalLLMConfig
from playground.llm.openai import OpenAILLM
from playground.llm.replay import ReplayLLM, ReplayLLMConfig
from playground.servers.faults import Fault
from playground.servers.openai_llm import OpenAILLMServer
from tests.conftest import local_preset, open_test_session

WORDS = ["Sure", ",", " I", " can", " help", "."]
KEY_ENV = "PLAYGROUND_TEST_LLM_KEY"


def replayed(words=WORDS, first_ms=40.0, gap_ms=15.0) -> list[tuple[float, str]]:
    return [(first_ms + gap_ms * i, w) for i, w in enumerate(words)]


def replay_backend(*turns: list[tuple[float, str]]) -> ReplayLLM:
    """Replays `turns` in order, one per request (default: WORDS)."""
    return ReplayLLM(ReplayLLMConfig(), turns=list(turns) or [replayed()])


async def start_server(backend=None, port: int = 0, **kwargs) -> OpenAILLMServer:
    server = OpenAILLMServer(backend or replay_backend(), **kwargs)
    await server.start(port=port)
    return server


@asynccontextmanager
async def running_server(backend=None, **kwargs):
    server = await start_server(backend, **kwargs)
    try:
        yield server
    finally:
        await server.stop()


def openai_preset(server: OpenAILLMServer, *overrides: str):
    return local_preset("llm.provider=openai", f"llm.base_url={server.base_url}", f"llm.model={server.model}",
                        "llm.api_key_env=", *overrides)


@asynccontextmanager
async def openai_session(server: OpenAILLMServer, *overrides: str):
    """A session on the openai provider against `server`; its body must end within 30 s."""
    preset = openai_preset(server, *overrides)
    session = await open_test_session(preset, llm=OpenAILLM(preset.llm))
    try:
        async with asyncio.timeout(30):
            yield session
    finally:
        await session.close()


@asynccontextmanager
async def loaded_provider(server: OpenAILLMServer):
    llm = OpenAILLM(openai_preset(server).llm)
    try:
        async with asyncio.timeout(10):
            await llm.load()
            yield llm
    finally:
        await llm.close()


def turn_event(session, turn, type_):
    return next(e for e in session.trace.turn_events(turn) if isinstance(e, type_))


def turn_events(session, turn, type_):
    return [e for e in session.trace.turn_events(turn) if isinstance(e, type_)]


def assert_clean_turn(session, turn, metrics, words=WORDS):
    assert metrics.status == "ok", turn_events(session, turn, ev.Error)
    assert [e.text for e in turn_events(session, turn, ev.LlmToken)] == words
    assert turn_event(session, turn, ev.LlmDone).finish_reason == "stop"


async def test_turns_through_the_replay_backed_server_reuse_one_connection():
    async with running_server() as server, openai_session(server) as session:
        m1 = await session.run_turn("Hi, who is this?")
        m2 = await session.run_turn("Can you help me?")
    for turn, m in ((1, m1), (2, m2)):
        assert_clean_turn(session, turn, m)
        assert 40 <= m.llm_ttft <= m.ttfs <= m.ttft_tts < m.ttfa
    done1, done2 = turn_event(session, 1, ev.LlmDone), turn_event(session, 2, ev.LlmDone)
    # Usage as the server reported it; turn 2's prompt starts with turn 1's (cached prefix).
    usage1, usage2 = done1.usage, done2.usage
    assert usage1.completion_tokens == len(WORDS) and usage1.prompt_tokens_details.cached_tokens == 0
    assert usage2.prompt_tokens_details.cached_tokens > 0 and usage2.prompt_tokens > usage1.prompt_tokens
    # The connection opened by load() served both turns: no handshake in any turn.
    assert done1.connection.reused and done1.connection.requests == 2
    assert done2.connection.reused and done2.connection.requests == 3
    assert server.connections == 1
    assert server.requests == [("GET", "/v1/models", 200), *[("POST", "/v1/chat/completions", 200)] * 2]


@pytest.mark.models
async def test_a_turn_through_the_model_backed_server():
    async with (running_server(LocalLLM(LocalLLMConfig(max_tokens=40))) as server,
                openai_session(server, "llm.max_tokens=24") as session):
        m = await session.run_turn("Hi, who is this?")
    assert m.status == "ok" and m.spoken_chunks >= 1
    done = turn_event(session, 1, ev.LlmDone)
    assert done.text.strip() and done.finish_reason in ("stop", "length")
    assert done.usage.completion_tokens == done.tokens <= 24


async def test_reasoning_is_never_spoken_and_never_starts_ttfs():
    reasoning = ["The user says hi. ", "I should answer briefly."]
    async with running_server(replay_backend(replayed(first_ms=300.0))) as server:
        server.style.reasoning = reasoning  # sent at once; the reply's first token only after 300 ms
        async with openai_session(server) as session:
            m = await session.run_turn("Hi!")
    assert_clean_turn(session, 1, m)
    spoken = "".join(e.raw for e in turn_events(session, 1, ev.Chunk))
    assert "user says" not in spoken and "briefly" not in spoken
    assert turn_event(session, 1, ev.LlmDone).reasoning_chars == sum(map(len, reasoning))
    assert m.ttfs >= m.llm_ttft >= 290


async def test_comment_lines_empty_choices_and_null_content_are_tolerated():
    async with running_server() as server:
        server.style.ping = True
        server.style.null_content = True
        server.style.empty_choices = True
        async with openai_session(server) as session:
            m = await session.run_turn("Hi!")
    assert_clean_turn(session, 1, m)
    assert turn_event(session, 1, ev.LlmDone).usage.completion_tokens == len(WORDS)


async def test_a_server_that_rejects_stream_options_is_asked_again_without_it_once():
    async with running_server() as server:
        server.style.rejects_stream_options = True
        async with loaded_provider(server) as llm:
            first = [t.text async for t in llm.stream([Message("user", "Hi")])]
            first_usage = llm.info.usage
            second = [t.text async for t in llm.stream([Message("user", "Hi")])]
    assert first == second == WORDS
    # neither stream had usage: both say so, and why
    assert "stream_options" in first_usage.unavailable and "stream_options" in llm.info.usage.unavailable
    assert [status for _, _, status in server.requests] == [200, 400, 200, 200]


async def test_a_server_that_sends_no_usage_is_recorded_as_usage_unavailable():
    async with running_server() as server, openai_session(server) as session:
        server.style.no_usage = True  # llama.cpp's server streams no usage chunk, stream_options or not
        m = await session.run_turn("Hi!")
    assert_clean_turn(session, 1, m)
    assert turn_event(session, 1, ev.LlmDone).usage == ev.Usage(unavailable="the server sent no usage")


async def test_closing_the_stream_early_closes_the_response_at_once():
    story = replay_backend(replayed([f" w{i}" for i in range(300)], gap_ms=10.0))
    async with running_server(story) as server, loaded_provider(server) as llm:
        stream = llm.stream([Message("user", "Tell me a long story.")])
        got = [await anext(stream) for _ in range(3)]
        closing = now_ms()
        await stream.aclose()
        closed_ms = now_ms() - closing
        await asyncio.sleep(0.05)
        sent = len(server.sent[0])
        await asyncio.sleep(0.3)  # the replay would have sent ~30 more tokens
        assert len(server.sent[0]) == sent < 10
    assert len(got) == 3 and closed_ms < 50


async def test_a_cancelled_turn_stops_the_server_reply_and_the_next_turn_works():
    # The first request gets a long story, the next a short answer.
    story = replay_backend(replayed([f" word{i}" for i in range(300)], gap_ms=10.0), replayed())
    async with running_server(story) as server, openai_session(server) as session:
        task = session.start_turn("Tell me a long story.")
        while len(turn_events(session, 1, ev.LlmToken)) < 5:
            await asyncio.sleep(0.005)
        session.cancel_turn("barge-in")
        cancelled = await task
        await asyncio.sleep(0.05)
        sent = len(server.sent[0])
        await asyncio.sleep(0.3)
        assert len(server.sent[0]) == sent < 20
        m2 = await session.run_turn("Short answer, please.")
    assert cancelled.status == "cancelled" and turn_event(session, 1, ev.TurnCancelled).stop_ms < 100
    assert_clean_turn(session, 2, m2)
    # The cancelled stream's connection could not be reused (its body was never read to the end).
    assert turn_event(session, 2, ev.LlmDone).connection.reused is False


FAST_TIMEOUTS = ("llm.connect_timeout_ms=300", "llm.first_token_timeout_ms=500", "llm.idle_timeout_ms=300")
FAULTS = [
    pytest.param(Fault("reject", status=401), r"HTTP 401 key rejected: Incorrect API key", id="401"),
    pytest.param(Fault("reject", status=403), r"HTTP 403 access denied", id="403"),
    pytest.param(Fault("reject", status=429, retry_after=7), r"HTTP 429 rate limited: .*; retry after 7 s", id="429"),
    pytest.param(Fault("reject", status=500), r"HTTP 500 server error", id="500"),
    pytest.param(Fault("close", after=2), r"the connection broke mid-reply after 2 tokens", id="cut-mid-token"),
    pytest.param(Fault("stall", after=0, seconds=5.0),
                 r"no first token within 500 ms \(\[llm\] first_token_timeout_ms = 500\)", id="stall-before-first-token"),
    pytest.param(Fault("stall", after=2, seconds=5.0),
                 r"the stream stalled: no token for 300 ms after token 2 \(\[llm\] idle_timeout_ms = 300\)",
                 id="stall-between-tokens"),
    pytest.param(Fault("malformed", after=1), r"malformed JSON in the stream", id="malformed-json"),
    pytest.param(Fault("error", after=2), r"the server reported an error mid-stream: The model failed: injected",
                 id="error-event-mid-stream"),
]


@pytest.mark.parametrize("fault, message", FAULTS)
async def test_a_fault_fails_the_turn_with_a_named_error_and_the_next_turn_works(fault, message):
    async with running_server() as server, openai_session(server, *FAST_TIMEOUTS) as session:
        server.inject(fault)
        started = now_ms()
        m1 = await session.run_turn("Hi!")
        failed_after = now_ms() - started
        m2 = await session.run_turn("Hi again!")
    assert m1.status == "error" and failed_after < 2000
    error = turn_event(session, 1, ev.Error)
    assert error.where == "llm"
    assert error.message.startswith(f"openai LLM ({server.base_url}, model 'replay'): ")
    assert re.search(message, error.message), error.message
    assert_clean_turn(session, 2, m2)


async def test_connect_refused_fails_the_turn_and_the_next_turn_reconnects():
    async with running_server() as server, openai_session(server, *FAST_TIMEOUTS) as session:
        m1 = await session.run_turn("Hi!")
        await server.stop()
        m2 = await session.run_turn("Are you there?")
        async with running_server(port=server.port):
            m3 = await session.run_turn("Now?")
    assert_clean_turn(session, 1, m1)
    assert m2.status == "error" and "cannot connect" in turn_event(session, 2, ev.Error).message
    assert_clean_turn(session, 3, m3)
    connection = turn_event(session, 3, ev.LlmDone).connection
    assert connection.reused is False and connection.connect_ms >= 0


async def test_a_connect_timeout_is_named_and_the_next_turn_works():
    async with running_server() as server, openai_session(server, *FAST_TIMEOUTS) as session:
        await session.run_turn("Hi!")
        await server.stop()
        # A listener that never accepts, its backlog full: the kernel drops new SYNs.
        with socket.socket() as blackhole, socket.socket() as filler:
            blackhole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            blackhole.bind(("127.0.0.1", server.port))
            blackhole.listen(0)
            filler.connect(("127.0.0.1", server.port))
            started = now_ms()
            m2 = await session.run_turn("Are you there?")
            failed_after = now_ms() - started
        async with running_server(port=server.port):
            m3 = await session.run_turn("Now?")
    assert m2.status == "error" and 300 <= failed_after < 1500
    message = turn_event(session, 2, ev.Error).message
    assert "connect timeout: no connection within 300 ms ([llm] connect_timeout_ms = 300)" in message
    assert_clean_turn(session, 3, m3)


async def test_a_missing_api_key_fails_at_session_open_naming_the_variable(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    async with running_server() as server:
        with pytest.raises(LLMError, match=rf"the API key variable {KEY_ENV} is not set \(\[llm\] api_key_env\)"):
            await open_session(openai_preset(server, f"llm.api_key_env={KEY_ENV}"), audio="null")
    assert server.requests == []  # nothing was sent without a key


async def test_the_key_is_sent_as_bearer_and_a_rejected_key_fails_at_session_open(monkeypatch):
    async with running_server(api_key="sk-loopback") as server:
        monkeypatch.setenv(KEY_ENV, "sk-wrong")
        with pytest.raises(LLMError, match=rf"HTTP 401 key rejected: Incorrect API key provided; check {KEY_ENV}"):
            await open_session(openai_preset(server, f"llm.api_key_env={KEY_ENV}"), audio="null")
        monkeypatch.setenv(KEY_ENV, "sk-loopback")
        session = await open_session(openai_preset(server, f"llm.api_key_env={KEY_ENV}"), audio="null")
        try:
            async with asyncio.timeout(30):
                m = await session.run_turn("Hi!")
        finally:
            await session.close()
    assert_clean_turn(session, 1, m)
    # The key never reaches the trace.
    assert "sk-loopback" not in repr(session.trace.header) + repr(session.trace.events)
