"""The phone leg: the playground on a phone call, as the caller (`playground call`) and as the
agent (`playground serve-agent`), over a carrier's media-stream WebSocket (Twilio Media Streams,
Telnyx media streaming).

    codec      G.711 μ-law, 20 ms frames, resampling to and from 8 kHz
    dialects   the carriers' documented messages, both directions, and their faults
    events     every trace event type the phone leg adds, and `emit`
    network    a simulated network leg (latency, jitter) for the caller
    media      the engine's audio ends on a call: CallOutput (paced μ-law frames), CallInput
    agent      serve-agent: a Session per call behind the protocol
    caller     call: the carrier and the person calling, measured from outside
    report     rows, percentiles, and the agent's stages from its trace

Layers: this package builds on engine, audio, stt, tts and core; nothing below imports it.
"""
