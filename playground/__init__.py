"""playground: a terminal voice-agent playground (LLM -> chunker -> persistent TTS -> playback)."""

__version__ = "0.1.0"

# Preset validation (core) needs each provider's settings class, and core imports no provider:
# whatever part of the playground a program imports, the engine's provider discovery answers it.
from playground.core.presets import provider_settings as _provider_settings  # noqa: E402


def _settings_by_provider(kind: str) -> dict[str, type]:
    from playground.engine.build import settings_by_provider

    return settings_by_provider(kind)


_provider_settings.find_with(_settings_by_provider)
