"""What augmentation a training view applies: the ``[augment]`` section of a config as an object.

A *view* of a training batch is the batch after one augmentation. The loader computes several
views of each batch from one read and one decode (one per distinct augmentation of the runs
training together), each seeded per sample by ``(view_seed(seed, augmentation), epoch,
index)``: a view depends only on the training seed and its own settings, never on which other
views are computed beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fastmix.augment import pillow_ops, pixmix, salt_pepper
from fastmix.errors import ConfigError, DataError
from fastmix.rng import derive_seed

KINDS = ("none", "sp", "pixmix")


@dataclass(frozen=True)
class Augmentation:
    """One augmentation: ``kind`` none | sp (salt-and-pepper, ``sp_amount``) | pixmix (PixMix
    with k, beta, severity and the 9 or 13 ops). Settings of the other kinds are ignored (and
    normalised away, so two views of the same augmentation compare equal)."""

    kind: str = "none"
    sp_amount: float = salt_pepper.SP_AMOUNT
    pixmix_k: int = pixmix.PIXMIX_K
    pixmix_beta: float = pixmix.PIXMIX_BETA
    pixmix_severity: float = pixmix.AUG_SEVERITY
    pixmix_all_ops: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown augmentation {self.kind!r}; valid: {', '.join(KINDS)}")
        if not 0.0 <= float(self.sp_amount) <= 1.0:
            raise ConfigError(f"salt-and-pepper amount must lie in [0, 1], got {self.sp_amount!r}")
        k = self.pixmix_k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= 64:
            raise ConfigError(f"PixMix: k (mixing rounds) must be an integer in [0, 64], got {k!r}")
        if not float(self.pixmix_beta) > 0.0:
            raise ConfigError(f"PixMix: beta must be > 0, got {self.pixmix_beta!r}")
        if not 0.1 < float(self.pixmix_severity) <= pixmix.MAX_SEVERITY:
            raise ConfigError(
                f"PixMix: severity must lie in (0.1, {pixmix.MAX_SEVERITY:g}], "
                f"got {self.pixmix_severity!r}"
            )
        defaults = Augmentation.__dataclass_fields__
        if self.kind != "sp":
            object.__setattr__(self, "sp_amount", defaults["sp_amount"].default)
        if self.kind != "pixmix":
            for name in ("pixmix_k", "pixmix_beta", "pixmix_severity", "pixmix_all_ops"):
                object.__setattr__(self, name, defaults[name].default)

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> Augmentation:
        """From a config's ``[augment]`` section."""
        return cls(
            section["kind"],
            float(section["sp_amount"]),
            int(section["pixmix_k"]),
            float(section["pixmix_beta"]),
            float(section["pixmix_severity"]),
            bool(section["pixmix_all_ops"]),
        )

    @property
    def n_ops(self) -> int:
        """PixMix's op list length: andyzoujm/pixmix's 9 ops, or 13 with ``--all-ops``."""
        return pillow_ops.N_OPS_ALL if self.pixmix_all_ops else pillow_ops.N_OPS_BASIC


def view_seed(seed: int, augmentation: Augmentation) -> int:
    """The per-sample seed of a view: ``derive_seed(seed, "view", kind)``, so every kind's view
    of every training seed draws from its own stream (however many kinds there are)."""
    return derive_seed(int(seed), "view", augmentation.kind)


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
