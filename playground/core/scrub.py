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

import msgspec

from playground.core.events import ConfigChange, TraceEvent
from playground.core.tracefile import encode_event, encode_json

REDACTED = "[redacted]"
_SECRET_WORD = re.compile(r"(key|token|secret|passw\w*|authorization|credentials?)$", re.IGNORECASE)
_WORD_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")
# What an environment variable's name looks like when set in a preset (upper case by convention).
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# A shorter environment value is no key, and replacing it would garble ordinary text.
_MIN_SECRET_LEN = 8
# A JSON object key that may name a credential (`_names_a_credential` decides): a line without
# one, without a secret and without the home folder is written as it is, unparsed.
_CREDENTIAL_KEY = re.compile(rb'(?i)(key|token|secret|passw[a-z0-9_]*|authorization|credentials?)'
                             rb'([^a-z0-9"]+env)?":')


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
        if isinstance(event, ConfigChange):
            names.update(_env_names(event.changes))
    values = {os.environ.get(name, "") for name in names}
    return sorted((v for v in values if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True)


def _home_prefix() -> str | None:
    home = str(Path.home())
    return None if home == os.sep else home + os.sep


def home_as_tilde(text: str, home: str | None = None) -> str:
    """`text` with the user's home folder (`home`: its path and a separator, found when not
    given), where a path starts with it, written `~`."""
    home = home or _home_prefix()
    if home is None or home not in text:
        return text
    return text.replace(home, "~" + os.sep)


class Scrubber:
    def __init__(self, secrets: list[str]) -> None:
        self._home = _home_prefix()
        self.secrets = secrets

    @property
    def secrets(self) -> list[str]:
        return self._secrets

    @secrets.setter
    def secrets(self, secrets: list[str]) -> None:
        self._secrets = secrets
        # What may need scrubbing, as it appears in a JSON line.
        self._needles = [encode_json(s)[1:-1] for s in (*secrets, *([self._home] if self._home else []))]

    def _may_hold_a_secret(self, line: bytes) -> bool:
        return any(needle in line for needle in self._needles) or _CREDENTIAL_KEY.search(line) is not None

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return home_as_tilde(value, self._home)

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

    def line(self, event: TraceEvent) -> bytes:
        """The event's trace line, scrubbed."""
        line = encode_event(event)
        if not self._may_hold_a_secret(line):
            return line
        clean = self._cleaned(event)
        return line if clean is event else encode_event(clean)

    def event(self, event: TraceEvent) -> TraceEvent:
        """The event, or a scrubbed copy of it."""
        try:
            line = msgspec.json.encode(event)  # only searched: the compact encoding will do
        except UnicodeEncodeError:
            line = encode_event(event)
        return self._cleaned(event) if self._may_hold_a_secret(line) else event

    def _cleaned(self, event: TraceEvent) -> TraceEvent:
        data = msgspec.to_builtins(event)
        clean = self.value(data)
        return event if clean == data else msgspec.convert(clean, type(event))


def scrub(header: dict[str, Any], events: list[TraceEvent]) -> tuple[dict[str, Any], list[TraceEvent]]:
    """A copy of the header and events with secrets removed (unchanged events are shared, not copied)."""
    scrubber = Scrubber(known_secrets(header, events))
    return scrubber.value(header), [scrubber.event(event) for event in events]
