"""Secrets never leave in an export.

Presets only hold the *names* of the environment variables that carry API keys, but a user
can still paste a key into a field (`api_key_env = "sk-..."`, a key in a URL, a `--set`
override recorded in a `config.change`). Before any format is written, the header and the
events pass through `scrub`, which removes:

- the string value of any field whose name says it is a credential (its last word, or the
  one before `env`: key, token, secret, password, authorization, credential; `api_key`,
  `access_token`, `api_key_env`, not `token_times`) unless the value is an environment
  variable's name;
- anywhere in any string, the value of each environment variable named by an `api_key_env`
  field (in the header or a `config.change`), as set in the exporting process;
- the user's home folder at the start of a path anywhere in a string (an error naming a
  voice file, a failed `session.load`), written `~` as the preset's own paths are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from playground.core.events import CONFIG_CHANGE, TraceEvent

REDACTED = "[redacted]"
_SECRET_WORD = re.compile(r"(key|token|secret|passw\w*|authorization|credentials?)$", re.IGNORECASE)
_WORD_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")
# What an environment variable's name looks like when set in a preset (upper case by convention).
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# A shorter environment value is no key, and replacing it would garble ordinary text.
_MIN_SECRET_LEN = 8


def _env_names(value: Any, under_key_env: bool = False) -> Iterator[str]:
    """Every string held by a field whose name ends in `api_key_env`, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _env_names(item, str(key).endswith("api_key_env"))
    elif isinstance(value, list):
        for item in value:
            yield from _env_names(item, under_key_env)
    elif under_key_env and isinstance(value, str) and value:
        yield value


def _names_a_credential(field_name: str) -> bool:
    words = [w for w in _WORD_SEPARATORS.split(field_name) if w]
    if words and words[-1].lower() == "env":  # `api_key_env`: should hold a variable's name
        words.pop()
    return bool(words) and _SECRET_WORD.search(words[-1]) is not None


def known_secrets(header: dict[str, Any], events: Iterable[TraceEvent]) -> list[str]:
    """The values, in this process's environment, of the variables the trace names as key holders."""
    names = set(_env_names(header))
    for event in events:
        if event.type == CONFIG_CHANGE:
            names.update(_env_names(event.data))
    values = {os.environ.get(name, "") for name in names}
    return sorted((v for v in values if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True)


def home_as_tilde(text: str) -> str:
    """`text` with the user's home folder, where a path starts with it, written `~`."""
    home = str(Path.home())
    if home == os.sep or home + os.sep not in text:
        return text
    return text.replace(home + os.sep, "~" + os.sep)


class Scrubber:
    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return home_as_tilde(value)

    def value(self, value: Any, field_name: str = "") -> Any:
        if isinstance(value, str):
            if value and field_name and _names_a_credential(field_name) and not _ENV_NAME.fullmatch(value):
                return REDACTED
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item, str(key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item, field_name) for item in value]
        return value


def scrub(header: dict[str, Any], events: list[TraceEvent]) -> tuple[dict[str, Any], list[TraceEvent]]:
    """A copy of the header and events with secrets removed (unchanged events are shared, not copied)."""
    scrubber = Scrubber(known_secrets(header, events))
    clean: list[TraceEvent] = []
    for event in events:
        data = scrubber.value(event.data)
        clean.append(event if data == event.data else TraceEvent(event.turn, event.t_ms, event.type, data))
    return scrubber.value(header), clean
