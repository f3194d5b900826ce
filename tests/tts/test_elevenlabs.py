"""The ElevenLabs session's messages and parsing, and the WebSocket settings of [tts] (no server needed)."""

from __future__ import annotations

import base64
import json

import pytest

from playground.core.presets import PresetError, apply_overrides, load_preset
from playground.tts.elevenlabs import ElevenLabsConfig, ElevenLabsSession, parse_alignment
from playground.tts.websocket import _not_pcm

ALIGNMENT = {"chars": ["H", "i", " ", "!"], "charStartTimesMs": [0, 50, 100, 120], "charDurationsMs": [50, 50, 20, 40]}


def session(**settings) -> ElevenLabsSession:
    return ElevenLabsSession(ElevenLabsConfig(voice="voice 1", base_url="https://api.elevenlabs.io", **settings))


def test_multi_context_url_and_messages():
    s = session(inactivity_timeout_s=60)
    url = s.websocket_url()
    assert url.startswith("wss://api.elevenlabs.io/v1/text-to-speech/voice%201/multi-stream-input?")
    for part in ("model_id=eleven_flash_v2_5", "output_format=pcm_22050", "inactivity_timeout=60",
                 "auto_mode=true", "sync_alignment=true"):
        assert part in url
    assert s.websocket_headers("k") == {"xi-api-key": "k"}
    (init,) = s.begin_messages("turn-1")
    assert init["text"] == " " and init["context_id"] == "turn-1"
    assert init["generation_config"]["chunk_length_schedule"] == [120, 160, 250, 290] and "voice_settings" in init
    assert s.chunk_messages("turn-1", " Hello there.") == [{"text": "Hello there. ", "context_id": "turn-1",
                                                            "flush": True}]
    assert s.end_messages("turn-1") == [{"context_id": "turn-1", "flush": True},
                                        {"context_id": "turn-1", "close_context": True}]
    assert s.cancel_messages("turn-1") == [{"context_id": "turn-1", "close_context": True}]
    assert s.keepalive_messages("turn-1") == [{"text": "", "context_id": "turn-1"}]
    # between turns: a context of its own, closed at once (never the default context's {"text": ""})
    assert s.keepalive_messages(None) == [{"text": " ", "context_id": "keepalive-1"},
                                          {"context_id": "keepalive-1", "close_context": True}]
    assert s.close_messages() == [{"close_socket": True}]
    # the close of an idle connection states the server's limit
    assert s.stated_idle_limit_ms("server closed the connection (1008: input_timeout_exceeded: Have not received "
                                  "a new text input within the timeout of 3.0 seconds. ...)") == 3000.0
    assert s.stated_idle_limit_ms("server closed the connection (1006: no reason given)") is None


def test_passthrough_chunks_are_not_flushed():
    s = session(flush_chunks=False)
    assert s.chunk_messages("c", "Hel") == [{"text": "Hel ", "context_id": "c"}]
    assert "auto_mode=false" in s.websocket_url() and not s.flushes_each_chunk()


def test_single_context_messages():
    s = session(contexts="single")
    assert "/stream-input?" in s.websocket_url() and "multi" not in s.websocket_url()
    assert s.chunk_messages("c", "Hi.") == [{"text": "Hi. ", "flush": True}]
    assert s.keepalive_messages(None) == [{"text": " "}]  # an empty text would end a single stream
    assert s.cancel_messages("c") is None  # no cancel message: a barge-in reconnects
    assert s.close_messages() == [{"text": ""}]
    s.connections = 1
    assert len(s.begin_messages("turn-1")) == 1 and s.begin_messages("turn-2") == []  # settings once per connection


def test_parse_audio_alignment_final_and_errors():
    s = session()
    audio = base64.b64encode(b"\x01\x00\x02\x00").decode()
    (frame,) = s.parse(json.dumps({"audio": audio, "isFinal": None, "alignment": ALIGNMENT, "contextId": "turn-1"}))
    assert frame.audio == b"\x01\x00\x02\x00" and frame.context == "turn-1" and frame.chars == 3
    assert frame.alignment == {"chars": ["H", "i", " ", "!"], "start_ms": [0, 50, 100, 120],
                               "duration_ms": [50, 50, 20, 40]}
    # the AsyncAPI spelling, normalizedAlignment only, and is_final
    spec = {**ALIGNMENT, "charsDurationsMs": ALIGNMENT["charDurationsMs"]}
    del spec["charDurationsMs"]
    (frame,) = s.parse(json.dumps({"audio": audio, "normalizedAlignment": spec, "contextId": "c"}))
    assert frame.chars == 3
    (final,) = s.parse(json.dumps({"is_final": True, "contextId": "turn-1"}))
    assert final.final and not final.audio
    (error,) = s.parse(json.dumps({"message": "Have not received...", "error": "input_timeout_exceeded",
                                   "code": 1008}))
    assert error.error.startswith("input_timeout_exceeded: Have not received")
    (unknown,) = s.parse(json.dumps({"type": "usage", "characters": 3}))
    assert unknown.ignored and "type" in unknown.ignored
    for bad in ('{"audio": "UklGR", "isFinal": nul', "[1, 2]", b"\x00\x01", '{"audio": "%%%"}'):
        with pytest.raises(ValueError):
            s.parse(bad)


def test_alignment_with_mismatched_lists_is_not_used():
    assert parse_alignment({"chars": ["a"], "charStartTimesMs": [], "charDurationsMs": [1]}) is None
    assert parse_alignment(None) is None


def test_mp3_is_told_from_pcm():
    mp3_frame = b"\xff\xfb\x90\x64" + bytes(413)
    assert _not_pcm(mp3_frame * 4, context_start=False) == "MP3"
    assert _not_pcm(b"ID3\x04" + bytes(100), context_start=True) == "MP3"
    assert _not_pcm(b"RIFF" + bytes(100), context_start=True) == "WAV"
    # quiet speech PCM: -1 = FF FF, -1025 = FF FB — no chain of MP3 frames
    quiet = (bytes([0xFF, 0xFF, 0xFF, 0xFB, 0x90, 0x64, 0x01, 0x00]) * 2000)
    assert _not_pcm(quiet, context_start=True) is None


@pytest.mark.parametrize("override, message", [
    ("tts.on_disconnect=retry", "choose one of: resume, rest"),
    ("tts.fallback=never", "choose one of: rest, none"),
    ("tts.contexts=many", "choose one of: multi, single"),
    ("tts.inactivity_timeout_s=300", "between 1 and 180"),
    ("tts.keepalive_ms=0", "more than 0"),
    ("tts.stall_timeout_ms=-1", "more than 0"),
    ("tts.reconnect_attempts=-1", "0 or more"),
    ("tts.output_format=mp3_44100_128", "not raw PCM"),
])
def test_websocket_settings_are_validated(override, message):
    with pytest.raises(PresetError, match=message) as failure:
        apply_overrides(load_preset("loopback-elevenlabs"), [override])
    assert f"--set {override}" in str(failure.value)


async def test_keepalive_must_fit_inside_the_inactivity_timeout():
    from playground.tts.base import TTSError

    s = ElevenLabsSession(apply_overrides(load_preset("loopback-elevenlabs"),
                                          ["tts.inactivity_timeout_s=5", "tts.keepalive_ms=5000"]).tts)
    with pytest.raises(TTSError, match=r"keepalive_ms \(5000\) must be shorter than tts.inactivity_timeout_s"):
        await s.open(lambda action, data: None)
