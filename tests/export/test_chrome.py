"""Chrome Trace Event JSON: what Perfetto and chrome://tracing load, from real traces."""

from __future__ import annotations

import itertools
import json

import pytest

from playground.core import events as ev
from playground.core.metrics import compute_metrics
from playground.export.formats import ExportJob, export
from playground.export.layout import TurnLayout
from tests.events import event
from tests.export.conftest import SESSION, TWO_TURNS, VOICE, load, long_session
from tests.export.trace_event_format import FormatError, validate


def chrome_of(tmp_path, header, events):
    path = export("chrome", tmp_path / "trace.chrome.json", header, events)
    return validate(path.read_bytes())


def tracks(trace):
    return {e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}


def named(trace, name, ph=None):
    return [e for e in trace["traceEvents"] if e["name"] == name and (ph is None or e["ph"] == ph)]


def test_recorded_traces_load_as_trace_event_format(tmp_path, recorded):
    header, events = load(recorded)
    trace = chrome_of(tmp_path, header, events)
    assert trace["displayTimeUnit"] == "ms"
    processes = named(trace, "process_name", "M")
    assert len(processes) == 1 and "playground session" in processes[0]["args"]["name"]
    assert {"turns", "LLM", "chunker", "TTS", "playback"} <= set(tracks(trace).values())
    assert {e["ph"] for e in trace["traceEvents"]} == {"M", "X", "i"}


def test_spans_markers_and_metrics_of_two_turns(tmp_path):
    header, events = load(TWO_TURNS)
    trace = chrome_of(tmp_path, header, events)
    lanes = {name: tid for tid, name in tracks(trace).items()}
    by_cat = {}
    for e in trace["traceEvents"]:
        if e["ph"] == "X":
            by_cat.setdefault(e["cat"], []).append(e)
    counts = {t: sum(1 for e in events if isinstance(e, t)) for t in (ev.Chunk, ev.TtsSend, ev.PlayStart, ev.LlmToken)}
    assert len(by_cat["turn"]) == 2 and len(by_cat["llm"]) == 2
    assert len(by_cat["chunker"]) == counts[ev.Chunk]
    assert len(by_cat["tts"]) == counts[ev.TtsSend]
    assert len(by_cat["playback"]) == counts[ev.PlayStart]
    assert len(named(trace, "token", "i")) == counts[ev.LlmToken]

    # Turn 1 starts where the session's TTS open left off (292.222 ms); its markers sit at
    # offset + the metric, on their lanes, and its metrics are the span's args.
    turn1 = next(e for e in by_cat["turn"] if e["name"] == "turn 1")
    assert turn1["ts"] == pytest.approx(292_222.0)
    metrics = compute_metrics([e for e in events if e.turn == 1])
    assert turn1["args"]["metrics"] == metrics.to_json()
    assert turn1["args"]["status"] == "ok" and turn1["args"]["text"] == "Hi, who is this?"
    for marker, value, lane in (("LLM_TTFT", metrics.llm_ttft, "LLM"), ("TTFS", metrics.ttfs, "chunker"),
                                ("TTFA", metrics.ttfa, "TTS"), ("FIRST_PLAY", metrics.first_play, "playback")):
        first = min(named(trace, marker, "i"), key=lambda e: e["ts"])
        assert first["ts"] == pytest.approx((292.222 + value) * 1000, abs=0.01), marker
        assert first["tid"] == lanes[lane] and first["s"] == "t"
    # A chunk spans its first token to its emission.
    chunk0 = next(e for e in by_cat["chunker"] if e["name"] == "chunk 0")
    assert chunk0["ts"] == pytest.approx((292.222 + 114.915) * 1000)
    assert chunk0["dur"] == pytest.approx((207.458 - 114.915) * 1000, abs=0.01)
    # Turn 2 pipelines its two TTS requests: the second goes to an overlap track.
    assert "TTS 2" in lanes
    turn2_tts = sorted((e for e in by_cat["tts"] if e["ts"] > turn1["ts"] + turn1["dur"]), key=lambda e: e["ts"])
    assert [lanes["TTS"], lanes["TTS 2"]] == [e["tid"] for e in turn2_tts]
    # ... and so does the audio that answered it.
    audio = [e for e in named(trace, "audio", "i") if e["ts"] > turn2_tts[0]["ts"]]
    assert [(e["args"]["chunk"], e["tid"]) for e in audio] == [(0, lanes["TTS"]), (1, lanes["TTS 2"])]


