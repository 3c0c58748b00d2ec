"""Configs: TOML presets with strict, type-checked overrides (nanoGPT-style, but typed).

Resolution: ``default.toml`` <- variant recipe (a registered name such as ``sp_oe``, or a
path to a user's TOML file: :func:`resolve_variant`) <- extra presets (e.g.
``smoke``, or a path to a TOML file) <- overrides (``--set section.key=value`` text, or dicts
``{section: {key: value}}`` built by the CLI's shorthand flags). The presets ship inside the
package (``fastmix.configs``, read with ``importlib.resources``), so an installed fastmix finds
them from any folder. Every key must already exist in the defaults; an unknown section or key
is a ConfigError that lists the valid ones, and a value must have the default's type (ints are
accepted where floats are expected). The ``[augment]`` keys besides ``kind`` are the parameters
the augmentation kinds declare (:mod:`fastmix.augment.kinds`), with their defaults and ranges;
types and ranges of every other setting are the schema of :mod:`fastmix.schema`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import tomllib
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from fastmix.errors import ConfigError
from fastmix.registry import Registry, loaded_plugins

PRESETS = resources.files("fastmix.configs")
VARIANTS = ("base", "base_oe", "sp", "sp_oe", "pixmix", "pixmix_oe")  # the study's six
# [train] settings that do not change what a run computes, only how it is run or logged
RUN_ONLY_SETTINGS = ("log_every", "workers")
Config = dict[str, dict[str, Any]]
# variant name -> its recipe (a TOML file of overrides); plugins add theirs (register_variant)
VARIANT_RECIPES: Registry[Path | Traversable] = Registry("variant")
for _v in VARIANTS:
    VARIANT_RECIPES.register(_v, PRESETS / f"{_v}.toml", __name__)


def register_variant(name: str, recipe: str | Path) -> None:
    """Register the recipe file ``recipe`` (TOML overrides) as ``--variant name``."""
    VARIANT_RECIPES.register(name, Path(recipe))


def resolve_variant(variant: str) -> tuple[str, Config]:
    """``(name, overrides)`` of a registered variant or of a path to a TOML recipe: its name is
    ``[variant] name`` in the file, else the file's stem (a letter, then letters, digits,
    ``_``, ``-`` or ``.``: it names the run directory ``<name>-s<seed>``)."""
    if variant.endswith(".toml"):
        path: Path | Traversable = Path(variant)
        if not Path(variant).is_file():
            raise ConfigError(f"--variant {variant}: recipe file not found")
    elif variant in VARIANT_RECIPES:
        path = VARIANT_RECIPES[variant]
    else:
        raise ConfigError(
            VARIANT_RECIPES.unknown(variant) + ", all, or a path to a recipe file (.toml)"
        )
    recipe = _read_toml(path)
    meta = recipe.pop("variant", {})
    if not isinstance(meta, dict) or set(meta) - {"name"}:
        raise ConfigError(f'{path}: [variant] takes only name = "..."')
    name = meta.get("name", variant if variant in VARIANT_RECIPES else Path(variant).stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][\w.-]*", name):
        raise ConfigError(
            f"{path}: variant name {name!r} must be a letter, then letters, digits, _ - ."
        )
    return name, recipe


def _read_toml(path: Path | Traversable) -> Config:
    try:
        return tomllib.loads(path.read_bytes().decode())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML ({e})") from None


def preset_names() -> list[str]:
    """The presets that ship with fastmix (every ``fastmix.configs/*.toml`` but the defaults)."""
    return sorted(
        q.name[:-5]
        for q in PRESETS.iterdir()
        if q.name.endswith(".toml") and q.name != "default.toml"
    )


def preset_path(name: str) -> Path | Traversable:
    """``name`` as a shipped preset or as a path to a TOML file."""
    p = Path(name)
    if p.suffix == ".toml" and p.is_file():
        return p
    candidate = PRESETS / f"{name}.toml"
    if not candidate.is_file():
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(preset_names())}")
    return candidate


def _check_type(where: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        value = float(value)
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
    elif isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    return value


def merge(base: Config, update: Config, source: str) -> Config:
    """``base`` with ``update`` applied; unknown sections/keys and wrong types are errors."""
    out = copy.deepcopy(base)
    for section, values in update.items():
        if section not in out or not isinstance(values, dict):
            raise ConfigError(
                f"{source}: unknown section [{section}]; valid sections: {', '.join(out)}"
            )
        for key, value in values.items():
            default = out[section].get(
                key, _augment_params().get(key) if section == "augment" else None
            )
            if key not in out[section] and default is None:
                valid = ", ".join(
                    [*out[section], *(_augment_params() if section == "augment" else ())]
                )
                raise ConfigError(f"{source}: unknown key {section}.{key}; valid keys: {valid}")
            out[section][key] = _check_type(f"{source}: {section}.{key}", default, value)
    return out


def _augment_params() -> dict[str, Any]:
    """Every registered augmentation parameter and its default (``[augment]`` keys)."""
    from fastmix.augment.kinds import all_params

    return {name: p.default for name, p in all_params().items()}


def _defaults() -> Config:
    """``default.toml`` with the built-in augmentation kinds' parameters (their defaults)."""
    from fastmix.augment.spec import AUGMENTATIONS

    cfg = _read_toml(PRESETS / "default.toml")
    for kind in AUGMENTATIONS.values():
        if kind.builtin:
            cfg["augment"].update({n: p.default for n, p in kind.params.items()})
    return cfg


def _normalise_augment(section: dict[str, Any]) -> dict[str, Any]:
    """``kind``, the built-in kinds' parameters, and the chosen kind's own (a plugin's), with
    their defaults; another plugin kind's parameters are dropped (they do nothing here)."""
    from fastmix.augment.spec import AUGMENTATIONS

    keep = {"kind": section["kind"]}
    kinds = [k for k in AUGMENTATIONS.values() if k.builtin or k.name == section["kind"]]
    for kind in kinds:
        keep.update({n: section.get(n, p.default) for n, p in kind.params.items()})
    return keep


def parse_override(text: str) -> Config:
    """``section.key=value`` -> {section: {key: value}}; value read as TOML, else a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    lhs, rhs = text.split("=", 1)
    section, key = (s.strip() for s in lhs.split(".", 1))
    try:
        value = tomllib.loads(f"v = {rhs.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = rhs.strip()
    return {section: {key: value}}


def validate(cfg: Config) -> Config:
    """Reject impossible values with a message that says which key and why: every section
    through the typed schema (:func:`fastmix.schema.check_config`: types, ranges, the model,
    loss, scores and detectors, the augmentation's parameters from its kind)."""
    from fastmix.schema import check_config

    missing = [s for s in ("data", "model", "augment", "oe", "train", "eval") if s not in cfg]
    if missing:
        raise ConfigError(f"no section [{', '.join(missing)}]")
    check_config(cfg)
    return cfg


@functools.cache
def known_beton_names() -> tuple[str, ...]:
    """Every beton name ``fastmix convert`` can build (all options on), from the catalog."""
    from fastmix.converters.catalog import CLEAN_BASES, CatalogOptions, build_catalog

    opts = CatalogOptions(mnist_c_train=True, corrupt=tuple(CLEAN_BASES))
    return tuple(build_catalog(opts))


def load_config(
    variant: str | None = None,
    presets: Sequence[str] = (),
    overrides: Sequence[str | Config] = (),
) -> Config:
    """Resolve defaults <- variant <- presets <- overrides, then validate.

    ``variant``: a registered variant name or the path of a recipe file (:func:`resolve_variant`).
    ``overrides``: ``"section.key=value"`` text (``--set``; the value read as TOML) or dicts
    ``{section: {key: value}}``, applied in order. The result records the variant's name, the
    presets and the plugins loaded (``[variant]``)."""
    cfg = _defaults()
    name = None
    if variant is not None:
        name, recipe = resolve_variant(variant)
        cfg = merge(
            cfg, recipe, Path(variant).name if variant.endswith(".toml") else f"{variant}.toml"
        )
    for preset in presets:
        path = preset_path(preset)
        cfg = merge(cfg, _read_toml(path), path.name)
    for o in overrides:
        if isinstance(o, str):
            cfg = merge(cfg, parse_override(o), f"--set {o}")
        else:
            cfg = merge(
                cfg,
                o,
                "override " + ", ".join(f"{sec}.{key}" for sec, vals in o.items() for key in vals),
            )
    cfg["augment"] = _normalise_augment(cfg["augment"])
    cfg["variant"] = {
        "name": name or "custom",
        "presets": [Path(n).stem if n.endswith(".toml") else n for n in presets],
        "plugins": loaded_plugins(),
    }
    return validate(cfg)


def read_config_file(path: Path) -> Config:
    """A resolved config written by ``dumps`` (a run's ``config.toml``), validated; ConfigError
    naming the file when it is not a complete, valid fastmix config. Keys added to fastmix after
    the file was written take their defaults, which keep what earlier versions did (a whole
    section missing is an error)."""
    from fastmix.registry import load_plugins

    cfg = _read_toml(path)
    try:
        load_plugins(cfg.get("variant", {}).get("plugins", []))  # what the run was trained with
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    defaults = _defaults()
    missing = [sec for sec in defaults if sec not in cfg]
    if missing:
        raise ConfigError(
            f"{path}: not a complete fastmix run config (no section [{', '.join(missing)}])"
        )
    for sec, values in defaults.items():
        if isinstance(cfg[sec], dict):
            cfg[sec] = {**values, **cfg[sec]}
    try:
        return validate(cfg)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"{path}: not a complete fastmix run config ({type(e).__name__}: {e})"
        ) from None


def _weight_settings(cfg: Config, sections: tuple[str, ...]) -> Config:
    """The settings of ``sections`` that determine the trained weights (not
    ``RUN_ONLY_SETTINGS``; ``train.workers`` changes the float rounding of a step, not what it
    computes): what ``config_hash`` hashes and ``config_differences`` compares."""
    relevant = {k: cfg[k] for k in sections if k in cfg}
    relevant["train"] = {
        k: v for k, v in relevant.get("train", {}).items() if k not in RUN_ONLY_SETTINGS
    }
    return relevant


def config_hash(
    cfg: Config, sections: tuple[str, ...] = ("model", "augment", "oe", "train")
) -> str:
    """Hash of what determines the trained weights (a checkpoint from another is refused)."""
    relevant = _weight_settings(cfg, sections)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def config_differences(
    old: Config, new: Config, sections: tuple[str, ...] = ("model", "augment", "oe", "train")
) -> list[str]:
    """``"section.key: old -> new"`` for every setting of ``sections`` that differs (the ones
    ``config_hash`` covers), sorted."""
    a, b = _weight_settings(old, sections), _weight_settings(new, sections)
    out = []
    for sec in sections:
        sa, sb = a.get(sec, {}), b.get(sec, {})
        out += [
            f"{sec}.{key}: {sa.get(key)!r} -> {sb.get(key)!r}"
            for key in sorted(set(sa) | set(sb))
            if sa.get(key) != sb.get(key)
        ]
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"cannot write {v!r} as TOML")


def dumps(cfg: Config) -> str:
    """The config as TOML text (the subset this project uses: tables of scalars and lists)."""
    lines = []
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)
