"""The providers' official Python SDKs against the loopback servers: their documented calls
must work as they do against the real services (openai, elevenlabs, cartesia, deepgram-sdk,
from the `test` extra)."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import numpy as np
import pytest

from playground.llm.replay import ReplayLLM, ReplayLLMConfig
from playground.servers.cartesia import CartesiaServer
from playground.servers.deepgram import DeepgramServer
from playground.servers.elevenlabs import ElevenLabsServer
from playground.servers.openai_llm import OpenAILLMServer

KEY = "sdk-key"
WORDS = ["Sure", ",", " I", " can", " help", "."]
TEXT = "Hello from the loopback server."


def decoded(data: bytes, format: str | None = None) -> tuple[int, int]:
    """(sample rate, samples) of an audio file, decoded by FFmpeg."""
    import av

    with av.open(io.BytesIO(data), format=format) as container:
        stream = container.streams.audio[0]
        return stream.rate, sum(frame.samples for frame in container.decode(stream))


async def test_openai_streaming_chat_completion_with_usage(start_server):
    from openai import AsyncOpenAI

    backend = ReplayLLM(ReplayLLMConfig(), turns=[[(10.0 + 5.0 * i, w) for i, w in enumerate(WORDS)]])
    server = await start_server(OpenAILLMServer(backend, model="replay", api_key=KEY))
    async with asyncio.timeout(20), AsyncOpenAI(base_url=server.base_url, api_key=KEY) as client:
        models = await client.models.list()
        stream = await client.chat.completions.create(
            model="replay", messages=[{"role": "user", "content": "Hi"}], stream=True,
            stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    assert [m.id for m in models.data] == ["replay"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(WORDS)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert not chunks[-1].choices and usage.completion_tokens == len(WORDS) and usage.prompt_tokens > 0
    assert usage.prompt_tokens_details.cached_tokens == 0


@pytest.mark.models
async def test_elevenlabs_convert_stream_and_the_realtime_websocket(loopback_voice, start_server):
    from elevenlabs.client import AsyncElevenLabs, ElevenLabs

    server = await start_server(ElevenLabsServer(api_key=KEY, voice=loopback_voice))
    async with asyncio.timeout(30), httpx.AsyncClient() as http:
        client = AsyncElevenLabs(api_key=KEY, base_url=server.url, httpx_client=http)
        mp3 = b"".join([piece async for piece in client.text_to_speech.convert("voice-1", text=TEXT,
                                                                               model_id="eleven_flash_v2_5")])
        pcm = b"".join([piece async for piece in client.text_to_speech.stream(
            "voice-1", text=TEXT, model_id="eleven_flash_v2_5", output_format="pcm_22050")])
    rate, samples = decoded(mp3, "mp3")  # the documented default: mp3_44100_128
    assert rate == 44100 and 0 <= samples - len(server.speech(TEXT, 44100)) < 2 * 1152
    assert np.array_equal(np.frombuffer(pcm, "<i2"), server.speech(TEXT, 22050))

    def realtime() -> bytes:
        sync = ElevenLabs(api_key=KEY, base_url=server.url)
        # the SDK turns the base URL's scheme into wss://; the loopback speaks plain ws://
        sync.text_to_speech._ws_base_url = server.url.replace("http://", "ws://")
        parts = iter(["Hello from ", "the loopback ", "server."])
        return b"".join(sync.text_to_speech.convert_realtime("voice-1", text=parts, model_id="eleven_flash_v2_5",
                                                             output_format="pcm_16000"))

    async with asyncio.timeout(30):
        streamed = await asyncio.to_thread(realtime)
    # The SDK sends each part as it comes (ending in a space) with try_trigger_generation, and each
    # is spoken on its own: its speech, part after part. (Against the whole text's speech it is only
    # near: Piper's speech differs from one synthesis to the next, and in pieces it ran 1.34 times
    # as long once, against a tolerance of 1.3.)
    pieces = ["Hello from ", "the loopback ", "server. "]
    assert np.array_equal(np.frombuffer(streamed, "<i2"), np.concatenate([server.speech(p, 16000) for p in pieces]))
    assert server.received[0]["text"] == " " and server.received[-1] == {"text": ""}


@pytest.mark.models
@pytest.mark.parametrize("version, voice", [(None, "voice-1"), ("2025-04-16", {"mode": "id", "id": "voice-1"})])
async def test_cartesia_bytes_sse_and_websocket_per_version(loopback_voice, start_server, version, voice):
    """The SDK's README calls (its default version, 2026-08-14, with a plain voice id) and the
    same calls pinned to the old version with the old voice form."""
    from cartesia import AsyncCartesia

    server = await start_server(CartesiaServer(api_key=KEY, voice=loopback_voice))
    headers = {"Cartesia-Version": version} if version else None
    async with asyncio.timeout(60), AsyncCartesia(api_key=KEY, base_url=server.url, default_headers=headers,
                                                  websocket_base_url=server.url.replace("http", "ws")) as client:
        wav = await client.tts.generate(model_id="sonic-latest", transcript=TEXT, voice=voice,
                                        output_format={"container": "wav", "encoding": "pcm_f32le",
                                                       "sample_rate": 44100})
        rate, samples = decoded(await wav.read())
        events = [event async for event in await client.tts.generate_sse(
            model_id="sonic-3", transcript=TEXT, voice=voice, add_timestamps=True,
            output_format={"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000})]
        async with client.tts.websocket_connect() as ws:
            context = ws.context(model_id="sonic-3", voice=voice, language="en",
                                 output_format={"container": "raw", "encoding": "pcm_f32le", "sample_rate": 16000})
            for part in ["Hello from ", "the loopback ", "server."]:
                await context.push(part)
            await context.no_more_inputs()
            responses = [response async for response in context.receive()]
    assert rate == 44100 and samples == len(server.speech(TEXT, 44100))
    sse_audio = b"".join(base64.b64decode(e.data) for e in events if e.type == "chunk")
    assert np.array_equal(np.frombuffer(sse_audio, "<i2"), server.speech(TEXT, 24000))
    assert [e.type for e in events][-2:] == ["timestamps", "done"]
    floats = b"".join(r.audio for r in responses if r.type == "chunk" and r.audio)
    assert responses[-1].type == "done"
    assert np.allclose(np.frombuffer(floats, "<f4") * 32768, server.speech(TEXT, 16000), atol=0.5)


@pytest.mark.models
async def test_cartesia_old_version_refuses_the_new_voice_form(loopback_voice, start_server):
    from cartesia import AsyncCartesia, BadRequestError

    server = await start_server(CartesiaServer(api_key=KEY, voice=loopback_voice))
    async with AsyncCartesia(api_key=KEY, base_url=server.url, default_headers={"Cartesia-Version": "2025-04-16"},
                             max_retries=0) as client:
        with pytest.raises(BadRequestError, match="mode"):
            await client.tts.generate(model_id="sonic-3", transcript=TEXT, voice="voice-1",
                                      output_format={"container": "raw", "encoding": "pcm_s16le",
                                                     "sample_rate": 16000})


@pytest.mark.models
async def test_deepgram_speak_rest_and_websocket(loopback_voice, start_server):
    from deepgram import AsyncDeepgramClient
    from deepgram.environment import DeepgramClientEnvironment
    from deepgram.speak.v1.types.speak_v1close import SpeakV1Close
    from deepgram.speak.v1.types.speak_v1flush import SpeakV1Flush
    from deepgram.speak.v1.types.speak_v1text import SpeakV1Text

    server = await start_server(DeepgramServer(api_key=KEY, voice=loopback_voice))
    ws_base = server.url.replace("http://", "ws://")
    client = AsyncDeepgramClient(api_key=KEY, environment=DeepgramClientEnvironment(
        base=server.url, production=ws_base, agent=ws_base, agent_rest=server.url))
    async with asyncio.timeout(30):
        wav = b"".join([piece async for piece in client.speak.v1.audio.generate(
            text=TEXT, model="aura-2-thalia-en", encoding="linear16", sample_rate=24000)])
        audio, kinds = b"", []
        async with client.speak.v1.connect(model="aura-2-thalia-en", encoding="linear16", sample_rate=16000) as ws:
            await ws.send_text(SpeakV1Text(type="Speak", text=TEXT))
            await ws.send_flush(SpeakV1Flush(type="Flush"))
            while "Flushed" not in kinds:
                message = await ws.recv()
                if isinstance(message, bytes):
                    audio += message
                else:
                    kinds.append(message.type)
            await ws.send_close(SpeakV1Close(type="Close"))
    assert decoded(wav) == (24000, len(server.speech(TEXT, 24000)))
    assert kinds == ["Metadata", "Flushed"]
    assert np.array_equal(np.frombuffer(audio, "<i2"), server.speech(TEXT, 16000))
