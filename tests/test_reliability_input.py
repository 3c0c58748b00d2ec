"""Bad input: every fault is a clear error naming the file and the fault, a non-zero exit
status, and nothing written (no beton, no temporary, no manifest, no run directory).

Faults already covered elsewhere (not repeated here):
  truncated / corrupt gzip, wrong IDX magic, length vs dimensions, label range, element type:
      tests/test_idx.py; labels out of range and checksum mismatch through ``convert``:
      tests/test_convert.py (``test_bad_labels_fail_and_write_no_beton``,
      ``test_checksum_mismatch_writes_no_beton``); invalid arrays, missing output folder,
      writer timeout: tests/test_beton.py; truncated / foreign checkpoints and NaN loss
      in-process: tests/test_train.py; NaN loss through the CLI: tests/test_reliability_train.py.
Here: the same raw-file faults end to end through ``fastmix convert``, image folders with files
that are not pictures, output folders that cannot be created or written, a full disk (tmpfs when
``mount`` is permitted, else skipped) and a file-size limit (``RLIMIT_FSIZE``, always), bad
configs through ``fastmix train`` / ``fastmix eval``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastmix.converters.build import convert, load_manifest
from fastmix.converters.idx import write_idx
from fastmix.converters.sources import RawFile, download
from PIL import Image

from fastmix.cli import main
from fastmix.config import dumps, load_config
from fastmix.errors import DataError
from tests.conftest import convert_argv, idx_bytes, kmnist_like, offline_resolver

REPO = Path(__file__).resolve().parents[1]


def _nothing_written(out: Path) -> None:
    """No beton, temporary or manifest: at most the folder and its lock file."""
    if out.exists():
        assert [p.name for p in out.rglob("*")] in ([], [".lock"])


# ------------------------------------------------------- raw IDX files, through the real CLI ---


def _mnist_t10k(raw: Path, rng_seed: int = 0) -> tuple[Path, Path]:
    folder = raw / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(rng_seed)
    img, lab = folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz"
    write_idx(img, rng.integers(0, 256, (50, 28, 28)))
    write_idx(lab, rng.integers(0, 10, 50))
    return img, lab


@pytest.mark.parametrize(
    "fault,message",
    [
        ("truncated gzip", "corrupt or truncated gzip data"),
        ("corrupt gzip", "corrupt or truncated gzip data"),
        ("checksum", "checksum mismatch for mnist/t10k-images-idx3-ubyte.gz: content md5"),
    ],
)
def test_convert_cli_refuses_bad_raw_files(tmp_path, capsys, fault, message):
    """The real catalog's published checksums are checked first; a file that is not even a
    readable gzip says so (not just 'checksum mismatch')."""
    img, _ = _mnist_t10k(tmp_path / "raw")
    data = bytearray(img.read_bytes())
    if fault == "truncated gzip":
        img.write_bytes(bytes(data[: len(data) // 2]))
    elif fault == "corrupt gzip":
        data[30:60] = b"\xff" * 30
        img.write_bytes(bytes(data))
    out = tmp_path / "out"
    code = main(
        convert_argv(
            tmp_path, "--raw", str(tmp_path / "raw"), "--out", str(out), "--only", "mnist_test"
        )
    )
    printed = capsys.readouterr().out
    assert code == 1
    assert "FAILED mnist_test" in printed and str(img) in printed and message in printed
    _nothing_written(out)


_IMGS = idx_bytes(np.zeros((4, 28, 28)))
_LABS = idx_bytes(np.arange(4))


@pytest.mark.parametrize(
    "images,labels,bad_file,message",
    [
        (b"\x00\x00\x08\x01" + _IMGS[4:], _LABS, "t10k-images", "wrong IDX magic 0x00000801"),
        (_IMGS[:-100], _LABS, "t10k-images", "does not match dimensions (4, 28, 28)"),
        (_IMGS + b"\0", _LABS, "t10k-images", "does not match dimensions"),
        (
            idx_bytes(np.zeros((4, 32, 32))),
            _LABS,
            "t10k-images",
            "images are (32, 32), expected (28, 28)",
        ),
        (_IMGS, idx_bytes(np.arange(5)), "t10k-labels", "4 images but"),
        (_IMGS, idx_bytes([1, 2, 99, 3]), "t10k-labels", "label 99 at index 2 is out of range"),
    ],
)
def test_convert_refuses_malformed_idx(tmp_path, images, labels, bad_file, message):
    spec, folder = kmnist_like(tmp_path, images, labels)
    resolver = offline_resolver(tmp_path)
    out = tmp_path / "out"
    result = convert({spec.name: spec}, out, resolver, progress=False)
    why = result.failed["kmnist_test"]
    assert message in why and str(folder / bad_file) in why
    assert result.exit_code({spec.name: spec}) == 1
    _nothing_written(out)


# ------------------------------------------------------------------------ image folders ---


def _png(path: Path, size: int = 40) -> None:
    Image.fromarray(np.full((size, size), 128, np.uint8)).save(path)


def test_fractal_folder_with_bad_files_names_every_one(tmp_path, capsys):
    folder = tmp_path / "pics"
    folder.mkdir()
    _png(folder / "good.png")
    (folder / "text.png").write_text("this is not a PNG")
    good = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    os.symlink(folder / "gone.png", folder / "dangling.png")
    os.mkfifo(folder / "pipe.png")  # open() on a FIFO blocks forever: must be refused, not read
    (folder / "notes.txt").write_text("ignored: not a picture extension")
    out = tmp_path / "out"
    code = main(
        convert_argv(
            tmp_path, "--fractal-folder", str(folder), "--only", "fractals", "--out", str(out)
        )
    )
    printed = capsys.readouterr().out
    assert code == 1
    assert f"FAILED fractals: {folder}: 5 of 6 picture files cannot be read" in printed
    for name in ("text.png", "truncated.png", "empty.jpg", "dangling.png"):
        assert str(folder / name) in printed
    assert f"{folder / 'pipe.png'}: not a regular file" in printed
    assert "notes.txt" not in printed
    _nothing_written(out)


@pytest.mark.parametrize(
    "setup,message",
    [
        ("missing", "not a folder"),
        ("no pictures", "no pictures found"),
    ],
)
def test_fractal_folder_missing_or_without_pictures(tmp_path, capsys, setup, message):
    folder = tmp_path / "pics"
    if setup == "no pictures":
        folder.mkdir()
        (folder / "readme.txt").write_text("nothing here")
        (folder / ".hidden.png").write_bytes(b"hidden files are ignored")
    out = tmp_path / "out"
    code = main(
        convert_argv(
            tmp_path, "--fractal-folder", str(folder), "--only", "fractals", "--out", str(out)
        )
    )
    printed = capsys.readouterr().out
    assert code == 1 and f"{folder}: {message}" in printed
    _nothing_written(out)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--fractals", "0"], "--fractals 0: must be >= 1"),
        (["--fractal-size", "4"], "--fractal-size 4: must be >= 8"),
        (["--corrupt", "cifar10_test"], "--corrupt cifar10_test: not a clean 28x28 set; valid:"),
        (["--only", "mnistt"], "unknown dataset 'mnistt'; valid names:"),
    ],
)
def test_convert_bad_options(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(convert_argv(tmp_path, "--out", str(out), "--only", "fractals", *args)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# -------------------------------------------------------------------- output folders ---


def test_output_folder_under_a_regular_file(tmp_path, capsys):
    """As root, permission bits do not stop writes; a path below a regular file always fails."""
    (tmp_path / "file").write_text("a regular file")
    out = tmp_path / "file" / "sub"
    assert main(convert_argv(tmp_path, "--out", str(out), "--only", "gaussian_noise")) == 2
    err = capsys.readouterr().err
    assert f"{out}: cannot create output folder (Not a directory)" in err


def test_download_cache_under_a_regular_file(tmp_path):
    """A cache folder that cannot be created fails the download with a DataError naming the
    file (the resolver lists it among what it tried), not an OSError traceback."""
    (tmp_path / "file").write_text("a regular file")
    rf = RawFile("mnist", "t10k-labels-idx1-ubyte.gz", md5_content="0" * 32)
    dest = tmp_path / "file" / "mnist" / rf.name
    with pytest.raises(DataError, match="cannot write to the cache") as e:
        download("http://127.0.0.1:9/never-contacted", rf, tmp_path / "file")
    assert str(e.value).startswith(f"{dest}: cannot write to the cache (Not a directory")


def test_train_out_under_a_regular_file(tmp_path, capsys, data_dir):
    """Real betons, so the one fault left is the output folder (betons are checked first)."""
    (tmp_path / "file").write_text("a regular file")
    out = tmp_path / "file" / "runs"
    code = main(
        ["train", "--config", "smoke", "--out", str(out), "--data", str(data_dir), "--no-progress"]
    )
    assert code == 2
    assert f"{out / 'base-s0'}: cannot create the run directory (Not a directory" in (
        capsys.readouterr().err
    )


@contextlib.contextmanager
def _lock_held_elsewhere(folder: Path, what: str):
    """Another process holding ``folder``'s lock (``fastmix.files``) as ``what`` until the block
    ends, when it is SIGKILLed (which frees the lock at once)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from fastmix.files import folder_lock\n"
            "with folder_lock(sys.argv[1], sys.argv[2]):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(120)\n",
            str(folder),
            what,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_second_convert_into_a_locked_folder_is_refused(tmp_path, capsys):
    """One `fastmix convert` per output folder: while another process holds the folder's lock
    the CLI exits 2 naming the folder and that process (was: the second run deleted the first's
    temporaries, a traceback, and one manifest overwrote the other's entries); once the holder
    is SIGKILLed the lock is free at once and the convert builds."""
    out = tmp_path / "out"
    out.mkdir()
    with _lock_held_elsewhere(out, "fastmix convert") as holder:
        assert main(convert_argv(tmp_path, "--out", str(out), "--only", "gaussian_noise")) == 2
        err = capsys.readouterr().err
        assert f"{out}: another fastmix convert is writing this folder (process {holder.pid})" in (
            err
        )
        assert not list(out.glob("*.beton*")) and not (out / "manifest.json").exists()
    assert main(convert_argv(tmp_path, "--out", str(out), "--only", "gaussian_noise")) == 0
    assert load_manifest(out)["betons"].keys() == {"gaussian_noise"}


