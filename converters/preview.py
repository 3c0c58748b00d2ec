"""A PNG grid with a few samples of every beton in a manifest (read through the FFCV loader)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from fastmix.converters.build import load_manifest, manifest_beton_path

from fastmix.files import atomic_write


def read_spread(path: Path, n: int, count: int) -> np.ndarray:
    """``n`` images spread evenly over a beton of ``count``, read with the real FFCV Loader."""
    from ffcv.fields.decoders import NDArrayDecoder
    from ffcv.loader import Loader, OrderOption

    loader = Loader(
        str(path),
        batch_size=n,
        num_workers=1,
        order=OrderOption.SEQUENTIAL,
        indices=np.linspace(0, count - 1, n).astype(np.int64),
        pipelines={"image": [NDArrayDecoder()], "label": None},
    )
    for (x,) in loader:
        return np.array(x, copy=True)
    return np.zeros((0, 28, 28), np.uint8)


def write_preview(out_dir: str | os.PathLike, png: str | os.PathLike, n: int = 12) -> Path:
    """One row per beton listed in ``out_dir``'s manifest, ``n`` samples each; the PNG is
    written atomically (``fastmix.files.atomic_write``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir, png = Path(out_dir), Path(png)
    entries = load_manifest(out_dir)["betons"]
    names = sorted(entries)
    fig, axes = plt.subplots(
        len(names), 1, figsize=(n * 0.6 + 2.5, 0.7 * len(names) + 0.3), squeeze=False
    )
    for ax, name in zip(axes[:, 0], names, strict=True):
        count = min(n, entries[name]["count"])
        path = manifest_beton_path(out_dir, name, entries[name])
        imgs = read_spread(path, count, entries[name]["count"])
        h = max(im.shape[0] for im in imgs)
        tiles = [np.pad(im, ((0, h - im.shape[0]), (1, 1 + h - im.shape[1]))) for im in imgs]
        ax.imshow(np.concatenate(tiles, axis=1), cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write(png, lambda f: fig.savefig(f, format="png", dpi=80))
    finally:
        plt.close(fig)
