"""Presets: TOML files of typed settings, validated with errors that name the place.

A preset has the sections [agent], [llm], [tts], [chunker], [audio], [input] and [budgets]
(DESIGN.md "Presets"). Every field can be overridden with `--set section.key=value`;
overrides go through the same validation, so `--set chunker.strategy=fast` fails
with the same kind of message as a typo in the file.

Each section is a pydantic dataclass: types, ranges and choices are declared on its fields,
and the same declarations give the JSON Schema editors use (`preset_json_schema`,
presets/schema.json). [llm] and [tts] hold the settings of the provider they name: the
settings every provider has are declared here (`LLMConfig`, `TTSConfig`), a provider's own
are declared by its module (`SETTINGS`, a subclass), found by name in `playground.llm` /
`playground.tts` (`provider_settings`, through `core.plugins`): core imports no provider.

API keys never live in a preset: only the *name* of the environment variable
(`api_key_env`) does.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from playground.core.metrics import METRIC_LABELS
from playground.core.plugins import find_plugins, short_name
from playground.core.scrub import home_as_tilde

# Types are not converted (1.5 is no integer, 1 is not true), NaN and infinity are refused,
# an unknown key is an error, and an error never echoes a value (it may be a pasted key):
# the messages users see are written by `_field_problem`, which shows values where that is safe.
SETTINGS_CONFIG = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, hide_input_in_errors=True)


def settings(cls: type) -> type:
    """Makes `cls` a section of settings: a dataclass validated on construction (and by `replace`)."""
    return pydantic_dataclass(cls, config=SETTINGS_CONFIG)


@dataclass(frozen=True)
class Why:
    """The reason for a field's rule, said with its error (in `Annotated` metadata)."""

    text: str


class PresetError(ValueError):
    """A preset problem, phrased for the user: where it is and what to do."""


