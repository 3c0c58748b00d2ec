"""Inference for evaluation: logits (and penultimate features) of a model on uint8 images.

Inputs go through :func:`fastmix.data.inputs.to_model_input` (``uint8 / 255``, the one model
input convention). fp32 is the default on every device: bf16 autocast moved the AUROCs and the
argmax of a fraction of a percent of MNIST test, more than the differences the report compares,
so it is an explicit opt-in (``precision="bf16"``: trunk under bf16 autocast, head in float32).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastmix.errors import ConfigError

__all__ = ["Prediction", "predict", "predict_logits", "resolve_inference", "strict_fp32"]


@dataclass(frozen=True)
class Prediction:
    """``logits`` float32 (N, C); ``features`` float32 (N, F), the input of the classifier
    head (``model.forward_features``), or None when not asked for."""

    logits: np.ndarray
    features: np.ndarray | None


def strict_fp32(device: str) -> contextlib.AbstractContextManager:
    """Context: on CUDA, cuDNN convolutions in true fp32 (PyTorch lets cuDNN use TF32, a
    10-bit mantissa, for fp32 convolutions on Ampere and later; "fp32" inference means fp32).
    The other cuDNN flags keep their values. A no-op on CPU."""
    import torch

    if not device.startswith("cuda"):
        return contextlib.nullcontext()
    c = torch.backends.cudnn
    return c.flags(
        enabled=c.enabled, benchmark=c.benchmark, deterministic=c.deterministic, allow_tf32=False
    )


def resolve_inference(device: str = "auto", precision: str = "auto") -> tuple[str, str]:
    """``(device, precision)`` for inference.  ``device="auto"``: CUDA when present, else CPU.
    ``precision="auto"`` is fp32 on every device; ``"bf16"`` is an explicit opt-in. ConfigError
    for a missing GPU or an unknown precision."""
    import torch

    from fastmix.runtime import check_device

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        try:
            check_device(device)
        except RuntimeError as e:  # torch.device's own message for a malformed string
            raise ConfigError(f"device {device!r}: {e}") from None
    if precision == "auto":
        precision = "fp32"
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return device, precision


def prepare_model(model: Any, device: str, precision: str = "fp32") -> tuple[Any, bool]:
    """``model`` on ``device`` in the memory format inference uses, and whether inputs must be
    channels_last (on CPU, and with bf16: same numbers, faster convolutions). Converts the
    model in place; leaves torch's thread count to the caller (``fastmix.runtime``)."""
    import torch

    cl = device == "cpu" or precision == "bf16"
    fmt = torch.channels_last if cl else torch.contiguous_format
    return model.to(device=device, memory_format=fmt), cl


def predict(
    model: Any,
    images: np.ndarray,
    batch_size: int = 1000,
    device: str = "cpu",
    precision: str = "auto",
    *,
    features: bool = False,
    desc: str | None = None,
    progress: bool = False,
    prepared: bool = False,
) -> Prediction:
    """Logits (and, with ``features``, penultimate features) of ``model`` on uint8 ``images``
    (N, H, W); the model must be in eval mode and is converted in place (:func:`prepare_model`).

    Logits are ``forward_head(forward_features(x))``, which is ``model(x)`` for every fastmix
    model; with bf16 the trunk runs under autocast and the head in float32 on the upcast
    features, so the logits are not bf16-quantised (that would tie saturated MSP scores).
    ``desc`` and ``progress``: a tqdm bar over the images. ``prepared``: the caller already
    ran :func:`prepare_model` (several threads predicting with one model at once).
    """
    import torch
    from tqdm import tqdm

    from fastmix.data.inputs import to_model_input

    device, precision = resolve_inference(device, precision)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
    split = hasattr(model, "forward_features") and hasattr(model, "forward_head")
    if features and not split:
        raise ValueError(f"{type(model).__name__} has no forward_features / forward_head")
    bf16 = precision == "bf16"
    if prepared:
        cl = device == "cpu" or bf16
    else:
        model, cl = prepare_model(model, device, precision)
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    autocast = torch.autocast(dev_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    zs: list[np.ndarray] = []
    fs: list[np.ndarray] = []
    bs = int(batch_size)
    bar = tqdm(total=len(images), desc=desc, unit="img", leave=False, disable=not progress)
    with bar, torch.inference_mode(), contextlib.nullcontext() if bf16 else strict_fp32(device):
        for i in range(0, len(images), bs):
            xb = to_model_input(np.ascontiguousarray(images[i : i + bs]), device, cl)
            if split:
                with autocast:
                    f = model.forward_features(xb)
                f = f.float()
                z = model.forward_head(f)
                if features:
                    fs.append(f.cpu().numpy())
            else:
                with autocast:
                    z = model(xb)
            zs.append(z.float().cpu().numpy())
            bar.update(len(xb))
    logits = (
        np.concatenate(zs).astype(np.float32, copy=False) if zs else np.zeros((0, 0), np.float32)
    )
    feats = None
    if features:
        feats = (
            np.concatenate(fs).astype(np.float32, copy=False)
            if fs
            else np.zeros((0, 0), np.float32)
        )
    return Prediction(logits, feats)


def predict_logits(
    model: Any,
    images: np.ndarray,
    batch_size: int = 1000,
    device: str = "cpu",
    precision: str = "auto",
) -> np.ndarray:
    """Float32 logits (N, C) of ``model`` on uint8 ``images`` (N, H, W): :func:`predict`
    without features."""
    return predict(model, images, batch_size, device, precision).logits
