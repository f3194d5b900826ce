"""TTS sessions: opened once per session, reused by every turn."""
