"""Presets: the shipped ones load; every mistake gives one line naming the file or --set and the field."""

import pytest

from playground.core.presets import (
    STRATEGIES,
    PresetError,
    apply_overrides,
    available_presets,
    load_preset,
)


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
])
def test_bad_overrides_name_the_override_and_the_field(override, message):
    with pytest.raises(PresetError) as info:
        apply_overrides(load_preset("local"), [override])
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_file_errors_name_the_file_and_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[chunker]\nstrategy = "adaptive"\nmin_chars = "ten"\n')
    with pytest.raises(PresetError, match=r"bad\.toml: \[chunker\] min_chars: expected an integer, got str 'ten'"):
        load_preset(str(bad))
    bad.write_text("[llm\nprovider = 1\n")
    with pytest.raises(PresetError, match=r"bad\.toml: not valid TOML"):
        load_preset(str(bad))
    bad.write_text('[tts]\nvoice = "x"\nvolume = 3\n')
    with pytest.raises(PresetError, match=r"bad\.toml: \[tts\] volume: unknown field 'volume' in \[tts\] \(known: provider"):
        load_preset(str(bad))


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
        f'llm.trace="{Path.home() / "calls" / "turns.jsonl"}"', 'llm.api_key_env="PLAYGROUND_TEST_KEY"'])
    assert preset.api_key("llm") == "sk-live-do-not-leak"
    exported = preset.to_json()
    assert exported["llm"]["trace"] == "~/calls/turns.jsonl"
    assert exported["llm"]["api_key_env"] == "PLAYGROUND_TEST_KEY"
    assert "sk-live-do-not-leak" not in str(exported) and str(Path.home()) + "/" not in str(exported)
