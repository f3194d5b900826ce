"""Building a session from a preset: providers by name, audio output, and opening it.

A provider is one module in `playground.llm` or `playground.tts` that exposes
`PROVIDER` (a class taking its config section) and `SETTINGS` (the class of that section:
the shared settings plus its own): adding one is one new file plus a preset, nothing to
register (`playground/__init__.py` hands `settings_by_provider` to preset validation).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from playground.core.presets import Preset, PresetError
from playground.engine.session import Progress, Session

_BASES = {"llm": "playground.llm", "tts": "playground.tts"}


def available_providers(kind: str) -> list[str]:
    """Provider modules of `kind`; importing them is cheap (heavy libraries load lazily)."""
    package = importlib.import_module(_BASES[kind])
    return sorted(
        module.name
        for module in pkgutil.iter_modules(package.__path__)
        if hasattr(importlib.import_module(f"{_BASES[kind]}.{module.name}"), "PROVIDER")
    )


def settings_by_provider(kind: str) -> dict[str, type]:
    """Each provider's settings class (its module's `SETTINGS`), by provider name."""
    found = {}
    for name in available_providers(kind):
        model = importlib.import_module(f"{_BASES[kind]}.{name}").SETTINGS
        if model.__pydantic_fields__["provider"].default != name:
            raise RuntimeError(f"{_BASES[kind]}.{name}: SETTINGS is the settings of another provider "
                               f"({model.__pydantic_fields__['provider'].default!r})")
        found[name] = model
    return found


def build_provider(preset: Preset, kind: str) -> Any:
    config = getattr(preset, kind)
    name = config.provider
    known = available_providers(kind)
    if name not in known:
        raise PresetError(f"{preset.origin(kind, 'provider')}: unknown provider {name!r} (available: {', '.join(known)})")
    module = importlib.import_module(f"{_BASES[kind]}.{name}")
    return module.PROVIDER(config)


async def open_session(
    preset: Preset,
    audio: str | None = None,
    wav_path: str | None = None,
    warn: Callable[[str], None] = print,
    progress: Progress | None = None,
    on_created: Callable[[Session], None] | None = None,
) -> Session:
    """An opened session for `preset`: LLM loaded, TTS session open, audio output running.

    `audio` overrides the preset's [audio] output ("null" for no device). `on_created`
    gets the session before it opens, so a UI can follow its loading in the trace.
    """
    from playground.audio.output import open_output

    llm = build_provider(preset, "llm")
    tts = build_provider(preset, "tts")
    output = await open_output(audio or preset.audio.output, wav_path=wav_path, warn=warn)
    session = Session(preset, llm, tts, output, progress=progress)
    if on_created is not None:
        on_created(session)
    try:
        await session.open()
    except BaseException:
        await session.close()
        raise
    return session
