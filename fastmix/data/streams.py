"""The data side of training: one pass over a training beton feeds every run that reads it.

Runs that share a *stream* (the same training beton, batch size, seed and loader settings: see
``StreamKey``) see the same batches in the same order. One FFCV loader reads and decodes each
batch once and yields every view those runs need (clean, salt-and-pepper, PixMix: one per
distinct augmentation); one outlier loader per outlier source and batch size feeds every
Outlier Exposure run among them.

Everything is a pure function of (seed, global step), so a run trained alone or with others, and
an interrupted run after ``--resume``, sees exactly the same inputs: epoch ``e`` of the training
loader has its own order (FFCV RANDOM, from ``derive_seed(seed, "data_order")``) and
augmentation (per sample ``(view_seed, e, index)``); an outlier stream is consumed one batch per
step across outlier epochs (its own order, from ``derive_seed(seed, "outlier_order")``, a new one
each outlier epoch), so step ``g`` always sees outlier batch ``g``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastmix.augment.spec import Augmentation
from fastmix.data.loader import EpochLoader, make_outlier_loader, make_train_loader
from fastmix.errors import ConfigError


@dataclass(frozen=True)
class StreamKey:
    """What makes two runs see the same batches."""

    train: Path  # the training beton
    batch_size: int
    seed: int
    num_workers: int
    distributed: bool


@dataclass(frozen=True)
class OutlierKey:
    """One outlier stream: its beton and batch size (``oe.ratio`` x the in-distribution batch)."""

    beton: Path
    batch_size: int


Batch = tuple[torch.Tensor, torch.Tensor, dict[OutlierKey, torch.Tensor]]


class TrainStream:
    """The batches of one ``StreamKey``: views (V, B, 1, H, W) of ``augmentations``, labels (B,)
    and one outlier batch per ``OutlierKey``."""

    def __init__(
        self,
        key: StreamKey,
        augmentations: list[Augmentation],
        outliers: list[OutlierKey],
        bank: np.ndarray | None,
        torch_threads: int | None,
    ) -> None:
        self.key = key
        self.augmentations = augmentations
        self.train = make_train_loader(
            key.train,
            augmentations,
            key.batch_size,
            key.seed,
            bank,
            key.num_workers,
            True,
            key.distributed,
            torch_threads=torch_threads,
        )
        self.outliers: dict[OutlierKey, EpochLoader] = {}
        for ok in outliers:
            loader = make_outlier_loader(
                ok.beton,
                ok.batch_size,
                key.seed,
                key.num_workers,
                key.distributed,
                torch_threads=torch_threads,
            )
            if len(loader) == 0:
                raise ConfigError(f"{ok.beton}: fewer outliers than one batch of {ok.batch_size}")
            self.outliers[ok] = loader

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train)

    def view_index(self, augmentation: Augmentation) -> int:
        """Which view of each batch is ``augmentation``."""
        return self.augmentations.index(augmentation)

    def _outlier_batches(self, loader: EpochLoader, global_step: int) -> Iterator[torch.Tensor]:
        epoch, offset = divmod(global_step, len(loader))
        while True:
            loader.set_epoch(epoch)
            for i, (xo, _) in enumerate(loader):
                if i >= offset:
                    yield xo
            epoch, offset = epoch + 1, 0

    def batches(self, start_step: int) -> Iterator[Batch]:
        """Batches from global step ``start_step`` on, across epochs, forever (the caller
        stops). When the generator ends -- left early or by an exception -- every loader's
        unfinished epoch is stopped (``close``)."""
        spe = self.steps_per_epoch
        if spe == 0:
            raise ConfigError(
                f"{self.key.train}: fewer samples than one batch of {self.key.batch_size}"
            )
        outs = {k: self._outlier_batches(loader, start_step) for k, loader in self.outliers.items()}
        epoch, skip = divmod(start_step, spe)
        try:
            while True:
                self.train.set_epoch(epoch)
                for i, (x, y) in enumerate(self.train):
                    if i >= skip:
                        yield x, y, {k: next(o) for k, o in outs.items()}
                epoch, skip = epoch + 1, 0
        finally:
            self.close()

    def close(self) -> None:
        """Stop every loader's unfinished epoch (the outlier streams nearly always have one)."""
        self.train.close()
        for loader in self.outliers.values():
            loader.close()
