"""Configs: TOML presets with strict, type-checked overrides (nanoGPT-style, but typed).

Resolution: ``default.toml`` <- variant preset (``<variant>.toml``) <- extra presets (e.g.
``smoke``, or a path to a TOML file) <- overrides (``--set section.key=value`` text, or dicts
``{section: {key: value}}`` built by the CLI's shorthand flags). The presets ship inside the
package (``fastmix.configs``, read with ``importlib.resources``), so an installed fastmix finds
them from any folder. Every key must already exist in the defaults; an unknown section or key
is a ConfigError that lists the valid ones, and a value must have the default's type (ints are
accepted where floats are expected).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import tomllib
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from fastmix.errors import ConfigError

PRESETS = resources.files("fastmix.configs")
VARIANTS = ("base", "base_oe", "sp", "sp_oe", "pixmix", "pixmix_oe")
MODELS = ("convnet", "convnet_flat", "lenet", "lenet_oe")  # fastmix.train.models.build_model
SCHEDULES = ("onecycle", "cosine")  # fastmix.train.schedule.lr_at
# [train] settings that do not change what a run computes, only how it is run or logged
RUN_ONLY_SETTINGS = ("log_every", "workers")
AUGMENT_KINDS = ("none", "sp", "pixmix")
Config = dict[str, dict[str, Any]]


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
            if key not in out[section]:
                valid = ", ".join(out[section])
                raise ConfigError(f"{source}: unknown key {section}.{key}; valid keys: {valid}")
            out[section][key] = _check_type(f"{source}: {section}.{key}", out[section][key], value)
    return out


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
    """Reject impossible values with a message that says which key and why."""
    for section, values in cfg.items():
        for key, value in values.items() if isinstance(values, dict) else ():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{section}.{key} must be a finite number, got {value}")
    t, a, o = cfg["train"], cfg["augment"], cfg["oe"]
    checks = [
        (t["lr"] > 0, "train.lr must be > 0"),
        (t["epochs"] >= 1, "train.epochs must be >= 1"),
        (t["batch_size"] >= 1, "train.batch_size must be >= 1"),
        (0 <= t["momentum"] < 1, "train.momentum must lie in [0, 1)"),
        (t["weight_decay"] >= 0, "train.weight_decay must be >= 0"),
        (0 <= t["warmup_frac"] < 1, "train.warmup_frac must lie in [0, 1)"),
        (0 <= t["label_smoothing"] < 1, "train.label_smoothing must lie in [0, 1)"),
        (t["max_steps"] >= 0, "train.max_steps must be >= 0"),
        (t["seed"] >= 0, "train.seed must be >= 0"),
        (t["log_every"] >= 1, "train.log_every must be >= 1"),
        (t["ckpt_every"] >= 0, "train.ckpt_every must be >= 0"),
        (
            t["device"] in ("auto", "cpu", "cuda") or t["device"].startswith("cuda:"),
            "train.device must be auto, cpu or cuda[:N]",
        ),
        (t["precision"] in ("auto", "fp32", "bf16"), "train.precision must be auto, fp32 or bf16"),
        (t["channels_last"] in ("auto", "on", "off"), "train.channels_last must be auto/on/off"),
        (t["compile"] in ("auto", "on", "off"), "train.compile must be auto, on or off"),
        (t["cuda_graphs"] in ("auto", "on", "off"), "train.cuda_graphs must be auto, on or off"),
        (t["schedule"] in SCHEDULES, f"train.schedule must be one of {', '.join(SCHEDULES)}"),
        (0 <= t["lr_min"] <= t["lr"], "train.lr_min must lie in [0, train.lr]"),
        (t["workers"] >= 0, "train.workers must be >= 0 (0 = auto)"),
        (a["kind"] in AUGMENT_KINDS, f"augment.kind must be one of {', '.join(AUGMENT_KINDS)}"),
        (0 <= a["sp_amount"] <= 1, "augment.sp_amount must lie in [0, 1]"),
        (a["pixmix_k"] >= 0, "augment.pixmix_k must be >= 0"),
        (a["pixmix_beta"] > 0, "augment.pixmix_beta must be > 0"),
        (1 <= a["pixmix_severity"] <= 10, "augment.pixmix_severity must lie in [1, 10]"),
        (o["lambda"] >= 0, "oe.lambda must be >= 0"),
        (o["ratio"] >= 1, "oe.ratio must be >= 1"),
        (cfg["model"]["name"] in MODELS, f"model.name must be one of {', '.join(MODELS)}"),
        (cfg["model"]["width"] >= 1, "model.width must be >= 1"),
        (cfg["data"]["num_workers"] >= 1, "data.num_workers must be >= 1"),
        (cfg["eval"]["n_draws"] >= 1, "eval.n_draws must be >= 1"),
        (cfg["eval"]["n_ood"] >= 1, "eval.n_ood must be >= 1"),
        (cfg["eval"]["batch_size"] >= 1, "eval.batch_size must be >= 1"),
        (isinstance(cfg["eval"].get("features", True), bool), "eval.features must be true/false"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    prefixes = sorted({n.split("/")[0] for n in known_beton_names() if "/" in n})
    if cfg["data"]["corrupted"] not in prefixes:
        raise ConfigError(
            f"data.corrupted: unknown -C set {cfg['data']['corrupted']!r}; valid: "
            f"{', '.join(prefixes)}"
        )
    unknown = [n for n in cfg["eval"]["ood_sets"] if n not in known_beton_names()]
    if unknown:
        valid = ", ".join(n for n in known_beton_names() if "/" not in n)
        raise ConfigError(
            f"eval.ood_sets: unknown set(s) {', '.join(map(repr, unknown))}; valid: {valid}, "
            "or a corrupted set such as mnist_c/fog or fmnist_c/fog"
        )
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

    ``overrides``: ``"section.key=value"`` text (``--set``; the value read as TOML) or dicts
    ``{section: {key: value}}``, applied in order."""
    cfg = _read_toml(PRESETS / "default.toml")
    if variant is not None:
        if variant not in VARIANTS:
            raise ConfigError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}, all")
        cfg = merge(cfg, _read_toml(PRESETS / f"{variant}.toml"), f"{variant}.toml")
    for name in presets:
        path = preset_path(name)
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
    cfg["variant"] = {
        "name": variant or "custom",
        "presets": [Path(n).stem if n.endswith(".toml") else n for n in presets],
    }
    return validate(cfg)


def read_config_file(path: Path) -> Config:
    """A resolved config written by ``dumps`` (a run's ``config.toml``), validated; ConfigError
    naming the file when it is not a complete, valid fastmix config. Keys added to fastmix after
    the file was written take their defaults, which keep what earlier versions did (a whole
    section missing is an error)."""
    cfg = _read_toml(path)
    defaults = _read_toml(PRESETS / "default.toml")
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
