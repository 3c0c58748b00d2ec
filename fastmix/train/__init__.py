"""Training: models, the Outlier Exposure loss, the training loop, run directories, checkpoints.

The package is also callable: ``fastmix.train(variant, data, *, out=...)`` is
:func:`fastmix.api.train`.
"""

from __future__ import annotations

from fastmix.callable_module import make_callable

make_callable(__name__)
