"""Augmentation settings: presets, the [augmentation] table of a config file and the flags, each
overriding the one before, and one-line errors naming a bad value."""

from __future__ import annotations

import pytest

from tlcli.augment.config import (
    PRESETS,
    AugmentConfig,
    augmentation_from_options,
    overrides_from_flags,
    resolve_augment,
)
from tlcli.errors import TlcliError
from tlcli.settings import load_toml


def test_flags_override_the_toml_table_which_overrides_the_preset():
    section = {"augment": "light", "rotation": 0.2, "noise": 0.05}
    config = resolve_augment(None, {"noise": 0.0}, section)
    assert config.rotation == 0.2  # from the table
    assert config.noise == 0.0  # the flag wins
    assert config.brightness == PRESETS["light"].brightness  # from the table's preset
    assert resolve_augment("heavy", {}, section).zoom == PRESETS["heavy"].zoom  # --augment wins
    assert resolve_augment(None, {}, None).is_identity  # nothing asked: no augmentation


def test_overrides_keep_only_the_flags_given():
    assert overrides_from_flags(rotation=None, flip="vertical", noise=0.0) == {"flip": "vertical", "noise": 0.0}


def test_the_config_file_is_read_from_its_augmentation_table(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('[augmentation]\naugment = "standard"\nflip = "none"\nhue = 0.1\n')
    config = augmentation_from_options(None, {"hue": None, "zoom": 0.3}, path)
    assert (config.flip, config.hue, config.zoom) == ("none", 0.1, 0.3)
    assert config.rotation == PRESETS["standard"].rotation


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: AugmentConfig(rotation=-0.1), ["--rotation -0.1", "[0, 0.5]"]),
        (lambda: AugmentConfig(noise=2), ["--noise 2", "[0, 1.0]"]),
        (lambda: AugmentConfig(flip="diagonal"), ["--flip 'diagonal'", "horizontal"]),
        (lambda: resolve_augment("extreme", {}), ["--augment 'extreme'", "standard"]),
        (lambda: resolve_augment(None, {}, {"rotate": 0.1}), ["rotate", "rotation"]),
        (lambda: resolve_augment(None, {}, {"zoom": "lots"}), ["--zoom 'lots'", "number"]),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_value(make, words):
    with pytest.raises(TlcliError) as raised:
        make()
    message = str(raised.value)
    assert "\n" not in message and all(word in message for word in words)


def test_bad_config_files_are_one_line_errors(tmp_path):
    with pytest.raises(TlcliError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[augmentation\nrotation = ")
    with pytest.raises(TlcliError, match="not valid TOML") as raised:
        load_toml(broken)
    assert "\n" not in str(raised.value)


def test_a_preset_names_the_techniques_it_turns_on_with_their_strengths():
    from tlcli.augment.config import describe

    assert describe(PRESETS["light"]) == (
        "rotation 0.03, translation 0.05, zoom 0.05, flip horizontal, brightness 0.1, contrast 0.1")
    assert describe(PRESETS["none"]) == "no augmentation" and PRESETS["none"].is_identity
    assert AugmentConfig(noise=1).to_dict() == {**AugmentConfig().to_dict(), "noise": 1.0}


def test_an_unknown_key_in_the_augmentation_table_lists_the_known_ones():
    with pytest.raises(TlcliError, match=r"\[augmentation\] has unknown key\(s\) spin, tilt\. Known keys: augment, "
                                         r"rotation, translation"):
        resolve_augment(None, {}, {"tilt": 0.1, "spin": 0.2})
    with pytest.raises(ValueError, match="not augmentation settings: \\['spin'\\]"):
        overrides_from_flags(spin=0.1)
