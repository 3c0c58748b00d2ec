"""The data side of a training run: the augmented in-distribution stream and the outlier stream.

Both are pure functions of (seed, global step), so an interrupted run resumes exactly: epoch
``e`` of the training loader has its own order (FFCV RANDOM, ``seed + e``) and augmentation
(per-sample (seed, e, index)); the outlier stream is consumed one batch per step across outlier
epochs (own seed, new order each outlier epoch), so step ``g`` always sees outlier batch ``g``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from fastmix.config import Config
from fastmix.data.loader import EpochLoader, make_outlier_loader, make_train_loader
from fastmix.runtime import default_torch_threads

OUTLIER_SEED_OFFSET = 1_000_003


@dataclass
class TrainData:
    train: EpochLoader
    outliers: EpochLoader | None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train)

    def _outlier_stream(self, global_step: int) -> Iterator[torch.Tensor]:
        assert self.outliers is not None
        per_epoch = len(self.outliers)
        epoch, offset = divmod(global_step, per_epoch)
        while True:
            self.outliers.set_epoch(epoch)
            for i, (xo, _) in enumerate(self.outliers):
                if i >= offset:
                    yield xo
            epoch, offset = epoch + 1, 0

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor,
                                                                  torch.Tensor | None]]:
        """Batches (x, y, outliers or None) of ``epoch``, starting after ``skip`` batches.

        When the generator ends -- exhausted, left early (``break``: the last step) or by an
        exception -- both loaders' unfinished epochs are stopped (``close``)."""
        self.train.set_epoch(epoch)
        outs = (self._outlier_stream(epoch * self.steps_per_epoch + skip)
                if self.outliers is not None else None)
        try:
            for i, (x, y) in enumerate(self.train):
                if i < skip:
                    continue
                yield x, y, (next(outs) if outs is not None else None)
        finally:
            self.close()

    def close(self) -> None:
        """Stop both loaders' unfinished epochs (the outlier stream nearly always has one)."""
        self.train.close()
        if self.outliers is not None:
            self.outliers.close()


def build_loaders(cfg: Config, paths: dict[str, Path], distributed: bool = False) -> TrainData:
    """FFCV loaders for a resolved config and the beton paths from ``require_betons``."""
    from fastmix.converters.beton import read_beton

    a, t = cfg["augment"], cfg["train"]
    bank = read_beton(paths["mixing"])[0] if a["kind"] == "pixmix" else None
    aug = dict(pixmix_k=a["pixmix_k"], pixmix_beta=a["pixmix_beta"],
               aug_severity=float(a["pixmix_severity"]), all_ops=a["pixmix_all_ops"],
               sp_amount=a["sp_amount"])
    workers = min(cfg["data"]["num_workers"], default_torch_threads())
    aug["torch_threads"] = default_torch_threads()
    train = make_train_loader(paths["train"], a["kind"], t["batch_size"], t["seed"], bank,
                              workers, drop_last=True, distributed=distributed, **aug)
    outliers = None
    if cfg["oe"]["enabled"]:
        outliers = make_outlier_loader(paths["outlier"], t["batch_size"] * cfg["oe"]["ratio"],
                                       t["seed"] + OUTLIER_SEED_OFFSET, num_workers=workers,
                                       distributed=distributed,
                                       torch_threads=aug["torch_threads"])
    return TrainData(train, outliers)
