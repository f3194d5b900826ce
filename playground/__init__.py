"""playground: a terminal voice-agent playground (LLM -> chunker -> persistent TTS -> playback)."""

__version__ = "0.1.0"
