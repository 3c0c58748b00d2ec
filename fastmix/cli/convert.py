"""``fastmix convert``: raw sources -> validated, atomic .beton files + manifest.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fastmix.converters.build import convert, is_up_to_date, load_manifest, summary_lines
from fastmix.converters.catalog import CLEAN_BASES, CatalogOptions, build_catalog
from fastmix.converters.sources import SourceResolver
from fastmix.errors import ConfigError, DataError


def add_convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="data", help="folder for betons and manifest.json")
    p.add_argument(
        "--raw",
        action="append",
        default=[],
        metavar="DIR",
        help="folder holding raw files as DIR/<dataset>/<file> (or $FASTMIX_RAW)",
    )
    p.add_argument("--mirror", metavar="URL", help="file:// or http(s):// mirror, same layout")
    p.add_argument("--cache", metavar="DIR", help="download cache (default ~/.cache/fastmix/raw)")
    p.add_argument("--offline", action="store_true", help="never contact the official URLs")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAMES",
        help="comma-separated beton names or prefixes (e.g. mnist_c)",
    )
    p.add_argument("--list", action="store_true", help="list the catalog and each beton's state")
    p.add_argument("--preview", action="store_true", help="write preview.png (samples per beton)")
    p.add_argument("--strict", action="store_true", help="fail when any set is skipped")
    p.add_argument("--fractals", type=int, default=10_000, help="number of generated fractals")
    p.add_argument("--fractal-size", type=int, default=32)
    p.add_argument("--fractal-folder", metavar="DIR", help="import mixing pictures from a folder")
    p.add_argument("--mnist-c", metavar="PATH", help="official mnist_c.zip or its unpacked folder")
    p.add_argument("--mnist-c-train", action="store_true", help="also build the 60k train splits")
    p.add_argument(
        "--corrupt",
        action="append",
        default=[],
        metavar="NAMES",
        help=f"also corrupt these sets (one of {', '.join(CLEAN_BASES)})",
    )
    p.add_argument("--no-progress", action="store_true")


def split_names(values: list[str]) -> list[str]:
    """Repeated comma-separated ``--only`` / ``--corrupt`` values as one list of names."""
    return [v for item in values for v in item.split(",") if v]


def catalog_from_args(args: argparse.Namespace) -> dict:
    if args.fractals < 1:
        raise ConfigError(f"--fractals {args.fractals}: must be >= 1")
    if args.fractal_size < 8:
        raise ConfigError(f"--fractal-size {args.fractal_size}: must be >= 8")
    corrupt = tuple(split_names(args.corrupt))
    for name in corrupt:
        if name not in CLEAN_BASES:
            valid = ", ".join(CLEAN_BASES)
            raise DataError(f"--corrupt {name}: not a clean 28x28 set; valid: {valid}")
    opts = CatalogOptions(
        fractal_count=args.fractals,
        fractal_size=args.fractal_size,
        fractal_folder=args.fractal_folder,
        mnist_c_train=args.mnist_c_train,
        mnist_c_official=args.mnist_c,
        corrupt=corrupt,
    )
    return build_catalog(opts)


def run_convert(args: argparse.Namespace) -> int:
    try:
        catalog = catalog_from_args(args)
        out = Path(args.out)
        if args.list:
            manifest = load_manifest(out) if out.is_dir() else {"betons": {}}
            print(f"{'name':28s} {'role':10s} {'family':15s} {'req':4s} state")
            for name, spec in catalog.items():
                entry = manifest["betons"].get(name)
                state = (
                    "built" if is_up_to_date(spec, entry, out) else "stale" if entry else "missing"
                )
                req = "yes" if spec.required else ""
                print(f"{name:28s} {spec.role:10s} {spec.family:15s} {req:4s} {state}")
            return 0
        resolver = SourceResolver(
            raw_dirs=args.raw,
            cache_dir=args.cache,
            mirror=args.mirror,
            allow_download=not args.offline,
        )
        only = split_names(args.only) or None
        result = convert(catalog, out, resolver, only=only, progress=not args.no_progress)
    except (DataError, ConfigError) as e:
        print(f"fastmix convert: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the disk filled up between two betons
        print(f"fastmix convert: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    for line in summary_lines(result, catalog):
        print(line)
    if args.preview:
        from fastmix.converters.preview import write_preview

        path = write_preview(out, out / "preview.png")
        print(f"preview: {path}")
    return result.exit_code(catalog, strict=args.strict)
