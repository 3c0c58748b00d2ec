"""The sets an evaluation reads: betons of one data folder, checked against ``manifest.json``.

Every beton is opened only through :func:`fastmix.converters.build.manifest_beton_path` (a path
inside the data folder, with the recorded size) and its bytes are checked against the sha256
that ``fastmix convert`` recorded before they are read. The hash is computed once per process
and file version (path, size, mtime): evaluating six runs hashes each beton once.

The manifest also says where a set comes from: :func:`mnist_c_origin` (official or regenerated
MNIST-C) and :func:`seen_in_training` (whether an OOD set shares its distribution family with
the Outlier Exposure source a model was trained on).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastmix.converters.mnist_c import CORRUPTIONS as MNIST_C_CORRUPTIONS
from fastmix.errors import DataError

__all__ = [
    "MNIST_C_CORRUPTIONS",
    "corrupted_names",
    "id_title",
    "EvalSets",
    "load_eval_sets",
    "mnist_c_origin",
    "seen_in_training",
    "verify_sha256",
]


ID_TITLES = {
    "mnist_test": "MNIST",
    "fmnist_test": "Fashion-MNIST",
    "kmnist_test": "KMNIST",
    "notmnist_test": "notMNIST",
}


def corrupted_names(prefix: str = "mnist_c") -> list[str]:
    """The 15 corrupted betons of a -C set: ``<prefix>/<corruption>`` (MNIST-C's order)."""
    return [f"{prefix}/{c}" for c in MNIST_C_CORRUPTIONS]


def id_title(test_set: str) -> str:
    """How reports name a study's in-distribution set (its test beton's family)."""
    return ID_TITLES.get(test_set, test_set)


# (resolved path, size, mtime_ns) -> sha256 of the file's bytes, for this process
_DIGESTS: dict[tuple[str, int, int], str] = {}


class EvalSets(dict):
    """``name -> (images uint8 (N, 28, 28), labels int64 (N,))`` for one data directory.

    ``unavailable`` maps each requested but missing set to the reason; ``manifest`` is the data
    directory's ``manifest.json``.  Pass one instance (through ``sets_cache``) to several
    :func:`fastmix.evaluate.evaluate.evaluate_run` calls so the betons are read once.
    """

    def __init__(self, data_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.manifest = manifest
        self.unavailable: dict[str, str] = {}

    def entry(self, name: str) -> dict[str, Any]:
        """The manifest entry of beton ``name`` ({} when the manifest does not list it)."""
        return self.manifest.get("betons", {}).get(name, {})


def verify_sha256(path: Path, name: str, entry: dict[str, Any], data_dir: Path) -> None:
    """DataError unless ``path`` hashes to the sha256 manifest entry ``name`` records.

    The digest is cached per (path, size, mtime) for the life of the process, so a beton is
    hashed once however many runs read it; a rewritten file has a new mtime and is hashed
    again."""
    from fastmix.converters.beton import sha256_file
    from fastmix.converters.build import MANIFEST

    expected = entry.get("sha256")
    if not isinstance(expected, str) or not expected:
        raise DataError(
            f"{data_dir / MANIFEST}: entry {name!r} records no sha256 for {path.name}, so its "
            f"bytes cannot be checked. Re-run `fastmix convert --out {data_dir}`"
        )
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        digest = _DIGESTS[key] = sha256_file(path)
    if digest != expected:
        raise DataError(
            f"{path}: sha256 {digest}, but {data_dir / MANIFEST} entry {name!r} records "
            f"{expected!r}: the beton changed after `fastmix convert` wrote it. Re-run "
            f"`fastmix convert --out {data_dir}`"
        )


def _open_sets(data_dir: Path, into: EvalSets | None) -> EvalSets:
    from fastmix.converters.build import load_manifest

    if not data_dir.is_dir():
        raise DataError(
            f"{data_dir}: data folder not found; build it with `fastmix convert --out {data_dir}`"
            " or pass --data DIR"
        )
    if into is None:
        return EvalSets(data_dir, load_manifest(data_dir))
    if into.data_dir.resolve() != data_dir.resolve():
        raise ValueError(f"sets cache holds {into.data_dir}, not {data_dir}")
    return into


def load_eval_sets(
    data_dir: str | os.PathLike,
    names: Iterable[str],
    required: Iterable[str] = ("mnist_test", "mnist_val"),
    into: EvalSets | None = None,
) -> EvalSets:
    """Read the betons ``names`` (and ``required``) of ``data_dir``, each once.

    A set is available when ``manifest.json`` lists it and its file exists.  Missing sets are
    recorded in ``.unavailable`` (name -> reason), except the ``required`` ones, which raise
    :class:`DataError` naming the folder and the fix.  A beton whose size or sha256 differs
    from its manifest entry is a DataError naming the beton and the entry.  ``into`` (an
    :class:`EvalSets` of the same folder) is filled in place and returned; sets already in it
    are not read again.
    """
    from fastmix.converters.beton import read_beton_arrays
    from fastmix.converters.build import MANIFEST, manifest_beton_path

    data_dir = Path(data_dir)
    required = tuple(required)
    sets = _open_sets(data_dir, into)
    for name in dict.fromkeys([*required, *names]):
        if name in sets or name in sets.unavailable:
            continue
        entry = sets.entry(name)
        path = manifest_beton_path(data_dir, name, entry) if entry else None
        if path is None:
            why = f"not in {MANIFEST}"
        elif not path.is_file():
            why = f"file {entry.get('file')} missing"
        else:
            why = ""
        if why:
            if name in required:
                raise DataError(
                    f"{data_dir}: required set {name} is unavailable ({why}); build it with "
                    f"`fastmix convert --out {data_dir}`"
                )
            sets.unavailable[name] = why
            continue
        verify_sha256(path, name, entry, data_dir)
        images, labels = read_beton_arrays(path)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{path}: expected 28x28 images, got shape {images.shape[1:]}")
        sets[name] = (images, labels)
    return sets


def mnist_c_origin(manifest: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Provenance of the MNIST-C betons ``names`` from their manifest ``meta``.

    Returns ``{"origin": "official" | "regenerated" | "mixed" | "unknown", "generator_version",
    "seed", "label"}``; ``label`` is the text reports print, e.g. ``"regenerated by fastmix
    (generator mnist-c-1), seed 0"`` or ``"official (Mu & Gilmer 2019, Zenodo 3239543)"``.
    """
    metas = [manifest.get("betons", {}).get(n, {}).get("meta", {}) or {} for n in names]
    origins = sorted({m.get("origin", "unknown") for m in metas}) or ["unknown"]
    versions = sorted({str(m["generator_version"]) for m in metas if "generator_version" in m})
    seeds = sorted({m["seed"] for m in metas if "seed" in m})
    origin = origins[0] if len(origins) == 1 else "mixed"
    version = versions[0] if len(versions) == 1 else (", ".join(versions) or None)
    seed = seeds[0] if len(seeds) == 1 else (seeds or None)
    if origin == "official":
        label = "official (Mu & Gilmer 2019, Zenodo 3239543)"
    elif origin == "regenerated":
        label = f"regenerated by fastmix (generator {version}), seed {seed}"
    elif origin == "mixed":
        label = f"mixed origins ({', '.join(origins)}): not comparable across corruptions"
    else:
        label = "unknown origin (manifest has no MNIST-C provenance)"
    return {"origin": origin, "generator_version": version, "seed": seed, "label": label}


def seen_in_training(
    cfg: dict[str, Any], set_name: str, manifest: dict[str, Any]
) -> tuple[bool, str]:
    """Whether OOD set ``set_name`` was seen in training, and why: true iff the model was
    trained with Outlier Exposure and the set's distribution family (``manifest.json``) is the
    family of the OE source beton (``oe.source``)."""
    betons = manifest.get("betons", {})
    family = betons.get(set_name, {}).get("family")
    oe = cfg.get("oe", {})
    if not oe.get("enabled", False):
        return False, "held out: model trained without Outlier Exposure"
    source = oe.get("source", "")
    src_family = betons.get(source, {}).get("family")
    if set_name == source:
        return True, f"seen: {set_name} is the Outlier Exposure source itself"
    if src_family is None:
        return False, (
            f"held out (family unknown): OE source {source} is not in the manifest, "
            f"so its family cannot be compared with {set_name}'s ({family})"
        )
    if family == src_family:
        return True, (
            f"seen in training: Outlier Exposure used {source} (family {src_family}),"
            f" the same distribution family as {set_name}"
        )
    return False, (
        f"held out: OE source {source} is family {src_family}, {set_name} is family {family}"
    )
