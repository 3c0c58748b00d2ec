"""Named registries of models, augmentation kinds, training losses and detectors, and plugins.

Each registry lives next to the things it holds (``fastmix.train.models``,
``fastmix.augment.kinds``, ``fastmix.train.losses``, ``fastmix.evaluate.detectors.registry``);
the CLI's choices, the config checks and the report read them, so a new model, augmentation or
detector is one new file that registers it. User code is loaded with ``--plugin MODULE``
(repeatable; :func:`load_plugins`) and from the entry-point group :data:`ENTRY_POINT_GROUP`, so
a separate pip package can add methods.

Errors are one line each (:class:`RegistryError`, a :class:`~fastmix.errors.ConfigError`): a
duplicate name, an unknown name with the valid ones listed, a plugin that fails to import.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Generic, TypeVar

from fastmix.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "Registry", "RegistryError", "load_plugins", "loaded_plugins"]

ENTRY_POINT_GROUP = "fastmix.plugins"
T = TypeVar("T")
_LOADED: list[str] = []  # plugin modules (or .py files) imported by load_plugins, in order
_KEYS: set[str] = set()  # the same, module names or resolved file paths


class RegistryError(ConfigError):
    """A duplicate or unknown registry name, or a plugin that failed to import."""


class Registry(Mapping[str, T], Generic[T]):
    """Name -> item, in registration order; a read-only mapping plus :meth:`register`."""

    instances: list[Registry] = []  # every registry made, in order (tests restore their state)

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        Registry.instances.append(self)

    def register(self, name: str, item: T, origin: str = "") -> T:
        """Add ``item`` as ``name``; RegistryError if the name is taken."""
        if not isinstance(name, str) or not name.isidentifier():
            raise RegistryError(f"{self.kind} name must be an identifier, got {name!r}")
        if name in self._items:
            raise RegistryError(
                f"duplicate {self.kind} {name!r}: already registered by {self._origin[name]}"
            )
        self._items[name] = item
        self._origin[name] = origin or getattr(item, "__module__", "?")
        return item

    def decorator(self, name: str, wrap: Callable[[Callable], T]) -> Callable[[Callable], Callable]:
        """A decorator registering ``wrap(fn)`` as ``name`` and returning ``fn`` unchanged."""

        def deco(fn: Callable) -> Callable:
            self.register(name, wrap(fn), getattr(fn, "__module__", ""))
            return fn

        return deco

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise RegistryError(self.unknown(name)) from None

    def unknown(self, name: object, where: str = "") -> str:
        """The one-line message for an unknown name."""
        prefix = f"{where}: " if where else ""
        return f"{prefix}unknown {self.kind} {name!r}; valid: {', '.join(self._items)}"

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)


def import_module_or_file(module: str) -> ModuleType:
    """A module by name, or a ``.py`` file by path (imported as ``fastmix_plugin_<stem>``)."""
    if not module.endswith(".py"):
        return importlib.import_module(module)
    path = Path(module)
    name = f"fastmix_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"no such file {module}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _import(module: str) -> None:
    try:
        import_module_or_file(module)
    except Exception as e:  # any failure of user code: one line naming the module
        raise RegistryError(
            f"plugin {module!r} failed to import: {type(e).__name__}: {e}".splitlines()[0]
        ) from None


def load_plugins(modules: Sequence[str] = (), entry_points: bool = True) -> list[str]:
    """Import the plugin ``modules`` (``--plugin``: a module name, or the path of a ``.py``
    file) and, with ``entry_points``, every module of
    the entry-point group ``fastmix.plugins``; each import registers what the module defines.
    A module is imported once per process. Returns the plugin modules loaded so far (a
    ``.py`` file by its absolute path, so a run's config.toml loads it from any folder)."""
    names = list(modules)
    if entry_points:
        names += [ep.value.split(":")[0] for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    for module in names:
        if not isinstance(module, str) or not module:
            raise RegistryError(f"plugin: expected a module name, got {module!r}")
        key = str(Path(module).resolve()) if module.endswith(".py") else module
        if key not in _KEYS:
            _import(module)
            _KEYS.add(key)
            _LOADED.append(key)
    return list(_LOADED)


def loaded_plugins() -> list[str]:
    """The plugin modules :func:`load_plugins` imported, in order."""
    return list(_LOADED)
