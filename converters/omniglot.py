"""Omniglot (Lake et al., Science 2015) as an OOD set in MNIST's format.

The zips hold 105x105 PNGs of black strokes on white. Each is converted to grayscale, resized
to 28x28 with a box filter (area averaging, which keeps thin strokes visible), and inverted so
that strokes are white on black like MNIST: ``x' = 255 - resize(x)``.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fastmix.errors import DataError

GENERATOR_VERSION = "1"


def read_omniglot_zips(paths: Sequence[Path], size: int = 28) -> np.ndarray:
    """All PNGs in ``paths`` (sorted by member name), as uint8 (N, size, size), white on black."""
    out = []
    for path in paths:
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"{path}: not a readable zip file ({e})") from None
        with zf:
            names = sorted(n for n in zf.namelist() if n.lower().endswith(".png"))
            if not names:
                raise DataError(f"{path}: contains no PNG images")
            for name in names:
                try:
                    with Image.open(io.BytesIO(zf.read(name))) as im:
                        gray = im.convert("L").resize((size, size), Image.Resampling.BOX)
                except (UnidentifiedImageError, OSError, zipfile.BadZipFile) as e:
                    msg = f"{path}: member {name} is not a readable image ({e})"
                    raise DataError(msg) from None
                out.append(255 - np.asarray(gray, dtype=np.uint8))
    return np.stack(out)
