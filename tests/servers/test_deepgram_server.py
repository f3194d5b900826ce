"""The loopback Deepgram Aura server, driven by raw websockets/httpx clients on real sockets:
Metadata, Speak/Flush/Clear/Close, binary audio, the Flush limit, error closes, faults
and the REST endpoint."""

from __future__ import annotations

import asyncio
import io
import json
import time
import wave

import httpx
import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from playground.servers.deepgram import DeepgramServer
from playground.servers.faults import Fault
from playground.servers.voice import LoopbackVoice

pytestmark = pytest.mark.models
SERVER = DeepgramServer
API_KEY = KEY = "test-key"
RATE = 24000
QUERY = f"model=aura-asteria-en&encoding=linear16&sample_rate={RATE}"


async def connect(server, query: str = QUERY, key: str = KEY):
    url = server.url.replace("http://", "ws://") + f"/v1/speak?{query}"
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Token {key}"})
    metadata = json.loads(await ws.recv())
    assert metadata["type"] == "Metadata" and metadata["model_name"] == "aura-asteria-en"
    assert {"request_id", "model_version", "model_uuid"} <= set(metadata)
    return ws


async def speak(ws, *texts: str) -> None:
    for text in texts:
        await ws.send(json.dumps({"type": "Speak", "text": text}))


async def read_until(ws, kind: str) -> tuple[bytes, list[dict]]:
    """Binary audio and JSON messages up to the first message of type `kind`."""
    audio, messages = b"", []
    while True:
        message = await ws.recv()
        if isinstance(message, bytes):
            audio += message
            continue
        messages.append(json.loads(message))
        if messages[-1]["type"] == kind:
            return audio, messages


def speech_seconds(voice: LoopbackVoice, text: str) -> float:
    return sum(len(piece) for piece in voice.synthesize(text, RATE)) / RATE


