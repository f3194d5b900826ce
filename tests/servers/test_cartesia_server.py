"""The loopback Cartesia server, driven by raw websockets/httpx clients on real sockets:
the documented message shapes, real Piper audio, contexts, buffering, cancel, errors,
faults and the REST endpoint."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time

import httpx
import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from playground.servers.cartesia import CartesiaServer
from playground.servers.faults import Fault
from playground.servers.voice import LoopbackVoice

pytestmark = pytest.mark.models
SERVER = CartesiaServer
API_KEY = KEY = "test-key"
VERSION = "2025-04-16"
RATE = 16000


def ws_url(server, query: str = f"cartesia_version={VERSION}") -> str:
    return server.url.replace("http://", "ws://") + "/tts/websocket" + (f"?{query}" if query else "")


def request(context: str, transcript: str, more: bool, **extra) -> str:
    return json.dumps({
        "model_id": "sonic-3", "transcript": transcript,
        "voice": extra.pop("voice", {"mode": "id", "id": "loopback-voice"}),
        "language": "en", "context_id": context,
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": extra.pop("rate", RATE)},
        "continue": more, "max_buffer_delay_ms": extra.pop("delay", 0), "add_timestamps": True, **extra})


async def connect(server, **headers):
    return await websockets.connect(ws_url(server), additional_headers={"X-API-Key": KEY, **headers})


async def read_context(ws, until: str = "done") -> tuple[bytes, list[dict]]:
    """The context's audio and its non-chunk messages, up to `until` (or an error)."""
    audio, others = b"", []
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "chunk":
            assert set(message) >= {"data", "step_time", "context_id", "done"} and message["done"] is False
            audio += base64.b64decode(message["data"])
        else:
            others.append(message)
            if message["type"] in (until, "error"):
                return audio, others


def speech_seconds(voice: LoopbackVoice, text: str) -> float:
    return sum(len(piece) for piece in voice.synthesize(text, RATE)) / RATE


async def test_a_context_streams_real_speech_with_timestamps_and_done(server, loopback_voice):
    text = ["Hello there, ", "this is the loopback ", "Cartesia server."]
    async with asyncio.timeout(30):
        async with await connect(server) as ws:
            for piece in text:
                await ws.send(request("turn-1", piece, True))
            await ws.send(request("turn-1", "", False))
            audio, others = await read_context(ws)
    assert others[-1] == {"type": "done", "context_id": "turn-1", "status_code": 200, "done": True}
    samples = np.frombuffer(audio, dtype="<i2")
    assert len(audio) % 2 == 0 and np.abs(samples).max() > 1000  # speech, not silence
    # the transcripts are spoken as one text at the requested rate (Piper varies a few %)
    assert len(samples) / RATE == pytest.approx(speech_seconds(loopback_voice, "".join(text)), rel=0.25)
    stamps = [m["word_timestamps"] for m in others if m["type"] == "timestamps"]
    words = [w for s in stamps for w in s["words"]]
    assert words == "".join(text).split()
    starts = [t for s in stamps for t in s["start"]]
    ends = [t for s in stamps for t in s["end"]]
    assert starts == sorted(starts) and all(e > s for s, e in zip(starts, ends, strict=True))
    assert ends[-1] == pytest.approx(len(samples) / RATE, abs=0.01)


async def test_the_sample_rate_is_the_one_requested(server):
    durations = {}
    async with asyncio.timeout(30), await connect(server) as ws:
        for rate in (8000, 24000):
            await ws.send(request(f"r{rate}", "One two three four five.", False, rate=rate))
            audio, _ = await read_context(ws)
            durations[rate] = len(audio) / 2 / rate
    assert durations[8000] == pytest.approx(durations[24000], rel=0.25)


async def test_buffering_waits_for_more_text_unless_the_delay_is_zero(server):
    async with asyncio.timeout(30), await connect(server) as ws:
        started = time.monotonic()
        await ws.send(request("held", "Hello there and", True, delay=800))
        first = json.loads(await ws.recv())
        waited = time.monotonic() - started
        assert first["type"] == "chunk" and waited >= 0.75
        await ws.send(request("held", "", False, delay=800))
        await read_context(ws)
        # a complete sentence is not held
        started = time.monotonic()
        await ws.send(request("sentence", "Hello there.", True, delay=3000))
        assert json.loads(await ws.recv())["type"] == "chunk"
        assert time.monotonic() - started < 2.0


