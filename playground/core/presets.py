"""Presets: TOML files of typed settings, validated with errors that name the place.

A preset has the sections [agent], [llm], [tts], [chunker], [audio], [input] and [budgets]
(DESIGN.md "Presets"). Every field can be overridden with `--set section.key=value`;
overrides go through the same validation, so `--set chunker.strategy=fast` fails
with the same kind of message as a typo in the file.

API keys never live in a preset: only the *name* of the environment variable
(`api_key_env`) does.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from playground.core.scrub import home_as_tilde

STRATEGIES = ("sentence", "clause", "adaptive", "words", "passthrough")
CONTEXT_TRIMS = ("shift", "block")


class PresetError(ValueError):
    """A preset problem, phrased for the user: where it is and what to do."""


@dataclass
class AgentConfig:
    system_prompt: str = "You are a helpful voice assistant on a phone call. Answer in one or two short sentences."
    greeting: str = ""


@dataclass
class LLMConfig:
    provider: str = "local"
    model: str = "smollm2-135m-instruct"
    base_url: str = ""
    api_key_env: str = ""
    temperature: float = 0.3
    max_tokens: int = 96
    # openai provider: give up (a named error ends the turn) when connecting, the first token,
    # or the next token takes longer than this
    connect_timeout_ms: float = 5000.0
    first_token_timeout_ms: float = 15000.0
    idle_timeout_ms: float = 10000.0
    # local provider: llama.cpp threads (0 = all cores), context size, sampling seed
    threads: int = 0
    # local provider: generation waits from the first chunk's hand-off to TTS until its first audio,
    # so on a small machine the synthesis TTFA waits for has the cores; the LLM catches up while it plays
    # (TTFA p50 x0.57 on 2 cores: see the README's overlap benchmark)
    pause_until_first_audio: bool = True
    context: int = 2048
    # local provider: when the conversation outgrows the context, the oldest exchanges leave by
    # "shift" (llama.cpp's KV cache is shifted: nothing is evaluated again) or "block" (half the
    # history leaves at once, so the prompt is evaluated again only rarely): playground.llm.context
    context_trim: str = "shift"
    seed: int = 7
    # replay provider: the trace whose llm.token events are replayed, and which turn
    trace: str = ""
    replay_turn: int = 0


@dataclass
class TTSConfig:
    provider: str = "piper"
    voice: str = "en_US-joe-medium"
    model: str = ""
    base_url: str = ""
    api_key_env: str = ""
    persistent: bool = True
    # when the WebSocket cannot be (re)connected: "rest" (speak over the REST endpoint, reported) or "none" (fail)
    fallback: str = "rest"
    output_format: str = "pcm_22050"
    speed: float = 1.0
    # piper: onnxruntime threads per synthesis (0 = all cores)
    threads: int = 0
    # WebSocket providers: a keep-alive when nothing was sent for this long (inside the server's inactivity timeout)
    keepalive_ms: float = 10000.0
    # ElevenLabs: the server closes a connection that received no text for this long (1-180 s)
    inactivity_timeout_s: int = 20
    # after a dropped connection mid-reply: "resume" the reply on the new connection, or speak its rest over "rest"
    on_disconnect: str = "resume"
    reconnect_attempts: int = 3
    # first reconnect delay; doubles per attempt (capped at 2 s)
    reconnect_backoff_ms: float = 50.0
    # audio owed and none arrived for this long: the connection is treated as dead
    stall_timeout_ms: float = 5000.0
    connect_timeout_ms: float = 5000.0
    # ElevenLabs endpoint: "multi" (multi-stream-input, a context per turn) or "single" (stream-input)
    contexts: str = "multi"
    # flush every chunk so its audio starts at once; false lets the server buffer (for chunker.strategy = passthrough)
    flush_chunks: bool = True


@dataclass
class ChunkerConfig:
    strategy: str = "adaptive"
    # weak boundaries (, ; : — –) count once the pending text has this many characters
    min_chars: int = 24
    # ... and for the first chunk of a reply (adaptive), this many
    first_min_chars: int = 10
    # adaptive: cut at the last word boundary when no boundary came within this time
    deadline_ms: float = 400.0
    # adaptive: never let a chunk grow past this many characters
    max_chars: int = 220
    # words: a chunk every this many words
    words: int = 6


@dataclass
class AudioConfig:
    # "default" (the system's output device), "null" (no device, real-time paced), "unpaced" (no device
    # and no pacing: first-audio metrics of many turns fast; playback gaps are not measured),
    # or a device name or index as `playground devices` lists them
    output: str = "default"


INPUT_MODES = ("push_to_talk", "hands_free", "off")


@dataclass
class InputConfig:
    # "push_to_talk" (a key starts and ends what you say), "hands_free" (the VAD decides when
    # you have finished), "off" (typed input only)
    mode: str = "push_to_talk"
    # "default" (the system's input device), or a device name or index as `playground devices` lists them
    device: str = "default"
    # silence after the last voiced frame that ends a hands-free utterance
    end_silence_ms: float = 500.0
    # utterances with less speech than this are ignored (a cough, a click)
    min_speech_ms: float = 250.0
    # Silero speech probability at which a frame counts as voiced
    vad_threshold: float = 0.5
    # an interim transcript every this much speech (0 = final transcript only)
    interim_ms: float = 1000.0
    # speech recognition: "tiny.en" (packaged) or a CTranslate2 Whisper model folder; threads (0 = all cores)
    stt_model: str = "tiny.en"
    stt_threads: int = 0
    # hands-free with speakers: while the agent is audible, only input this many dB louder than
    # what is being played counts as speech (so the agent's own voice does not interrupt it),
    # until echo_tail_ms after the playback
    echo_gate: bool = True
    echo_margin_db: float = 6.0
    echo_tail_ms: float = 300.0


DEFAULT_BUDGETS: dict[str, float] = {"ttfs": 500.0, "handoff": 100.0, "ttfa": 1500.0, "e2e_total": 2500.0}


@dataclass
class Preset:
    name: str = "default"
    source: str = "<built-in>"
    agent: AgentConfig = field(default_factory=AgentConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    tts: TTSConfig = field(default_factory=TTSConfig)
    chunker: ChunkerConfig = field(default_factory=ChunkerConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    input: InputConfig = field(default_factory=InputConfig)
    budgets: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    # "section.key" -> where its value was set ("presets/x.toml: [llm] provider", "--set llm.provider=x")
    origins: dict[str, str] = field(default_factory=dict)

    def origin(self, section: str, key: str) -> str:
        """Where a value came from, for errors found after loading (e.g. an unknown provider)."""
        return self.origins.get(f"{section}.{key}", f"{self.source}: [{section}] {key}")

    def to_json(self) -> dict[str, Any]:
        """The preset as a plain dict, safe to write to a trace or share: no secrets are stored
        in a preset, and the user's home folder in a path (a replayed trace, a voice file) is `~`."""
        data = dataclasses.asdict(self)
        data.pop("source")
        data.pop("origins")
        for section in data.values():
            if isinstance(section, dict):
                for key, value in section.items():
                    if isinstance(value, str):
                        section[key] = home_as_tilde(value)
        return data

    def api_key(self, section: str) -> str | None:
        """The API key of [llm] or [tts], read from the environment variable the preset names."""
        env_name = getattr(self, section).api_key_env
        return os.environ.get(env_name) if env_name else None


