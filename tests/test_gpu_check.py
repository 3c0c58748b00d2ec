"""``make gpu-check`` (``fastmix.bench.gpu_check``) on a machine without a GPU, and every step
of it rehearsed on the CPU through the offline bundle (``make gpu-bundle``), so the first GPU run
does not fail on the script or the install.

* The bundle, built for this interpreter without raw data, installs with ``pip --no-index`` into
  a fresh folder (no index, no find-links, no pip config: the network-less path) and its
  ``run.sh`` runs the rehearsal from a work folder, importing ffcv and fastmix from that folder.
* The bundle's ffcv wheel built for Python 3.12 (the GPU image's Python; pyenv's here) installs
  offline under 3.12 and its C extension loads there with the libraries auditwheel copied in.

* Without CUDA, ``make gpu-check`` stops within seconds, exit status 2, with a message that
  says no CUDA device was found, and writes nothing.
* ``--device cpu`` runs every step but the bench (tiny trainings): exit 0, one JSON record
  whose steps all passed with their figures, and the Markdown section; the same record dressed
  as a GPU one renders the GPU-only lines (title, the six-model total, the 99.3% epoch).
* A step whose command fails or overruns its time is recorded as failed, with its output.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fastmix.bench.gpu_check import Check, Step, build_parser, markdown, run_timed

from fastmix.config import VARIANTS
from tests.conftest import REPO, link_betons

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
# Tiny trainings and evaluations for the rehearsal, on the betons they need and one OOD set.
SETS = ("mnist_train", "mnist_val", "mnist_test", "fmnist_train", "fractals", "gaussian_noise")
TINY = [
    "--config",
    "smoke",
    "--set",
    "model.name='lenet'",
    "--set",
    "model.width=4",
    "--set",
    "eval.scores=['msp']",
    "--set",
    "eval.features=false",
]


@NO_CUDA
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_gpu_check_without_cuda_stops_at_once_naming_it(tmp_path):
    out = tmp_path / "gpu"
    t0 = time.monotonic()
    # -o install: the venv is there (this test runs in it); do not reinstall it.
    r = subprocess.run(
        [
            "make",
            "-o",
            "install",
            "gpu-check",
            f"PY={sys.executable}",
            f"GPU_OUT={out}",
            f"DATA_DIR={tmp_path / 'data'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.monotonic() - t0
    assert r.returncode != 0
    assert "gpu-check] Error 2" in r.stderr, r.stderr  # the script's own status: 2
    assert "no CUDA device found" in r.stderr
    assert seconds < 30, f"took {seconds:.1f} s"
    assert not out.exists() and not (tmp_path / "data").exists()


def offline_env(**extra: str) -> dict[str, str]:
    """This process's environment with pip cut off from every index (the GPU box's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull, **extra}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """``make gpu-bundle`` for this interpreter, without the raw data."""
    out = tmp_path_factory.mktemp("bundle") / "gpu_bundle"
    r = subprocess.run(
        [sys.executable, "-m", "fastmix.bench.gpu_bundle", "--out", str(out), "--python",
         sys.executable],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def rehearsal(bundle, data_dir, tmp_path_factory) -> tuple[Path, str, dict, str]:
    """The bundle's ``run.sh --device cpu`` on some of the suite's betons: (out, output,
    record, markdown)."""
    root = tmp_path_factory.mktemp("gpu-rehearsal")
    data, out = link_betons(data_dir, root / "data", SETS), root / "out"
    env = offline_env(
        PYTHON=sys.executable,
        OUT=str(out),
        FASTMIX_SITE=str(root / "site"),
        FASTMIX_WORK=str(root / "work"),
        FASTMIX_DATA=str(data),
    )
    r = subprocess.run(
        [
            "bash",
            str(bundle / "run.sh"),
            "--device",
            "cpu",
            "--skip",
            "bench",
            *(["--skip", "tests"] if torch.cuda.is_available() else []),  # gpu-check runs them
            *TINY,
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return (
        out,
        r.stdout,
        json.loads((out / "gpu_check.json").read_text()),
        (out / "gpu_check.md").read_text(),
    )


@pytest.mark.slow
def test_the_bundle_installs_offline_and_imports_from_its_folder(bundle, rehearsal):
    out, output, _, _ = rehearsal
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["total_mib"] < 60 and not manifest["raw"]
    wheels = sorted(p.name.split("-")[0] for p in (bundle / "wheels").glob("*.whl"))
    assert wheels == ["assertpy", "fastmix", "ffcv", "terminaltables"]
    facts = (out / "machine.txt").read_text()
    site = (out.parent / "site").resolve()
    assert f"ffcv from {site}/ffcv/__init__.py" in facts
    assert f"fastmix from {site}/fastmix/__init__.py" in facts
    assert "threading layer" in facts and "installed into" in output


@pytest.mark.slow
def test_the_ffcv_wheel_for_python_312_loads_under_312(tmp_path):
    from fastmix.bench.gpu_bundle import build_ffcv, find_python

    try:
        py312 = find_python("3.12")
    except SystemExit as e:
        pytest.skip(str(e))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = build_ffcv(py312, wheels, tmp_path)
    assert "cp312-cp312-manylinux" in wheel.name
    site = tmp_path / "site"
    subprocess.run(
        [py312, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        env=offline_env(), check=True, timeout=300,
    )  # fmt: skip
    (ext,) = (site / "ffcv").glob("_libffcv.cpython-312-*.so")
    code = (
        "import importlib.util, sys; "
        "spec = importlib.util.spec_from_file_location('ffcv._libffcv', sys.argv[1]); "
        "spec.loader.exec_module(importlib.util.module_from_spec(spec)); print('loaded')"
    )
    r = subprocess.run(
        [py312, "-c", code, str(ext)], capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ.get("PATH", "")},
    )  # fmt: skip
    assert r.stdout.strip() == "loaded", r.stderr[-2000:]


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_step_into_one_record(rehearsal):
    out, _, rec, md = rehearsal
    assert rec["ok"] and rec["environment"]["rehearsal"]
    steps = {s["name"]: s for s in rec["steps"]}
    assert all(s["status"] == "ok" for s in steps.values()), steps
    if torch.cuda.is_available():
        assert list(steps) == ["data", "train", "eval", "base"]
    else:
        assert list(steps) == ["data", "tests", "train", "eval", "base"]
        assert steps["tests"]["figures"].get("skipped", 0) >= 4  # test_cuda.py, no GPU here
        assert "-m cuda" in steps["tests"]["command"]
    train = steps["train"]["figures"]
    assert train["wall_s"] > 0 and sorted(train["runs"]) == sorted(f"{v}-s0" for v in VARIANTS)
    for run in train["runs"].values():
        assert run["epochs"] == 1 and len(run["epoch_end_wall_s"]) == 1
        assert 0 < run["epoch_end_wall_s"][0] <= train["wall_s"]
    evals = steps["eval"]["figures"]["runs"]
    assert sorted(evals) == sorted(train["runs"])
    assert all(e["device"] == "cpu" and 0 <= e["test_accuracy"] <= 1 for e in evals.values())
    base = steps["base"]["figures"]
    assert base["epochs"] == 1 and "target_epoch" not in base  # 12 steps do not reach 99.3%
    assert (out / "runs" / "base-s0" / "results.json").is_file()
    assert md.startswith("### CPU rehearsal of the GPU check")
    assert "`fastmix train --variant all " in md and "`fastmix eval " in md
    assert "99.3% not reached in 1 epochs" in md
    assert sum(ln.startswith("| ") for ln in md.splitlines()) == 1 + len(steps) + 1 + 6


@pytest.mark.slow
def test_a_gpu_record_renders_the_gpu_lines(rehearsal):
    _, _, rec, _ = rehearsal
    gpu = copy.deepcopy(rec)
    gpu["environment"].update(
        rehearsal=False,
        gpu="NVIDIA H200",
        gpu_memory_gib=139.8,
        driver="570.00",
        cuda="13.0",
        cudnn=91000,
    )
    steps = {s["name"]: s for s in gpu["steps"]}
    steps["base"]["figures"].update(
        target_epoch=2, target_val_acc_reached=0.9935, target_wall_s=21.5, target_step_seconds=9.25
    )
    md = markdown(gpu)
    assert md.startswith("### GPU check, ") and "NVIDIA H200 (139.8 GiB), driver 570.00" in md
    assert "(CUDA 13.0, cuDNN 91000)" in md
    total = steps["train"]["seconds"] + steps["eval"]["seconds"]
    assert f"Six models trained and evaluated: **{total:.1f} s**" in md
    assert "Numba's and torch's on-disk caches were warm" in md or "tests" not in steps
    assert "epoch 2 (99.35%): 21.5 s from launch, 9.2 s of training steps" in md


def test_a_failing_or_overrunning_step_is_recorded_not_fatal(tmp_path):
    check = Check(build_parser().parse_args(["--out", str(tmp_path)]), {})
    cmd = [sys.executable, "-c", "print('bench exploded'); raise SystemExit(3)"]
    step = Step("bench", "bench")
    check.finish(step, run_timed(cmd, tmp_path / "a.log", 60), cmd, tmp_path / "a.log")
    assert step.status == "failed" and step.returncode == 3 and step.note == "exit status 3"
    assert "bench exploded" in step.output_tail and step.command.startswith("python -c")
    cmd = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]
    t0 = time.monotonic()
    proc = run_timed(cmd, tmp_path / "b.log", 3)
    assert time.monotonic() - t0 < 30 and proc.returncode is None
    step = Step("tests", "tests")
    check.finish(step, proc, cmd, tmp_path / "b.log")
    assert step.status == "failed" and step.note.startswith("stopped after")
    assert "started" in step.output_tail


def test_the_default_budget_is_what_the_steps_run_may_take(tmp_path):
    """No ``--budget``: the sum of the caps of the steps that run, so no step is cut by a
    default; a benchmark that fails or is cut leaves the check's verdict alone."""
    from fastmix.bench.gpu_check import STEP_CAPS

    check = Check(build_parser().parse_args(["--out", str(tmp_path), "--skip", "bench"]), {})
    assert check.args.budget == sum(STEP_CAPS.values()) - STEP_CAPS["bench"]
    check = Check(build_parser().parse_args(["--out", str(tmp_path), "--skip", "train"]), {})
    assert check.args.budget == sum(STEP_CAPS.values()) - STEP_CAPS["train"] - STEP_CAPS["eval"]
    check.args.argv = []
    check.steps = [Step("train", "t", status="ok"), Step("bench", "b", status="failed")]
    assert check.record()["ok"]
    check.steps[0].status = "failed"
    assert not check.record()["ok"]
