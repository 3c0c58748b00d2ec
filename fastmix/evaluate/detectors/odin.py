"""ODIN: temperature scaling plus a small input perturbation (Liang et al. 2018).

Liang, Li & Srikant, "Enhancing The Reliability of Out-of-distribution Image Detection in
Neural Networks", ICLR 2018. With logits ``z(x)``, temperature ``T`` and
``S(x; T) = max_k softmax(z(x) / T)_k``::

    x~       = x - eps * sign(-grad_x log S(x; T))
    score(x) = -S(x~; T)

``sign`` as the official code: +1 where the gradient is >= 0, -1 elsewhere. The perturbation is
in pixel units of the model input (images / 255 in [0, 1]; the official code perturbs the
normalised image by ``eps / std``, the same step in pixel units); the result is not clipped.

``T = 1000``, the paper's choice. The paper tunes ``eps`` on OOD validation samples; here it is
chosen without OOD data, as Hsu, Shen, Jin & Kira ("Generalized ODIN", CVPR 2020) do: the ``eps``
of their grid ``{0.0025, 0.005, 0.01, 0.02, 0.04, 0.08}`` with the largest mean ``S(x~; T)`` on
in-distribution validation images. Scores are computed in float64 from the float32 logits
(at ``T = 1000`` every softmax is close to uniform; float32 would tie them).

ODIN needs a backward pass per image and a second forward pass, so evaluation scores it on a
seeded subset of every set (:data:`MAX_IMAGES`) and chooses ``eps`` on :data:`VAL_IMAGES`
validation images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fastmix.evaluate.detectors.registry import DETECTORS, Detector
from fastmix.evaluate.scores import msp

__all__ = [
    "EPSILONS",
    "FORMULA",
    "MAX_IMAGES",
    "PAPER",
    "TEMPERATURE",
    "VAL_IMAGES",
    "choose_epsilon",
    "perturbed_logits",
    "score",
]

PAPER = (
    "Liang, Li & Srikant, Enhancing The Reliability of Out-of-distribution Image Detection "
    "in Neural Networks, ICLR 2018"
)
TEMPERATURE = 1000.0
EPSILONS = (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08)
MAX_IMAGES = 1000  # per scored set (ID test, each OOD set)
VAL_IMAGES = 500  # validation images eps is chosen on
FORMULA = (
    f"-max_k softmax(z(x~) / T)_k, x~ = x - eps sign(-grad_x log max_k softmax(z(x) / T)"
    f"_k), T = {TEMPERATURE:g} (Liang et al. 2018); eps chosen on ID validation images "
    "(Hsu et al. 2020)"
)


def score(logits: np.ndarray, temperature: float = TEMPERATURE) -> np.ndarray:
    """``-max_k softmax(z / T)_k`` in float64 (N,) from the logits of the perturbed inputs."""
    return msp(np.asarray(logits, dtype=np.float64) / float(temperature))


def perturbed_logits(
    model: Any,
    images: np.ndarray,
    epsilons: Sequence[float],
    temperature: float = TEMPERATURE,
    batch_size: int = 500,
    device: str = "cpu",
    *,
    desc: str | None = None,
    progress: bool = False,
) -> dict[float, np.ndarray]:
    """Float32 logits ``z(x~)`` (N, C) of uint8 ``images`` for each ``eps`` in ``epsilons``
    (one gradient per image, one forward pass per ``eps``; ``eps = 0`` is ``z(x)``). fp32,
    model in eval mode; the model is converted in place as for inference."""
    import torch
    from tqdm import tqdm

    from fastmix.data.inputs import to_model_input
    from fastmix.evaluate.inference import prepare_model, strict_fp32

    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
    model, cl = prepare_model(model, device)
    eps = [float(e) for e in epsilons]
    out: dict[float, list[np.ndarray]] = {e: [] for e in eps}
    bs = int(batch_size)
    bar = tqdm(total=len(images), desc=desc, unit="img", leave=False, disable=not progress)
    with bar, strict_fp32(device):
        for i in range(0, len(images), bs):
            x = to_model_input(np.ascontiguousarray(images[i : i + bs]), device, cl)
            x.requires_grad_(True)
            with torch.enable_grad():
                z = model(x)
                loss = torch.nn.functional.cross_entropy(
                    z / temperature, z.argmax(1), reduction="sum"
                )
                (grad,) = torch.autograd.grad(loss, x)
            step = torch.where(grad >= 0, 1.0, -1.0)
            x = x.detach()
            with torch.no_grad():
                for e in eps:
                    ze = z.detach() if e == 0.0 else model(x - e * step)
                    out[e].append(ze.float().cpu().numpy())
            bar.update(len(x))
    return {e: np.concatenate(v).astype(np.float32, copy=False) for e, v in out.items()}


def choose_epsilon(
    model: Any,
    images: np.ndarray,
    epsilons: Sequence[float] = EPSILONS,
    temperature: float = TEMPERATURE,
    batch_size: int = 500,
    device: str = "cpu",
    *,
    desc: str | None = None,
    progress: bool = False,
) -> tuple[float, dict[float, float]]:
    """The ``eps`` with the largest mean ``S(x~; T)`` over in-distribution ``images`` (the
    first on a tie), and that mean for every candidate (Hsu et al. 2020)."""
    zs = perturbed_logits(
        model, images, epsilons, temperature, batch_size, device, desc=desc, progress=progress
    )
    mean_s = {e: float(-score(z, temperature).mean()) for e, z in zs.items()}
    best = max(mean_s, key=lambda e: (mean_s[e], -e))
    return best, mean_s


DETECTORS.register(
    "odin",
    Detector(
        "odin",
        PAPER,
        FORMULA,
        ("logits", "input gradients"),
        f"{VAL_IMAGES} in-distribution validation images (the perturbation eps)",
        score,
    ),
)
