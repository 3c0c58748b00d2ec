"""Baselines for the loader benchmark: augmentation the way the PixMix code does it.

A ``torch.utils.data.Dataset`` that augments one sample per ``__getitem__`` call with Pillow ops
and NumPy mixing (andyzoujm/pixmix ``cifar.py`` / ``pixmix_utils.py``: ``PixMixDataset`` +
``pixmix()`` + ``augment_input()``, ops on PIL images with ``resample=BILINEAR``), wrapped in a
``torch.utils.data.DataLoader`` with worker processes (2 here, one per core), shuffling, and the
reference's worker seeding. The mixing pictures are already in memory as a uint8 NumPy bank
(the reference reads an ImageFolder from disk, which would only make it slower). Also a
per-sample salt-and-pepper baseline (scikit-image ``random_noise`` 's&p' logic in NumPy) and a
no-augmentation baseline (uint8 -> float tensor per sample).

Output per batch: float32 (B, 1, 28, 28) in [0, 1] and int64 labels, like fastmix's loaders.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps
from torch.utils.data import DataLoader, Dataset

IMAGE_SIZE = 28


# ---------------------------------------------------------------- pixmix_utils.py, IMAGE_SIZE 28
def _int_parameter(level: float, maxval: float) -> int:
    return int(level * maxval / 10)


def _float_parameter(level: float, maxval: float) -> float:
    return float(level) * maxval / 10.0


def _sample_level(n: float) -> float:
    return np.random.uniform(low=0.1, high=n)


def autocontrast(img, _):
    return ImageOps.autocontrast(img)


def equalize(img, _):
    return ImageOps.equalize(img)


def posterize(img, level):
    return ImageOps.posterize(img, 4 - _int_parameter(_sample_level(level), 4))


def rotate(img, level):
    degrees = _int_parameter(_sample_level(level), 30)
    if np.random.uniform() > 0.5:
        degrees = -degrees
    return img.rotate(degrees, resample=Image.BILINEAR)


def solarize(img, level):
    return ImageOps.solarize(img, 256 - _int_parameter(_sample_level(level), 256))


def _affine(img, data):
    return img.transform((IMAGE_SIZE, IMAGE_SIZE), Image.AFFINE, data, resample=Image.BILINEAR)


def shear_x(img, level):
    s = _float_parameter(_sample_level(level), 0.3)
    return _affine(img, (1, -s if np.random.uniform() > 0.5 else s, 0, 0, 1, 0))


def shear_y(img, level):
    s = _float_parameter(_sample_level(level), 0.3)
    return _affine(img, (1, 0, 0, -s if np.random.uniform() > 0.5 else s, 1, 0))


def translate_x(img, level):
    t = _int_parameter(_sample_level(level), IMAGE_SIZE / 3)
    return _affine(img, (1, 0, -t if np.random.random() > 0.5 else t, 0, 1, 0))


def translate_y(img, level):
    t = _int_parameter(_sample_level(level), IMAGE_SIZE / 3)
    return _affine(img, (1, 0, 0, 0, 1, -t if np.random.random() > 0.5 else t))


def _enhance(cls):
    def op(img, level):
        return cls(img).enhance(_float_parameter(_sample_level(level), 1.8) + 0.1)

    return op


AUGMENTATIONS = [autocontrast, equalize, posterize, rotate, solarize, shear_x, shear_y,
                 translate_x, translate_y]  # fmt: skip
AUGMENTATIONS_ALL = AUGMENTATIONS + [_enhance(c) for c in (ImageEnhance.Color,
    ImageEnhance.Contrast, ImageEnhance.Brightness, ImageEnhance.Sharpness)]  # fmt: skip


def _get_ab(beta: float) -> tuple[np.float32, np.float32]:
    if np.random.random() < 0.5:
        a = np.float32(np.random.beta(beta, 1))
        b = np.float32(np.random.beta(1, beta))
    else:
        a = 1 + np.float32(np.random.beta(1, beta))
        b = -np.float32(np.random.beta(1, beta))
    return a, b


def _add(img1, img2, beta):
    a, b = _get_ab(beta)
    img1, img2 = img1 * 2 - 1, img2 * 2 - 1
    return (a * img1 + b * img2 + 1) / 2


def _multiply(img1, img2, beta):
    a, b = _get_ab(beta)
    img1, img2 = img1 * 2, img2 * 2
    return (img1**a) * (np.clip(img2, np.float32(1e-37), None) ** b) / 2


def _tensorize(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32) / np.float32(255)


# ---------------------------------------------------------------- datasets
class PixMixBaseline(Dataset):
    """cifar.py's ``PixMixDataset``: one random mixing picture (random 28x28 crop of a random
    bank picture) and ``pixmix()`` per sample, np.random as the source of randomness."""

    def __init__(self, images, labels, bank, k=4, beta=3.0, severity=3.0, all_ops=False):
        self.images, self.labels, self.bank = images, labels, bank
        self.k, self.beta, self.severity = k, beta, severity
        self.ops = AUGMENTATIONS_ALL if all_ops else AUGMENTATIONS

    def __len__(self) -> int:
        return len(self.images)

    def _augment(self, img: Image.Image) -> Image.Image:
        op = self.ops[np.random.randint(len(self.ops))]
        return op(img.copy(), self.severity)

    def __getitem__(self, i):
        orig = Image.fromarray(self.images[i])
        m = self.bank[np.random.randint(len(self.bank))]
        cy = np.random.randint(m.shape[0] - IMAGE_SIZE + 1)
        cx = np.random.randint(m.shape[1] - IMAGE_SIZE + 1)
        crop = m[cy : cy + IMAGE_SIZE, cx : cx + IMAGE_SIZE]
        mixing_pic = Image.fromarray(np.ascontiguousarray(crop))
        if np.random.random() < 0.5:
            mixed = _tensorize(self._augment(orig))
        else:
            mixed = _tensorize(orig)
        for _ in range(np.random.randint(self.k + 1)):
            if np.random.random() < 0.5:
                partner = _tensorize(self._augment(orig))
            else:
                partner = _tensorize(mixing_pic)
            mix = _add if np.random.random() < 0.5 else _multiply
            mixed = np.clip(mix(mixed, partner, self.beta), 0, 1)
        return torch.from_numpy(mixed[None]), int(self.labels[i])


class SaltPepperBaseline(Dataset):
    """Per-sample scikit-image-style 's&p': flip with p=amount, salt vs pepper 50/50."""

    def __init__(self, images, labels, amount=0.1):
        self.images, self.labels, self.amount = images, labels, amount

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        out = self.images[i].astype(np.float32) / np.float32(255)
        flipped = np.random.random(out.shape) < self.amount
        salted = np.random.random(out.shape) < 0.5
        out[flipped & salted] = 1.0
        out[flipped & ~salted] = 0.0
        return torch.from_numpy(out[None]), int(self.labels[i])


class PlainBaseline(Dataset):
    """No augmentation: uint8 -> float32 tensor per sample (torchvision ToTensor's job)."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        x = torch.from_numpy(self.images[i]).to(torch.float32).div_(255.0)
        return x[None], int(self.labels[i])


def _worker_init(_worker_id: int) -> None:
    # cifar.py's fix for identical NumPy streams in forked workers.
    ss = np.random.SeedSequence([torch.initial_seed()])
    np.random.seed(ss.generate_state(4))


def make_baseline_loader(
    variant: str,
    images: np.ndarray,
    labels: np.ndarray,
    bank: np.ndarray | None = None,
    batch_size: int = 512,
    num_workers: int = 2,
    sp_amount: float = 0.1,
    seed: int = 0,
) -> DataLoader:
    """A torch DataLoader over a per-sample baseline dataset (variant "none" | "sp" | "pixmix"),
    shuffled, ``num_workers`` persistent worker processes, full batches only."""
    if variant == "pixmix":
        ds = PixMixBaseline(images, labels, bank)
    elif variant == "sp":
        ds = SaltPepperBaseline(images, labels, sp_amount)
    elif variant == "none":
        ds = PlainBaseline(images, labels)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True,
                      num_workers=num_workers, persistent_workers=num_workers > 0,
                      worker_init_fn=_worker_init, generator=g)  # fmt: skip