Strategy = Literal["sentence", "clause", "adaptive", "words", "passthrough"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
InputMode = Literal["push_to_talk", "hands_free", "off"]
INPUT_MODES: tuple[str, ...] = get_args(InputMode)
PCM_FORMATS = tuple(f"pcm_{rate}" for rate in (8000, 16000, 22050, 24000, 44100, 48000))
PcmFormat = Annotated[Literal[PCM_FORMATS], Why("not raw PCM the playground can play")]

# An environment variable's name; a value that is not one is most likely the key itself.
_ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keys are long runs of mixed letters and digits; names are words (OPENAI_API_KEY).
_KEY_MIN_CHARS = 20
API_KEY_PASTED = "api_key_pasted"


def _looks_like_api_key(value: str) -> bool:
    return not _ENV_VAR_NAME.fullmatch(value) or (
        len(value) >= _KEY_MIN_CHARS and any(c.isdigit() for c in value) and any(c.islower() for c in value))


def _env_var_name(value: str) -> str:
    if value and _looks_like_api_key(value):
        raise PydanticCustomError(API_KEY_PASTED, "looks like an API key")
    return value


ApiKeyEnv = Annotated[str, AfterValidator(_env_var_name), Field(
    description="the environment variable holding the API key (its name, never the key); empty: no key",
    json_schema_extra={"pattern": f"^({_ENV_VAR_NAME.pattern})?$"})]


@settings
class AgentConfig:
    system_prompt: str = Field(
        "You are a helpful voice assistant on a phone call. Answer in one or two short sentences.",
        description="the system message of every request")
    greeting: str = Field("", description="what the agent says first, before any input (empty: nothing)")


@settings
class LLMConfig:
    """[llm]: what every LLM provider has; a provider's module declares the rest (a subclass)."""

    provider: str = Field("local", description="the LLM provider: a module of playground.llm")
    model: str = Field("smollm2-135m-instruct", description="the model the provider runs or asks for")
    base_url: str = Field("", description="the server's base URL (remote providers)")
    api_key_env: ApiKeyEnv = ""
    temperature: float = Field(0.3, description="sampling temperature")
    max_tokens: int = Field(96, ge=1, description="the longest reply, in tokens")


@settings
class TTSConfig:
    """[tts]: what every TTS provider has; a provider's module declares the rest (a subclass)."""

    provider: str = Field("piper", description="the TTS provider: a module of playground.tts")
    voice: str = Field("en_US-joe-medium", description="the voice: a name or id the provider knows, or a file")
    model: str = Field("", description="the provider's synthesis model (empty: its default)")
    base_url: str = Field("", description="the server's base URL (remote providers; empty: the provider's)")
    api_key_env: ApiKeyEnv = ""
    persistent: bool = Field(True, description="open the session before the first turn and reuse it")
    fallback: Literal["rest", "none"] = Field(
        "rest", description='when the WebSocket cannot be (re)connected: "rest" (speak over the REST endpoint, '
                            'reported) or "none" (fail)')
    output_format: PcmFormat = Field("pcm_22050", description="the audio asked for: raw PCM at this sample rate")
    speed: float = Field(1.0, gt=0, description="speaking rate (1 = the voice's own)")


@settings
class ChunkerConfig:
    strategy: Strategy = Field("adaptive", description="where chunks are cut (DESIGN.md, Chunker)")
    min_chars: int = Field(24, ge=1, description="weak boundaries (, ; : — –) count once a chunk has this "
                                                 "many characters")
    first_min_chars: int = Field(10, ge=1, description="adaptive: min_chars for the first chunk of a reply")
    first_min_words: int = Field(3, ge=1, description="adaptive: the first chunk has at least this many words "
                                                      "(unless the reply has fewer)")
    deadline_ms: float = Field(400.0, gt=0, description="adaptive: cut the first chunk at the best word boundary "
                                                        "when no boundary came within this time")
    later_deadline_ms: float = Field(2500.0, gt=0, description="adaptive, chunks after the first when the engine "
                                                               "gives no playback lead: the same, this long")
    underrun_lead_ms: float = Field(250.0, ge=0, description="adaptive, chunks after the first: cut early (reason "
                                                             "underrun) when the playback lead would fall below this")
    max_chars: int = Field(220, ge=1, description="adaptive: never let a chunk grow past this many characters")
    words: int = Field(6, ge=1, description="words: a chunk every this many words")


@settings
class AudioConfig:
    output: str = Field("default", description=(
        '"default" (the system\'s output device), "null" (no device, real-time paced), "unpaced" (no device '
        "and no pacing: first-audio metrics of many turns fast; playback gaps are not measured), or a device "
        "name or index as `playground devices` lists them"))


@settings
class InputConfig:
    mode: InputMode = Field("push_to_talk", description=(
        '"push_to_talk" (a key starts and ends what you say), "hands_free" (the VAD decides when you have '
        'finished), "off" (typed input only)'))
    device: str = Field("default", description='"default" (the system\'s input device), or a device name or '
                                               "index as `playground devices` lists them")
    end_silence_ms: float = Field(500.0, ge=0, description="silence after the last voiced frame that ends a "
                                                           "hands-free utterance")
    min_speech_ms: float = Field(150.0, ge=0, description="utterances with less speech than this are ignored "
                                                          "(a cough, a click)")
    vad_threshold: float = Field(0.5, gt=0, lt=1, description="Silero speech probability at which a frame "
                                                              "counts as voiced")
    interim_ms: float = Field(1000.0, ge=0, description="an interim transcript every this much speech "
                                                        "(0 = final transcript only)")
    stt_model: str = Field("tiny.en", description='speech recognition: "tiny.en" (packaged) or a CTranslate2 '
                                                  "Whisper model folder")
    stt_threads: Annotated[int, Why("0 = all cores")] = Field(0, ge=0, description="speech recognition threads "
                                                                                  "(0 = all cores)")
    echo_gate: bool = Field(True, description=(
        "hands-free with speakers: while the agent is audible, only input echo_margin_db louder than what is "
        "being played counts as speech (so the agent's own voice does not interrupt it), until echo_tail_ms "
        "after the playback"))
    echo_margin_db: float = Field(6.0, description="see echo_gate")
    echo_tail_ms: float = Field(300.0, ge=0, description="see echo_gate")


# Metrics a budget may be set on (core.metrics keys), in ms after t0.
BUDGET_KEYS: tuple[str, ...] = tuple(METRIC_LABELS)
DEFAULT_BUDGETS: dict[str, float] = {"ttfs": 500.0, "handoff": 100.0, "ttfa": 1500.0, "e2e_total": 2500.0}
Budgets = with_config(SETTINGS_CONFIG)(TypedDict("Budgets", {
    key: Annotated[float, Field(description=f"{label} budget (ms): a turn over it is marked")]
    for key, label in METRIC_LABELS.items()}, total=False))
_BUDGETS = TypeAdapter(Budgets)

SECTIONS: dict[str, type] = {
    "agent": AgentConfig,
    "llm": LLMConfig,
    "tts": TTSConfig,
    "chunker": ChunkerConfig,
    "audio": AudioConfig,
    "input": InputConfig,
}
# Sections whose settings are those of the provider they name.
PROVIDER_SECTIONS = ("llm", "tts")


def default_provider(section: str) -> str:
    return SECTIONS[section].__pydantic_fields__["provider"].default


class ProviderSettings:
    """Which settings class each LLM and TTS provider declares, by provider name.

    Core imports no provider: the provider modules of `playground.llm` / `playground.tts` are
    found by name (`core.plugins`, their `SETTINGS`), the first time a preset needs them.
    """

    def __init__(self) -> None:
        self._found: dict[str, dict[str, type]] = {}

    def models(self, kind: str) -> dict[str, type]:
        if kind not in self._found:
            found = {}
            for module, model in find_plugins("SETTINGS", f"playground.{kind}").items():
                name = short_name(module)
                if model.__pydantic_fields__["provider"].default != name:
                    raise RuntimeError(f"{module}: SETTINGS is the settings of another provider "
                                       f"({model.__pydantic_fields__['provider'].default!r})")
                found[name] = model
            self._found[kind] = dict(sorted(found.items()))
        return self._found[kind]

    def model(self, kind: str, name: str) -> type | None:
        return self.models(kind).get(name)

    def default(self, kind: str) -> Any:
        """The settings of the default provider of `kind`, all at their defaults."""
        return self.models(kind)[default_provider(kind)]()


provider_settings = ProviderSettings()


@dataclass
class Preset:
    name: str = "default"
    source: str = "<built-in>"
    agent: AgentConfig = field(default_factory=AgentConfig)
    llm: LLMConfig = field(default_factory=lambda: provider_settings.default("llm"))
    tts: TTSConfig = field(default_factory=lambda: provider_settings.default("tts"))
    chunker: ChunkerConfig = field(default_factory=ChunkerConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    input: InputConfig = field(default_factory=InputConfig)
    budgets: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    # "section.key" -> where its value was set ("presets/x.toml: [llm] provider", "--set llm.provider=x")
    origins: dict[str, str] = field(default_factory=dict)

    def origin(self, section: str, key: str) -> str:
        """Where a value came from, for errors found after loading (e.g. a provider that is not available)."""
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


# -- errors ------------------------------------------------------------------------------

_TYPE_NAMES = {"string_type": "a string", "int_type": "an integer", "float_type": "a number",
               "bool_type": "true or false"}
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_UNKNOWN_KEY_ERRORS = {"unexpected_keyword_argument", "extra_forbidden"}

Where = Callable[[str], str]  # a key of the section -> where its value was set


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _unit(key: str) -> str:
    return " ms" if key.endswith("_ms") else " s" if key.endswith("_s") else ""


def _number(value: float) -> str:
    return f"{value:g}"


def _range_rule(metadata: list[Any], key: str) -> str | None:
    lower = next((m for m in metadata if isinstance(m, (Ge, Gt))), None)
    upper = next((m for m in metadata if isinstance(m, (Le, Lt))), None)
    unit = _unit(key)
    if lower is not None and upper is not None:
        low = lower.ge if isinstance(lower, Ge) else lower.gt
        high = upper.le if isinstance(upper, Le) else upper.lt
        return f"must be between {_number(low)} and {_number(high)}{unit}"
    if isinstance(lower, Ge):
        return f"must be 0{unit} or more" if lower.ge == 0 else f"must be at least {_number(lower.ge)}{unit}"
    if isinstance(lower, Gt):
        return f"must be more than {_number(lower.gt)}{unit}"
    return None


def _choices(annotation: Any) -> tuple[Any, ...]:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def _why(metadata: list[Any]) -> str | None:
    return next((m.text for m in metadata if isinstance(m, Why)), None)


def _rules(info: Any) -> list[Any]:
    """A field's rules: its own, and those of an optional one's value (`Annotated[float, Field(gt=0)] | None`)."""
    rules = list(info.metadata)
    for member in get_args(info.annotation):
        if get_origin(member) is Annotated:
            for extra in get_args(member)[1:]:
                rules += getattr(extra, "metadata", [extra])
    return rules


def _field_problem(model: type, error: Mapping[str, Any]) -> str:
    """What is wrong with one field's value, and what to do (without the place)."""
    key, kind, value = str(error["loc"][0]), error["type"], error.get("input")
    info = model.__pydantic_fields__[key]
    why = _why(info.metadata)
    choices = _choices(info.annotation)
    if kind == API_KEY_PASTED:
        return ("this looks like an API key, not the name of an environment variable (it is not shown here): "
                f'put the key in an environment variable and name that, e.g. export MY_KEY=... and {key} = "MY_KEY"')
    if kind == "literal_error" and choices:
        reason = f"{why}; " if why else ""
        listed = ", ".join(map(str, choices))
        if not isinstance(value, str):
            return f"expected a string, got {_shown(value)} ({reason}choose one of: {listed})"
        return f"unknown {key} {value!r} ({reason}choose one of: {listed})"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {_shown(value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {value}"
    rule = _range_rule(_rules(info), key) if kind in _RANGE_ERRORS else None
    if rule:
        return f"{rule}{f' ({why})' if why else ''}, got {value}"
    return f"{error['msg'].lower()}, got {_shown(value)}"  # a rule no field here has yet: pydantic's words


def _unknown_key(section: str, model: type, key: str, where: Where) -> str:
    known = ", ".join(model.__pydantic_fields__)
    owners = []
    if section in PROVIDER_SECTIONS and model is not SECTIONS[section]:
        owners = [name for name, other in provider_settings.models(section).items() if key in other.__pydantic_fields__]
    if not owners:
        return f"{where(key)}: unknown field {key!r} in [{section}] (known: {known})"
    provider = model.__pydantic_fields__["provider"].default
    return (f"{where(key)}: {key!r} is not a setting of {section} provider {provider!r} but of {', '.join(owners)} "
            f"({provider} knows: {known})")


def _first_problem(exc: ValidationError, section: str, model: type, order: list[str], where: Where) -> str:
    """The error of the first offending key (in file / override order), as one line."""
    error = min(exc.errors(), key=lambda e: order.index(e["loc"][0]))
    key = str(error["loc"][0])
    if error["type"] in _UNKNOWN_KEY_ERRORS:
        return _unknown_key(section, model, key, where)
    place = where(key)
    if error["type"] == API_KEY_PASTED and place.startswith("--set"):
        place = f"--set {section}.{key}=…"  # the override holds the key: never shown
    return f"{place}: {_field_problem(model, error)}"


# -- validation ---------------------------------------------------------------------------


def _section_model(section: str, values: Mapping[str, Any], where: Where) -> type:
    """The settings class of `section`: for [llm] and [tts], the one of the provider it names."""
    if section not in PROVIDER_SECTIONS:
        return SECTIONS[section]
    provider = values.get("provider", default_provider(section))
    if not isinstance(provider, str):
        raise PresetError(f"{where('provider')}: expected a string, got {_shown(provider)}")
    model = provider_settings.model(section, provider)
    if model is None:
        available = ", ".join(provider_settings.models(section))
        raise PresetError(f"{where('provider')}: unknown provider {provider!r} (available: {available})")
    return model


def validate_section(section: str, values: Mapping[str, Any], where: Where, model: type | None = None) -> Any:
    """`values` (key -> value) as the settings of `section` (by default, of the class its provider
    declares); an error names where the bad value was set."""
    model = model or _section_model(section, values, where)
    try:
        return model(**values)
    except ValidationError as exc:
        raise PresetError(_first_problem(exc, section, model, list(values), where)) from None


def validate_budgets(values: Mapping[str, Any], where: Where) -> dict[str, float]:
    try:
        return dict(_BUDGETS.validate_python(dict(values)))
    except ValidationError as exc:
        error = min(exc.errors(), key=lambda e: list(values).index(e["loc"][0]))
        key = str(error["loc"][0])
        if error["type"] in _UNKNOWN_KEY_ERRORS:
            raise PresetError(f"{where(key)}: no metric {key!r} to budget (known: {', '.join(BUDGET_KEYS)})") from None
        problem = (f"expected a number, got {_shown(error.get('input'))}" if error["type"] == "float_type"
                   else f"must be a finite number, got {error.get('input')}")
        raise PresetError(f"{where(key)}: {problem}") from None


def _recorded_model(section: str, values: Mapping[str, Any]) -> type | None:
    """The class a recorded section is read with: its provider's, or (a provider not available
    here, which a replay may swap for another) the shared settings."""
    if section == "budgets":
        return None
    if section in PROVIDER_SECTIONS:
        return provider_settings.model(section, values.get("provider", default_provider(section))) or SECTIONS[section]
    return SECTIONS[section]


def _readable(model: type | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded `values` this version can read as settings of `model` (None: budgets): unknown
    keys and values it refuses (e.g. a key scrubbed to "[redacted]") are left out."""
    known = BUDGET_KEYS if model is None else model.__pydantic_fields__
    readable = {k: v for k, v in values.items() if k in known}
    try:
        if model is None:
            _BUDGETS.validate_python(readable)
        else:
            model(**readable)
    except ValidationError as exc:
        refused = {error["loc"][0] for error in exc.errors()}
        readable = {k: v for k, v in readable.items() if k not in refused}
    return readable


def preset_from_dict(data: Mapping[str, Any], name: str, source: str, recorded: bool = False) -> Preset:
    """A preset from parsed TOML, or from a trace header's preset (`recorded`: settings this version
    does not know, e.g. written by another version, are left out)."""
    preset = Preset(name=name, source=source)
    for section, values in data.items():
        if section == "name":
            if not isinstance(values, str):
                raise PresetError(f"{source}: name: expected a string, got {_shown(values)}")
            preset.name = values
            continue
        if section not in (*SECTIONS, "budgets"):
            if recorded:
                continue
            raise PresetError(f"{source}: unknown section [{section}] (known: {', '.join([*SECTIONS, 'budgets'])})")
        if not isinstance(values, dict):
            raise PresetError(f"{source}: [{section}] must be a table of settings, got {values!r}")

        def where(key: str, section: str = section) -> str:
            return f"{source}: [{section}] {key}"

        model = _recorded_model(section, values) if recorded else None
        if recorded:
            values = _readable(model, values)
        for key in values:
            preset.origins[f"{section}.{key}"] = where(key)
        if section == "budgets":
            preset.budgets = validate_budgets({**DEFAULT_BUDGETS, **values}, where)
        else:
            setattr(preset, section, validate_section(section, values, where, model))
    return preset


def parse_override_value(text: str) -> Any:
    """A `--set` value: a TOML literal when it parses as one (300, 0.5, true, "x"), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _kept_values(preset: Preset, section: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The values a section is validated with again under `changes`: all of them; or, when the
    provider changes, the ones the preset set that the new provider has too. The others were the
    old provider's own and are left out (a setting `changes` gives the new one must fit it)."""
    current = getattr(preset, section)
    values = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
    if "provider" in changes and changes["provider"] != values.get("provider"):
        new = provider_settings.model(section, changes["provider"]) if isinstance(changes["provider"], str) else None
        kept = {k: v for k, v in values.items() if f"{section}.{k}" in preset.origins}
        values = {k: v for k, v in kept.items() if new is not None and k in new.__pydantic_fields__}
        for key in kept.keys() - values.keys() - changes.keys():
            del preset.origins[f"{section}.{key}"]
    return {**values, **changes}


def apply_overrides(preset: Preset, overrides: list[str]) -> Preset:
    """A copy of `preset` with `section.key=value` overrides applied and validated.

    The overrides of a section are validated together with the section's other values, so
    `--set tts.provider=elevenlabs --set tts.inactivity_timeout_s=60` holds in either order.
    """
    result = copy.deepcopy(preset)
    changes: dict[str, dict[str, Any]] = {}
    for expr in overrides:
        where = f"--set {expr}"
        target, sep, raw = expr.partition("=")
        section, dot, key = target.strip().partition(".")
        if not sep or not dot or not section or not key:
            raise PresetError(f"{where}: expected section.key=value, e.g. chunker.strategy=sentence")
        if section not in (*SECTIONS, "budgets"):
            raise PresetError(f"{where}: unknown section [{section}] (known: {', '.join([*SECTIONS, 'budgets'])})")
        changes.setdefault(section, {})[key] = parse_override_value(raw.strip())
        result.origins[f"{section}.{key}"] = where
    for section, values in changes.items():
        def where(key: str, section: str = section) -> str:
            return result.origin(section, key)

        if section == "budgets":
            result.budgets = validate_budgets({**result.budgets, **values}, where)
        else:
            setattr(result, section, validate_section(section, _kept_values(result, section, values), where))
    return result


# -- files --------------------------------------------------------------------------------


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
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PresetError(f"{path}: not a text file (byte 0x{exc.object[exc.start]:02x} at offset {exc.start} "
                          "is not UTF-8); a preset is a TOML text file in UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{path}: not valid TOML: {exc}") from None
    preset = preset_from_dict(data, name=path.stem, source=str(path))
    return apply_overrides(preset, overrides or [])


# -- JSON Schema --------------------------------------------------------------------------


def preset_json_schema() -> dict[str, Any]:
    """The JSON Schema of a preset file, for editors (Taplo, Even Better TOML: `#:schema ./schema.json`),
    generated from the same field declarations that validate presets."""
    definitions: dict[str, Any] = {}

    def ref(model: type, section: str) -> dict[str, Any]:
        schema = TypeAdapter(model).json_schema()
        if section in PROVIDER_SECTIONS:
            provider = model.__pydantic_fields__["provider"].default
            schema["properties"]["provider"] = {"const": provider, "description": f"the {provider} provider"}
            if provider != default_provider(section):
                schema["required"] = ["provider"]  # without one, the section is the default provider's
        definitions[schema["title"]] = schema
        return {"$ref": f"#/definitions/{schema['title']}"}

    properties: dict[str, Any] = {"name": {"type": "string", "description": "the preset's name (default: the file's)"}}
    for section, model in SECTIONS.items():
        if section in PROVIDER_SECTIONS:
            properties[section] = {"description": f"[{section}]: the provider and its settings",
                                   "anyOf": [ref(m, section) for m in provider_settings.models(section).values()]}
        else:
            properties[section] = ref(model, section)
    budgets = _BUDGETS.json_schema()
    budgets.pop("title", None)
    properties["budgets"] = {**budgets, "description": "budgets in ms after t0: a turn over one is marked"}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "playground preset",
        "description": "A preset of the voice-agent playground (written by: playground presets --schema FILE)",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "definitions": definitions,
    }


def preset_schema_text() -> str:
    """`preset_json_schema` as the text of presets/schema.json."""
    return json.dumps(preset_json_schema(), indent=2, ensure_ascii=False) + "\n"
