"""Interrupted conversion: SIGKILL the real ``fastmix convert`` at random moments, many times.

A clean build of a small selection is made first (and timed). Then, in another folder, rounds
of: damage the folder (wipe it, delete betons, flip a byte in a beton, or delete the manifest);
start the converter and SIGKILL it at a random moment of its write phase (or, 15% of kills, at
a random moment of a whole clean run from its start); start it again from what is left and
SIGKILL that recovery run too (up to four kills in a row); then let a last run finish.

After every kill nothing may read as valid unless it is complete: the manifest parses and every
entry in it equals the clean build's, every file at a real beton name is byte-identical to the
clean build's or to the copy this test corrupted (a partial beton only ever exists as
``<name>.tmp-<pid>``), and the converter's own up-to-date check accepts only betons identical
to the clean build's. After every finished run
the manifest equals the clean build's except ``built_at``/``seconds`` and every beton has the
clean build's sha256 (the writer uses one worker, so its bytes are deterministic across
processes).

Kills alternate between the whole process group (parent, its forked FFCV writer and the
writer's workers: a power cut) and the parent alone (the orphaned writer keeps writing its
temporary file while the next run starts).

SIGTERM, which cluster schedulers send before they kill a job, gets the same checks: once to
the whole process group (SLURM signals every process of a job step) and once to the parent
alone (Kubernetes signals the container's main process), each inside the write phase; the
interrupted run must not exit 0, nothing partial may read as valid, and a re-run gives every
beton the clean build's sha256.

``FASTMIX_CONVERT_KILLS`` (default 5; more in a soak run) sets the
number of kills, ``FASTMIX_KILL_SEED`` the seed of the random choices (printed, so a failure can
be replayed as far as timing allows).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastmix.converters.beton import sha256_file
from fastmix.converters.build import MANIFEST, is_up_to_date
from fastmix.converters.catalog import CatalogOptions, build_catalog

from fastmix.files import TMP_MARK
from tests.conftest import convert_argv, kill_group, popen_logged

SETS = ("mnist_val", "gaussian_noise", "fractals", "mnist_c/stripe")
FRACTALS = 32
KILLS = int(os.environ.get("FASTMIX_CONVERT_KILLS", "5"))
VOLATILE = ("built_at", "seconds")

pytestmark = pytest.mark.slow


def _start(shared: Path, out: Path, log: Path) -> subprocess.Popen:
    """A real ``fastmix convert`` of SETS into ``out`` (raw-file cache beside it)."""
    return popen_logged(
        [
            sys.executable,
            "-m",
            "fastmix",
            *convert_argv(
                out.parent,
                "--raw",
                str(shared),
                "--out",
                str(out),
                "--only",
                ",".join(SETS),
                "--fractals",
                str(FRACTALS),
            ),
        ],
        log,
    )


def _own_writes(out: Path, pid: int) -> bool:
    """Whether process ``pid`` has begun writing (one of its ``*.tmp-<pid>`` files exists)."""
    suffix = f"{TMP_MARK}{pid}"
    for folder in (out, out / "mnist_c"):
        try:
            if any(e.name.endswith(suffix) for e in os.scandir(folder)):
                return True
        except OSError:
            pass
    return False


def _wait_for_writes(proc: subprocess.Popen, out: Path, timeout: float = 300.0) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if _own_writes(out, proc.pid):
            return True
        time.sleep(0.01)
    return False


def _kill(proc: subprocess.Popen, whole_group: bool) -> bool:
    """SIGKILL the run (or only its parent); True if it was still running."""
    if proc.poll() is not None:
        return False
    try:
        if whole_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    return proc.returncode == -signal.SIGKILL


def _stable(manifest: dict) -> dict:
    return {
        **manifest,
        "betons": {
            n: {k: v for k, v in e.items() if k not in VOLATILE}
            for n, e in manifest["betons"].items()
        },
    }


def _beton_files(out: Path) -> dict[str, Path]:
    """Files at real beton names (not temporaries), by beton name."""
    return {
        p.relative_to(out).as_posix()[: -len(".beton")]: p
        for p in out.rglob("*.beton")
        if TMP_MARK not in p.name
    }


class Clean:
    def __init__(self, out: Path, seconds: float, write_seconds: float) -> None:
        self.out = out
        self.seconds = seconds
        self.write_seconds = write_seconds
        self.manifest = json.loads((out / MANIFEST).read_text())
        self.sha = {n: sha256_file(p) for n, p in _beton_files(out).items()}


@pytest.fixture(scope="module")
def clean(shared_data, tmp_path_factory) -> Clean:
    """One clean build, timed: whole run and write phase (first temporary to exit)."""
    root = tmp_path_factory.mktemp("convert-clean")
    out = root / "out"
    t0 = time.monotonic()
    proc = _start(shared_data, out, root / "log.txt")
    assert _wait_for_writes(proc, out), (root / "log.txt").read_text()
    t_write = time.monotonic()
    assert proc.wait(timeout=300) == 0, (root / "log.txt").read_text()
    t_end = time.monotonic()
    built = Clean(out, t_end - t0, t_end - t_write)
    assert sorted(built.manifest["betons"]) == sorted(SETS)
    assert sorted(built.sha) == sorted(SETS)
    for name, entry in built.manifest["betons"].items():
        assert entry["sha256"] == built.sha[name]
    print(f"clean build: {built.seconds:.1f} s, write phase {built.write_seconds:.1f} s")
    return built


def _check_after_kill(out: Path, clean: Clean, specs: dict, damaged: dict[str, str]) -> None:
    """Nothing partial may look valid. ``damaged``: name -> sha256 of a beton this test
    corrupted on purpose (it may still lie there, but must not pass as up to date)."""
    manifest_path = out / MANIFEST
    entries = {}
    if manifest_path.exists():
        data = json.loads(manifest_path.read_text())  # never torn: written atomically
        assert data["format"] == 1
        entries = data["betons"]
    for name, entry in entries.items():
        assert _stable({"betons": {name: entry}}) == _stable(
            {"betons": {name: clean.manifest["betons"][name]}}
        ), name
    for name, path in _beton_files(out).items():
        assert _sha(path) in (clean.sha[name], damaged.get(name)), (
            f"partial beton at a real name: {path}"
        )
    for name, spec in specs.items():
        if is_up_to_date(spec, entries.get(name), out):
            assert _sha(spec.path(out)) == clean.sha[name], f"{name} passed as valid"


def _check_finished(out: Path, clean: Clean) -> None:
    manifest = json.loads((out / MANIFEST).read_text())
    assert _stable(manifest) == _stable(clean.manifest)
    files = _beton_files(out)
    assert sorted(files) == sorted(clean.sha)
    for name, path in files.items():
        assert _sha(path) == clean.sha[name], f"{name} differs from the clean build"
    assert not [p for p in out.rglob(f"*{TMP_MARK}*")], "temporaries left after a finished run"


def _damage(out: Path, rng: random.Random, damaged: dict[str, str]) -> str:
    """Put the folder in a state that needs (re)building, in one of several ways."""
    damaged.clear()
    if not out.exists():
        return "empty"
    how = rng.choice(["wipe", "drop", "corrupt", "no-manifest"])
    files = sorted(_beton_files(out).items())
    if how == "wipe":
        shutil.rmtree(out)
    elif how == "drop":
        for _, p in rng.sample(files, rng.randint(1, len(files))):
            p.unlink()
    elif how == "corrupt":
        for name, p in rng.sample(files, rng.randint(1, 2)):
            data = bytearray(p.read_bytes())
            data[rng.randrange(len(data))] ^= 0xFF
            p.write_bytes(bytes(data))
            damaged[name] = _sha(p)
    else:
        (out / MANIFEST).unlink()
    return how


_SHA: dict[tuple, str] = {}


def _sha(path: Path) -> str:
    """sha256 of a file, memoised by (path, inode, size, mtime): the checks re-read often."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA:
        _SHA[key] = sha256_file(path)
    return _SHA[key]


