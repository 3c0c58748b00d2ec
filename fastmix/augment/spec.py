"""What augmentation a training view applies: the ``[augment]`` section of a config as an object.

A *view* of a training batch is the batch after one augmentation. The loader computes several
views of each batch from one read and one decode (one per distinct augmentation of the runs
training together), each seeded per sample by ``(view_seed(seed, augmentation), epoch,
index)``: a view depends only on the training seed and its own settings, never on which other
views are computed beside it. The kinds, their kernels and their parameters' ranges are the
registry of :mod:`fastmix.augment.kinds`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastmix.augment import pixmix, salt_pepper, unit  # noqa: F401 (the built-in kinds)
from fastmix.augment.kinds import AUGMENTATIONS, AugmentationKind, all_params
from fastmix.errors import ConfigError, DataError
from fastmix.rng import derive_seed


class Augmentation:
    """One augmentation: a registered ``kind`` (none | sp | pixmix | a plugin's) and the values
    of that kind's parameters (``Augmentation("pixmix", pixmix_k=2)``; a missing one takes its
    default; ``a.pixmix_k`` reads one). Settings of the other kinds are ignored (normalised
    away, so two views of the same augmentation compare equal); an unknown setting, an unknown
    kind or a value outside its declared range is a ConfigError naming it (``where`` prefixes
    the setting, e.g. ``"augment."``)."""

    __slots__ = ("kind", "params")

    def __init__(self, kind: str = "none", *, where: str = "", **settings: Any) -> None:
        if kind not in AUGMENTATIONS:
            raise ConfigError(AUGMENTATIONS.unknown(kind, f"{where}kind" if where else ""))
        known = all_params()
        unknown = [k for k in settings if k not in known]
        if unknown:
            raise ConfigError(
                f"unknown augmentation setting(s) {', '.join(unknown)}; valid: {', '.join(known)}"
            )
        spec = AUGMENTATIONS[kind]
        values = tuple(
            (name, p.check(f"{where}{name}", settings.get(name, p.default)))
            for name, p in spec.params.items()
        )
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "params", values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Augmentation is immutable")

    def __reduce__(self) -> tuple:
        """Pickled as its kind and settings (a worker process rebuilds and re-checks it; a
        plugin's kind must be registered there too)."""
        return _rebuild, (self.kind, dict(self.params))

    def __getattr__(self, name: str) -> Any:
        for key, value in object.__getattribute__(self, "params"):
            if key == name:
                return value
        raise AttributeError(f"{self.kind} augmentation has no setting {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Augmentation) and (self.kind, self.params) == (
            other.kind,
            other.params,
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.params))

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params)
        return f"Augmentation({self.kind!r}{args})"

    @property
    def spec(self) -> AugmentationKind:
        """The registered kind."""
        return AUGMENTATIONS[self.kind]

    @property
    def values(self) -> tuple[Any, ...]:
        """The parameter values in the kind's declaration order (the kernel's arguments)."""
        return tuple(v for _, v in self.params)

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> Augmentation:
        """From a config's ``[augment]`` section (errors name ``augment.<key>``)."""
        kind = section["kind"]
        own = AUGMENTATIONS[kind].params if kind in AUGMENTATIONS else {}
        return cls(kind, where="augment.", **{k: section[k] for k in own if k in section})


def _rebuild(kind: str, params: dict[str, Any]) -> Augmentation:
    return Augmentation(kind, **params)


def view_seed(seed: int, augmentation: Augmentation) -> int:
    """The per-sample seed of a view: ``derive_seed(seed, "view", seed_tag)`` with the kind's
    registered seed tag, so every kind's view of every training seed draws from its own stream
    (however many kinds there are)."""
    return derive_seed(int(seed), "view", augmentation.spec.seed_tag)


def validate_bank(bank: np.ndarray) -> np.ndarray:
    """The mixing bank as a C-contiguous uint8 (M, S1, S2) array; DataError if it is not one."""
    if not isinstance(bank, np.ndarray) or bank.dtype != np.uint8 or bank.ndim != 3:
        raise DataError(
            "PixMix: fractal_bank must be a uint8 array of shape (M, S, S), got "
            f"{getattr(bank, 'dtype', type(bank))} {getattr(bank, 'shape', '')}"
        )
    if bank.shape[0] == 0:
        raise DataError("PixMix: fractal_bank is empty")
    return np.ascontiguousarray(bank)