async def test_speak_and_flush_give_real_audio_then_flushed(server, loopback_voice):
    async with asyncio.timeout(30):
        ws = await connect(server)
        await speak(ws, "Hello there, ", "this is the loopback Deepgram server")
        await ws.send(json.dumps({"type": "Flush"}))
        audio, messages = await read_until(ws, "Flushed")
        assert messages == [{"type": "Flushed", "sequence_id": 0}]
        samples = np.frombuffer(audio, dtype="<i2")
        assert len(audio) % 2 == 0 and np.abs(samples).max() > 1000
        text = "Hello there, this is the loopback Deepgram server"
        assert len(samples) / RATE == pytest.approx(speech_seconds(loopback_voice, text), rel=0.25)
        await speak(ws, "Second reply.")
        await ws.send(json.dumps({"type": "Flush"}))
        assert (await read_until(ws, "Flushed"))[1][-1]["sequence_id"] == 1
        await ws.send(json.dumps({"type": "Close"}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 1000


async def test_text_is_held_until_a_boundary_or_a_flush(server):
    async with asyncio.timeout(20):
        ws = await connect(server)
        await speak(ws, "Held without a boundary")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.8):
                await ws.recv()
        await speak(ws, " until now, ")  # a natural boundary: spoken without a Flush
        assert isinstance(await ws.recv(), bytes)
        await ws.close()


async def test_close_speaks_what_is_left_first(server):
    async with asyncio.timeout(20):
        ws = await connect(server)
        await speak(ws, "Spoken before the socket closes")
        await ws.send(json.dumps({"type": "Close"}))
        audio = b""
        with pytest.raises(ConnectionClosed):
            while True:
                audio += await ws.recv()
        assert len(audio) / 2 / RATE > 0.5


async def test_clear_stops_the_audio_and_confirms(server):
    long_text = "This sentence is long enough to take a while to speak. " * 6
    async with asyncio.timeout(30):
        ws = await connect(server)
        await speak(ws, long_text)
        assert isinstance(await ws.recv(), bytes)
        await ws.send(json.dumps({"type": "Clear"}))
        _, messages = await read_until(ws, "Cleared")
        assert messages == [{"type": "Cleared", "sequence_id": 0}]
        with pytest.raises(TimeoutError):  # nothing of the cleared text after Cleared
            async with asyncio.timeout(1.0):
                await ws.recv()
        await speak(ws, "A fresh reply.")
        await ws.send(json.dumps({"type": "Flush"}))
        audio, messages = await read_until(ws, "Flushed")
        assert audio and messages[-1]["sequence_id"] == 0
        await ws.close()


async def test_more_than_20_flushes_a_minute_get_a_warning(server):
    async with asyncio.timeout(20):
        ws = await connect(server)
        for _ in range(20):
            await ws.send(json.dumps({"type": "Flush"}))
            await read_until(ws, "Flushed")
        await ws.send(json.dumps({"type": "Flush"}))
        warning = json.loads(await ws.recv())
        assert warning["type"] == "Warning" and set(warning) == {"type", "description", "code"}
        assert "20" in warning["description"]
        await ws.close()


@pytest.mark.parametrize("message, code, words", [
    ("{not json", 1008, "not valid JSON"),
    (json.dumps({"type": "Shout", "text": "hi"}), 1008, "unknown message type"),
    (json.dumps({"type": "Speak"}), 1008, "text"),
    (b"\x00\x01", 1003, "binary"),
])
async def test_errors_are_close_frames_with_a_reason(server, message, code, words):
    async with asyncio.timeout(10):
        ws = await connect(server)
        await ws.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == code and words in closed.value.rcvd.reason


async def test_handshake_checks(server):
    async with asyncio.timeout(10):
        with pytest.raises(InvalidStatus) as wrong_key:
            await connect(server, key="wrong")
        assert wrong_key.value.response.status_code == 401
        assert json.loads(wrong_key.value.response.body)["err_code"] == "INVALID_AUTH"
        with pytest.raises(InvalidStatus) as bad_rate:
            await connect(server, query="encoding=linear16&sample_rate=99")
        assert bad_rate.value.response.status_code == 400
        server.inject(Fault("reject", status=403))
        with pytest.raises(InvalidStatus) as refused:
            await connect(server)
        assert refused.value.response.status_code == 403
        await (await connect(server)).close()


@pytest.mark.parametrize("code, reason", [(1006, ""), (1011, "internal error (injected)")])
async def test_close_mid_reply(server, code, reason):
    server.inject(Fault("close", code=code, reason=reason, after=2))
    async with asyncio.timeout(20):
        ws = await connect(server)
        await speak(ws, "This reply is cut off by the server.")
        frames = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frames += isinstance(await ws.recv(), bytes)
        assert frames == 2
        assert closed.value.rcvd is None if code == 1006 else closed.value.rcvd.code == code


async def test_stall_malformed_unknown_and_wrong_format_faults(server):
    server.inject(Fault("malformed"), Fault("unknown"), Fault("wrong_format", audio="wav"),
                  Fault("stall", after=1, seconds=1.0))
    async with asyncio.timeout(20):
        ws = await connect(server)
        await speak(ws, "A reply with every fault in it.")
        await ws.send(json.dumps({"type": "Flush"}))
        with pytest.raises(ValueError):
            json.loads(await ws.recv())
        assert json.loads(await ws.recv())["type"] == "loopback_unknown"
        assert (await ws.recv()).startswith(b"RIFF")  # a WAV file, not the raw PCM asked for
        started = time.monotonic()
        assert isinstance(await ws.recv(), bytes)
        assert time.monotonic() - started >= 0.95
        audio, _ = await read_until(ws, "Flushed")
        assert len(audio) % 2 == 0
        await ws.close()


async def test_rest_speak(server, loopback_voice):
    text = "Hello from the REST endpoint."
    headers = {"Authorization": f"Token {KEY}"}
    async with asyncio.timeout(20), httpx.AsyncClient(base_url=server.url) as client:
        raw = await client.post(f"/v1/speak?{QUERY}&container=none", json={"text": text}, headers=headers)
        assert raw.status_code == 200 and raw.headers["dg-char-count"] == str(len(text))
        assert len(raw.content) / 2 / RATE == pytest.approx(speech_seconds(loopback_voice, text), rel=0.25)
        wav = await client.post(f"/v1/speak?{QUERY}", json={"text": text}, headers=headers)
        with wave.open(io.BytesIO(wav.content)) as audio:
            assert (audio.getframerate(), audio.getsampwidth(), audio.getnchannels()) == (RATE, 2, 1)
        refused = await client.post(f"/v1/speak?{QUERY}", json={"text": text})
        assert refused.status_code == 401
        empty = await client.post(f"/v1/speak?{QUERY}", json={"words": text}, headers=headers)
        assert empty.status_code == 400 and "text" in empty.json()["err_msg"]


async def test_unknown_paths_and_methods_get_deepgrams_error_shape(server):
    async with asyncio.timeout(10), httpx.AsyncClient(base_url=server.url) as client:
        missing = await client.post("/v1/listen", content=b"audio")
        wrong_method = await client.delete("/v1/speak")
    for response, status in ((missing, 404), (wrong_method, 405)):
        assert response.status_code == status
        assert set(response.json()) == {"err_code", "err_msg", "request_id"}
    assert "/v1/listen" in missing.json()["err_msg"]