async def test_flush_done_follows_the_flushed_audio(server):
    async with asyncio.timeout(30), await connect(server) as ws:
        await ws.send(request("f", "First part.", True, flush=True))
        audio, others = await read_context(ws, until="flush_done")
        assert audio and others[-1]["flush_id"] == 1 and others[-1]["context_id"] == "f"
        await ws.send(request("f", "", False))
        assert (await read_context(ws))[1][-1]["type"] == "done"


async def test_changing_a_field_within_a_context_is_an_error(server):
    async with asyncio.timeout(30), await connect(server) as ws:
        await ws.send(request("c", "Hello ", True))
        await ws.send(request("c", "again.", True, language="fr"))
        _, others = await read_context(ws)
    error = others[-1]
    assert error["type"] == "error" and error["context_id"] == "c" and error["status_code"] == 400
    assert {"title", "message", "error_code"} <= set(error) and "language" in error["message"]


async def test_invalid_requests_are_answered_with_errors(server):
    async with asyncio.timeout(10), await connect(server) as ws:
        await ws.send("{not json")
        assert json.loads(await ws.recv())["message"] == "message is not valid JSON"
        await ws.send(request("x", "Hi.", False, output_format={"container": "wav"}))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and "output_format" in error["message"]
        await ws.send(request("y", "A reply that is still being spoken.", False))
        await ws.send(request("y", "More after the end.", False))
        _, others = await read_context(ws)
        assert others[0]["type"] == "error" and "has ended" in others[0]["message"]


async def test_cancel_stops_a_context_and_the_socket_goes_on(server, loopback_voice):
    long_text = "This sentence is long enough to take a while to speak. " * 6
    async with asyncio.timeout(30), await connect(server) as ws:
        await ws.send(request("talk", long_text, False))
        assert json.loads(await ws.recv())["type"] == "chunk"
        await ws.send(json.dumps({"context_id": "talk", "cancel": True}))
        late = []
        try:
            async with asyncio.timeout(1.5):
                while True:
                    late.append(json.loads(await ws.recv()))
        except TimeoutError:
            pass
        # what was already synthesized may still arrive, but the context stops and never finishes
        assert all(m["type"] == "chunk" for m in late)
        late_s = sum(len(base64.b64decode(m["data"])) for m in late) / 2 / RATE
        assert late_s < speech_seconds(loopback_voice, long_text) / 2
        await ws.send(request("next", "Still here.", False))
        assert (await read_context(ws))[1][-1] == {"type": "done", "context_id": "next", "status_code": 200,
                                                   "done": True}


async def test_auth_and_version_are_checked_at_the_handshake(server):
    async with asyncio.timeout(10):
        with pytest.raises(InvalidStatus) as missing_key:
            await websockets.connect(ws_url(server))
        assert missing_key.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as no_version:
            await websockets.connect(ws_url(server, ""), additional_headers={"X-API-Key": KEY})
        assert no_version.value.response.status_code == 400
        assert b"Cartesia-Version" in no_version.value.response.body
        for url, headers in ((ws_url(server, f"cartesia_version={VERSION}&api_key={KEY}"), {}),
                             (ws_url(server), {"Authorization": f"Bearer {KEY}"}),
                             (ws_url(server, ""), {"Cartesia-Version": VERSION, "X-API-Key": KEY})):
            async with websockets.connect(url, additional_headers=headers):
                pass


async def test_injected_handshake_refusals(server):
    server.inject(Fault("reject", status=403))
    async with asyncio.timeout(10):
        with pytest.raises(InvalidStatus) as refused:
            await connect(server)
        assert refused.value.response.status_code == 403
        async with await connect(server):
            pass
    assert server.handshakes == 1