def test_a_second_training_of_one_run_directory_is_refused(tmp_path, capsys, data_dir):
    """While a process holds a run directory's lock (a `fastmix train` or `fastmix run` on it),
    another training of that run exits 2 naming the holder and writes nothing there."""
    run = tmp_path / "runs" / "base-s0"
    run.mkdir(parents=True)
    with _lock_held_elsewhere(run, "fastmix eval") as holder:
        code = main(
            [
                "train",
                "--variant",
                "base",
                "--config",
                "smoke",
                "--data",
                str(data_dir),
                "--out",
                str(tmp_path / "runs"),
                "--no-progress",
            ]
        )
        assert code == 2
        assert f"{run}: another fastmix eval is writing this folder (process {holder.pid})" in (
            capsys.readouterr().err
        )  # the holder's own command is named
        assert sorted(p.name for p in run.iterdir()) == [".lock"]


@pytest.fixture
def mounted(tmp_path):
    """Mount a tmpfs (options given to the returned function); skip where mount is refused."""
    points: list[Path] = []

    def mount(options: str, name: str = "mnt") -> Path:
        point = tmp_path / name
        point.mkdir()
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()})")
        points.append(point)
        return point

    yield mount
    for point in points:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_read_only_output_folder(mounted, tmp_path, capsys, data_dir):
    ro = mounted("ro,size=1m")
    assert main(convert_argv(tmp_path, "--out", str(ro / "data"), "--only", "gaussian_noise")) == 2
    assert f"{ro / 'data'}: cannot create output folder (Read-only file system)" in (
        capsys.readouterr().err
    )
    assert main(convert_argv(tmp_path, "--out", str(ro), "--only", "gaussian_noise")) == 2
    assert f"{ro}: output folder is not writable" in capsys.readouterr().err
    code = main(
        ["train", "--config", "smoke", "--out", str(ro), "--data", str(data_dir), "--no-progress"]
    )
    assert code == 2
    assert "cannot create the run directory (Read-only file system" in capsys.readouterr().err


