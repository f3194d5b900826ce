"""Building a session from a preset: providers by name, audio output, and opening it.

A provider is one module in `playground.llm` or `playground.tts` that exposes
`PROVIDER` (a class taking its config section) and `SETTINGS` (the class of that section:
the shared settings plus its own): adding one is one new file plus a preset, nothing to
register (`playground.core.plugins` finds both: the provider here, its settings for
preset validation in `playground.core.presets`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from playground.core.presets import Preset, PresetError
from playground.core.progress import Progress
from playground.engine.session import Session
from playground.core.plugins import find_plugins, short_name

if TYPE_CHECKING:
    from playground.audio.output import AudioOutput

_BASES = {"llm": "playground.llm", "tts": "playground.tts"}


def providers(kind: str) -> dict[str, Any]:
    """Provider name -> class, for `kind` (llm, tts); importing them is cheap (heavy libraries load lazily)."""
    return {short_name(module): cls for module, cls in find_plugins("PROVIDER", _BASES[kind]).items()}


def build_provider(preset: Preset, kind: str) -> Any:
    config = getattr(preset, kind)
    known = providers(kind)
    if config.provider not in known:
        raise PresetError(f"{preset.origin(kind, 'provider')}: unknown provider {config.provider!r} "
                          f"(available: {', '.join(known)})")
    return known[config.provider](config)


async def open_session(
    preset: Preset,
    audio: str | None = None,
    wav_path: str | None = None,
    warn: Callable[[str], None] = print,
    progress: Progress | None = None,
    on_created: Callable[[Session], None] | None = None,
    output: AudioOutput | None = None,
) -> Session:
    """An opened session for `preset`: LLM loaded, TTS session open, audio output running.

    `audio` overrides the preset's [audio] output ("null" for no device); `output`, one of the
    caller's (a phone call's), replaces both and is opened here, once the providers are built.
    `on_created` gets the session before it opens, so a UI can follow its loading in the trace.
    """
    from playground.audio.output import open_output

    llm = build_provider(preset, "llm")
    tts = build_provider(preset, "tts")
    if output is None:
        output = await open_output(audio or preset.audio.output, wav_path=wav_path, warn=warn)
    else:
        await output.open()
    session = Session(preset, llm, tts, output, progress=progress)
    if on_created is not None:
        on_created(session)
    try:
        await session.open()
    except BaseException:
        await session.close()
        raise
    return session