SECTIONS: dict[str, type] = {
    "agent": AgentConfig,
    "llm": LLMConfig,
    "tts": TTSConfig,
    "chunker": ChunkerConfig,
    "audio": AudioConfig,
    "input": InputConfig,
}
# Metrics a budget may be set on (core.metrics keys).
BUDGET_KEYS = ("stt", "llm_ttft", "ttfs", "ttft_tts", "ttfa", "first_play", "llm_total",
               "tts_total", "e2e_total", "chunker_wait", "handoff", "vad_end", "user_latency")
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _coerce(value: Any, expected: type, where: str) -> Any:
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise PresetError(f"{where}: expected {_TYPE_NAMES[expected]}, got {type(value).__name__} {value!r}")


def _check_value(section: str, key: str, value: Any, where: str) -> None:
    if section == "chunker":
        if key == "strategy" and value not in STRATEGIES:
            raise PresetError(f"{where}: unknown strategy {value!r} (choose one of: {', '.join(STRATEGIES)})")
        if key in ("min_chars", "first_min_chars", "max_chars", "words") and value < 1:
            raise PresetError(f"{where}: must be at least 1, got {value}")
        if key == "deadline_ms" and value <= 0:
            raise PresetError(f"{where}: must be more than 0 ms, got {value}")
    if section == "llm" and key in ("max_tokens", "context") and value < 1:
        raise PresetError(f"{where}: must be at least 1, got {value}")
    if section == "llm" and key == "context_trim" and value not in CONTEXT_TRIMS:
        raise PresetError(f"{where}: unknown value {value!r} (choose one of: {', '.join(CONTEXT_TRIMS)})")
    if section == "llm" and key == "threads" and value < 0:
        raise PresetError(f"{where}: must be 0 (all cores) or more, got {value}")
    if section == "tts":
        _check_tts_value(key, value, where)
    if section == "input":
        if key == "mode" and value not in INPUT_MODES:
            raise PresetError(f"{where}: unknown mode {value!r} (choose one of: {', '.join(INPUT_MODES)})")
        if key in ("end_silence_ms", "min_speech_ms", "interim_ms", "echo_tail_ms", "stt_threads") and value < 0:
            raise PresetError(f"{where}: must be 0 or more, got {value}")
        if key == "vad_threshold" and not 0 < value < 1:
            raise PresetError(f"{where}: must be between 0 and 1, got {value}")


