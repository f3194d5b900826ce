"""Speech input: streaming voice activity detection (Silero) and local speech-to-text (faster-whisper)."""
