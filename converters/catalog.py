"""The dataset catalog: every beton fastmix can build, its sources, builder and role.

``fastmix/`` reads betons only through this catalog (names, paths, schema). A spec's ``family``
names the underlying distribution, so evaluation can tell whether an OOD test set was *seen in
training* (it shares the outlier source's family) or *held out*.

Labels: a beton keeps its source's class labels whenever the source has them (MNIST,
Fashion-MNIST, KMNIST, and notMNIST's letters A-J as 0-9), because whether a set is the
in-distribution, the Outlier Exposure source or an OOD test set is the study's choice (its
config), not the beton's. Sets without classes (synthetic noise, Omniglot, inverted MNIST,
fractals) store -1. A spec's ``role`` therefore says what the beton is (a split, unlabelled,
mixing pictures, a corrupted set), never how a study uses it.

Every labelled IDX training set is split the same way: :func:`stratified_split` with
``SPLIT_SEED`` takes ``VAL_SIZE`` (5,000) validation images stratified by class, the rest is the
training split (55,000 of 60,000), so ``<set>_train`` and ``<set>_val`` are disjoint and together
the official training set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastmix.converters import sources as src
from fastmix.converters.idx import read_idx_images, read_idx_labels
from fastmix.converters.sources import RawFile, SourceResolver

from fastmix.errors import DataError, SourceUnavailable

SPLIT_SEED = 0
VAL_SIZE = 5000
SYNTHETIC_COUNT = 10_000


@dataclass
class Built:
    """What a builder returns: arrays plus provenance for the manifest."""

    images: np.ndarray
    labels: np.ndarray
    sources: dict[str, str] = field(default_factory=dict)  # raw file -> checksum it verified
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """One beton of the catalog."""

    name: str  # beton name; may contain one '/' (e.g. mnist_c/fog)
    # train | val | test: a split of a labelled dataset (class labels kept);
    # unlabelled: no classes (label -1), usable only as outliers or OOD test images;
    # mixing: PixMix mixing pictures (label -1); corrupted: a -C set with its base's labels
    role: str
    family: str  # distribution family (for seen-in-training labelling)
    required: bool
    builder: Callable[[BuildContext], Built] = field(compare=False, repr=False)
    params: dict[str, Any] = field(default_factory=dict)
    sources: tuple[RawFile, ...] = ()
    version: str = "1"  # bump whenever the beton's content (images or labels) changes
    description: str = ""
    # What this version changed, shown when convert rebuilds a beton recorded with an older one.
    changes: str = field(default="", compare=False)

    def fingerprint(self) -> str:
        """Hash of everything that determines the beton's content (not the raw file paths)."""
        blob = json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "params": self.params,
                "sources": [(f.dataset, f.name, f.md5_content, f.md5_file) for f in self.sources],
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def rebuild_reason(self, entry: Mapping[str, Any] | None) -> str | None:
        """Why the beton that manifest ``entry`` records no longer matches this spec, or None.

        None when there is no entry (a new beton) or the entry has this spec's fingerprint (the
        file itself was missing or damaged). Otherwise: the version change with ``changes``,
        else the parameters that changed, else the expected source checksums. `fastmix convert`
        prints it for every beton it rebuilds, so a user sees why a valid-looking file was
        replaced.
        """
        if not isinstance(entry, Mapping) or entry.get("fingerprint") == self.fingerprint():
            return None
        old = entry.get("version")
        if old != self.version:
            return f"spec version {old} -> {self.version}" + (
                f": {self.changes}" if self.changes else ""
            )
        was = entry.get("params")
        now = json.loads(json.dumps(self.params))  # as the manifest stores it
        if isinstance(was, dict) and was != now:
            diffs = [
                f"{k} {was.get(k)!r} -> {now.get(k)!r}"
                for k in sorted({*was, *now})
                if was.get(k) != now.get(k)
            ]
            return "parameters changed: " + ", ".join(diffs)
        return "the expected source checksums changed"

    def path(self, out_dir: str | Path) -> Path:
        """``<out_dir>/<name>.beton``; DataError for a name that would land outside out_dir."""
        parts = self.name.split("/")
        if (
            not self.name
            or "\\" in self.name
            or "\0" in self.name
            or any(part in ("", ".", "..") for part in parts)
        ):
            raise DataError(
                f"beton name {self.name!r} is not a relative path inside the "
                "output folder (no '..', '.', empty parts, '\\' or leading '/')"
            )
        return Path(out_dir) / f"{self.name}.beton"