TTS_CHOICES = {"fallback": ("rest", "none"), "on_disconnect": ("resume", "rest"), "contexts": ("multi", "single")}


def _check_tts_value(key: str, value: Any, where: str) -> None:
    if key in TTS_CHOICES and value not in TTS_CHOICES[key]:
        raise PresetError(f"{where}: unknown value {value!r} (choose one of: {', '.join(TTS_CHOICES[key])})")
    if key in ("speed", "keepalive_ms", "stall_timeout_ms", "connect_timeout_ms") and value <= 0:
        raise PresetError(f"{where}: must be more than 0, got {value}")
    if key in ("reconnect_attempts", "reconnect_backoff_ms", "threads") and value < 0:
        raise PresetError(f"{where}: must be 0 or more, got {value}")
    if key == "inactivity_timeout_s" and not 1 <= value <= 180:
        raise PresetError(f"{where}: must be between 1 and 180 seconds (the ElevenLabs limit), got {value}")
    if key == "output_format" and not re.fullmatch(r"pcm_(8000|16000|22050|24000|44100|48000)", value):
        raise PresetError(f"{where}: {value!r} is not raw PCM the playground can play; use pcm_<rate> with a rate "
                          "of 8000, 16000, 22050, 24000, 44100 or 48000")


def _set_field(preset: Preset, section: str, key: str, value: Any, where: str) -> None:
    if section == "budgets":
        if key not in BUDGET_KEYS:
            raise PresetError(f"{where}: no metric {key!r} to budget (known: {', '.join(BUDGET_KEYS)})")
        preset.budgets[key] = _coerce(value, float, where)
        return
    if section not in SECTIONS:
        known = ", ".join([*SECTIONS, "budgets"])
        raise PresetError(f"{where}: unknown section [{section}] (known: {known})")
    config = getattr(preset, section)
    hints = get_type_hints(type(config))
    if key not in hints:
        known = ", ".join(f.name for f in fields(config))
        raise PresetError(f"{where}: unknown field {key!r} in [{section}] (known: {known})")
    coerced = _coerce(value, hints[key], where)
    _check_value(section, key, coerced, where)
    setattr(config, key, coerced)
    preset.origins[f"{section}.{key}"] = where


def preset_from_dict(data: dict[str, Any], name: str, source: str) -> Preset:
    preset = Preset(name=name, source=source)
    for section, values in data.items():
        if section == "name":
            preset.name = _coerce(values, str, f"{source}: name")
            continue
        if not isinstance(values, dict):
            raise PresetError(f"{source}: [{section}] must be a table of settings, got {values!r}")
        for key, value in values.items():
            _set_field(preset, section, key, value, f"{source}: [{section}] {key}")
    return preset


def parse_override_value(text: str) -> Any:
    """A `--set` value: a TOML literal when it parses as one (300, 0.5, true, "x"), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(preset: Preset, overrides: list[str]) -> Preset:
    """A copy of `preset` with `section.key=value` overrides applied and validated."""
    result = copy.deepcopy(preset)
    for expr in overrides:
        where = f"--set {expr}"
        target, sep, raw = expr.partition("=")
        section, dot, key = target.strip().partition(".")
        if not sep or not dot or not section or not key:
            raise PresetError(f"{where}: expected section.key=value, e.g. chunker.strategy=sentence")
        _set_field(result, section, key, parse_override_value(raw.strip()), where)
    return result


def builtin_presets_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "presets"


def user_presets_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "playground" / "presets"


def available_presets() -> dict[str, Path]:
    """Preset name -> file; user presets shadow built-in ones of the same name."""
    found: dict[str, Path] = {}
    for folder in (builtin_presets_dir(), user_presets_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = path
    return found


def load_preset(name_or_path: str, overrides: list[str] | None = None) -> Preset:
    """Loads a preset by name (built-in or user) or by file path, then applies overrides."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" or os.sep in name_or_path):
        presets = available_presets()
        if name_or_path not in presets:
            known = ", ".join(sorted(presets)) or "none found"
            raise PresetError(f"unknown preset {name_or_path!r} (known: {known}; or give a path to a .toml file)")
        path = presets[name_or_path]
    if not path.is_file():
        raise PresetError(f"{path}: no such preset file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{path}: not valid TOML: {exc}") from None
    preset = preset_from_dict(data, name=path.stem, source=str(path))
    return apply_overrides(preset, overrides or [])
