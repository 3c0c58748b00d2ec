"""Bring your own model: a two-hidden-layer perceptron, registered as ``model.name = "mlp"``.

    fastmix train --plugin examples/my_model.py --set model.name='"mlp"' --set model.width=256

``@fastmix.register_model`` is all it takes: the registry calls the class with the
``width`` and ``num_classes`` its signature accepts. The model takes float32 (B, 1, 28, 28)
images in [0, 1]. ``forward_features`` (the penultimate vector), ``forward_head`` and
``get_classifier`` are optional; with them the feature detectors (Mahalanobis, KNN, ViM,
ReAct, ...) read those features; without them, fastmix takes the input of the last
``nn.Linear``.
"""

from __future__ import annotations

import torch
from torch import nn

import fastmix


@fastmix.register_model("mlp", default_width=256)
class MLP(nn.Module):
    """flatten (784) -> linear(784, w) -> GELU -> linear(w, w) -> GELU -> linear(w, 10)."""

    def __init__(self, width: int = 256, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(28 * 28, width),
            nn.GELU(),
            nn.Linear(width, width),
            nn.GELU(),
        )
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def get_classifier(self) -> nn.Linear:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
