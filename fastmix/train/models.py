"""The models, timm-style: ``forward_features`` (the penultimate feature vector, (B, F)),
``forward_head`` (the final linear layer, features -> logits) and ``get_classifier``.

Every model takes float32 (B, 1, 28, 28) images in [0, 1] (``fastmix.data.inputs``) and does
its own input normalisation, if any, as its first step.

``model.name`` chooses one from the registry :data:`MODELS` (``build_model``); a new model is a
class or factory decorated with ``@register_model("name")`` (``fastmix.register_model``), called
with the keyword arguments ``width`` and ``num_classes`` that its signature accepts. The
built-in ones:

* ``convnet`` (``model.width`` w, default 32): a BatchNorm CNN with a global-average-pool head::

      block(c_in, c_out) = conv3x3 (no bias) -> BatchNorm -> GELU
      (x - 0.5) / 0.5 -> block(1, w) -> maxpool2 -> block(w, 2w) -> block(2w, 2w) -> maxpool2
      -> block(2w, 4w) -> global average pool (4w) -> linear(4w, 10)

* ``convnet_flat``: the same trunk with a spatial head instead of the global average pool:
  flatten (4w x 7 x 7) -> linear(196 w, 10); the average pool throws away *where* the strokes
  are, and with them much of what separates a digit from noise.
* ``lenet`` (w, default 16): conv5x5(1, w) -> maxpool2 -> GELU -> conv5x5(w, 2w) -> maxpool2 ->
  GELU -> flatten (32 w) -> linear(32 w, 128) -> GELU -> dropout 0.25 -> linear(128, 10); no
  normalisation, no BatchNorm. Pooling before the activation keeps GELU at a quarter of the
  positions (the two commute for a monotone activation; GELU is nearly one). The LeNets' 2x2
  max-pools are ``fastmix.train.pool.max_pool2x2`` (equal to ``F.max_pool2d``).
* ``lenet_oe``: the MNIST network of Outlier Exposure (Hendrycks, Mazeika & Dietterich, ICLR
  2019; hendrycks/outlier-exposure ``MNIST/models/convnet.py``), exactly: conv5x5(1, 10) ->
  maxpool2 -> gelu; conv5x5(10, 20) -> Dropout2d(0.5) -> maxpool2 -> gelu; fc 320 -> 50 -> gelu;
  fc 50 -> 10, with ``gelu(x) = sigmoid(1.702 x) x`` and inputs in [0, 1] (no normalisation).
  Parameter names ``conv1``, ``conv2``, ``fc1``, ``fc2`` as there, so its checkpoints load.

Dropout draws its masks from a ``torch.Generator`` the trainer gives each run
(``set_dropout_generator``), so a run's masks do not depend on which other runs train beside it
in the same process; without one, the global generator is used as ``nn.Dropout`` does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fastmix.registry import Registry
from fastmix.train.pool import max_pool2x2

NORM_MEAN = 0.5
NORM_STD = 0.5


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``factory`` (a class or function returning an ``nn.Module``) and
    the width it is meant to be used at (``None``: the factory takes no width)."""

    factory: Callable[..., nn.Module]
    default_width: int | None = None

    def build(self, width: int | None = None, num_classes: int = 10) -> nn.Module:
        """``factory(**kw)`` with those of ``width`` / ``num_classes`` its signature takes."""
        try:
            accepted = inspect.signature(self.factory).parameters
        except (TypeError, ValueError):
            accepted = {}
        kw: dict[str, int] = {}
        if "width" in accepted:
            kw["width"] = int(width if width is not None else self.default_width or 16)
        if "num_classes" in accepted:
            kw["num_classes"] = num_classes
        model = self.factory(**kw)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model factory {self.factory!r} returned {type(model).__name__}")
        return model


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(name: str, *, default_width: int | None = None) -> Callable:
    """Decorator: register a class or factory as ``model.name = name``."""
    return MODELS.decorator(name, lambda fn: ModelSpec(fn, default_width))


