"""Presets: the shipped ones load; every mistake gives one line naming the file or --set and the field."""

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest

from playground.core.presets import (
    STRATEGIES,
    Preset,
    PresetError,
    apply_overrides,
    available_presets,
    builtin_presets_dir,
    load_preset,
    preset_from_dict,
    preset_schema_text,
)
from playground.llm.local import LocalLLMConfig
from playground.tts.elevenlabs import ElevenLabsConfig
from playground.tts.piper import PiperConfig

PASTED_KEY = "sk-proj-Zq81fTw0v4Lm27XcA9"


def test_local_preset_is_the_offline_default_with_the_seeds_budgets():
    preset = load_preset("local")
    assert preset.llm.provider == "local" and preset.tts.provider == "piper"
    assert preset.tts.voice == "en_US-joe-medium" and preset.chunker.strategy == "adaptive"
    assert preset.budgets == {"ttfs": 500.0, "handoff": 100.0, "ttfa": 1500.0, "e2e_total": 2500.0}
    assert "local" in available_presets()


def test_overrides_are_parsed_as_toml_values():
    preset = apply_overrides(load_preset("local"), [
        "chunker.strategy=sentence", "chunker.deadline_ms=250", "llm.temperature=0",
        "tts.persistent=false", "agent.system_prompt=Be brief, please.", "budgets.ttfa=900",
    ])
    assert preset.chunker.strategy == "sentence"
    assert preset.chunker.deadline_ms == 250.0 and isinstance(preset.chunker.deadline_ms, float)
    assert preset.llm.temperature == 0.0 and preset.tts.persistent is False
    assert preset.agent.system_prompt == "Be brief, please."
    assert preset.budgets["ttfa"] == 900.0


