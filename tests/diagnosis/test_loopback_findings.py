"""`playground diagnose` on real sessions: turns recorded against the loopback ElevenLabs (and
OpenAI-compatible) servers on 127.0.0.1 with injected faults, diagnosed from their traces. Each
fault's finding appears with the trace's own numbers; a clean turn gets none; every turn's
breakdown adds up to what was waited."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager

import pytest

from playground.audio.output import open_output
from playground.chunking.compare import Variant, compare_turns, recorded_turns
from playground.core import events as ev
from playground.core.presets import ChunkerConfig
from playground.diagnosis.findings import SLOW_FACTOR, chunker_wait_budget
from playground.diagnosis.session import SessionDiagnosis, diagnose_trace
from playground.engine.session import Session
from playground.llm.openai import OpenAILLM
from playground.llm.replay import ReplayLLM, ReplayLLMConfig
from playground.servers.faults import Fault
from playground.servers.openai_llm import OpenAILLMServer
from playground.tts.elevenlabs import ElevenLabsSession
from tests.tts.loopback import REPLY, loopback_preset, open_loopback_session, run_turn

pytestmark = pytest.mark.models  # the loopback TTS server speaks with the Piper voice

SHORT = "Okay, that is done now. Anything else?"
RUN_ON = ("You filled out a form about saving money on your energy bill without changing a single habit "
          "and that is how we got your details. Does that ring a bell?")


def tokens(text: str, gap_ms: float = 15.0, first_ms: float = 30.0) -> list[tuple[float, str]]:
    return [(first_ms + i * gap_ms, word) for i, word in enumerate(re.findall(r"\s*\S+", text))]


def replayed(*replies: str, gap_ms: float = 15.0) -> ReplayLLM:
    return ReplayLLM(ReplayLLMConfig(), turns=[tokens(r, gap_ms) for r in replies])


async def record(server, replies: list[str], *overrides: str, faults: dict[int, list[Fault]] | None = None,
                 llm=None, gap_ms: float = 15.0) -> tuple[Session, SessionDiagnosis]:
    """Runs one turn per reply (arming `faults[n]` before turn n) and diagnoses the session's trace."""
    session, _ = await open_loopback_session(server, *overrides, llm=llm or replayed(*replies, gap_ms=gap_ms))
    try:
        for n in range(1, len(replies) + 1):
            server.inject(*(faults or {}).get(n, []))
            await run_turn(session, f"turn {n}", limit_s=30)
    finally:
        await session.close()
    return session, diagnose_trace(session.trace.header, session.trace.events, session.preset.budgets)


def codes(d: SessionDiagnosis, turn: int) -> list[str]:
    return [f.code for f in d.turns[turn - 1].findings]


def finding(d: SessionDiagnosis, turn: int, code: str):
    found = [f for f in d.turns[turn - 1].findings if f.code == code]
    assert found, f"turn {turn}: no {code} finding in {codes(d, turn)}"
    return found[0]


def fact(f, label: str) -> str:
    return next(x.value for x in f.facts if x.label.startswith(label))


def assert_adds_up(d: SessionDiagnosis) -> None:
    """Every turn's stages sum, within 1 ms, to the wait the trace's metrics measure: from t0 (or
    the last voiced frame) to FIRST_SOUND, or to the last milestone reached."""
    for t in d.turns:
        m = t.evidence.metrics
        start = t.evidence.speech_end.last_voiced_ms if t.evidence.speech_end else 0.0
        end = next(v for v in (m.first_sound, m.first_play, m.ttfa, m.ttft_tts, m.ttfs, m.llm_ttft) if v is not None)
        assert t.breakdown.stages, f"turn {t.turn}: no stages"
        assert abs(t.breakdown.total_ms - (end - start)) < 1.0, (t.turn, t.breakdown)
        assert t.breakdown.complete == (m.first_sound is not None)


@pytest.mark.serial  # no slow turn on a busy machine either
async def test_clean_turns_get_no_finding(server):
    _, d = await record(server, [SHORT, SHORT, SHORT])
    assert all(t.breakdown.complete for t in d.turns)
    for t in d.turns:
        assert t.findings == [], [f.title for f in t.findings]
    assert_adds_up(d)
    assert d.top_settings == []


async def test_a_refused_reconnect_is_a_critical_rest_fallback(server):
    faults = {1: [Fault("close", after=1, code=1006), Fault("reject", status=403)]}
    session, d = await record(server, [REPLY, SHORT, SHORT], faults=faults)
    rest = finding(d, 1, "tts_rest")
    assert rest.severity == "CRITICAL" and rest.setting == "tts.persistent"
    reason = d.turns[0].evidence.metrics.tts_path_reason
    assert "HTTP 403" in reason and fact(rest, "reason") == reason
    # measured against the turns that did reach TTS over the persistent session (turn 3)
    assert rest.what_if.saving_ms is not None and "session median" in rest.what_if.basis
    assert "tts_reconnected" in codes(d, 2)  # turn 2 began with no connection
    assert_adds_up(d)


