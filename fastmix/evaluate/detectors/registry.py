"""The detector registry: every post-hoc OOD detector, with what it uses and what it is fit on.

A detector is registered with :func:`register_detector` (``fastmix.register_detector``) in the
module that implements it: its paper, its formula, what it uses (:data:`USES`: the penultimate
``features``, the classifier ``head``, the ``logits``, ``input gradients``), what it is fit on,
and two pure functions, ``fit(TrainingFeatures) -> fitted`` (training features, their labels and
the head; nothing from OOD data) and ``score(fitted, features) -> (N,)`` anomaly scores (higher =
more anomalous). ``eval.scores``, ``fastmix eval`` and the report's detector table read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastmix.registry import Registry, RegistryError

__all__ = ["DETECTORS", "USES", "Detector", "register_detector"]

USES = ("logits", "features", "head", "input gradients")
FITTED_USES = ("features", "head")  # what a fit/score detector may use


def no_hyperparameters(fitted: Any) -> dict[str, Any]:
    """What a detector without hyperparameters records: nothing."""
    return {}


@dataclass(frozen=True)
class Detector:
    """One registered detector (module docstring). ``fit`` is ``None`` for ODIN, which runs
    the model on perturbed inputs instead (:mod:`fastmix.evaluate.detectors.odin`)."""

    name: str
    paper: str
    formula: str
    uses: tuple[str, ...]
    fit_on: str
    score: Callable[..., Any]
    fit: Callable[..., Any] | None = None
    hyperparameters: Callable[[Any], dict[str, Any]] = no_hyperparameters

    @property
    def kind(self) -> str:
        """What it uses, as the report prints it, e.g. ``"features + head"``."""
        return " + ".join(self.uses)

    @property
    def needs_features(self) -> bool:
        return "features" in self.uses

    @property
    def PAPER(self) -> str:  # noqa: N802 (the detector modules' constant name)
        return self.paper

    @property
    def FORMULA(self) -> str:  # noqa: N802
        return self.formula


DETECTORS: Registry[Detector] = Registry("detector")


def register_detector(
    name: str,
    *,
    paper: str,
    formula: str,
    fit: Callable[..., Any],
    score: Callable[..., Any],
    uses: tuple[str, ...] = ("features",),
    fit_on: str = "penultimate features of the training subset",
    hyperparameters: Callable[[Any], dict[str, Any]] | None = None,
) -> Detector:
    """Register a fit/score detector (module docstring); ``uses`` names what it reads, among
    ``features`` and ``head``. RegistryError for a taken name or another ``uses``."""
    uses = tuple(uses)
    bad = [u for u in uses if u not in FITTED_USES]
    if bad or "features" not in uses:
        raise RegistryError(
            f"detector {name!r}: uses must include 'features' and be among "
            f"{', '.join(FITTED_USES)}, got {', '.join(map(repr, uses))}"
        )
    det = Detector(
        name, paper, formula, uses, fit_on, score, fit, hyperparameters or no_hyperparameters
    )
    return DETECTORS.register(name, det, getattr(fit, "__module__", ""))