def test_cancel_is_visible_across_the_session(tmp_path):
    header, events = load(SESSION)
    trace = chrome_of(tmp_path, header, events)
    cancel = named(trace, ev.TurnCancelled.type, "i")
    assert len(cancel) == 1 and cancel[0]["s"] == "p" and cancel[0]["args"]["reason"] == "user pressed Esc"
    turn4 = named(trace, "turn 4", "X")[0]
    assert turn4["args"]["status"] == "cancelled"
    played = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] == "playback"
              and turn4["ts"] <= e["ts"] <= turn4["ts"] + turn4["dur"]]
    assert played and played[-1]["args"]["cut"] is True


def test_error_turn_ends_its_spans_at_the_error(tmp_path):
    # A real turn whose TTS failed after its first audio: its events up to there, then the
    # `error` event the engine emits; the session's closing event stays after it.
    header, events = load(TWO_TURNS)
    cut = next(i for i, e in enumerate(events) if e.turn == 2 and isinstance(e, ev.TtsAudio))
    error_at = events[cut].t_ms + 5.0
    failed = [*events[:cut + 1], event(ev.Error, 2, error_at, where="tts", message="piper exited"),
              *(e for e in events[cut + 1:] if e.turn != 2)]
    trace = chrome_of(tmp_path, header, failed)
    lanes = {n: t for t, n in tracks(trace).items()}
    error = named(trace, "error (tts)", "i")
    assert len(error) == 1 and error[0]["s"] == "p" and error[0]["tid"] == lanes["TTS"]
    assert error[0]["args"]["message"] == "piper exited"
    turn = named(trace, "turn 2", "X")[0]
    assert turn["args"]["status"] == "error"
    # Chunk 1 was sent but no audio came back before the failure: its TTS span ends at the error.
    sent = [e for e in named(trace, "tts 1", "X") if e["ts"] >= turn["ts"]]
    assert len(sent) == 1 and sent[0]["args"]["audio"] is False
    assert sent[0]["ts"] + sent[0]["dur"] == pytest.approx(error[0]["ts"], abs=0.01)


def test_spoken_turn_has_the_stt_vad_lane(tmp_path):
    header, events = load(VOICE)
    trace = chrome_of(tmp_path, header, events)
    stt_tid = {n: t for t, n in tracks(trace).items()}["STT/VAD"]
    on_lane = {e["name"] for e in trace["traceEvents"] if e.get("tid") == stt_tid}
    assert {"speech", "stt", "STT", ev.VadSpeechStart.type, ev.SttInterim.type, ev.SttFinal.type, ev.Mic.type} <= on_lane
    speech, stt = named(trace, "speech", "X")[0], named(trace, "stt", "X")[0]
    # The speech (VAD onset -> end of speech, before t0) runs into STT (t0 -> final transcript).
    assert speech["ts"] + speech["dur"] == pytest.approx(stt["ts"], abs=0.01)
    final = next(e for e in events if isinstance(e, ev.SttFinal))
    assert stt["dur"] == pytest.approx(final.t_ms * 1000, abs=0.01)
    assert speech["ts"] >= 0


def test_200_turn_session_loads(tmp_path):
    header, events = long_session()
    trace = chrome_of(tmp_path, header, events)
    turns = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] == "turn"]
    assert len(turns) == 200
    # Turns follow each other on the session clock.
    ordered = sorted(turns, key=lambda e: e["ts"])
    assert all(a["ts"] + a["dur"] <= b["ts"] + 0.01 for a, b in itertools.pairwise(ordered))
    assert sum(isinstance(item, TurnLayout) for item in ExportJob(header, events).layouts()) == 200


@pytest.mark.parametrize("broken, complaint", [
    ({"ph": "Q"}, "unknown phase"),
    ({"ts": -1.0}, "negative"),
    ({"ts": "12"}, "finite number"),
    ({"tid": 1.5}, "integer"),
    ({"dur": None}, "finite number"),
])
def test_validator_rejects_what_loaders_reject(broken, complaint):
    event = {"name": "x", "ph": "X", "ts": 1.0, "dur": 2.0, "pid": 1, "tid": 1, **broken}
    meta = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "p"}},
            {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "t"}}]
    with pytest.raises(FormatError, match=complaint):
        validate(json.dumps({"traceEvents": [*meta, event]}).encode())
    overlapping = [{"name": n, "ph": "X", "ts": ts, "dur": 10.0, "pid": 1, "tid": 1} for n, ts in (("a", 0.0), ("b", 5.0))]
    with pytest.raises(FormatError, match="without nesting"):
        validate(json.dumps({"traceEvents": [*meta, *overlapping]}).encode())