async def test_a_mid_reply_close_is_a_reconnect_with_its_downtime(server):
    session, d = await record(server, [REPLY, SHORT], faults={1: [Fault("close", after=3, code=1006)]})
    found = finding(d, 1, "tts_reconnected")
    assert found.severity == "WARNING" and "1006" in fact(found, "reason")
    reconnect = next(e for e in session.trace.turn_events(1) if isinstance(e, ev.TtsSession) and e.action == "reconnect")
    assert fact(found, "without a connection") == f"{reconnect.downtime_ms:,.0f} ms"
    assert codes(d, 2) == []
    assert_adds_up(d)


async def test_a_long_first_sentence_is_a_run_on_with_compare_s_what_if(server):
    _, d = await record(server, [RUN_ON, SHORT], "chunker.strategy=sentence", gap_ms=30.0)
    m = d.turns[0].evidence.metrics
    assert m.chunker_wait > chunker_wait_budget(d.facts.budgets)
    run_on = finding(d, 1, "run_on")
    assert run_on.setting == "chunker.strategy"
    assert fact(run_on, "chunker wait").startswith(f"{m.chunker_wait:,.0f} ms")
    first_sentence = RUN_ON.split(". ")[0] + "."
    assert fact(run_on, "first chunk").startswith(f"{len(first_sentence)} characters")
    # the what-if is compare's: the same tokens through every strategy
    turn = recorded_turns(d.turns[0].evidence.events)[0]
    compared = compare_turns([turn], [Variant(s, {"strategy": s}) for s in ("sentence", "adaptive")], ChunkerConfig())[0]
    ttfs = {o.variant.label: o.result.ttfs for o in compared.outcomes}
    assert f"adaptive {ttfs['adaptive']:,.0f} ms" in fact(run_on, "compare")
    assert run_on.what_if.saving_ms > 0 and "playground compare" in run_on.what_if.basis
    assert "run_on" not in codes(d, 2)
    assert d.top_settings[0].setting == "chunker.strategy"
    assert_adds_up(d)


@pytest.mark.serial  # measured against the session's other turns: a busy machine slows some of them
async def test_a_slow_tts_first_byte_is_slow_tts_against_the_session_median(server):
    _, d = await record(server, [SHORT] * 4, faults={3: [Fault("stall", after=0, seconds=1.0)]})
    slow = finding(d, 3, "slow_tts")
    own = d.turns[2].evidence.metrics.ttfa - d.turns[2].evidence.metrics.ttft_tts
    others = sorted(t.evidence.metrics.ttfa - t.evidence.metrics.ttft_tts for t in d.turns if t.turn != 3)
    assert own >= 1000.0 and own > SLOW_FACTOR * others[1]
    assert slow.what_if.saving_ms == pytest.approx(own - others[1])
    assert [codes(d, n) for n in (1, 2, 4)] == [[], [], []]
    assert_adds_up(d)


@asynccontextmanager
async def openai_server(*replies: str, gap_ms: float):
    llm_server = OpenAILLMServer(replayed(*replies, gap_ms=gap_ms))
    await llm_server.start()
    try:
        yield llm_server
    finally:
        await llm_server.stop()


async def test_tokens_held_back_and_sent_at_once_are_batched_streaming(server):
    replies = [RUN_ON, SHORT]
    async with openai_server(*replies, gap_ms=40.0) as llm_server:
        preset = loopback_preset(server.url, "llm.provider=openai", f"llm.base_url={llm_server.base_url}",
                                 f"llm.model={llm_server.model}", "llm.api_key_env=")
        session = Session(preset, OpenAILLM(preset.llm), ElevenLabsSession(preset.tts), await open_output("null"))
        await session.open()
        try:
            llm_server.inject(Fault("burst", after=3, count=10))
            await run_turn(session, "turn 1", limit_s=30)
            await run_turn(session, "turn 2", limit_s=30)
        finally:
            await session.close()
    d = diagnose_trace(session.trace.header, session.trace.events, session.preset.budgets)
    burst = finding(d, 1, "batched_stream")
    arrivals = [e.t_ms for e in session.trace.turn_events(1) if isinstance(e, ev.LlmToken) and e.text]
    pause = arrivals[3] - arrivals[2]
    assert pause > 300.0  # nine tokens held at 40 ms each
    assert fact(burst, "bursts") == f"1: 10 tokens at once after a {pause:,.0f} ms pause (token 3)"
    assert burst.what_if.basis.startswith("re-chunk")
    assert "batched_stream" not in codes(d, 2)
    assert_adds_up(d)