class SeededDropout(nn.Module):
    """Inverted dropout (``x * mask / (1 - p)``, mask ~ Bernoulli(1 - p)) with masks drawn from
    ``self.generator``. ``channels=True`` drops whole channels of a (B, C, H, W) map
    (``nn.Dropout2d``)."""

    def __init__(self, p: float, channels: bool = False) -> None:
        super().__init__()
        self.p = float(p)
        self.channels = channels
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = (*x.shape[:2], 1, 1) if self.channels else x.shape
        keep = torch.empty(shape, device=x.device, dtype=x.dtype)
        keep.bernoulli_(1.0 - self.p, generator=self.generator)
        return x * keep / (1.0 - self.p)


def set_dropout_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Make every ``SeededDropout`` of ``model`` draw from ``generator``."""
    for m in model.modules():
        if isinstance(m, SeededDropout):
            m.generator = generator


def sigmoid_gelu(x: torch.Tensor) -> torch.Tensor:
    """The OE paper's GELU approximation, ``sigmoid(1.702 x) x``."""
    return torch.sigmoid(1.702 * x) * x


class Classifier(nn.Module):
    """A penultimate feature extractor followed by one linear layer: subclasses define
    ``forward_features`` and ``get_classifier``."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_classifier(self) -> nn.Linear:
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.get_classifier()(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()
    )


class ConvNet(Classifier):
    """BatchNorm CNN for 28x28 grayscale images (module docstring); ``flat_head`` swaps the
    global average pool for a flatten over the 7x7 map."""

    def __init__(self, width: int = 32, num_classes: int = 10, flat_head: bool = False) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(1, w),
            nn.MaxPool2d(2),
            _block(w, 2 * w),
            _block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            _block(2 * w, 4 * w),
        )
        self.flat_head = flat_head
        self.head = nn.Linear(4 * w * (49 if flat_head else 1), num_classes)
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features((x - NORM_MEAN) / NORM_STD)
        return h.flatten(1) if self.flat_head else h.mean(dim=(2, 3))

    def get_classifier(self) -> nn.Linear:
        return self.head


class LeNet(Classifier):
    """Two 5x5 convolutions and a fully connected head (module docstring)."""

    def __init__(
        self, width: int = 16, num_classes: int = 10, hidden: int = 128, dropout: float = 0.25
    ) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(1, w, 5)
        self.conv2 = nn.Conv2d(w, 2 * w, 5)
        self.fc1 = nn.Linear(2 * w * 16, hidden)
        self.drop = SeededDropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(max_pool2x2(self.conv1(x)))
        x = F.gelu(max_pool2x2(self.conv2(x)))
        return self.drop(F.gelu(self.fc1(x.flatten(1))))

    def get_classifier(self) -> nn.Linear:
        return self.fc2


class LeNetOE(Classifier):
    """The Outlier Exposure paper's MNIST ConvNet (module docstring), same parameter names."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = SeededDropout(0.5, channels=True)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, num_classes)
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = sigmoid_gelu(max_pool2x2(self.conv1(x)))
        x = sigmoid_gelu(max_pool2x2(self.conv2_drop(self.conv2(x))))
        return sigmoid_gelu(self.fc1(x.flatten(1)))

    def get_classifier(self) -> nn.Linear:
        return self.fc2


@register_model("convnet", default_width=32)
def _convnet(width: int = 32, num_classes: int = 10) -> nn.Module:
    return ConvNet(width, num_classes)


@register_model("convnet_flat", default_width=16)
def _convnet_flat(width: int = 16, num_classes: int = 10) -> nn.Module:
    return ConvNet(width, num_classes, flat_head=True)


@register_model("lenet", default_width=16)
def _lenet(width: int = 16, num_classes: int = 10) -> nn.Module:
    return LeNet(width, num_classes)


@register_model("lenet_oe", default_width=10)
def _lenet_oe(num_classes: int = 10) -> nn.Module:
    return LeNetOE(num_classes)


def build_model(name: str = "convnet", width: int = 32, num_classes: int = 10) -> nn.Module:
    """The model for a config's ``[model]`` section (a registry name; RegistryError listing
    the valid ones for another)."""
    return MODELS[name].build(width, num_classes)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: nn.Module, size: int = 28) -> int:
    """Forward FLOPs for one image: 2 x the multiply-accumulates of the convolutions and
    linear layers (pooling, activations and normalisation are not counted)."""
    total = 0

    def hook(mod: nn.Module, inp, out) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2 * k * out.shape[1] * out.shape[2] * out.shape[3]
        elif isinstance(mod, nn.Linear):
            total += 2 * mod.in_features * mod.out_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total
