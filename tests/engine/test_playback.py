"""What the listener hears: playback gaps, the first audible sample, and the chunker kept ahead of playback.

Real Piper voice and the real-time null output; the LLM is replayed at chosen token times.
"""

from __future__ import annotations

import numpy as np
import pytest

from playground.audio.levels import first_audible_ms
from playground.audio.output import open_output
from playground.core import events as ev
from playground.engine.session import Session
from playground.llm.replay import ReplayLLM, ReplayLLMConfig
from playground.tts.piper import PiperSession
from tests.conftest import local_preset


def timed(*pieces: tuple[float, list[str], float]) -> ReplayLLM:
    """Tokens in runs: (first token at ms, tokens, ms between them)."""
    tokens = [(start + i * gap, text) for start, texts, gap in pieces for i, text in enumerate(texts)]
    return ReplayLLM(ReplayLLMConfig(), turns=[tokens])


async def run_one(llm: ReplayLLM, audio: str = "null", *overrides: str):
    preset = local_preset(*overrides)
    output = await open_output(audio)
    session = Session(preset, llm, PiperSession(preset.tts), output)
    await session.open()
    try:
        metrics = await session.run_turn("Go on.")
    finally:
        await session.close()
    return session, metrics


def events_of(session: Session, type_: type[ev.TraceEvent]) -> list[ev.TraceEvent]:
    return [e for e in session.trace.turn_events(1) if isinstance(e, type_)]


FIRST = ["Sure", ",", " here", " is", " the", " first", " part", "."]
SECOND = [" And", " here", " is", " the", " rest", "."]


@pytest.mark.serial  # one gap, its ends within 15 ms: a busy machine adds its own
async def test_a_reply_that_pauses_longer_than_its_audio_leaves_a_gap_in_playback():
    session, m = await run_one(timed((40.0, FIRST, 20.0), (5000.0, SECOND, 20.0)))
    assert m.status == "ok" and m.gaps == 1
    gap = events_of(session, ev.PlayGap)[0]
    ends = [e.t_ms for e in events_of(session, ev.PlayEnd)]
    assert abs(gap.from_ms - ends[0]) < 15.0  # from the end of what was played...
    starts = {e.chunk: e.t_ms for e in events_of(session, ev.PlayStart)}
    assert abs(gap.t_ms - starts[gap.chunk]) < 15.0  # ...to the start of the next chunk
    assert m.gaps_ms == gap.ms and 1000.0 < m.gaps_ms < 5000.0


@pytest.mark.serial  # Piper must keep ahead of real-time playback: on a busy machine a gap would be the machine's
async def test_a_reply_that_keeps_up_plays_without_gaps_and_its_first_sound_follows_the_silence():
    session, m = await run_one(timed((40.0, FIRST + SECOND, 20.0)))
    assert m.status == "ok" and m.gaps == 0 and m.gaps_ms == 0
    sound = events_of(session, ev.PlaySound)[0]
    assert sound.silence_ms >= 0 and sound.device_latency_ms == 0  # the null output
    assert abs(m.first_sound - (m.first_play + sound.silence_ms + sound.device_latency_ms)) < 0.01


def test_the_first_audible_window_skips_leading_silence_and_a_faint_click():
    rate = 22050
    t = np.arange(rate // 2) / rate
    speech = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    quiet = np.zeros(round(rate * 0.2), dtype=np.int16)
    quiet[100] = 2000  # a faint click: one sample in a silent window
    assert first_audible_ms(np.concatenate([quiet, speech]), rate) == pytest.approx(200.0, abs=10.0)
    assert first_audible_ms(quiet, rate) is None
    assert first_audible_ms((speech * 0.001).astype(np.int16), rate) is None  # -70 dBFS: not heard


async def test_an_unpaced_output_does_not_claim_to_measure_gaps():
    session, m = await run_one(timed((40.0, FIRST, 20.0), (3000.0, SECOND, 20.0)), "unpaced")
    assert m.status == "ok" and m.gaps is None and m.gaps_ms is None
    assert m.first_play is not None and m.first_sound is not None
    assert events_of(session, ev.TurnStart)[0].unpaced is True


@pytest.mark.serial  # Piper must keep ahead of real-time playback: on a busy machine a gap would be the machine's
async def test_a_reply_slower_than_speech_is_cut_before_playback_runs_dry():
    """A first sentence, then a run-on sentence trickling in slower than it can be spoken: the
    engine's lead tells the chunker playback is about to run dry, so it cuts (`underrun`) well
    before its long later-chunk deadline."""
    run_on = [" and", " then", " we", " will", " look", " at", " the", " order", " you", " placed", " with",
              " us", " last", " week", " to", " see", " where", " it", " went"]
    session, m = await run_one(timed((40.0, FIRST, 20.0), (300.0, run_on, 400.0)),
                               "null", "chunker.later_deadline_ms=20000")
    assert m.status == "ok"
    reasons = [e.reason for e in events_of(session, ev.Chunk)]
    assert "underrun" in reasons, reasons
