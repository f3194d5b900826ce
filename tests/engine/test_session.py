"""The turn pipeline on the real offline models: metrics, trace, cancel, errors, bad input."""

from __future__ import annotations

import asyncio

import pytest

from playground.core import events as ev
from playground.core.clock import now_ms
from playground.engine.session import InputRefused, check_input
from playground.llm.base import LLMError, StreamInfo, Token
from playground.llm.replay import ReplayLLM, ReplayLLMConfig
from tests.conftest import local_preset, open_test_session


def types(session, turn):
    return [type(e) for e in session.trace.turn_events(turn)]


def first(session, turn, type_):
    return next(e for e in session.trace.turn_events(turn) if isinstance(e, type_))


def replay(tokens, gap_ms=20.0):
    """The replay provider fed with `tokens` arriving every `gap_ms`."""
    return ReplayLLM(ReplayLLMConfig(), turns=[[(40.0 + i * gap_ms, t) for i, t in enumerate(tokens)]])


async def test_two_turns_end_to_end_with_a_persistent_session(preset):
    session = await open_test_session(preset)
    try:
        m1 = await session.run_turn("Hi, who is this?")
        m2 = await session.run_turn("How so?")
    finally:
        await session.close()
    # The TTS session was opened before the first turn and reused by both.
    opened = [e for e in session.trace.events if isinstance(e, ev.TtsSession) and e.action == "open"]
    assert len(opened) == 1 and opened[0].turn == ev.SESSION_TURN
    for m in (m1, m2):
        assert m.status == "ok" and m.tts_path == "persistent"
        assert 0 < m.llm_ttft <= m.ttfs <= m.ttft_tts < m.ttfa <= m.first_play
        assert m.ttfa <= m.e2e_total and m.llm_ttft <= m.llm_total
        assert m.chunks >= 1 and m.spoken_chunks >= 1 and m.tokens > 1
        assert all(h < 5.0 for h in m.handoffs)  # chunk emitted -> text given to TTS
    assert first(session, 2, ev.TtsSession).action == "reuse"
    assert first(session, 2, ev.TtsSession).turns_served == 2
    # The conversation carries over, and the chunks add up to the reply.
    assert [m.role for m in session.history] == ["user", "assistant", "user", "assistant"]
    chunks = [e for e in session.trace.turn_events(1) if isinstance(e, ev.Chunk)]
    assert "".join(c.raw for c in chunks) == first(session, 1, ev.LlmDone).text.rstrip()
    # Every spoken chunk's playback started and ended; a turn summary closes each turn.
    played = {e.chunk for e in session.trace.turn_events(1) if isinstance(e, ev.PlayEnd)}
    sent = {e.chunk for e in session.trace.turn_events(1) if isinstance(e, ev.TtsSend)}
    assert played == sent
    assert types(session, 1)[-1] == ev.TurnSummary and types(session, 1)[0] == ev.TurnStart


@pytest.mark.serial  # a time bound
async def test_cancel_stops_llm_tts_and_playback_within_100ms(preset):
    session = await open_test_session(preset)
    try:
        task = session.start_turn("Tell me a long story about the sea.")
        while not any(isinstance(e, ev.PlayStart) for e in session.trace.turn_events(1)):
            await asyncio.sleep(0.005)
        requested = now_ms()
        assert session.cancel_turn("barge-in")
        metrics = await task
        stopped = now_ms()
        assert metrics.status == "cancelled"
        cancelled = first(session, 1, ev.TurnCancelled)
        assert cancelled.reason == "barge-in" and cancelled.stop_ms < 100
        assert stopped - requested < 100
        assert cancelled.played.chunks == [0]
        cut = [e for e in session.trace.turn_events(1) if isinstance(e, ev.PlayEnd) and e.cut]
        assert [e.chunk for e in cut] == [0] and cut[0].t_ms <= cancelled.t_ms
        # Nothing of the cancelled turn arrives afterwards.
        count = len(session.trace.turn_events(1))
        await asyncio.sleep(0.3)
        assert len(session.trace.turn_events(1)) == count
        assert not session.busy
        # The session goes on.
        after = await session.run_turn("Are you still there?")
        assert after.status == "ok" and after.ttfa is not None
    finally:
        await session.close()


class FailingLLM(ReplayLLM):
    """A provider that fails mid-reply, as a network provider does when its stream breaks."""

    async def stream(self, messages):
        self.info = StreamInfo()
        for text in ("Sure", ",", " one moment"):
            await asyncio.sleep(0.01)
            yield Token(text, now_ms())
        raise LLMError("test-llm: stream cut after 3 tokens (connection reset)")