@pytest.mark.parametrize("code, reason", [(1006, ""), (1008, "policy violation (injected)")])
async def test_close_mid_reply(server, code, reason):
    server.inject(Fault("close", code=code, reason=reason, after=2))
    async with asyncio.timeout(20):
        ws = await connect(server)
        await ws.send(request("t", "This reply is cut off by the server.", False))
        chunks = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                chunks += json.loads(await ws.recv())["type"] == "chunk"
        assert chunks == 2
        assert closed.value.rcvd is None if code == 1006 else (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            code, reason)
        async with await connect(server) as again:  # the fault fired once
            await again.send(request("t", "Fine now.", False))
            assert (await read_context(again))[1][-1]["type"] == "done"


async def test_stall_malformed_unknown_and_wrong_format_faults(server):
    server.inject(Fault("malformed"), Fault("unknown"), Fault("wrong_format", audio="wav"),
                  Fault("stall", after=1, seconds=1.0))
    async with asyncio.timeout(20), await connect(server) as ws:
        await ws.send(request("t", "A reply with every fault in it.", False))
        malformed = await ws.recv()
        with pytest.raises(ValueError):
            json.loads(malformed)
        assert json.loads(await ws.recv())["type"] == "loopback_unknown"
        first = json.loads(await ws.recv())
        assert base64.b64decode(first["data"]).startswith(b"RIFF")  # a WAV file, not the raw PCM asked for
        started = time.monotonic()
        assert json.loads(await ws.recv())["type"] == "chunk"
        assert time.monotonic() - started >= 0.95  # the stall
        audio, others = await read_context(ws)
        assert others[-1]["type"] == "done" and len(audio) % 2 == 0


async def test_idle_socket_is_closed(loopback_voice, start_server):
    server = await start_server(CartesiaServer(voice=loopback_voice, idle_timeout_s=0.5))
    async with asyncio.timeout(5), await connect(server) as ws:
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert 0.45 <= time.monotonic() - started < 2
        assert closed.value.rcvd.code == 1000 and "idle" in closed.value.rcvd.reason


async def test_rest_bytes(server, loopback_voice):
    body = json.loads(request("", "Hello from the REST endpoint.", False))
    headers = {"X-API-Key": KEY, "Cartesia-Version": VERSION}
    async with asyncio.timeout(20), httpx.AsyncClient(base_url=server.url) as client:
        reply = await client.post("/tts/bytes", json=body, headers=headers)
        assert reply.status_code == 200 and reply.headers["content-type"] == "application/octet-stream"
        seconds = len(reply.content) / 2 / RATE
        assert seconds == pytest.approx(speech_seconds(loopback_voice, body["transcript"]), rel=0.25)
        refused = await client.post("/tts/bytes", json=body, headers={**headers, "X-API-Key": "wrong"})
        assert refused.status_code == 401 and refused.json()["error_code"] == "unauthorized"
        bad = await client.post("/tts/bytes", json={**body, "voice": "x"}, headers=headers)
        assert bad.status_code == 400 and "voice" in bad.json()["message"]


CURRENT = "2026-03-01"


