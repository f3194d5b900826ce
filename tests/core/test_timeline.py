"""Each turn's timeline (playground.core.timeline), built event by event: hand-written turns, then a real one."""

from __future__ import annotations

import pytest
from msgspec import structs

from playground.core import events as ev
from playground.core.events import TraceEvent
from playground.core.timeline import CANCELLED, ERROR, OK, RUNNING, Timeline, TurnTimeline
from tests.conftest import local_preset, open_test_session
from tests.events import event


def E(t_ms: float, kind: type[TraceEvent], turn: int = 1, **fields) -> TraceEvent:
    return event(kind, turn, t_ms, **fields)


# A short reply: an empty first token, two chunks (the second flushed), two audio pieces
# for chunk 0, playback reported after later events with earlier times (as the engine does).
TURN = [
    E(0.0, ev.TurnStart, text="Hi there", strategy="adaptive"),
    E(0.1, ev.TtsSession, action="reuse", path="persistent"),
    E(0.2, ev.LlmRequest),
    E(180.0, ev.LlmToken, i=0, text=""),
    E(200.0, ev.LlmToken, i=1, text="Hello"),
    E(230.0, ev.LlmToken, i=2, text=" there."),
    E(231.0, ev.Chunk, index=0, text="Hello there.", reason="strong", start_ms=200.0, token_start=1, token_end=2),
    E(231.1, ev.TtsSend, chunk=0, chars=12),
    E(260.0, ev.LlmToken, i=3, text=" Bye"),
    E(270.0, ev.LlmDone, tokens=4),
    E(270.5, ev.Chunk, index=1, text="Bye", reason="flush", start_ms=260.0, token_start=3, token_end=3),
    E(270.6, ev.TtsSend, chunk=1, chars=3),
    E(400.0, ev.TtsAudio, chunk=0, duration_ms=500.0),
    E(401.0, ev.PlayStart, chunk=0),
    E(450.0, ev.TtsAudio, chunk=0, duration_ms=300.0),
    E(520.0, ev.TtsAudio, chunk=1, duration_ms=200.0),
    E(521.0, ev.TtsDone),
    E(1201.0, ev.PlayEnd, chunk=0),
    E(1201.0, ev.PlayStart, chunk=1),
    E(1401.0, ev.PlayEnd, chunk=1),
    E(1402.0, ev.TurnSummary, metrics={}),
]


def build(events: list[TraceEvent]) -> TurnTimeline:
    turn = TurnTimeline(events[0].turn)
    for e in events:
        turn.add(e)
    return turn


def test_a_finished_turn_has_markers_spans_and_status():
    turn = build(TURN)

    assert turn.markers == {"llm_ttft": 200.0, "ttfs": 231.0, "ttfa": 400.0, "first_play": 401.0}
    assert turn.marker_items() == [("llm_ttft", 200.0), ("ttfs", 231.0), ("ttfa", 400.0), ("first_play", 401.0)]
    assert turn.token_ms == [200.0, 230.0, 260.0]  # the empty token is no tick
    first, last = turn.chunks[0], turn.chunks[1]
    assert (first.start_ms, first.emit_ms, first.reason) == (200.0, 231.0, "strong")
    assert (first.send_ms, first.first_audio_ms, first.last_audio_ms) == (231.1, 400.0, 450.0)
    assert (first.play_start_ms, first.play_end_ms, first.cut) == (401.0, 1201.0, False)
    assert (last.reason, last.play_start_ms, last.play_end_ms) == ("flush", 1201.0, 1401.0)
    assert (turn.text, turn.strategy, turn.tts_path) == ("Hi there", "adaptive", "persistent")
    assert turn.status == OK and not turn.live and turn.stopped_ms is None
    assert turn.end_ms == 1402.0
    assert turn.pending_chunk_start_ms is None


def test_the_turn_grows_event_by_event():
    turn = TurnTimeline(1)
    versions = []
    for e in TURN[:6]:  # up to the second token, before any chunk
        turn.add(e)
        versions.append(turn.version)
    assert versions == sorted(set(versions))  # strictly increasing: every event changes the turn
    assert turn.live and turn.status == RUNNING
    assert turn.markers == {"llm_ttft": 200.0}
    assert turn.pending_chunk_start_ms == 180.0  # the chunker holds every token so far
    assert turn.end_ms == 230.0

    turn.add(TURN[6])  # chunk 0 takes tokens 0..2
    assert turn.pending_chunk_start_ms is None
    assert turn.chunks[0].send_ms is None
    turn.add(TURN[7])
    turn.add(TURN[8])  # " Bye" waits in the chunker
    assert turn.pending_chunk_start_ms == 260.0
    turn.add(TURN[9])  # llm.done: the chunker flushes at once
    assert turn.pending_chunk_start_ms is None


