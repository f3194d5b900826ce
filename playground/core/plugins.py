"""Plugins are found, not registered: a module of a package that defines a given attribute.

Subcommands (`COMMAND` in `playground.commands` and `playground.bench`), providers
(`PROVIDER` in `playground.llm` and `playground.tts`) and loopback TTS servers
(`TTS_SERVER` in `playground.servers`) are all found here, so adding one is one new file.
Packages are imported by name, when asked for: a package that is not installed is skipped.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any


def find_plugins(attribute: str, *packages: str) -> dict[str, Any]:
    """Module name (dotted, in package order, then by name) -> the module's `attribute`, for
    every module of `packages` that defines it. Importing those modules must stay cheap."""
    found: dict[str, Any] = {}
    for package_name in packages:
        try:
            package = importlib.import_module(package_name)
        except ModuleNotFoundError as exc:
            if exc.name != package_name:  # the package is there but broken: say so
                raise
            continue
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            name = f"{package_name}.{module.name}"
            value = getattr(importlib.import_module(name), attribute, None)
            if value is not None:
                found[name] = value
    return found


def short_name(module_name: str) -> str:
    """`playground.tts.piper` -> `piper`: a provider's or server's name is its module's."""
    return module_name.rpartition(".")[2]