@pytest.mark.parametrize("voice", ["loopback-voice", {"id": "loopback-voice"}, {"mode": "id", "id": "loopback-voice"}])
async def test_the_current_version_takes_every_voice_form(server, loopback_voice, voice):
    """From 2026-03-01 a voice is its id, {"id"} or the old {"mode": "id", "id"}, over WebSocket and REST."""
    headers = {"X-API-Key": KEY, "Cartesia-Version": CURRENT}
    async with asyncio.timeout(30):
        async with websockets.connect(ws_url(server, ""), additional_headers=headers) as ws:
            await ws.send(request("v", "Hello there.", False, voice=voice))
            audio, others = await read_context(ws)
        assert others[-1]["type"] == "done" and len(audio) > 0
        body = json.loads(request("", "Hello there.", False, voice=voice))
        async with httpx.AsyncClient(base_url=server.url) as client:
            reply = await client.post("/tts/bytes", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    assert len(reply.content) / 2 / RATE == pytest.approx(speech_seconds(loopback_voice, "Hello there."), rel=0.25)


async def test_the_old_version_keeps_its_voice_rule_and_the_new_one_refuses_embeddings(server):
    async with asyncio.timeout(10), await connect(server) as ws:  # 2025-04-16
        for voice in ("loopback-voice", {"id": "loopback-voice"}):
            await ws.send(request("old", "Hi.", False, voice=voice))
            error = json.loads(await ws.recv())
            assert error["type"] == "error" and '"mode": "id"' in error["message"] and VERSION in error["message"]
    headers = {"X-API-Key": KEY, "Cartesia-Version": CURRENT}
    embedding = {"mode": "embedding", "embedding": [0.5] * 192}
    async with asyncio.timeout(10), httpx.AsyncClient(base_url=server.url) as client:
        refused = await client.post("/tts/bytes", json=json.loads(request("", "Hi.", False, voice=embedding)),
                                    headers=headers)
        not_a_version = await client.post("/tts/bytes", json={}, headers={**headers, "Cartesia-Version": "latest"})
    assert refused.status_code == 400 and "embeddings are not accepted" in refused.json()["message"]
    assert set(refused.json()) == {"error_code", "title", "message", "request_id"}
    assert not_a_version.status_code == 400 and "YYYY-MM-DD" in not_a_version.json()["message"]


async def test_sse_streams_chunks_timestamps_and_done(server, loopback_voice):
    body = json.loads(request("sse-1", "Streamed as events.", False, voice="loopback-voice"))
    headers = {"Authorization": f"Bearer {KEY}", "Cartesia-Version": CURRENT}
    events = []
    async with (asyncio.timeout(20), httpx.AsyncClient(base_url=server.url) as client,
                client.stream("POST", "/tts/sse", json=body, headers=headers) as reply):
        assert reply.headers["content-type"].startswith("text/event-stream")
        async for line in reply.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["timestamps", "done"] and set(kinds[:-2]) == {"chunk"}
    assert all(e["context_id"] == "sse-1" for e in events) and events[-1]["done"] is True
    audio = b"".join(base64.b64decode(e["data"]) for e in events if e["type"] == "chunk")
    assert len(audio) / 2 / RATE == pytest.approx(speech_seconds(loopback_voice, "Streamed as events."), rel=0.25)
    assert events[-2]["word_timestamps"]["words"] == ["Streamed", "as", "events."]


async def test_bytes_in_wav_mp3_and_float_pcm(server):
    """The formats the SDK's README asks for: WAV of pcm_f32le, raw pcm_f32le; and MP3."""
    import av

    headers = {"X-API-Key": KEY, "Cartesia-Version": CURRENT}
    text = "Formats of every kind."
    formats = {"wav": {"container": "wav", "encoding": "pcm_f32le", "sample_rate": 44100},
               "f32": {"container": "raw", "encoding": "pcm_f32le", "sample_rate": RATE},
               "mp3": {"container": "mp3", "sample_rate": 44100, "bit_rate": 128000}}
    replies = {}
    async with asyncio.timeout(30), httpx.AsyncClient(base_url=server.url) as client:
        for name, output in formats.items():
            body = json.loads(request("", text, False, voice="loopback-voice", output_format=output))
            replies[name] = await client.post("/tts/bytes", json=body, headers=headers)
    expected = server.speech(text, RATE)
    floats = np.frombuffer(replies["f32"].content, "<f4")
    assert np.allclose(floats * 32768, expected, atol=0.5)
    with av.open(io.BytesIO(replies["wav"].content)) as wav:
        stream = wav.streams.audio[0]
        assert (stream.codec_context.name, stream.rate) == ("pcm_f32le", 44100)
    with av.open(io.BytesIO(replies["mp3"].content)) as mp3:
        samples = sum(frame.samples for frame in mp3.decode(audio=0))
    assert replies["mp3"].headers["content-type"] == "audio/mpeg"
    # the same speech, give or take LAME's priming and last-frame padding (< 2 frames of 1152 samples)
    assert 0 <= samples - len(server.speech(text, 44100)) < 2 * 1152


async def test_unknown_paths_get_cartesias_error_object(server):
    async with asyncio.timeout(10), httpx.AsyncClient(base_url=server.url) as client:
        missing = await client.post("/tts/nothing", headers={"Cartesia-Version": CURRENT})
        wrong_method = await client.get("/tts/bytes")
    assert missing.status_code == 404 and missing.json()["error_code"] == "not_found"
    assert set(missing.json()) == {"error_code", "title", "message", "request_id"}
    assert wrong_method.status_code == 405 and wrong_method.json()["title"] == "Method not allowed"
