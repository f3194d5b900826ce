"""Loopback servers: the cloud protocols (OpenAI-compatible chat streaming, ElevenLabs,
Cartesia, Deepgram) served on 127.0.0.1 from the local models, message for message as
the providers document them, so every provider can be tried and fault-tested offline.

They are test fixtures and user tools at once (`playground serve-tts elevenlabs`,
`playground serve-llm`): each server is a `base.LoopbackServer` (aiohttp.web, HTTP and
WebSocket on one port) that starts on a host and port (port 0 picks a free one), reports
the address it bound, answers every refusal in its provider's error shape, injects the
faults of `faults.Fault` (from a test, `--fault`, or `POST /loopback/faults`), and stops
cleanly. The speech they serve comes from `voice.LoopbackVoice` (Piper), so the audio is real.
"""