def _todo(out: Path, specs: dict) -> int:
    """How many betons the next run has to (re)build (``is_up_to_date``'s rule, memoised)."""
    try:
        entries = json.loads((out / MANIFEST).read_text())["betons"]
    except (OSError, ValueError):
        entries = {}
    n = 0
    for name, spec in specs.items():
        entry, path = entries.get(name), spec.path(out)
        ok = (
            entry is not None
            and entry.get("fingerprint") == spec.fingerprint()
            and path.is_file()
            and path.stat().st_size == entry.get("bytes")
            and _sha(path) == entry.get("sha256")
        )
        n += not ok
    return n


def test_sigkill_at_random_moments_loses_nothing(clean, shared_data, tmp_path):
    seed = int(os.environ.get("FASTMIX_KILL_SEED", time.time_ns() % 2**32))
    print(f"FASTMIX_KILL_SEED={seed}")
    rng = random.Random(seed)
    specs = {
        n: s for n, s in build_catalog(CatalogOptions(fractal_count=FRACTALS)).items() if n in SETS
    }
    out, log = tmp_path / "out", tmp_path / "log.txt"
    kills, rounds, history = 0, 0, []
    damaged: dict[str, str] = {}
    started: list[subprocess.Popen] = []
    try:
        while kills < KILLS and rounds < 3 * KILLS:
            rounds += 1
            how = _damage(out, rng, damaged)
            for attempt in ("first", "recovery 1", "recovery 2", "recovery 3"):
                todo = _todo(out, specs)
                if kills >= KILLS or todo == 0:
                    break
                proc = _start(shared_data, out, log)
                started.append(proc)
                if rng.random() < 0.15:  # anywhere in a whole run, imports included
                    delay = rng.uniform(0, clean.seconds)
                    time.sleep(delay)
                    when = f"{delay:.2f} s after start"
                else:  # inside the write phase of what is left to build
                    if not _wait_for_writes(proc, out):
                        assert proc.returncode == 0, log.read_text()[-3000:]
                        history.append(
                            f"round {rounds} ({how}) {attempt}: finished before writing anything"
                        )
                        break
                    delay = rng.uniform(0, clean.write_seconds * todo / len(SETS))
                    time.sleep(delay)
                    when = f"{delay:.2f} s into writing {todo} betons"
                group = kills % 2 == 0
                if _kill(proc, whole_group=group):
                    kills += 1
                    history.append(
                        f"round {rounds} ({how}) {attempt}: killed "
                        f"{'group' if group else 'parent'} {when}"
                    )
                    _check_after_kill(out, clean, specs, damaged)
                else:
                    assert proc.returncode == 0, log.read_text()[-3000:]
                    history.append(
                        f"round {rounds} ({how}) {attempt}: finished before the kill ({when})"
                    )
                    break
            for p in started:
                kill_group(p)
            proc = _start(shared_data, out, log)
            started.append(proc)
            assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
            _check_finished(out, clean)
    finally:
        for p in started:
            kill_group(p)
        print("\n".join(history))
    print(f"{kills} kills in {rounds} rounds")
    assert kills >= KILLS


