"""The report: tables (report.md) and figures (PNG) from evaluated runs.

The package is also callable: ``fastmix.report(runs, *, out=...)`` is :func:`fastmix.api.report`.
"""

from __future__ import annotations

from fastmix.callable_module import make_callable

make_callable(__name__)
