"""Evaluate a model fastmix did not train: any ``torch.nn.Module`` that maps float32
(N, 1, 28, 28) images in [0, 1] to logits (N, C).

:func:`evaluate_model` runs exactly the evaluation of ``fastmix eval`` (same sets, sections,
scores and detectors) under a fastmix config (the defaults unless given) and writes
``results.json``, ``logits.npz``, ``features.npz`` and the ``config.toml`` it used into
``out``, so ``fastmix report`` puts the folder beside fastmix's own runs, named after it.

Features for the feature detectors (:class:`FeatureModel`): ``model.forward_features`` /
``model.forward_head`` when the model has both (timm's convention; a feature map is
flattened), with ``model.get_classifier()`` as the head when it is an ``nn.Linear``;
otherwise the input of the model's last ``nn.Linear`` (in ``named_modules`` order), taken by a
forward hook, and that layer as the head. ``results.json`` records which
(``features.source``). ViM and ReAct assume the logits are ``W f + b`` of that head.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import torch

from fastmix.config import Config, dumps, load_config
from fastmix.errors import ConfigError, DataError

__all__ = ["FeatureModel", "evaluate_model", "load_factory"]


def _last_linear(model: torch.nn.Module) -> tuple[str, torch.nn.Linear] | None:
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    return found[-1] if found else None


class FeatureModel(torch.nn.Module):
    """``model`` with ``forward_features``, ``forward_head`` and ``get_classifier`` (module
    docstring); ``source`` says where the features come from (``None``: nowhere, the model has
    no ``nn.Linear``). Safe to call from several threads at once (the capture is per thread)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.split = hasattr(model, "forward_features") and hasattr(model, "forward_head")
        last = _last_linear(model)
        own = getattr(model, "get_classifier", None)
        head = own() if callable(own) else None
        self.head = head if isinstance(head, torch.nn.Linear) else (last[1] if last else None)
        self._local = threading.local()
        self.source: str | None = None
        if self.split:
            self.source = "forward_features / forward_head"
        elif last is not None:
            self.source = f"input of the last nn.Linear ({last[0]}), by a forward hook"
            last[1].register_forward_pre_hook(self._capture)

    def _capture(self, module: torch.nn.Module, args: tuple) -> None:
        self._local.features = args[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:
            return self.inner.forward_features(x).flatten(1)
        if self.source is None:
            raise ValueError(f"{type(self.inner).__name__} has no nn.Linear layer")
        self._local.logits = self.inner(x)
        f = self._local.features.flatten(1)
        self._local.key = f
        return f

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        if self.split:
            return self.inner.forward_head(f)
        if getattr(self._local, "key", None) is f:  # the features of this thread's last call
            return self._local.logits
        return self.head(f)

    def get_classifier(self) -> torch.nn.Linear:
        if self.head is None:
            raise ValueError(f"{type(self.inner).__name__} has no linear head")
        return self.head


def load_factory(spec: str) -> Any:
    """``MODULE:FACTORY`` (a module name or a ``.py`` path) -> ``FACTORY()``, the user's model
    before its weights are loaded; ConfigError naming the spec when it cannot be imported or
    called."""
    from fastmix.registry import import_module_or_file

    module, _, attr = spec.rpartition(":")
    if not module or not attr:
        raise ConfigError(f"--model {spec!r}: expected MODULE:FACTORY")
    try:
        factory = getattr(import_module_or_file(module), attr)
        return factory()
    except Exception as e:  # user code: one line naming it
        raise ConfigError(f"--model {spec}: {type(e).__name__}: {e}".splitlines()[0]) from None


def _eval_config(data: str | os.PathLike, config: Config | None, name: str, model: Any) -> Config:
    cfg = config if config is not None else load_config()
    cfg = {k: dict(v) for k, v in cfg.items()}
    cfg["data"]["dir"] = str(data)
    cfg["model"] = {"name": type(model).__name__, "width": 0}
    cfg["variant"] = {**cfg.get("variant", {}), "name": name, "presets": []}
    return cfg


def evaluate_model(
    model: Any,
    data: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    config: Config | None = None,
    name: str | None = None,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on the betons in ``data`` as ``fastmix eval`` evaluates a run.

    ``config``: a fastmix config (``fastmix.load_config(...)``) for the sets, scores and
    detectors (default: the defaults); ``out``: the folder to write results.json, logits.npz,
    features.npz and config.toml into (nothing is written without it); ``name``: the run's name
    in the results and the report (default: ``out``'s folder name, else the model's class).
    Returns the results dict (schema: :mod:`fastmix.evaluate.results`), with
    ``features.source`` saying where the features came from and ``source = "external"``.
    """
    from fastmix.evaluate.detectors import FEATURE_DETECTORS
    from fastmix.evaluate.evaluate import evaluate_loaded, write_results
    from fastmix.evaluate.inference import resolve_inference
    from fastmix.files import atomic_write
    from fastmix.runtime import set_torch_threads

    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"evaluate_model: expected a torch.nn.Module, got {type(model).__name__}")
    if not Path(data).is_dir():
        raise DataError(f"{data}: betons folder not found")
    out_dir = Path(out) if out is not None else None
    name = name or (out_dir.resolve().name if out_dir is not None else type(model).__name__)
    cfg = _eval_config(data, config, name, model)
    device, precision = resolve_inference(device, precision)
    t0 = time.perf_counter()
    set_torch_threads()  # every usable core (importing ffcv set this thread to 1)
    wrapped = FeatureModel(model.eval())
    if wrapped.source is None:  # no features to take: the feature detectors cannot run
        cfg["eval"]["features"] = False
        cfg["eval"]["scores"] = [s for s in cfg["eval"]["scores"] if s not in FEATURE_DETECTORS]
    results, inf, plan = evaluate_loaded(
        wrapped, cfg, name, data, None, seed, "given", device, precision, batch_size, progress
    )
    results["source"] = "external"
    if "features" in results:
        results["features"]["source"] = wrapped.source
    results["seconds"] = round(time.perf_counter() - t0, 3)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(out_dir / "config.toml", dumps(cfg))
        write_results(out_dir, results, inf, plan.save_features)
    return results