async def test_a_provider_error_fails_the_turn_and_the_session_goes_on():
    session = await open_test_session(local_preset(), llm=FailingLLM(ReplayLLMConfig(), turns=[[]]))
    try:
        failed = await session.run_turn("Hello?")
        assert failed.status == "error"
        error = first(session, 1, ev.Error)
        assert error.where == "llm" and "stream cut after 3 tokens" in error.message
        assert session.history == []  # a failed exchange does not poison the conversation
        session.llm = replay(["All", " good", " now."])
        ok = await session.run_turn("Hello again?")
        assert ok.status == "ok" and ok.ttfa is not None
    finally:
        await session.close()


async def test_a_reply_without_punctuation_is_still_spoken():
    words = [" and"] * 60
    session = await open_test_session(local_preset(), llm=replay(["So"] + words, gap_ms=30.0))
    try:
        m = await session.run_turn("Talk.")
    finally:
        await session.close()
    reasons = [e.reason for e in session.trace.turn_events(1) if isinstance(e, ev.Chunk)]
    assert reasons[0] == "deadline"  # 400 ms after the first token, not at the end
    assert m.ttfs < 40 + 400 + 50 and m.ttfa is not None
    # After the first chunk no short deadline cuts it into pieces: the rest of this 1.8 s reply,
    # shorter than later_deadline_ms and max_chars, is one more chunk.
    assert reasons[1:] == ["flush"] and m.spoken_chunks == 2


async def test_markdown_or_emoji_only_reply_makes_no_tts_call():
    session = await open_test_session(local_preset(), llm=replay(["**", "😀", " 🎉", "\n", "---"]))
    try:
        m = await session.run_turn("Send me a smiley.")
    finally:
        await session.close()
    assert m.status == "ok" and m.chunks >= 1
    assert m.spoken_chunks == 0 and m.ttfa is None
    assert ev.TtsSend not in types(session, 1) and ev.TtsAudio not in types(session, 1)


@pytest.mark.parametrize("text", [
    "x" * 20_000,
    "Hello 👋🏽 مرحبا שלום \x00\x1b[31m red \u202e reversed \ufeff ok?",
], ids=["20000-characters", "odd-characters"])
async def test_long_and_odd_input_goes_through(text):
    # a 512-token window: 20,000 characters outgrow it as they outgrow the default's, in a quarter
    # of the prompt evaluation
    session = await open_test_session(local_preset("llm.max_tokens=12", "llm.context=512"))
    try:
        m = await session.run_turn(text)
        assert m.status == "ok" and m.llm_ttft is not None
        if len(text) > 10_000:
            assert first(session, 1, ev.LlmDone).context.truncated_input_tokens > 0
        again = await session.run_turn("And now?")
        assert again.status == "ok"
    finally:
        await session.close()


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_input_is_refused(text):
    with pytest.raises(InputRefused, match="nothing to say"):
        check_input(text)


async def test_opening_records_each_components_loading_and_names_a_failure(tmp_path):
    from playground.engine.build import open_session
    from playground.tts.base import TTSError

    created = []
    missing = tmp_path / "missing-voice.onnx"
    with pytest.raises(TTSError, match="missing-voice.onnx"):
        await open_session(local_preset(f"tts.voice={missing}"), audio="null", on_created=created.append)
    loads = [(e.component, e.state) for e in created[0].trace.events if isinstance(e, ev.SessionLoad)]
    assert ("tts", "loading") in loads and ("tts", "failed") in loads and ("llm", "loading") in loads
    failed = next(e for e in created[0].trace.events if isinstance(e, ev.SessionLoad) and e.state == "failed")
    assert "missing-voice.onnx" in failed.message and failed.provider == "piper"


async def test_generation_pauses_until_the_first_audio():
    """llm.pause_until_first_audio: from the first chunk's hand-off to TTS until its first audio,
    llama.cpp generates nothing (at most the token already being computed arrives), then the
    reply goes on to its end; tts.threads limits Piper's onnxruntime threads."""
    preset = local_preset("llm.pause_until_first_audio=true", "tts.threads=1", "llm.max_tokens=48")
    session = await open_test_session(preset)
    try:
        assert session.tts._voice.session.get_session_options().intra_op_num_threads == 1
        m = await session.run_turn("Tell me about your store, please.")
    finally:
        await session.close()
    assert m.status == "ok", m.errors
    events = session.trace.turn_events(1)
    sent = next(e.t_ms for e in events if isinstance(e, ev.TtsSend))
    audio = next(e.t_ms for e in events if isinstance(e, ev.TtsAudio))
    tokens = [e.t_ms for e in events if isinstance(e, ev.LlmToken)]
    assert len([t for t in tokens if sent < t < audio]) <= 1
    assert len([t for t in tokens if t > audio]) > 3  # generation resumed with the first audio
    assert session.llm.may_generate.is_set()  # never left paused after the turn
