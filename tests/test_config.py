"""Config resolution: presets, typed overrides, unknown keys and impossible values."""

from __future__ import annotations

import tomllib

import pytest

from fastmix.config import VARIANTS, config_hash, dumps, load_config, parse_override
from fastmix.errors import ConfigError


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_differ_only_in_augment_and_oe(variant):
    cfg = load_config(variant)
    base = load_config("base")
    assert cfg["augment"]["kind"] == variant.removesuffix("_oe").replace("base", "none")
    assert cfg["oe"]["enabled"] is variant.endswith("_oe")
    for section in ("data", "model", "train", "eval"):
        assert cfg[section] == base[section]


def test_overrides_are_typed_and_applied():
    cfg = load_config(
        "sp",
        ["smoke"],
        [
            "train.lr=0.05",
            "oe.ratio=2",
            "augment.sp_amount=0.2",
            "train.device=cpu",
            "eval.ood_sets=['fmnist_test']",
        ],
    )
    assert cfg["train"]["lr"] == 0.05 and cfg["oe"]["ratio"] == 2
    assert cfg["train"]["device"] == "cpu" and cfg["eval"]["ood_sets"] == ["fmnist_test"]
    assert cfg["model"]["width"] == 8  # from the smoke preset


def test_int_accepted_for_float_but_not_the_reverse():
    assert load_config("base", [], ["train.lr=1"])["train"]["lr"] == 1.0
    with pytest.raises(ConfigError, match="train.epochs: expected an integer, got 1.5"):
        load_config("base", [], ["train.epochs=1.5"])


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown key train.lrr; valid keys: epochs, batch_size"):
        load_config("base", [], ["train.lrr=0.1"])


def test_unknown_section_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown section \[optim\]; valid sections: data"):
        load_config("base", [], ["optim.lr=0.1"])


@pytest.mark.parametrize(
    "override, match",
    [
        ("train.lr=-0.1", "train.lr must be > 0"),
        (
            "augment.kind=mixup",
            "augment.kind: unknown augmentation 'mixup'; valid: none, pixmix, sp",
        ),
        ("train.epochs=0", "train.epochs must be >= 1"),
        ("oe.ratio=0", "oe.ratio must be >= 1"),
        ("augment.sp_amount=1.5", r"augment.sp_amount must lie in \[0, 1\]"),
        ("train.precision=fp8", "train.precision must be"),
    ],
)
def test_impossible_values(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("base", [], [override])


def test_unknown_variant_and_preset():
    with pytest.raises(ConfigError, match="unknown variant 'mixup'; valid: base, base_oe"):
        load_config("mixup")
    with pytest.raises(ConfigError, match="unknown preset 'tiny'"):
        load_config("base", ["tiny"])


def test_malformed_override():
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_override("lr=0.1")


def test_bad_toml_file_names_it(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text("[train\nlr = 1")
    with pytest.raises(ConfigError, match="mine.toml: invalid TOML"):
        load_config("base", [str(bad)])


def test_dumps_round_trips_and_hash_tracks_training_keys():
    cfg = load_config("pixmix_oe", ["smoke"])
    assert tomllib.loads(dumps(cfg)) == cfg
    same = load_config("pixmix_oe", ["smoke"], ["train.log_every=7"])
    other = load_config("pixmix_oe", ["smoke"], ["train.lr=0.01"])
    assert config_hash(cfg) == config_hash(same)
    assert config_hash(cfg) != config_hash(other)


def test_run_configs_of_earlier_versions_read_with_the_new_keys_defaults(tmp_path):
    """A run's config.toml written before a key existed reads with that key's default (which
    keeps the earlier behaviour); a whole section missing is still an incomplete config."""
    import pytest

    from fastmix.config import dumps, load_config, read_config_file
    from fastmix.errors import ConfigError

    cfg = load_config("sp")
    old = {k: dict(v) for k, v in cfg.items()}
    for key in ("corrupted", "family_shift"):
        del old["data"][key]
    del old["train"]["schedule"]
    path = tmp_path / "config.toml"
    path.write_text(dumps(old))
    back = read_config_file(path)
    assert back["data"]["corrupted"] == "mnist_c" and back["train"]["schedule"] == "onecycle"
    assert back == cfg
    del old["train"]
    path.write_text(dumps(old))
    with pytest.raises(ConfigError, match=r"config.toml: not a complete .* \[train\]"):
        read_config_file(path)
