"""Build the catalog's betons: skip what is up to date, record everything in manifest.json.

A beton is up to date when its manifest entry has the spec's current fingerprint (builder
version, parameters, expected source checksums) and the file on disk has the recorded size and
sha256. Everything else is rebuilt. The manifest is rewritten atomically after every beton, so
an interrupted run keeps what it finished and never records a beton it did not finish. A run
that builds nothing into a folder without a manifest (every build failed or was skipped) writes
none: an empty manifest would read as a finished conversion.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastmix.converters.beton import clean_stale_temporaries, sha256_file, write_beton
from fastmix.converters.catalog import BuildContext, DatasetSpec
from fastmix.converters.sources import SourceResolver
from tqdm import tqdm

from fastmix.errors import DataError, SourceUnavailable
from fastmix.files import atomic_write, folder_lock

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


@dataclass
class ConvertResult:
    """What one conversion did, per beton name."""

    built: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # optional sets whose source is missing
    rebuilt: dict[str, str] = field(default_factory=dict)  # built over an older spec: why
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def exit_code(self, catalog: dict[str, DatasetSpec], strict: bool = False) -> int:
        """0 unless a required set failed/was skipped, anything failed, or strict and skipped."""
        if self.failed:
            return 1
        if any(catalog[n].required for n in self.skipped if n in catalog):
            return 1
        return 1 if (strict and self.skipped) else 0


def load_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest in ``out_dir``; an empty one when missing or unreadable (then all rebuild)."""
    path = Path(out_dir) / MANIFEST
    try:
        data = json.loads(path.read_text())
        if data.get("format") == MANIFEST_FORMAT and isinstance(data.get("betons"), dict):
            return data
    except (OSError, ValueError, AttributeError):
        pass
    return {"format": MANIFEST_FORMAT, "betons": {}}


