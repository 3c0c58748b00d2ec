"""``make gpu-bundle`` (``python -m fastmix.bench.gpu_bundle``): everything an offline GPU machine
needs to run ``make gpu-check``, in one folder that travels beside the checkout.

A GPU box with no network (no PyPI, no apt) typically has Python, torch built with CUDA, numpy,
numba, scikit-learn, scipy, tqdm, pillow, matplotlib, opencv and pytest, but not ffcv, which is
an sdist with a C extension that compiles against OpenCV and libturbojpeg. The bundle holds:

* ``wheels/``: ffcv 1.0.2 built here for the target Python (``--python``, default 3.12) and
  repaired with ``auditwheel`` (OpenCV, libturbojpeg and their libraries copied in, so it needs
  no system packages); the fastmix wheel; the pure-Python modules ffcv imports that such an
  image lacks (``assertpy``, ``terminaltables``).
* ``lib/``: the OpenMP and TBB runtimes. Numba's parallel kernels need one of them to run from
  two threads at once (two FFCV loaders); without both it falls back to its ``workqueue`` layer,
  which aborts the process on concurrent use. ``run.sh`` puts ``lib/`` last on the library path,
  so the machine's own copies win where they exist.
* ``raw/``: the raw datasets (IDX / gzip, the notMNIST and Omniglot files), converted to betons
  on the GPU machine, where the cores are; the betons themselves are several times larger.
* ``tests/``: the test suite, for the CUDA-marked tests the check runs.
* ``run.sh``: installs the wheels with ``pip --no-index --no-deps --target`` (no build, no
  network), prints the machine facts (GPU, driver, glibc, Python, torch, Numba's threading
  layer), then runs ``python -m fastmix.bench.gpu_check`` within a budget of seconds, from a
  work folder outside the checkout (a checkout's ``fastmix/`` would shadow the installed one).

``manifest.json`` lists every file with its size and sha256, and the build's inputs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fastmix.converters.beton import sha256_file

FFCV_SPEC = "ffcv==1.0.2"
PURE_DEPS = ("assertpy==1.1", "terminaltables==3.1.10")
NATIVE_LIBS = ("libgomp.so.1", "libtbb.so.12")
SIZE_LIMIT_MIB = 60.0
REPO = Path(__file__).resolve().parents[1]

RUN_SH = r"""#!/usr/bin/env bash
# Run the fastmix GPU check on an offline machine from this bundle (built by `make gpu-bundle`).
#   bash gpu_bundle/run.sh [BUDGET_S] [--device cpu] [other gpu_check options]
# (no BUDGET_S: the check's default, the sum of its steps' caps)
# Environment: PYTHON (default python3), OUT (record folder; default ./gpu_check_out),
# FASTMIX_SITE (install target; default a fresh temporary folder), FASTMIX_WORK (work folder),
# FASTMIX_DATA (betons folder; default converted into the work folder from the bundle's raw/).
set -euo pipefail
B="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUDGET=(); case "${1:-}" in ''|*[!0-9.]*) ;; *) BUDGET=(--budget "$1"); shift ;; esac
PY="${PYTHON:-python3}"
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
OUT="$(mkdir -p "${OUT:-gpu_check_out}" && cd "${OUT:-gpu_check_out}" && pwd)"
SITE="${FASTMIX_SITE:-$(mktemp -d)/site}"
WORK="${FASTMIX_WORK:-$(mktemp -d)/work}"
mkdir -p "$SITE" "$WORK"
t0=$(date +%s)
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" "$B"/wheels/*.whl
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$B/lib"
export PYTHONUNBUFFERED=1
# One Numba cache for the tests, the trainings and the evaluations of the check.
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$WORK/.numba_cache}"
echo "gpu-bundle: installed into $SITE in $(( $(date +%s) - t0 )) s"
rm -rf "$WORK/tests"; cp -r "$B/tests" "$WORK/tests"
cd "$WORK"
{
  echo "## machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true
  ldd --version 2>&1 | sed -n 1p  # sed reads it all: no SIGPIPE under pipefail
  nproc
  "$PY" - <<'EOF'
import platform, sys
import numba, torch
from numba.np.ufunc import parallel
import ffcv, fastmix
print("python", platform.python_version(), sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0))
parallel._launch_threads()
print("numba", numba.__version__, "threading layer", numba.threading_layer())
print("ffcv from", ffcv.__file__)
print("fastmix from", fastmix.__file__)
EOF
} 2>&1 | tee "$OUT/machine.txt"
RAW=(); [ -d "$B/raw" ] && RAW=(--raw "$B/raw")
exec "$PY" -m fastmix.bench.gpu_check "${RAW[@]}" --data "${FASTMIX_DATA:-$WORK/data}" \
  --out "$OUT" "${BUDGET[@]}" "$@"
