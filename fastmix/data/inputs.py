"""The one model-input convention: float32 (N, 1, H, W) in [0, 1] = uint8 / 255.

Normalisation ((x - 0.5) / 0.5 for the BatchNorm ConvNets, as andyzoujm/pixmix does; none for
the LeNets) is the model's own first step, so every loader, OOD set and evaluation feeds
the same tensors. The FFCV ops produce this format inside the loader
(``fastmix.augment.unit.to_unit_batch``, same numbers); everything that holds uint8 arrays in
memory (evaluation, the validation set, benchmarks) converts them here.
"""

from __future__ import annotations

import numpy as np
import torch

from fastmix.errors import DataError


def to_model_input(
    x: np.ndarray | torch.Tensor,
    device: torch.device | str | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, 1, H, W) -> float32 (N, 1, H, W) = x / 255; float32
    batches that are already model input (the loaders' output) pass through. Then moved to
    ``device`` (non-blocking) and, with ``channels_last``, in that memory format."""
    t = torch.as_tensor(x)
    if t.ndim not in (3, 4) or (t.ndim == 4 and t.shape[1] != 1):
        raise DataError(
            f"to_model_input: expected (N, H, W) or (N, 1, H, W) images, got "
            f"{t.dtype} {tuple(t.shape)}"
        )
    if t.dtype == torch.uint8:
        t = t.to(torch.float32).div_(255.0)
    elif t.dtype != torch.float32:
        raise DataError(f"to_model_input: expected uint8 or float32 images, got {t.dtype}")
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if device is not None:
        t = t.to(device, non_blocking=True)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t
