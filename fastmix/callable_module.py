"""Make a subpackage callable as a function of :mod:`fastmix.api` (``fastmix.train(...)``,
``fastmix.report(...)``): the package stays importable as before, and calling it runs the
API function of the same name (imported on the first call)."""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from fastmix import api

        return getattr(api, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Let the module ``module_name`` be called as ``fastmix.api.<its last name>``."""
    sys.modules[module_name].__class__ = _CallableModule