"""


def find_python(spec: str) -> str:
    """The interpreter to build ffcv for: a path, a name on PATH, or a version ("3.12") looked
    up as ``python3.12`` on PATH and then among pyenv's versions; the first that runs."""
    candidates = [shutil.which(spec) or spec]
    if spec.replace(".", "").isdigit():
        root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
        candidates += [shutil.which(f"python{spec}") or ""]
        candidates += sorted(glob.glob(str(root / "versions" / f"{spec}.*" / "bin" / "python")))
    for cand in filter(None, candidates):
        try:
            ok = subprocess.run([cand, "-c", "import pip"], capture_output=True).returncode == 0
        except OSError:
            ok = False
        if ok:
            return cand
    raise SystemExit(
        f"gpu-bundle: no Python {spec!r} with pip here (looked on PATH and in pyenv's "
        "versions); pass --python PATH"
    )


def _run(cmd: Sequence[str], **kw) -> None:
    print("$ " + " ".join(map(str, cmd)), flush=True)
    subprocess.run(list(map(str, cmd)), check=True, **kw)


def build_ffcv(python: str, wheels: Path, work: Path) -> Path:
    """ffcv built for ``python`` and repaired by auditwheel into ``wheels``."""
    raw = work / "ffcv-raw"
    _run([python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", raw, FFCV_SPEC])
    built = next(raw.glob("ffcv-*.whl"))
    tools = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=tools + os.pathsep + os.environ.get("PATH", ""))
    _run([sys.executable, "-m", "auditwheel", "repair", "-w", wheels, built], env=env)
    return next(wheels.glob("ffcv-*.whl"))


def build_fastmix(wheels: Path) -> Path:
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", wheels, REPO])  # fmt: skip
    return next(wheels.glob("fastmix-*.whl"))


def build_pure_deps(python: str, wheels: Path) -> None:
    _run([python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, *PURE_DEPS])


def copy_native_libs(lib: Path) -> list[str]:
    """The OpenMP / TBB runtimes from this machine's loader cache (those it has)."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    copied = []
    for name in NATIVE_LIBS:
        for line in out.splitlines():
            parts = line.split("=>")
            if parts[0].strip().startswith(name) and "x86-64" in parts[0] and len(parts) == 2:
                shutil.copy2(os.path.realpath(parts[1].strip()), lib / name)
                copied.append(name)
                break
    return copied


def copy_tree(src: Path, dst: Path, ignore=None) -> None:
    shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=False)
    for p in dst.rglob("*"):  # the raw data is read-only at its source
        p.chmod(0o755 if p.is_dir() else 0o644)


def build(out: Path, python: str, raw: Path | None) -> dict:
    """Build the bundle into a temporary folder beside ``out``, then swap it in whole."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        wheels, lib = stage / "wheels", stage / "lib"
        wheels.mkdir()
        lib.mkdir()
        with tempfile.TemporaryDirectory() as work:
            ffcv = build_ffcv(python, wheels, Path(work))
        build_fastmix(wheels)
        build_pure_deps(python, wheels)
        libs = copy_native_libs(lib)
        if raw is not None:
            copy_tree(raw, stage / "raw")
        copy_tree(REPO / "tests", stage / "tests", shutil.ignore_patterns("__pycache__"))
        (stage / "run.sh").write_text(RUN_SH)
        (stage / "run.sh").chmod(0o755)
        files = sorted(p for p in stage.rglob("*") if p.is_file())
        manifest = {
            "python": subprocess.run(
                [python, "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
            ).stdout.strip(),
            "ffcv_wheel": ffcv.name,
            "native_libs": libs,
            "raw": raw is not None,
            "files": {
                str(p.relative_to(stage)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                for p in files
            },
        }
        manifest["total_mib"] = round(
            sum(f["bytes"] for f in manifest["files"].values()) / 2**20, 2
        )
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastmix.bench.gpu_bundle", description=__doc__)
    p.add_argument("--out", default="gpu_bundle", help="bundle folder (replaced whole)")
    p.add_argument("--python", default="3.12", help="target Python: version, name or path")
    p.add_argument("--raw", default=None, help="raw data folder to include (default: none)")
    args = p.parse_args(argv)
    raw = Path(args.raw) if args.raw else None
    if raw is not None and not raw.is_dir():
        raise SystemExit(f"gpu-bundle: --raw {raw}: no such folder")
    manifest = build(Path(args.out), find_python(args.python), raw)
    total = manifest["total_mib"]
    print(
        f"gpu-bundle: {args.out} ({total:.1f} MiB; Python {manifest['python']}; "
        f"native libs {', '.join(manifest['native_libs']) or 'none found'})"
    )
    if total > SIZE_LIMIT_MIB:
        print(f"gpu-bundle: over {SIZE_LIMIT_MIB:.0f} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