@pytest.mark.parametrize("override, message", [
    ("chunker.strategy=fast", "--set chunker.strategy=fast: unknown strategy 'fast' (choose one of: sentence"),
    ("chunker.nope=1", "--set chunker.nope=1: unknown field 'nope' in [chunker]"),
    ("chunker.deadline_ms=soon", "--set chunker.deadline_ms=soon: expected a number, got str 'soon'"),
    ("llm.max_tokens=1.5", "--set llm.max_tokens=1.5: expected an integer, got float 1.5"),
    ("tts.persistent=1", "--set tts.persistent=1: expected true or false, got int 1"),
    ("chunker.max_chars=0", "--set chunker.max_chars=0: must be at least 1"),
    ("sound.volume=3", "--set sound.volume=3: unknown section [sound]"),
    ("budgets.latency=3", "--set budgets.latency=3: no metric 'latency' to budget"),
    ("strategy", "--set strategy: expected section.key=value"),
    ("llm.pause_until_first_audio=1", "--set llm.pause_until_first_audio=1: expected true or false, got int 1"),
    ("tts.threads=-2", "--set tts.threads=-2: must be 0 or more"),
    ("input.vad_threshold=1", "--set input.vad_threshold=1: must be between 0 and 1, got 1"),
    ("chunker.deadline_ms=0", "--set chunker.deadline_ms=0: must be more than 0 ms, got 0"),
    ("llm.provider=gpt", "--set llm.provider=gpt: unknown provider 'gpt' (available: local, openai, replay)"),
    ("tts.keepalive_ms=5000", "--set tts.keepalive_ms=5000: 'keepalive_ms' is not a setting of tts provider 'piper' "
                              "but of cartesia, deepgram, elevenlabs (piper knows: provider, voice,"),
    ("llm.trace=t.jsonl", "--set llm.trace=t.jsonl: 'trace' is not a setting of llm provider 'local' but of replay"),
])
def test_bad_overrides_name_the_override_and_the_field(override, message):
    with pytest.raises(PresetError) as info:
        apply_overrides(load_preset("local"), [override])
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content, message", [
    ('[chunker]\nstrategy = "adaptive"\nmin_chars = "ten"\n',
     r"\[chunker\] min_chars: expected an integer, got str 'ten'"),
    ("[llm\nprovider = 1\n", r"not valid TOML"),
    ('[tts]\nvoice = "x"\nvolume = 3\n', r"\[tts\] volume: unknown field 'volume' in \[tts\] \(known: provider"),
    ('[tts]\nprovider = "elevenlabs"\nthreads = 2\n',
     r"\[tts\] threads: 'threads' is not a setting of tts provider 'elevenlabs' but of piper \(elevenlabs knows: "),
    ('[llm]\nprovider = "gpt"\n', r"\[llm\] provider: unknown provider 'gpt' \(available: local, openai, replay\)"),
    ("[budgets]\nttfa = nan\n", r"\[budgets\] ttfa: must be a finite number, got nan"),
    ("[input]\nend_silence_ms = inf\n", r"\[input\] end_silence_ms: must be a finite number, got inf"),
])
def test_file_errors_name_the_file_and_the_field(tmp_path, content, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    with pytest.raises(PresetError, match=r"^" + re.escape(str(bad)) + ": " + message) as info:
        load_preset(str(bad))
    assert "\n" not in str(info.value)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(PresetError, match=r"unknown preset 'nope' \(known: .*local"):
        load_preset("nope")


def test_user_presets_are_found_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    folder = tmp_path / "playground" / "presets"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text('[chunker]\nstrategy = "clause"\n')
    preset = load_preset("mine")
    assert preset.name == "mine" and preset.chunker.strategy == "clause"


def test_strategies_match_design():
    assert STRATEGIES == ("sentence", "clause", "adaptive", "words", "passthrough")


def test_exported_preset_hides_the_home_folder_and_holds_no_key(monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("PLAYGROUND_TEST_KEY", "sk-live-do-not-leak")
    preset = apply_overrides(load_preset("local"), [
        "llm.provider=replay", f'llm.trace="{Path.home() / "calls" / "turns.jsonl"}"',
        'llm.api_key_env="PLAYGROUND_TEST_KEY"'])
    assert preset.api_key("llm") == "sk-live-do-not-leak"
    exported = preset.to_json()
    assert exported["llm"]["trace"] == "~/calls/turns.jsonl"
    assert exported["llm"]["api_key_env"] == "PLAYGROUND_TEST_KEY"
    assert "sk-live-do-not-leak" not in str(exported) and str(Path.home()) + "/" not in str(exported)


def test_sections_are_the_settings_of_the_provider_they_name():
    preset = load_preset("local")
    assert isinstance(preset.llm, LocalLLMConfig) and isinstance(preset.tts, PiperConfig)
    assert isinstance(Preset().llm, LocalLLMConfig) and Preset().tts.threads == 0
    switched = apply_overrides(preset, ["tts.provider=elevenlabs"])
    # what the preset set (the voice) is kept; the rest is the new provider's defaults
    assert isinstance(switched.tts, ElevenLabsConfig) and switched.tts.voice == "en_US-joe-medium"
    assert switched.tts.inactivity_timeout_s == 20 and not hasattr(switched.tts, "threads")
    # a provider's settings are checked with the provider they come with, in either order
    for overrides in (["tts.provider=elevenlabs", "tts.inactivity_timeout_s=60"],
                      ["tts.inactivity_timeout_s=60", "tts.provider=elevenlabs"]):
        assert apply_overrides(preset, overrides).tts.inactivity_timeout_s == 60


def test_a_provider_change_leaves_out_the_old_providers_own_settings(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('[tts]\nprovider = "piper"\nvoice = "v"\nthreads = 2\n')
    switched = load_preset(str(mine), ["tts.provider=elevenlabs"])
    assert isinstance(switched.tts, ElevenLabsConfig) and switched.tts.voice == "v"
    assert "tts.threads" not in switched.origins
    # ... but a setting given with the change must be one of the new provider's
    with pytest.raises(PresetError, match=r"^--set tts.threads=2: 'threads' is not a setting of tts provider "
                                          r"'elevenlabs' but of piper \(elevenlabs knows: provider, "):
        load_preset(str(mine), ["tts.provider=elevenlabs", "tts.threads=2"])


@pytest.mark.parametrize("override", ["budgets.ttfa=nan", "budgets.ttfa=inf", "llm.temperature=nan",
                                      "chunker.deadline_ms=inf", "input.echo_margin_db=-inf"])
def test_non_finite_numbers_are_refused(override):
    with pytest.raises(PresetError) as info:
        apply_overrides(load_preset("local"), [override])
    assert str(info.value).startswith(f"--set {override}: must be a finite number, got ")


def test_a_key_pasted_as_api_key_env_is_refused_and_never_shown(tmp_path):
    for override in (f"llm.api_key_env={PASTED_KEY}", f'tts.api_key_env="{PASTED_KEY}"', "llm.api_key_env=xai-1a2b3c"):
        with pytest.raises(PresetError) as info:
            apply_overrides(load_preset("loopback-llm"), [override])
        message = str(info.value)
        assert message.startswith(f"--set {override.partition('=')[0]}=…: this looks like an API key, not the name "
                                  "of an environment variable")
        assert PASTED_KEY[:6] not in message and "1a2b" not in message and "\n" not in message
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[llm]\nprovider = "openai"\napi_key_env = "{PASTED_KEY}"\n')
    with pytest.raises(PresetError, match=r"bad\.toml: \[llm\] api_key_env: this looks like an API key") as info:
        load_preset(str(bad))
    assert PASTED_KEY[:6] not in str(info.value)
    # names of variables are fine, however they are spelled
    assert apply_overrides(load_preset("local"), ["llm.api_key_env=my_key_2"]).llm.api_key_env == "my_key_2"


def test_a_binary_preset_file_is_named_in_one_line(tmp_path):
    bad = tmp_path / "binary.toml"
    bad.write_bytes(b"name = \"x\"\n\xff\xfe\x00\x81garbage")
    with pytest.raises(PresetError) as info:
        load_preset(str(bad))
    assert str(info.value) == (f"{bad}: not a text file (byte 0xff at offset 11 is not UTF-8); "
                               "a preset is a TOML text file in UTF-8")


def test_a_recorded_preset_leaves_out_what_this_version_does_not_know():
    header = json.loads((Path(__file__).parents[2] / "playground" / "bench" / "data" / "two-turns.jsonl")
                        .read_text().splitlines()[0])
    recorded = header["preset"]
    assert "trace" in recorded["llm"] and "base_url" in recorded["tts"]  # written when every section had all
    preset = preset_from_dict(recorded, name="two-turns", source="two-turns.jsonl: recorded preset", recorded=True)
    assert isinstance(preset.llm, LocalLLMConfig) and preset.llm.max_tokens == 20
    assert preset.chunker.strategy == "adaptive"
    cloudy = {"tts": {"provider": "nonesuch", "voice": "v", "api_key_env": "[redacted]", "colour": "blue"}}
    tts = preset_from_dict(cloudy, name="cloudy", source="x", recorded=True).tts
    assert (tts.provider, tts.voice, tts.api_key_env) == ("nonesuch", "v", "")
    with pytest.raises(PresetError, match="unknown provider 'nonesuch'"):
        preset_from_dict(cloudy, name="cloudy", source="x")


def test_the_committed_schema_is_up_to_date():
    committed = (builtin_presets_dir() / "schema.json").read_text()
    assert committed == preset_schema_text(), "regenerate it: playground presets --schema presets/schema.json"


def test_shipped_presets_use_the_schema_and_follow_it():
    schema = json.loads(preset_schema_text())
    # every setting says what it does: an editor shows it, and so does the TUI's chunker panel
    assert not [f"[{name}] {key}" for name, definition in schema["definitions"].items()
                for key, field in definition["properties"].items() if not field.get("description")]
    validator = jsonschema.Draft7Validator(schema)
    for path in sorted(builtin_presets_dir().glob("*.toml")):
        text = path.read_text()
        assert text.startswith("#:schema ./schema.json\n"), f"{path.name}: the editors' schema directive"
        assert not list(validator.iter_errors(tomllib.loads(text))), path.name
    for wrong in ({"chunker": {"strategy": "fast"}}, {"tts": {"keepalive_ms": 5000}}, {"budgets": {"ttfa": "x"}},
                  {"llm": {"provider": "openai", "threads": 2}}, {"llm": {"api_key_env": PASTED_KEY}}):
        assert list(validator.iter_errors(wrong)), wrong
