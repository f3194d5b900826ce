"""Clock, trace events, metrics and presets. Pure: no textual, no audio, no network."""
