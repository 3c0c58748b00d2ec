"""A plugin package as a user writes one: it registers the examples' model (``mlp``),
augmentation (``cutout``) and detector (``cosine``) through fastmix's public points only
(``fastmix.load_plugins`` of the example files, which call ``fastmix.register_*``).
``byo.toml`` is a recipe that uses all three."""

from __future__ import annotations

from pathlib import Path

import fastmix

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RECIPE = Path(__file__).with_name("byo.toml")

fastmix.load_plugins(
    [str(EXAMPLES / f) for f in ("my_model.py", "my_augmentation.py", "my_detector.py")],
    entry_points=False,
)