def test_full_disk(mounted, tmp_path, capsys):
    """A 2 MiB tmpfs: the FFCV writer's worker dies with ENOSPC. Before the fix the writer
    waited forever (15 min timeout) for the dead worker; now it fails at once, says the disk is
    full, and leaves neither the beton nor its temporary."""
    small = mounted("size=2m")
    out = small / "data"
    code = main(convert_argv(tmp_path, "--out", str(out), "--only", "gaussian_noise"))
    printed = capsys.readouterr().out
    assert code == 1
    assert f"FAILED gaussian_noise: {out / 'gaussian_noise.beton'}: FFCV writer failed" in printed
    assert "(the disk is full)" in printed
    _nothing_written(out)


_LIMITED = """
import resource, signal, sys
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
from fastmix.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sigxfsz", ["ignore", "default"])
def test_file_size_limit(tmp_path, sigxfsz):
    """``ulimit -f`` 1 MiB (a beton needs 16): with SIGXFSZ ignored the worker's write fails
    with EFBIG, with the default action the worker is killed by SIGXFSZ. Either way the writer
    reports it, names the limit, and nothing is left behind."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            _LIMITED,
            sigxfsz,
            *convert_argv(tmp_path, "--out", str(out), "--only", "gaussian_noise"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"FAILED gaussian_noise: {out / 'gaussian_noise.beton'}: FFCV writer failed" in (
        res.stdout
    )
    assert "file size limit (ulimit -f) 1048576 bytes" in res.stdout
    if sigxfsz == "ignore":
        assert "File too large" in res.stderr  # the worker's own OSError, on stderr
    _nothing_written(out)


def test_manifest_write_failure_is_a_data_error(tmp_path):
    """The manifest itself cannot be written (EFBIG here; ENOSPC alike): DataError naming it,
    no temporary left."""
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))\n"
        "from fastmix.converters.build import save_manifest\n"
        "from fastmix.errors import DataError\n"
        "try:\n"
        "    save_manifest(sys.argv[1], {'format': 1, 'betons': {'x' * 100: {}}})\n"
        "except DataError as e:\n"
        "    print(e)\n"
        "    raise SystemExit(3)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 3, res.stderr
    assert f"{tmp_path / 'manifest.json'}: cannot write the manifest (File too large)" in (
        res.stdout
    )
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- configs ---