def save_manifest(out_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (``fastmix.files.atomic_write``): a reader, or a run after
    a crash, sees the previous manifest or this one, never a torn file."""
    path = Path(out_dir) / MANIFEST
    try:
        atomic_write(path, json.dumps(manifest, indent=1, sort_keys=True))
    except OSError as e:
        raise DataError(f"{path}: cannot write the manifest ({e.strerror or e})") from None


def manifest_beton_path(out_dir: str | os.PathLike, name: str, entry: dict[str, Any]) -> Path:
    """The beton file that manifest entry ``name`` records: ``out_dir / entry["file"]``.

    Readers (training, evaluation, previews) open only what this returns. It raises
    :class:`DataError`, naming the manifest and the entry, when ``file`` is not a relative path
    that stays inside ``out_dir`` (a hand-edited or foreign manifest must not send them to other
    files), and when the file exists but its size differs from the recorded ``bytes`` (changed
    or cut short since `fastmix convert` wrote it; the sha256 is checked by convert, not here,
    because hashing every beton would slow every run). A missing file is the caller's case.
    """
    out = Path(out_dir)
    manifest = out / MANIFEST
    file = entry.get("file")
    rel = Path(file) if isinstance(file, str) and file else None
    if rel is None or rel.is_absolute() or ".." in rel.parts:
        raise DataError(
            f"{manifest}: entry {name!r} has file {file!r}; expected a relative path inside "
            f"{out}. Re-run `fastmix convert --out {out}`"
        )
    path = out / rel
    try:
        size = path.stat().st_size
    except OSError:
        return path
    if isinstance(entry.get("bytes"), int) and size != entry["bytes"]:
        raise DataError(
            f"{path}: {size} bytes, but {manifest} records {entry['bytes']} for {name!r}: the "
            f"beton changed after it was written. Re-run `fastmix convert --out {out}`"
        )
    return path


def is_up_to_date(spec: DatasetSpec, entry: dict[str, Any] | None, out_dir: Path) -> bool:
    if not entry or entry.get("fingerprint") != spec.fingerprint():
        return False
    path = spec.path(out_dir)
    try:
        if path.stat().st_size != entry.get("bytes"):
            return False
    except OSError:
        return False
    return sha256_file(path) == entry.get("sha256")


def convert(
    catalog: dict[str, DatasetSpec],
    out_dir: str | os.PathLike,
    resolver: SourceResolver,
    only: Iterable[str] | None = None,
    progress: bool = True,
) -> ConvertResult:
    """Build every selected beton that is missing or stale into ``out_dir``."""
    out = Path(out_dir)
    names = list(catalog) if only is None else _select(catalog, only)  # before creating out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{out}: cannot create output folder ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise DataError(f"{out}: output folder is not writable")
    with folder_lock(out, "fastmix convert"):  # its temporaries and manifest are ours alone
        return _convert_locked(catalog, names, out, resolver, progress)


def _convert_locked(
    catalog: dict[str, DatasetSpec],
    names: list[str],
    out: Path,
    resolver: SourceResolver,
    progress: bool,
) -> ConvertResult:
    clean_stale_temporaries(out)
    manifest = load_manifest(out)
    ctx = BuildContext(resolver)
    result = ConvertResult()
    t0 = time.perf_counter()
    bar = tqdm(names, desc="convert", unit="beton", disable=not progress, dynamic_ncols=True)
    for name in bar:
        spec = catalog[name]
        bar.set_postfix_str(name)
        if is_up_to_date(spec, manifest["betons"].get(name), out):
            result.up_to_date.append(name)
            continue
        t = time.perf_counter()
        old = manifest["betons"].pop(name, None)
        if old is not None:
            save_manifest(out, manifest)  # no entry describes the file while it is replaced
        try:
            built = spec.builder(ctx)
            path = spec.path(out)
            path.parent.mkdir(parents=True, exist_ok=True)
            digest = write_beton(path, built.images, built.labels)
        except SourceUnavailable as e:
            result.skipped[name] = str(e)
            continue
        except DataError as e:
            result.failed[name] = str(e)
            continue
        manifest["betons"][name] = {
            "file": path.relative_to(out).as_posix(),
            "bytes": path.stat().st_size,
            "sha256": digest,
            "count": int(len(built.images)),
            "shape": list(built.images.shape[1:]),
            "role": spec.role,
            "family": spec.family,
            "required": spec.required,
            "fingerprint": spec.fingerprint(),
            "version": spec.version,
            "params": spec.params,
            "sources": built.sources,
            "meta": built.meta,
            "description": spec.description,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t, 3),
        }
        save_manifest(out, manifest)
        result.built.append(name)
        if (why := spec.rebuild_reason(old)) is not None:
            result.rebuilt[name] = why
    if (out / MANIFEST).exists():  # else nothing was built, and no manifest existed before
        save_manifest(out, manifest)
    result.seconds = time.perf_counter() - t0
    return result


def _select(catalog: dict[str, DatasetSpec], only: Iterable[str]) -> list[str]:
    """Resolve ``--only`` names; a prefix like ``mnist_c`` selects ``mnist_c/*``."""
    picked: list[str] = []
    for want in only:
        hits = [n for n in catalog if n == want or n.startswith(want.rstrip("/") + "/")]
        if not hits:
            raise DataError(f"unknown dataset {want!r}; valid names: {', '.join(catalog)}")
        picked += [h for h in hits if h not in picked]
    return [n for n in catalog if n in picked]


def summary_lines(result: ConvertResult, catalog: dict[str, DatasetSpec]) -> list[str]:
    """Human-readable end-of-run summary; skips and failures listed at the end."""
    lines = [
        f"built {len(result.built)}, up to date {len(result.up_to_date)}, "
        f"skipped {len(result.skipped)}, failed {len(result.failed)} "
        f"in {result.seconds:.1f} s"
    ]
    lines += [f"{name}: rebuilt ({why})" for name, why in result.rebuilt.items()]
    for name, why in result.skipped.items():
        tag = "REQUIRED" if catalog[name].required else "optional"
        first = why.splitlines()[0]
        lines.append(f"skipped ({tag}) {name}: {first}")
        lines += [f"    {ln.strip()}" for ln in why.splitlines()[1:]]
    for name, why in result.failed.items():
        lines.append(f"FAILED {name}: {why}")
    return lines
