"""The diagnosis in the TUI: the breakdown as each band's `why` lane, the worst finding on the
band's title the moment the turn ends, and the F10 / palette view of every turn's findings."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import DataTable, Markdown

from playground.core.tracefile import read_trace
from playground.data import find
from playground.engine.runner import EngineThread
from playground.ui.app import PlaygroundApp
from playground.ui.diagnosis import DiagnosisScreen
from playground.ui.waterfall import STAGE_CLASSES
from tests.conftest import local_preset
from tests.ui.test_app import wait_for
from tests.ui.test_waterfall import lane_segments, lane_y, rows

RUN_ON = ("You filled out a form about saving money on your energy bill without changing a single habit "
          "and that is how we got your details. Does that ring a bell?")


async def test_a_recorded_turn_shows_its_breakdown_its_worst_finding_and_the_diagnosis_view():
    app = PlaygroundApp(local_preset(), view=read_trace(find("trace", "seed-turn4")), view_name="seed-turn4")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.2)
        waterfall = app.waterfall
        assert "✖ REST" in rows(waterfall)[lane_y(waterfall, 4, "title")]
        why = lane_segments(waterfall, 4, "why")
        colours = {s.style.color for s in why if s.text.strip()}
        llm, chunker = (waterfall._color(STAGE_CLASSES[key]) for key in ("llm", "chunker"))
        assert {llm, chunker} <= colours  # LLM first token, then the 6 s chunker wait
        await pilot.press("f10")
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, DiagnosisScreen) and screen.selected == 4
        assert screen.query_one(DataTable).row_count == 1
        text = screen.query_one(Markdown).source
        assert "run-on first chunk: 6,087 ms of chunker wait" in text and "adaptive 1,236 ms" in text
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, DiagnosisScreen)


@pytest.mark.models  # the loopback TTS server speaks with the Piper voice
async def test_a_live_turn_shows_its_finding_on_its_band_when_it_ends(loopback_voice):
    from playground.servers.elevenlabs import ElevenLabsServer
    from tests.tts.loopback import open_loopback_session
    from tests.diagnosis.test_loopback_findings import replayed

    server = ElevenLabsServer(voice=loopback_voice)
    await server.start()
    engine = EngineThread().start()
    try:
        session, _ = await asyncio.wrap_future(engine.submit(open_loopback_session(
            server, "chunker.strategy=sentence", llm=replayed(RUN_ON, gap_ms=30.0))))
        app = PlaygroundApp(session.preset, audio="null", attach=(engine, session))
        async with app.run_test(size=(160, 48)) as pilot:
            turn = asyncio.wrap_future(engine.submit(session.run_turn("Who is this?")))
            await wait_for(pilot, lambda: 1 in app.diagnoses, timeout=30, what="turn 1 diagnosed")
            await pilot.pause(0.1)
            assert "⚠ RUN-ON +" in rows(app.waterfall)[lane_y(app.waterfall, 1, "title")]
            assert app.diagnoses[1].worst.code == "run_on"
            await turn
        await asyncio.wrap_future(engine.submit(session.close()))
    finally:
        engine.stop()
        await server.stop()