@pytest.mark.parametrize(
    "args,message",
    [
        (["--set", "train.lrr=0.1"], "unknown key train.lrr; valid keys: epochs, batch_size, lr"),
        (["--set", "trian.lr=0.1"], "unknown section [trian]; valid sections: data, model"),
        (["--set", "train.lr=-0.1"], "train.lr must be > 0"),
        (["--set", "train.lr=inf"], "train.lr must be a finite number, got inf"),
        (["--set", "train.lr=nan"], "train.lr must be a finite number, got nan"),
        (["--set", "train.epochs=0"], "train.epochs must be >= 1"),
        (["--set", "train.epochs=1.5"], "train.epochs: expected an integer, got 1.5"),
        (["--set", "train.log_every=0"], "train.log_every must be >= 1"),
        (["--seed", "-1"], "train.seed must be >= 0"),
        (
            ["--set", "augment.kind='cutmix'"],
            "augment.kind: unknown augmentation 'cutmix'; valid: none, pixmix, sp",
        ),
        (["--set", "oe.ratio=0"], "oe.ratio must be >= 1"),
        (["--set", "train.lr"], "expected section.key=value"),
        (["--config", "nosuchpreset"], "unknown preset 'nosuchpreset'; valid presets:"),
        (
            ["--set", "eval.ood_sets=['fmnist_test', 'cifar10']"],
            "eval.ood_sets: unknown set(s) 'cifar10'; valid: mnist_train, mnist_val, mnist_test, ",
        ),
    ],
)
def test_train_refuses_bad_configs_before_writing(tmp_path, capsys, args, message):
    out = tmp_path / "runs"
    code = main(
        [
            "train",
            "--variant",
            "base",
            "--config",
            "smoke",
            "--out",
            str(out),
            "--data",
            str(tmp_path),
            "--no-progress",
            *args,
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


NO_CUDA = pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CUDA present")


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_train_and_eval_refuse_a_missing_gpu_before_writing(tmp_path, capsys, device):
    """``train.device = "cuda"`` on a machine without CUDA: exit 2 naming the device, no run
    directory (was: a RuntimeError traceback after the run directory had been written);
    ``fastmix eval --device cuda`` alike (was: torch's AssertionError from ``.to("cuda")``)."""
    out = tmp_path / "runs"
    code = main(
        [
            "train",
            "--variant",
            "base",
            "--config",
            "smoke",
            "--out",
            str(out),
            "--data",
            str(tmp_path),
            "--no-progress",
            "--set",
            f"train.device='{device}'",
        ]
    )
    assert code == 2
    assert f"device '{device}': CUDA is not available here" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(dumps(load_config("base", ["smoke"])))
    assert main(["eval", str(run), "--device", "cuda"]) == 2
    assert "device 'cuda': CUDA is not available here" in capsys.readouterr().err
    assert not (run / "results.json").exists()


def test_unknown_variant_lists_the_registered_ones(tmp_path, capsys):
    assert main(["train", "--variant", "mixup", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "unknown variant 'mixup'; valid: base, base_oe, sp, sp_oe, pixmix, pixmix_oe" in err
    assert err.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_config_with_a_bad_toml_file(tmp_path, capsys):
    bad = tmp_path / "mine.toml"
    bad.write_text("[train]\nlr = = 1\n")
    code = main(["train", "--config", str(bad), "--out", str(tmp_path / "runs"), "--no-progress"])
    assert code == 2 and f"{bad}: invalid TOML" in capsys.readouterr().err


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda t: t.replace('"fmnist_test"', '"cifar10"', 1),
            "config.toml: eval.ood_sets: unknown set(s) 'cifar10'",
        ),
        (lambda t: t.replace("lr = 0.1", "lr = -1.0"), "config.toml: train.lr must be > 0"),
        (
            lambda t: t.replace("[oe]", "[oe_renamed]"),
            "config.toml: not a complete fastmix run config (no section [oe])",
        ),
    ],
)
def test_eval_refuses_a_run_with_a_bad_config(tmp_path, capsys, edit, message):
    """An edited ``<run>/config.toml`` is checked again at eval time (and on --resume)."""
    run = tmp_path / "run"
    run.mkdir()
    text = dumps(load_config("base", ["smoke"]))
    assert edit(text) != text
    (run / "config.toml").write_text(edit(text))
    assert main(["eval", str(run)]) == 2
    assert message in capsys.readouterr().err
    assert not (run / "results.json").exists()
    code = main(["train", "--resume", str(run), "--no-progress"])
    assert code == 2 and message in capsys.readouterr().err
