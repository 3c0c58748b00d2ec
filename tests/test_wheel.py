"""``pip install .`` works: the wheel, installed outside the checkout, runs every command.

The wheel is built from a copy of the checkout's files (``git ls-files``: tracked, and new
files git does not ignore), so the build writes nothing into the checkout and sees what a
fresh clone would hold. It is installed with ``pip install --no-deps --target`` into a
temporary folder, and every command runs from another temporary folder with the venv's own
interpreter under ``-S``: no site folder is processed, so the project's editable install (a
``.pth`` import hook in the venv) never loads, and ``PYTHONPATH`` lists the installed copy
first, then the venv's site-packages for torch, ffcv and the rest. A module the wheel lacks
is then an ImportError, not a silent import from the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

SUBCOMMANDS = ("convert", "train", "eval", "report", "run", "bench")
WHEEL_TIMEOUT = 120


def _checkout_files() -> list[str]:
    """The checkout's files a fresh clone would hold, plus new ones git does not ignore."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"the checkout's file list needs git: {e}")
    return [f for f in out.stdout.decode().split("\0") if f and (REPO / f).is_file()]


def _site_dirs() -> list[str]:
    """This interpreter's site-packages folders (torch, ffcv, numba, ...), never the checkout."""
    return [
        p
        for p in sys.path
        if p.endswith(("site-packages", "dist-packages")) and Path(p).resolve() != REPO
    ]


class Installed:
    """The wheel and the folder it was installed into."""

    def __init__(self, wheel: Path, site: Path, work: Path) -> None:
        self.wheel = wheel
        self.site = site
        self.work = work  # outside the checkout: every command runs here

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = os.pathsep.join([str(self.site), *_site_dirs()])
        env["NUMBA_CACHE_DIR"] = str(self.work / "numba-cache")  # not the checkout's cache
        return env

    def python(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """``python -S args`` in the work folder, output captured."""
        return subprocess.run(
            [sys.executable, "-S", *args],
            cwd=self.work,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in _checkout_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    dist, site, work = root / "dist", root / "site", root / "work"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    build = subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "-w",
            str(dist),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=WHEEL_TIMEOUT,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("fastmix-*.whl")
    inst = subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=WHEEL_TIMEOUT,
    )
    assert inst.returncode == 0, inst.stdout + inst.stderr
    return Installed(wheel, site, work)


def _package_dirs() -> dict[str, Path]:
    """Every package the source tree holds (a folder with ``__init__.py``), by dotted name,
    mapped as ``[tool.setuptools.package-dir]`` says."""
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"].get(
        "package-dir", {}
    )
    roots = {"fastmix": REPO / "fastmix", **{k: REPO / v for k, v in mapping.items()}}
    found = {}
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            if "__pycache__" not in rel:
                found[".".join((name, *rel))] = init.parent
    return found


def test_the_wheel_holds_fastmix_only_with_every_module_and_preset(installed):
    """One top-level package, ``fastmix``; every module of the source tree (converters/,
    bench/, configs/ inside it) and every TOML preset is in it."""
    names = zipfile.ZipFile(installed.wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"fastmix"}, f"top-level entries other than fastmix: {tops - {'fastmix'}}"
    info = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(installed.wheel).read(info).decode().split() == ["fastmix"]
    expected = set()
    for pkg, folder in _package_dirs().items():
        base = pkg.replace(".", "/")
        expected |= {f"{base}/{p.name}" for p in folder.glob("*.py")}
        if pkg == "fastmix.configs":
            expected |= {f"{base}/{p.name}" for p in folder.glob("*.toml")}
    missing = sorted(expected - set(names))
    assert not missing, f"the wheel lacks {missing}"


def test_every_command_answers_from_outside_the_checkout(installed):
    """The ``fastmix`` script and each subcommand's ``--help`` work from the installed copy,
    and every package the commands use is imported from there."""
    script = installed.site / "bin" / "fastmix"
    top = installed.python(str(script), "--help")
    assert top.returncode == 0, top.stderr
    for cmd in SUBCOMMANDS:
        assert cmd in top.stdout
    code = (
        "import json, sys\n"
        "from fastmix.cli import main\n"
        "for argv in "
        + repr([[c, "--help"] for c in SUBCOMMANDS[:-1]] + [["bench", "loader", "--help"]])
        + ":\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (argv, e.code)\n"
        "    print('=== ok', *argv, flush=True)\n"
        "import fastmix, fastmix.converters.catalog, fastmix.bench.bench_loader\n"
        "import fastmix.configs, fastmix.evaluate.detectors, fastmix.config\n"
        "print(json.dumps({m: sys.modules[m].__file__ for m in sorted(sys.modules)\n"
        "                  if m == 'fastmix' or m.startswith('fastmix.')}))\n"
        "print(json.dumps([str(p) for p in fastmix.config.PRESETS.iterdir()]))\n"
    )
    r = installed.python("-c", code)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    for argv in [*([c, "--help"] for c in SUBCOMMANDS[:-1]), ["bench", "loader", "--help"]]:
        assert f"=== ok {' '.join(argv)}" in lines
    modules, presets = json.loads(lines[-2]), json.loads(lines[-1])
    site = installed.site.resolve()
    elsewhere = {m: f for m, f in modules.items() if not Path(f).resolve().is_relative_to(site)}
    assert not elsewhere, f"imported from outside the installed copy: {elsewhere}"
    assert len(modules) > 20  # the CLI and its stages, not just the top package
    assert {"default.toml", "smoke.toml"} <= {Path(p).name for p in presets}


def test_smoke_training_runs_from_the_installed_wheel(installed, data_dir):
    """``python -m fastmix train --config smoke`` from outside the checkout finishes the run:
    the preset is package data, found with importlib.resources. The module runs as ``-m``
    does (``runpy``), after printing where ``fastmix`` was imported from."""
    out = installed.work / "runs"
    argv = [
        "fastmix",
        "train",
        "--config",
        "smoke",
        "--variant",
        "base",
        "--data",
        str(data_dir),
        "--out",
        str(out),
        "--no-progress",
    ]
    code = (
        "import runpy, sys\n"
        "import fastmix\n"
        "print('fastmix from', fastmix.__file__, flush=True)\n"
        f"sys.argv = {argv!r}\n"
        "runpy.run_module('fastmix', run_name='__main__', alter_sys=True)\n"
    )
    r = installed.python("-c", code, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    where = Path(r.stdout.splitlines()[0].removeprefix("fastmix from "))
    assert where.resolve() == (installed.site / "fastmix" / "__init__.py").resolve()
    done = json.loads((out / "base-s0" / "done.json").read_text())
    assert done["step"] == 12  # smoke.toml's max_steps
    assert (out / "base-s0" / "checkpoints" / "best.pt").is_file()
