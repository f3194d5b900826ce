"""The loopback ElevenLabs server speaks the documented protocol (driven with a plain WebSocket
client, not our session), and `playground serve-tts` serves it."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from playground.commands.serve_tts import tts_servers
from playground.servers.elevenlabs import ElevenLabsServer

pytestmark = pytest.mark.models
SERVER = ElevenLabsServer
RATE = 16000


def ws_url(server, endpoint="multi-stream-input", **query) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"output_format": f"pcm_{RATE}", **query}.items())
    return f"{server.url.replace('http', 'ws')}/v1/text-to-speech/v1/{endpoint}?{params}"


async def receive_until_final(ws) -> list[dict]:
    messages = []
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.recv())
            messages.append(message)
            if message.get("isFinal"):
                return messages


async def test_multi_context_audio_alignment_and_final(server):
    async with websockets.connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"text": " ", "context_id": "a", "voice_settings": {"speed": 1.0},
                                  "generation_config": {"chunk_length_schedule": [120, 160, 250, 290]}}))
        await ws.send(json.dumps({"text": "Hello there, good morning. ", "context_id": "a", "flush": True}))
        await ws.send(json.dumps({"context_id": "a", "flush": True}))
        await ws.send(json.dumps({"context_id": "a", "close_context": True}))
        messages = await receive_until_final(ws)
    audio_messages, final = messages[:-1], messages[-1]
    assert final == {"isFinal": True, "contextId": "a"}
    assert all(m["contextId"] == "a" and m["isFinal"] is None for m in audio_messages)
    pcm = b"".join(base64.b64decode(m["audio"]) for m in audio_messages)
    assert np.array_equal(np.frombuffer(pcm, "<i2"), server.speech("Hello there, good morning. ", RATE))
    # every character once, in the message whose audio it starts in (a message may start none)
    chars = [c for m in audio_messages if m["alignment"] for c in m["alignment"]["chars"]]
    assert "".join(chars) == "Hello there, good morning. "
    first = audio_messages[0]["alignment"]
    assert set(first) == {"chars", "charStartTimesMs", "charDurationsMs"} and first["charStartTimesMs"][0] == 0
    assert audio_messages[0]["normalizedAlignment"] == first


async def test_schedule_buffers_unflushed_text_until_close(server):
    async with websockets.connect(ws_url(server, auto_mode="false")) as ws:
        await ws.send(json.dumps({"text": " ", "context_id": "a"}))
        await ws.send(json.dumps({"text": "Short text. ", "context_id": "a"}))  # under 120 characters: buffered
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await ws.recv()
        await ws.send(json.dumps({"context_id": "a", "close_context": True}))
        messages = await receive_until_final(ws)
    assert len(messages) >= 2 and messages[0]["audio"]


async def test_inactivity_timeout_closes_with_the_documented_message(server):
    async with websockets.connect(ws_url(server, inactivity_timeout=1)) as ws:
        async with asyncio.timeout(5):
            error = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed):
                await ws.recv()
    assert error["error"] == "input_timeout_exceeded" and error["code"] == 1008
    assert error["message"].startswith("Have not received a new text input within the timeout of 1.0 seconds.")
    assert ws.close_code == 1008


async def test_keepalives_hold_an_idle_connection(server):
    async with websockets.connect(ws_url(server, inactivity_timeout=1)) as ws:
        for _ in range(6):
            await asyncio.sleep(0.4)
            await ws.send(json.dumps({"text": ""}))
        await ws.send(json.dumps({"text": " ", "context_id": "a"}))
        await ws.send(json.dumps({"text": "Still here. ", "context_id": "a", "flush": True}))
        await ws.send(json.dumps({"context_id": "a", "close_context": True}))
        assert (await receive_until_final(ws))[-1]["isFinal"]


async def test_a_sixth_context_is_refused(server):
    async with websockets.connect(ws_url(server)) as ws:
        for n in range(6):
            await ws.send(json.dumps({"text": " ", "context_id": f"c{n}"}))
        async with asyncio.timeout(5):
            error = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed):
                await ws.recv()
    assert error["error"] == "max_active_conversations" and ws.close_code == 1008


async def test_keepalive_as_a_context_first_message_makes_its_init_fail(server):
    async with websockets.connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"text": "", "context_id": "a"}))
        await ws.send(json.dumps({"text": " ", "context_id": "a", "voice_settings": {}}))
        async with asyncio.timeout(5):
            error = json.loads(await ws.recv())
    assert error["code"] == 1008 and "keep-alive" in error["message"]


async def test_single_stream_ends_on_empty_text(server):
    async with websockets.connect(ws_url(server, endpoint="stream-input")) as ws:
        await ws.send(json.dumps({"text": " ", "voice_settings": {}}))
        await ws.send(json.dumps({"text": "One stream. ", "flush": True}))
        await ws.send(json.dumps({"text": ""}))
        messages = await receive_until_final(ws)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5):
                await ws.recv()
    assert "contextId" not in messages[0] and messages[0]["audio"]


async def test_rest_stream_returns_raw_pcm(server):
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{server.url}/v1/text-to-speech/v1/stream", params={"output_format": "pcm_16000"},
                                     json={"text": "Over HTTP.", "model_id": "eleven_flash_v2_5"})
    assert response.status_code == 200
    assert np.array_equal(np.frombuffer(response.content, "<i2"), server.speech("Over HTTP.", RATE))


async def test_the_api_key_is_checked_at_the_handshake(loopback_voice, start_server):
    server = await start_server(ElevenLabsServer(api_key="secret", voice=loopback_voice))
    for headers, status in (({}, 401), ({"xi-api-key": "wrong"}, 401)):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(ws_url(server), additional_headers=headers)
        assert refused.value.response.status_code == status
    async with websockets.connect(ws_url(server), additional_headers={"xi-api-key": "secret"}):
        pass


def test_serve_tts_finds_the_server_and_prints_a_matching_setting():
    assert tts_servers()["elevenlabs"] is ElevenLabsServer
    process = subprocess.Popen([sys.executable, "-m", "playground.cli", "serve-tts", "elevenlabs", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = process.stdout.readline()
        assert first.startswith("elevenlabs loopback server on http://127.0.0.1:"), first
        url = first.split(" on ")[1].split(" ")[0]
        assert f"--set tts.base_url={url}" in process.stdout.readline()
        response = httpx.post(f"{url}/v1/text-to-speech/v1/stream", json={"text": "Hi."}, timeout=10)
        assert response.status_code == 200 and len(response.content) > 1000
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_tts_names_unknown_providers():
    result = subprocess.run([sys.executable, "-m", "playground.cli", "serve-tts", "nope"],
                            check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "no loopback TTS server for 'nope'" in result.stderr
    assert "elevenlabs" in result.stderr


def mp3_samples(data: bytes) -> tuple[int, int]:
    """(sample rate, samples) of MP3 bytes, decoded by FFmpeg."""
    import av

    with av.open(io.BytesIO(data), format="mp3") as mp3:
        stream = mp3.streams.audio[0]
        return stream.rate, sum(frame.samples for frame in mp3.decode(stream))


async def test_without_output_format_the_audio_is_mp3_44100_128(server):
    async with asyncio.timeout(30):
        async with httpx.AsyncClient() as client:
            rest = await client.post(f"{server.url}/v1/text-to-speech/v1", json={"text": "The default format."})
        explicit = ws_url(server, endpoint="stream-input").replace("pcm_16000", "mp3_44100_128")
        for url in (explicit.split("?")[0], explicit):
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"text": " "}))
                await ws.send(json.dumps({"text": "The default format. ", "flush": True}))
                await ws.send(json.dumps({"text": ""}))
                messages = await receive_until_final(ws)
            streamed = b"".join(base64.b64decode(m["audio"]) for m in messages if m.get("audio"))
            assert mp3_samples(streamed)[0] == 44100
    assert rest.status_code == 200 and rest.headers["content-type"] == "audio/mpeg"
    rate, samples = mp3_samples(rest.content)
    expected = len(server.speech("The default format.", 44100))
    assert rate == 44100 and 0 <= samples - expected < 2 * 1152  # LAME's priming and last-frame padding


async def test_formats_the_playground_cannot_play_and_unknown_paths_get_elevenlabs_errors(server):
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        ulaw = await client.post(f"{server.url}/v1/text-to-speech/v1/stream", params={"output_format": "ulaw_8000"},
                                 json={"text": "Hi."})
        missing = await client.get(f"{server.url}/v1/voices")
    assert ulaw.status_code == 400 and ulaw.json()["detail"]["status"] == "invalid_output_format"
    assert "ulaw_8000" in ulaw.json()["detail"]["message"]
    assert missing.status_code == 404 and set(missing.json()["detail"]) == {"status", "message"}
    with pytest.raises(InvalidStatus) as opus:
        await websockets.connect(ws_url(server).replace("pcm_16000", "opus_48000_64"))
    assert json.loads(opus.value.response.body)["detail"]["status"] == "invalid_output_format"


async def test_the_inactivity_close_states_the_limit_and_180_s_is_the_most(server):
    async with websockets.connect(ws_url(server, inactivity_timeout=2)) as ws:
        async with asyncio.timeout(6):
            error = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed):
                await ws.recv()
    assert error["error"] == "input_timeout_exceeded" and "2.0 seconds" in error["message"]
    assert ws.close_code == 1008 and "timeout of 2.0 seconds" in ws.close_reason
    with pytest.raises(InvalidStatus) as too_long:
        await websockets.connect(ws_url(server, inactivity_timeout=181))
    assert too_long.value.response.status_code == 400 and b"180" in too_long.value.response.body


async def test_a_keepalive_without_a_context_keeps_the_connection_and_its_contexts(server):
    async with websockets.connect(ws_url(server, inactivity_timeout=1)) as ws:
        await ws.send(json.dumps({"text": " ", "context_id": "a"}))
        await ws.send(json.dumps({"text": "Held until flushed. ", "context_id": "a"}))
        for _ in range(4):  # 2 s in all: twice the timeout, kept open by the keep-alives alone
            await asyncio.sleep(0.5)
            await ws.send(json.dumps({"text": ""}))
        await ws.send(json.dumps({"context_id": "a", "close_context": True}))
        messages = await receive_until_final(ws)
    pcm = b"".join(base64.b64decode(m["audio"]) for m in messages if m.get("audio"))
    assert np.array_equal(np.frombuffer(pcm, "<i2"), server.speech("Held until flushed. ", RATE))


async def test_a_sixth_context_gets_the_documented_error(server):
    async with websockets.connect(ws_url(server)) as ws:
        for n in range(5):
            await ws.send(json.dumps({"text": " ", "context_id": f"c{n}"}))
        await ws.send(json.dumps({"context_id": "c0", "close_context": True}))  # closed: a slot is free again
        await ws.send(json.dumps({"text": " ", "context_id": "c5"}))
        await ws.send(json.dumps({"text": " ", "context_id": "c6"}))
        async with asyncio.timeout(5):
            messages = [json.loads(await ws.recv())]
            while "error" not in messages[-1]:
                messages.append(json.loads(await ws.recv()))
    assert messages[-1] == {"message": "Maximum simultaneous contexts per WebSocket connection exceeded (5). Please "
                                       "close an existing context before opening a new one.",
                            "error": "max_active_conversations", "code": 1008}
    assert all("error" not in m for m in messages[:-1])  # c5 took c0's place: c6 is the one too many


def test_serve_tts_arms_the_faults_it_is_given():
    process = subprocess.Popen([sys.executable, "-m", "playground.cli", "serve-tts", "elevenlabs", "--port", "0",
                                "--fault", "reject:status=429"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = process.stdout.readline().split(" on ")[1].split(" ")[0]
        stream = f"{url}/v1/text-to-speech/v1/stream?output_format=pcm_16000"
        refused = httpx.post(stream, json={"text": "Hi."}, timeout=10)
        armed = httpx.post(f"{url}/loopback/faults", json={"kind": "reject", "status": 503}, timeout=10)
        refused_again = httpx.post(stream, json={"text": "Hi."}, timeout=10)
        served = httpx.post(stream, json={"text": "Hi."}, timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert refused.status_code == 429 and refused.json()["detail"]["status"] == "too_many_concurrent_requests"
    assert armed.status_code == 200 and refused_again.status_code == 503 and served.status_code == 200
    bad = subprocess.run([sys.executable, "-m", "playground.cli", "serve-tts", "elevenlabs", "--fault", "explode"],
                         check=False, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--fault" in bad.stderr and "explode" in bad.stderr
