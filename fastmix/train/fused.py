"""G independent LeNets as one network: the horizontal fusion candidate of the trainer.

Model g sees only its own input channel and its own weights:

* conv1: ``Conv2d(G, G*w, 5, groups=G)``, model g's filters in output channels
  ``[g*w, (g+1)*w)``, reading input channel g (its own view of the batch);
* conv2: ``Conv2d(G*w, G*2w, 5, groups=G)``, group g reading only model g's channels;
* fc1 and fc2: batched matrix products ``(G, B, in) @ (G, in, out) + (G, 1, out)``.

Summing the G cross-entropies gives each model exactly its own gradient (the other terms do
not depend on its weights), so G SGD steps on the fused network are G separate steps, up to
the rounding of a different kernel. Grouped convolutions were proposed in AlexNet (Krizhevsky
et al., 2012); horizontal fusion of independent small models is HFTA (Wang et al., MLSys 2021).
Whether it pays is a measurement (``fastmix bench train``): the trainer steps separate models
unless it does.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastmix.train.models import LeNet


class FusedLeNet(nn.Module):
    """``len(models)`` LeNets of one width, fused (module docstring); weights copied in."""

    def __init__(self, models: list[LeNet]) -> None:
        super().__init__()
        g = len(models)
        w = models[0].conv1.out_channels
        hidden = models[0].fc1.out_features
        self.groups, self.dropout = g, models[0].drop.p
        self.conv1 = nn.Conv2d(g, g * w, 5, groups=g)
        self.conv2 = nn.Conv2d(g * w, g * 2 * w, 5, groups=g)
        self.fc1_weight = nn.Parameter(torch.empty(g, 2 * w * 16, hidden))
        self.fc1_bias = nn.Parameter(torch.empty(g, 1, hidden))
        self.fc2_weight = nn.Parameter(torch.empty(g, hidden, models[0].num_classes))
        self.fc2_bias = nn.Parameter(torch.empty(g, 1, models[0].num_classes))
        with torch.no_grad():
            self.conv1.weight.copy_(torch.cat([m.conv1.weight for m in models]))
            self.conv1.bias.copy_(torch.cat([m.conv1.bias for m in models]))
            self.conv2.weight.copy_(torch.cat([m.conv2.weight for m in models]))
            self.conv2.bias.copy_(torch.cat([m.conv2.bias for m in models]))
            self.fc1_weight.copy_(torch.stack([m.fc1.weight.T for m in models]))
            self.fc1_bias.copy_(torch.stack([m.fc1.bias[None] for m in models]))
            self.fc2_weight.copy_(torch.stack([m.fc2.weight.T for m in models]))
            self.fc2_bias.copy_(torch.stack([m.fc2.bias[None] for m in models]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, G, 28, 28), channel g the batch model g sees -> logits (G, B, classes)."""
        b = x.shape[0]
        x = F.gelu(F.max_pool2d(self.conv1(x), 2))
        x = F.gelu(F.max_pool2d(self.conv2(x), 2))
        x = x.reshape(b, self.groups, -1).transpose(0, 1)  # (G, B, 2w*16), LeNet's flatten order
        x = F.gelu(torch.baddbmm(self.fc1_bias, x, self.fc1_weight))
        x = F.dropout(x, self.dropout, self.training)
        return torch.baddbmm(self.fc2_bias, x, self.fc2_weight)

    def decay_groups(self, weight_decay: float) -> list[dict]:
        """SGD parameter groups as each LeNet's run has them: decay on weights, not biases."""
        weights = [self.conv1.weight, self.conv2.weight, self.fc1_weight, self.fc2_weight]
        biases = [self.conv1.bias, self.conv2.bias, self.fc1_bias, self.fc2_bias]
        return [
            {"params": weights, "weight_decay": weight_decay},
            {"params": biases, "weight_decay": 0.0},
        ]

    def state_of(self, g: int) -> dict[str, torch.Tensor]:
        """Model g's weights under LeNet's names (``LeNet.load_state_dict`` takes them)."""
        w = self.conv1.out_channels // self.groups
        c1 = slice(g * w, (g + 1) * w)
        c2 = slice(g * 2 * w, (g + 1) * 2 * w)
        return {
            "conv1.weight": self.conv1.weight[c1],
            "conv1.bias": self.conv1.bias[c1],
            "conv2.weight": self.conv2.weight[c2],
            "conv2.bias": self.conv2.bias[c2],
            "fc1.weight": self.fc1_weight[g].T,
            "fc1.bias": self.fc1_bias[g, 0],
            "fc2.weight": self.fc2_weight[g].T,
            "fc2.bias": self.fc2_bias[g, 0],
        }