def test_late_events_with_earlier_times_do_not_move_the_end_back():
    turn = build(TURN[:-1] + [E(1300.0, ev.PlayEnd, chunk=1)])
    assert turn.end_ms == 1401.0


def test_a_barge_in_cancels_the_turn_and_cuts_playback():
    events = TURN[:14] + [
        E(700.0, ev.PlayEnd, chunk=0, cut=True),
        E(702.0, ev.TurnCancelled, reason="barge-in"),
        E(703.0, ev.TurnSummary, metrics={}),
    ]
    turn = build(events)
    assert turn.status == CANCELLED and turn.status_detail == "barge-in"
    assert turn.stopped_ms == 702.0
    assert turn.chunks[0].cut and turn.chunks[0].play_end_ms == 700.0
    assert turn.chunks[1].play_start_ms is None


def test_stopping_a_turn_cuts_the_playback_the_output_did_not_report():
    turn = build(TURN[:14] + [E(650.0, ev.TurnCancelled, reason="barge-in")])
    assert (turn.chunks[0].play_end_ms, turn.chunks[0].cut) == (650.0, True)
    assert turn.chunks[1].play_start_ms is None and not turn.chunks[1].cut


def test_an_error_fails_the_turn_unless_it_was_cancelled():
    failed = build(TURN[:9] + [E(300.0, ev.Error, where="tts", message="socket closed"), E(301.0, ev.TurnSummary)])
    assert failed.status == ERROR and failed.status_detail == "tts: socket closed" and failed.stopped_ms == 300.0

    cancelled = build(TURN[:9] + [E(300.0, ev.TurnCancelled, reason="stop"), E(301.0, ev.Error, where="tts", message="x")])
    assert cancelled.status == CANCELLED


def test_the_worst_tts_path_of_the_turn_counts():
    turn = build(TURN[:3] + [
        E(5.0, ev.TtsSession, action="fallback", path="fallback_rest", reason="ws refused"),
        E(6.0, ev.TtsSession, action="reuse", path="persistent"),
    ])
    assert (turn.tts_path, turn.tts_path_reason) == ("fallback_rest", "ws refused")


def test_the_timeline_keeps_turns_apart_and_ignores_the_session():
    second = [structs.replace(e, turn=2, t_ms=e.t_ms * 2) for e in TURN]
    timeline = Timeline.from_events([E(9999.0, ev.TtsSession, turn=ev.SESSION_TURN, path="persistent"), *TURN, *second])

    assert list(timeline.turns) == [1, 2]
    assert timeline.max_end_ms == 2804.0
    assert timeline.version == 2 * len(TURN)
    old_uid = timeline.turns[1].uid
    timeline.clear()
    assert timeline.turns == {} and timeline.max_end_ms == 0.0 and timeline.version == 2 * len(TURN) + 1
    timeline.add(TURN[0])
    assert timeline.turns[1].uid != old_uid  # a view's cache cannot mistake it for the old turn 1


@pytest.mark.models
async def test_a_real_turn_builds_the_same_markers_as_its_metrics():
    session = await open_test_session(local_preset("llm.max_tokens=8"))
    timeline = Timeline()
    session.trace.subscribe(timeline.add)  # live, as the app does
    try:
        metrics = await session.run_turn("Say hello.")
    finally:
        await session.close()

    turn = timeline.turns[1]
    assert turn.status == OK and metrics.status == "ok"
    assert turn.markers == {
        "llm_ttft": metrics.llm_ttft, "ttfs": metrics.ttfs, "ttfa": metrics.ttfa, "first_play": metrics.first_play,
        "first_sound": metrics.first_sound,
    }
    assert metrics.first_play < metrics.first_sound  # Piper's audio starts with a little silence
    assert turn.gaps == [] and metrics.gaps == 0
    assert len(turn.token_ms) == metrics.tokens
    assert len(turn.chunks) == metrics.chunks
    for chunk in turn.chunks.values():
        assert chunk.start_ms <= chunk.emit_ms <= chunk.send_ms <= chunk.first_audio_ms <= chunk.last_audio_ms
        assert chunk.play_start_ms is not None and chunk.play_end_ms >= chunk.play_start_ms
    assert turn.tts_path == "persistent"
    assert turn.end_ms == max(e.t_ms for e in session.trace.turn_events(1))
