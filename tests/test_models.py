"""The models (``fastmix.train.models``) and the OE paper's preset: the OE network's exact
shapes and parameter names, counts and FLOPs against hand counts, every model training a step
on every variant, and ``--config oe_paper`` resolving to the paper's recipe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastmix.config import VARIANTS, load_config
from fastmix.train.models import (
    MODELS,
    LeNetOE,
    build_model,
    count_params,
    flops_per_image,
)


class OEPaperConvNet(nn.Module):
    """The Outlier Exposure repository's MNIST network, written here from its published
    description (hendrycks/outlier-exposure MNIST/models/convnet.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        def gelu(t):
            return torch.sigmoid(1.702 * t) * t

        x = gelu(F.max_pool2d(self.conv1(x), 2))
        x = gelu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        return self.fc2(gelu(self.fc1(x.view(-1, 320))))


def test_lenet_oe_is_the_oe_papers_network():
    """Same parameter names and shapes; a state_dict of the paper's network loads and gives the
    same logits (eval mode)."""
    ref = OEPaperConvNet()
    ours = LeNetOE()
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert shapes == {
        "conv1.weight": (10, 1, 5, 5),
        "conv1.bias": (10,),
        "conv2.weight": (20, 10, 5, 5),
        "conv2.bias": (20,),
        "fc1.weight": (50, 320),
        "fc1.bias": (50,),
        "fc2.weight": (10, 50),
        "fc2.bias": (10,),
    }
    ours.load_state_dict(ref.state_dict())
    x = torch.rand(8, 1, 28, 28)
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x), rtol=0, atol=0)


def test_params_and_flops_of_lenet_oe_by_hand():
    m = build_model("lenet_oe")
    # weights + biases: conv1 10*1*25+10, conv2 20*10*25+20, fc1 320*50+50, fc2 50*10+10
    assert count_params(m) == 260 + 5020 + 16050 + 510 == 21840
    # 2 x MACs: conv1 24x24 outputs x 10 channels x 25; conv2 8x8 x 20 x 250; fc1; fc2
    assert flops_per_image(m) == 2 * (24 * 24 * 10 * 25 + 8 * 8 * 20 * 250 + 320 * 50 + 50 * 10)


# fastmix's own models (a plugin another test module loads during collection is not one)
BUILT_IN = [n for n in MODELS if MODELS._origin[n].startswith("fastmix.")]


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_model_has_features_and_a_linear_head(name):
    m = build_model(name, MODELS[name].default_width).eval()
    x = torch.rand(4, 1, 28, 28)
    f = m.forward_features(x)
    assert f.ndim == 2 and f.shape[1] == m.get_classifier().in_features
    torch.testing.assert_close(m(x), m.get_classifier()(f), rtol=0, atol=0)


def test_oe_paper_preset_is_the_papers_recipe():
    base, oe = (load_config(v, ["oe_paper"]) for v in ("base", "base_oe"))
    t = base["train"]
    assert base["model"]["name"] == "lenet_oe"
    assert (t["batch_size"], t["lr"], t["momentum"], t["weight_decay"], t["epochs"]) == (
        50,
        0.01,
        0.9,
        0.0,
        10,
    )
    assert (t["schedule"], t["lr_min"], t["precision"]) == ("cosine", 1e-6, "fp32")
    assert oe["oe"]["enabled"] and oe["oe"]["ratio"] == 2 and oe["oe"]["lambda"] == 0.5
    assert base["augment"]["kind"] == "none" and base["variant"]["presets"] == ["oe_paper"]


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_model_trains_a_step_on_every_variant(name, data_dir, tmp_path):
    from fastmix.train.trainer import RunRequest, train_runs

    extra = [
        f"data.dir='{data_dir}'",
        f"model.name='{name}'",
        "model.width=4",
        "train.max_steps=1",
        "train.device='cpu'",
    ]
    requests = [RunRequest(load_config(v, ["smoke"], extra), tmp_path / v) for v in VARIANTS]
    results = train_runs(requests, progress=False)
    assert [r.steps for r in results] == [1] * len(VARIANTS)
    assert all((tmp_path / v / "done.json").is_file() for v in VARIANTS)