@pytest.mark.parametrize("whole_group", [True, False], ids=["group", "parent"])
def test_sigterm_mid_write_then_a_rerun_builds_the_clean_bytes(
    clean, shared_data, tmp_path, whole_group
):
    """SIGTERM inside the write phase: no beton, manifest entry or up-to-date check trusts a
    partial file, and the next run (started at once, beside a writer the parent may have
    orphaned) finishes with every beton byte-identical to the clean build."""
    specs = {
        n: s for n, s in build_catalog(CatalogOptions(fractal_count=FRACTALS)).items() if n in SETS
    }
    out, log = tmp_path / "out", tmp_path / "log.txt"
    started = []
    try:
        proc = _start(shared_data, out, log)
        started.append(proc)
        assert _wait_for_writes(proc, out), log.read_text()[-3000:]
        time.sleep(clean.write_seconds * random.uniform(0.05, 0.5))
        assert proc.poll() is None, "finished before the signal:\n" + log.read_text()[-3000:]
        if whole_group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        assert code != 0, "the SIGTERMed convert reported success"
        print(f"SIGTERM to the {'group' if whole_group else 'parent'}: exit status {code}")
        _check_after_kill(out, clean, specs, {})
        assert _todo(out, specs) > 0  # the interrupted build is not taken for a finished one
        rerun = _start(shared_data, out, log)
        started.append(rerun)
        assert rerun.wait(timeout=300) == 0, log.read_text()[-3000:]
        _check_finished(out, clean)
    finally:
        for p in started:
            kill_group(p)