class BuildContext:
    """Shared state for one conversion: the source resolver and a memo of parsed raw arrays."""

    def __init__(self, resolver: SourceResolver) -> None:
        self.resolver = resolver
        self._memo: dict[Any, Any] = {}

    def memo(self, key: Any, fn: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def idx_pair(self, files: list[RawFile], split: str, num_classes: int = 10) -> Built:
        """Images and labels of ``split`` ('train' or 't10k') from an IDX dataset."""
        prefix = f"{split}-"
        img_rf = next(f for f in files if f.name.startswith(prefix + "images"))
        lab_rf = next(f for f in files if f.name.startswith(prefix + "labels"))

        def load() -> Built:
            paths = self.resolver.resolve_all([img_rf, lab_rf])
            images = read_idx_images(paths[img_rf.name])
            labels = read_idx_labels(paths[lab_rf.name], num_classes)
            if len(images) != len(labels):
                raise DataError(
                    f"{paths[img_rf.name]}: {len(images)} images but "
                    f"{paths[lab_rf.name]} has {len(labels)} labels"
                )
            sums = {f"{f.dataset}/{f.name}": f.md5_content or f.md5_file for f in (img_rf, lab_rf)}
            return Built(images, labels, sums)

        return self.memo(("idx", img_rf.dataset, split), load)


def stratified_split(labels: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), each sorted, with val holding ``n_val`` samples stratified by class.

    Per class c with n_c samples, val takes floor(n_val * n_c / N) plus one more for the classes
    with the largest remainders (largest-remainder apportionment), drawn by a seeded permutation.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E11]))
    classes, counts = np.unique(labels, return_counts=True)
    quota = n_val * counts / counts.sum()
    take = np.floor(quota).astype(int)
    rest = n_val - take.sum()
    take[np.argsort(-(quota - take), kind="stable")[:rest]] += 1
    val = []
    for c, k in zip(classes, take, strict=True):
        idx = np.flatnonzero(labels == c)
        val.append(rng.permutation(idx)[:k])
    val_idx = np.sort(np.concatenate(val))
    mask = np.ones(len(labels), bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx


def idx_builder(files: list[RawFile], split: str) -> Callable[[BuildContext], Built]:
    """Builder for split ``split`` ('train' or 't10k') of an IDX dataset, class labels kept."""
    return lambda ctx: ctx.idx_pair(files, split)


def idx_ood_builder(files: list[RawFile], split: str) -> Callable[[BuildContext], Built]:
    """Builder for an IDX dataset's images with every label set to -1 (labels discarded)."""
    return lambda ctx: _ood(ctx.idx_pair(files, split))


def _ood(built: Built) -> Built:
    return Built(built.images, np.full(len(built.images), -1, np.int64), built.sources, built.meta)


def split_builder(files: list[RawFile], which: str) -> Callable[[BuildContext], Built]:
    """Builder for the ``which`` ('train' or 'val') part of an IDX dataset's training set.

    Every dataset uses the same :func:`stratified_split` (``VAL_SIZE``, ``SPLIT_SEED``) of its
    official training set, labels kept, so train and val are disjoint, together the full set,
    and val has each class's share of the training set.
    """
    if which not in ("train", "val"):
        raise ValueError(f"split part must be 'train' or 'val', got {which!r}")

    def build(ctx: BuildContext) -> Built:
        full = ctx.idx_pair(files, "train")
        tr, va = ctx.memo(
            ("split", files[0].dataset), lambda: stratified_split(full.labels, VAL_SIZE, SPLIT_SEED)
        )
        idx = tr if which == "train" else va
        return Built(full.images[idx], full.labels[idx], full.sources, {"indices_of": "train"})

    return build


def _omniglot(ctx: BuildContext) -> Built:
    from fastmix.converters.omniglot import read_omniglot_zips

    try:
        paths = ctx.resolver.resolve_all(src.OMNIGLOT_FULL)
        used = src.OMNIGLOT_FULL
    except SourceUnavailable:
        paths = ctx.resolver.resolve_all(src.OMNIGLOT_SMALL)
        used = src.OMNIGLOT_SMALL
    images = read_omniglot_zips([paths[f.name] for f in used])
    sums = {f"{f.dataset}/{f.name}": f.md5_content for f in used}
    return Built(
        images,
        np.full(len(images), -1, np.int64),
        sums,
        {"variant": "full" if used is src.OMNIGLOT_FULL else "small"},
    )


def _synthetic(kind: str, n: int, seed: int) -> Callable[[BuildContext], Built]:
    def build(ctx: BuildContext) -> Built:
        from fastmix.converters import synthetic

        fn = {
            "gaussian": synthetic.gaussian_noise,
            "bernoulli": synthetic.bernoulli_noise,
            "uniform": synthetic.uniform_noise,
        }[kind]
        images = fn(n, seed)
        return Built(images, np.full(n, -1, np.int64))

    return build


def _inverted_mnist(ctx: BuildContext) -> Built:
    from fastmix.converters.synthetic import invert

    test = ctx.idx_pair(src.MNIST, "t10k")
    return Built(invert(test.images), np.full(len(test.images), -1, np.int64), test.sources)


def _fractals(
    count: int, size: int, seed: int, folder: str | None
) -> Callable[[BuildContext], Built]:
    def build(ctx: BuildContext) -> Built:
        from fastmix.converters import fractals

        if folder:
            images = fractals.load_image_folder(folder, size=size)
            meta = {"origin": "image folder", "folder": str(folder)}
        else:
            images = fractals.generate_fractals(count, size=size, seed=seed, progress=True)
            meta = {"origin": "generated"}
        return Built(images, np.full(len(images), -1, np.int64), {}, meta)

    return build


def _corrupted(
    base: str, corruption: str, seed: int, official: str | None, split: str
) -> Callable[[BuildContext], Built]:
    def build(ctx: BuildContext) -> Built:
        from fastmix.converters import mnist_c

        if official:
            images, labels = mnist_c.load_official(official, corruption, split)
            return Built(images, labels, {}, {"origin": "official", "path": str(official)})
        clean = ctx.memo(("base", base), lambda: CLEAN_BASES[base].builder(ctx))
        images = mnist_c.corrupt(clean.images, corruption, seed)
        meta = {
            "origin": "regenerated",
            "generator_version": mnist_c.GENERATOR_VERSION,
            "seed": seed,
            "base": base,
        }
        return Built(images, clean.labels, clean.sources, meta)

    return build


@dataclass(frozen=True)
class CleanBase:
    """A clean 28x28 set that ``--corrupt`` can turn into a -C set, labels kept.

    ``version`` is the version of the base's content: a -C spec's version is the corruption
    generator's, with ``+base-<version>`` appended once the base is past version 1, so a change
    of the base's labels or images rebuilds its -C sets too.
    """

    builder: Callable[[BuildContext], Built]
    family: str
    sources: tuple[RawFile, ...]
    version: str = "1"
    changes: str = ""


_LABELS_KEPT = "class labels kept instead of -1"

# Clean 28x28 sets that can be corrupted (``--corrupt NAME``), by beton name.
CLEAN_BASES: dict[str, CleanBase] = {
    "mnist_test": CleanBase(idx_builder(src.MNIST, "t10k"), "mnist", tuple(src.MNIST)),
    "mnist_train_full": CleanBase(idx_builder(src.MNIST, "train"), "mnist", tuple(src.MNIST)),
    "fmnist_test": CleanBase(
        idx_builder(src.FASHION_MNIST, "t10k"),
        "fashion-mnist",
        tuple(src.FASHION_MNIST),
        "2",
        _LABELS_KEPT,
    ),
    "kmnist_test": CleanBase(
        idx_builder(src.KMNIST, "t10k"),
        "kmnist",
        tuple(f for f in src.KMNIST if f.name.startswith("t10k")),
        "2",
        _LABELS_KEPT,
    ),
    "notmnist_test": CleanBase(
        idx_builder(src.NOTMNIST, "t10k"),
        "notmnist",
        tuple(src.NOTMNIST),
        "2",
        "letter labels A-J kept as 0-9 instead of -1",
    ),
}


@dataclass
class CatalogOptions:
    """Options of ``fastmix convert`` that change what the catalog contains."""

    fractal_count: int = 10_000
    fractal_size: int = 32
    fractal_seed: int = 0
    fractal_folder: str | None = None
    synthetic_seed: int = 0
    mnist_c_seed: int = 0
    mnist_c_train: bool = False
    mnist_c_official: str | None = None
    corrupt: tuple[str, ...] = ()


def _version_of(module: str) -> str:
    import importlib

    return getattr(importlib.import_module(module), "GENERATOR_VERSION", "1")


def build_catalog(opts: CatalogOptions | None = None) -> dict[str, DatasetSpec]:
    """Every dataset spec for these options, keyed by beton name, in build order."""
    from fastmix.converters.mnist_c import CORRUPTIONS

    o = opts or CatalogOptions()
    split_params = {"split_seed": SPLIT_SEED, "val_size": VAL_SIZE}
    kmnist_train = tuple(f for f in src.KMNIST if f.name.startswith("train"))

    def test_spec(name: str, description: str) -> DatasetSpec:
        base = CLEAN_BASES[name]
        return DatasetSpec(
            name,
            "test",
            base.family,
            False,
            base.builder,
            {},
            base.sources,
            base.version,
            description,
            base.changes,
        )

    specs: list[DatasetSpec] = [
        DatasetSpec(
            "mnist_train",
            "train",
            "mnist",
            True,
            split_builder(src.MNIST, "train"),
            split_params,
            tuple(src.MNIST),
            "1",
            "MNIST training split (55,000), stratified",
        ),
        DatasetSpec(
            "mnist_val",
            "val",
            "mnist",
            True,
            split_builder(src.MNIST, "val"),
            split_params,
            tuple(src.MNIST),
            "1",
            "MNIST validation split (5,000) held out from training",
        ),
        DatasetSpec(
            "mnist_test",
            "test",
            "mnist",
            True,
            CLEAN_BASES["mnist_test"].builder,
            {},
            tuple(src.MNIST),
            "1",
            "MNIST official test set (10,000)",
        ),
        DatasetSpec(
            "fmnist_train",
            "train",
            "fashion-mnist",
            False,
            split_builder(src.FASHION_MNIST, "train"),
            split_params,
            tuple(src.FASHION_MNIST),
            "2",
            "Fashion-MNIST training split (55,000), stratified",
            "class labels kept instead of -1; the stratified 55,000 of the official "
            "60,000 (the other 5,000 are fmnist_val)",
        ),
        DatasetSpec(
            "fmnist_val",
            "val",
            "fashion-mnist",
            False,
            split_builder(src.FASHION_MNIST, "val"),
            split_params,
            tuple(src.FASHION_MNIST),
            "1",
            "Fashion-MNIST validation split (5,000) held out from fmnist_train",
        ),
        test_spec("fmnist_test", "Fashion-MNIST official test set (10,000)"),
        DatasetSpec(
            "kmnist_train",
            "train",
            "kmnist",
            False,
            split_builder(src.KMNIST, "train"),
            split_params,
            kmnist_train,
            "1",
            "Kuzushiji-MNIST training split (55,000), stratified",
        ),
        DatasetSpec(
            "kmnist_val",
            "val",
            "kmnist",
            False,
            split_builder(src.KMNIST, "val"),
            split_params,
            kmnist_train,
            "1",
            "Kuzushiji-MNIST validation split (5,000) held out from kmnist_train",
        ),
        test_spec("kmnist_test", "Kuzushiji-MNIST official test set (10,000)"),
        test_spec("notmnist_test", "notMNIST letters A-J as labels 0-9 (10,000)"),
        DatasetSpec(
            "omniglot",
            "unlabelled",
            "omniglot",
            False,
            _omniglot,
            {"size": 28},
            tuple(src.OMNIGLOT_SMALL),
            _version_of("fastmix.converters.omniglot"),
            "Omniglot characters, 28x28 white on black; no classes (label -1)",
        ),
    ]
    synth_version = _version_of("fastmix.converters.synthetic")
    for kind in ("gaussian", "bernoulli", "uniform"):
        specs.append(
            DatasetSpec(
                f"{kind}_noise",
                "unlabelled",
                f"{kind}-noise",
                False,
                _synthetic(kind, SYNTHETIC_COUNT, o.synthetic_seed),
                {"n": SYNTHETIC_COUNT, "seed": o.synthetic_seed},
                (),
                synth_version,
                f"{kind} noise images (10,000); no classes (label -1)",
            )
        )
    specs.append(
        DatasetSpec(
            "mnist_inverted",
            "unlabelled",
            "mnist-inverted",
            False,
            _inverted_mnist,
            {},
            tuple(src.MNIST),
            synth_version,
            "negative MNIST test, 255-x; no classes (label -1)",
        )
    )
    frac_params = (
        {"folder": str(o.fractal_folder), "size": o.fractal_size}
        if o.fractal_folder
        else {"n": o.fractal_count, "size": o.fractal_size, "seed": o.fractal_seed}
    )
    specs.append(
        DatasetSpec(
            "fractals",
            "mixing",
            "fractals",
            True,
            _fractals(o.fractal_count, o.fractal_size, o.fractal_seed, o.fractal_folder),
            frac_params,
            (),
            _version_of("fastmix.converters.fractals"),
            "grayscale IFS fractals, PixMix mixing pictures; no classes (label -1)",
        )
    )
    mc_version = _version_of("fastmix.converters.mnist_c")
    bases = [("mnist_test", "mnist_c", "test")]
    if o.mnist_c_train:
        bases.append(("mnist_train_full", "mnist_c_train", "train"))
    bases += [(b, b.replace("_test", "_c"), "test") for b in o.corrupt if b != "mnist_test"]
    for base, prefix, split in bases:
        official = o.mnist_c_official if base.startswith("mnist_") else None
        clean = CLEAN_BASES[base]
        version = mc_version if clean.version == "1" else f"{mc_version}+base-{clean.version}"
        changes = f"{clean.changes}, like its base {base}" if clean.changes else ""
        for c in CORRUPTIONS:
            params = (
                {"official": str(official), "split": split}
                if official
                else {"seed": o.mnist_c_seed, "base": base}
            )
            specs.append(
                DatasetSpec(
                    f"{prefix}/{c}",
                    "corrupted",
                    clean.family,
                    False,
                    _corrupted(base, c, o.mnist_c_seed, official, split),
                    params,
                    clean.sources,
                    version,
                    f"{c} corruption of {base}",
                    changes,
                )
            )
    return {s.name: s for s in specs}


def corruption_names() -> tuple[str, ...]:
    from fastmix.converters.mnist_c import CORRUPTIONS

    return tuple(CORRUPTIONS)
