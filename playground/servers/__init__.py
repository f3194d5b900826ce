"""Loopback servers: the cloud protocols (OpenAI-compatible chat streaming, ElevenLabs,
Cartesia, Deepgram) served on 127.0.0.1 from the local models, message for message as
the providers document them, so every provider can be tried and fault-tested offline.

They are test fixtures and user tools at once (`playground serve-tts elevenlabs`,
`playground serve-llm`): each server module exposes a class that starts on a host and
port (port 0 picks a free one), reports the address it bound, can inject the faults
the fault tests need, and stops cleanly. The speech they serve comes from
`playground.servers.voice.LoopbackVoice` (Piper), so the audio is real.
"""
