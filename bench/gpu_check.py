"""``make gpu-check`` (``python -m fastmix.bench.gpu_check``): the CUDA path, checked and timed
in a few minutes on one GPU, written down as one record.

Steps, in this order (the most telling first, so a short budget cuts the least telling):

1. **Preflight**, in seconds: every module the check needs is importable and torch sees a CUDA
   device. Otherwise it prints one message that names what is missing ("no CUDA device
   found", a missing module) and exits 2 before anything is written.
2. **Data**: the betons every variant trains on are in ``--data``; if not, ``fastmix convert
   --offline`` builds them (from ``--raw``), timed.
3. **CUDA tests**: ``pytest -m cuda`` on the test files that carry the marker (six variants
   trained on CUDA with bf16 and CUDA graphs as ``auto`` resolves, CUDA fp32 logits
   against CPU logits, resume, ``cuda:0``), with ``FASTMIX_TEST_BETONS`` pointing at
   ``--data``.
4. **Six models trained and evaluated**: ``fastmix train --variant all`` at default settings,
   then ``fastmix eval`` of the six runs, each timed by wall clock around the whole command
   (the process exits only after its CUDA work has finished: airbench's synchronised timing,
   start-up and compilation included); per run, the epochs, validation accuracy, images/s and
   the evaluation's summary.
5. **Base to 99.3%**: ``fastmix train --variant base`` alone; the wall time from launch to the
   first epoch whose validation accuracy reaches 99.3% (taken as its ``metrics.csv`` row
   appears) and the training steps' own seconds up to it.
6. **``fastmix bench train``** on CUDA, through the CLI; its output and JSON are recorded as
   they are, and a failure is recorded, not fatal.

``--out`` (default ``bench/out/gpu``) receives ``gpu_check.json`` (one record: the machine,
every step's command, status, seconds and figures) and ``gpu_check.md`` (the same as a
Markdown section for bench/RESULTS.md's GPU section), rewritten after every step, plus the
steps' logs and the run directories. Exit status: 0 when every step passed, 1 when one failed
or was cut by ``--budget``, 2 when this machine cannot run the check.

What the machine needs: an NVIDIA GPU with its driver (``nvidia-smi`` for the driver
version); torch built with CUDA; ffcv 1.0.2, which compiles against OpenCV and libturbojpeg
(``make install`` sets both up; an image without them needs them installed first); numba,
numpy, scikit-learn, scipy, tqdm, pillow, matplotlib and pytest; fastmix installed
(``pip install -e .`` or the wheel, so ``fastmix.bench`` and ``fastmix.configs`` exist), run
from the checkout (the CUDA tests live in its ``tests/``); and the betons in ``--data`` or the
raw files in ``--raw`` to convert them (no network needed). ``make gpu-check`` installs into
``.venv`` first, as every make target does; on a machine whose Python already holds these,
run the module directly, or ``python bench/gpu_check.py`` in a checkout not yet installed (it
then says what is missing).

``--device cpu`` rehearses every step on the CPU (no CUDA required; ``--config`` and ``--set``
make the trainings small): it checks this script, and its record is marked as a rehearsal, not
GPU figures.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_FAILED = 1
EXIT_CANNOT_RUN = 2
TARGET_VAL_ACC = 0.993  # base at default settings reaches it on CPU (bench/RESULTS.md)
AIM_SIX_SECONDS = 60.0  # six models trained and evaluated on one H200
RECORD_FORMAT = 1
STEP_NAMES = ("tests", "train", "base", "bench")
# Seconds each step may take at most; the default ``--budget`` is their sum over the steps run.
STEP_CAPS = {"data": 240.0, "tests": 240.0, "train": 240.0, "eval": 240.0, "base": 120.0,
             "bench": 150.0}  # fmt: skip

# Module -> what to install. Looked up without importing, so a missing one is named in seconds.
NEEDS = (
    ("torch", "torch built with CUDA"),
    ("ffcv", "ffcv 1.0.2 (compiles against OpenCV and libturbojpeg; `make install`)"),
    ("numba", "numba"),
    ("numpy", "numpy"),
    ("sklearn", "scikit-learn"),
    ("scipy", "scipy"),
    ("tqdm", "tqdm"),
    ("PIL", "pillow"),
    ("matplotlib", "matplotlib"),
    ("pytest", "pytest (the CUDA tests)"),
    ("fastmix", "fastmix itself: `pip install -e .` in the checkout"),
    ("fastmix.configs", "fastmix installed (`pip install -e .`), not only on sys.path"),
)


# --------------------------------------------------------------------------- preflight ---


def missing_modules() -> list[str]:
    """What to install for each module of ``NEEDS`` that cannot be found."""
    out = []
    for module, what in NEEDS:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # the parent package itself is missing
            found = False
        if not found:
            out.append(f"missing module {module}: install {what}")
    return out


def cuda_problem() -> str | None:
    """None when torch sees a CUDA device; otherwise why not, starting "no CUDA device found"."""
    if importlib.util.find_spec("torch") is None:
        return "no CUDA device found: torch is not installed"
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return None
    if torch.version.cuda is None:
        return (
            f"no CUDA device found: torch {torch.__version__} is a CPU-only build; this "
            "check needs a CUDA build of torch and an NVIDIA GPU"
        )
    smi = nvidia_smi() or "nvidia-smi not found or failed"
    return (
        f"no CUDA device found: torch {torch.__version__} (CUDA {torch.version.cuda}) sees "
        f"no GPU (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}; "
        f"nvidia-smi: {smi})"
    )


def preflight(device: str) -> list[str]:
    """Every reason this machine cannot run the check (``device`` cpu: a rehearsal)."""
    problems = missing_modules()
    if device != "cpu":
        why = cuda_problem()
        if why:
            problems.insert(0, why)
    if not problems:
        try:
            import ffcv  # noqa: F401  (present but broken, e.g. a missing shared library)
        except Exception as e:  # noqa: BLE001  (any failure to import is the message)
            problems.append(f"ffcv is installed but does not import: {type(e).__name__}: {e}")
    return problems


def nvidia_smi() -> str | None:
    """``name, driver_version, memory.total`` of every GPU, or None."""
    try:
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    return r.stdout.strip() or None


def environment(device: str) -> dict[str, Any]:
    """GPU, driver, torch / CUDA / cuDNN, Python, library versions, CPU, date."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def pkg(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    env: dict[str, Any] = {
        "device": device,
        "rehearsal": device == "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "ffcv": pkg("ffcv"),
        "numba": pkg("numba"),
        "numpy": pkg("numpy"),
        "fastmix": pkg("fastmix"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    smi = nvidia_smi()
    env["nvidia_smi"] = smi
    env["driver"] = smi.splitlines()[0].split(",")[1].strip() if smi else None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(
            gpu=p.name,
            gpus=torch.cuda.device_count(),
            gpu_memory_gib=round(p.total_memory / 2**30, 1),
            compute_capability=f"{p.major}.{p.minor}",
            sms=p.multi_processor_count,
        )
    return env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


# -------------------------------------------------------------------------------- steps ---


@dataclass
class Step:
    """One step of the record: what ran, how it ended, what it measured."""

    name: str
    title: str
    command: str = ""
    status: str = "skipped"  # ok | failed | skipped
    seconds: float | None = None
    returncode: int | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    log: str = ""
    output_tail: str = ""


@dataclass
class Proc:
    """A finished (or timed-out) subprocess: status, wall seconds, output, epoch times."""

    returncode: int | None
    seconds: float
    output: str
    epochs: dict[str, list[float]]  # run name -> wall seconds at which each epoch row appeared


def show(cmd: Sequence[str]) -> str:
    """``cmd`` as a user would type it: ``fastmix ...``, ``python -m pytest ...``, paths under
    the working folder relative to it."""
    parts = list(cmd)
    if parts[:3] == [sys.executable, "-m", "fastmix"]:
        parts = ["fastmix", *parts[3:]]
    elif parts[:1] == [sys.executable]:
        parts = ["python", *parts[1:]]
    cwd = Path.cwd()
    out = []
    for p in parts:
        if p.startswith("/") and Path(p).is_relative_to(cwd):
            p = os.path.relpath(p, cwd)
        if re.fullmatch(r"[\w@%+=:,./-]+", p):
            out.append(p)
        elif not re.search(r'["$`\\!]', p):
            out.append(f'"{p}"')
        else:
            out.append(shlex.quote(p))
    return " ".join(out)


def _metrics_rows(run: Path) -> list[dict[str, str]]:
    try:
        with open(run / "metrics.csv", newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def _count_rows(run: Path) -> int:
    try:
        with open(run / "metrics.csv", "rb") as f:
            return max(0, f.read().count(b"\n") - 1)
    except OSError:
        return 0


def run_timed(
    cmd: Sequence[str],
    log: Path,
    timeout: float,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    watch: Sequence[Path] = (),
) -> Proc:
    """Run ``cmd`` with its output in ``log``, timed by wall clock; while it runs, note when
    each of the ``watch`` run directories' ``metrics.csv`` gains a row (an epoch ends)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    epochs: dict[str, list[float]] = {w.name: [] for w in watch}
    with open(log, "wb") as f:
        f.write(f"$ {show(cmd)}\n".encode())
        f.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
        code: int | None = None
        while True:
            code = proc.poll()
            now = time.perf_counter() - t0
            for w in watch:
                while _count_rows(w) > len(epochs[w.name]):
                    epochs[w.name].append(round(now, 2))
            if code is not None:
                break
            if now > timeout:
                _kill_group(proc)
                code = None
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
    return Proc(code, seconds, log.read_text(errors="replace"), epochs)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the step's process group (a training checkpoints and stops), then SIGKILL."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Check:
    """The whole check: options, the time left, the steps so far, and the record."""

    def __init__(self, args: argparse.Namespace, env: dict[str, Any]) -> None:
        self.args = args
        if args.budget is None:
            skipped = set(args.skip) | ({"eval"} if "train" in args.skip else set())
            args.budget = sum(cap for name, cap in STEP_CAPS.items() if name not in skipped)
        self.env = env
        self.out = Path(args.out)
        self.data = Path(args.data)
        self.t0 = time.perf_counter()
        self.steps: list[Step] = []
        self.fastmix = [sys.executable, "-m", "fastmix"]

    # ---- time

    def remaining(self) -> float:
        return self.args.budget - (time.perf_counter() - self.t0)

    def budget_for(self, cap: float) -> float | None:
        """Seconds a step may take: ``cap``, cut to what is left (None: too little to start)."""
        left = self.remaining()
        return None if left < 15 else min(cap, left)

    # ---- settings passed to every training

    def train_flags(self) -> list[str]:
        flags = ["--device", self.args.device]
        for preset in self.args.config:
            flags += ["--config", preset]
        for s in self.args.set:
            flags += ["--set", s]
        return flags

    def configs(self) -> list:
        from fastmix.config import VARIANTS, load_config

        return [
            load_config(v, self.args.config, [*self.args.set, {"data": {"dir": str(self.data)}}])
            for v in VARIANTS
        ]

    # ---- steps

    def add(self, step: Step) -> Step:
        self.steps.append(step)
        self.save()
        return step

    def finish(self, step: Step, proc: Proc | None, cmd: Sequence[str], log: Path) -> None:
        step.command = show(cmd)
        step.log = show([str(log)])
        if proc is not None:
            step.seconds = round(proc.seconds, 2)
            step.returncode = proc.returncode
            step.output_tail = _tail(proc.output)
            if proc.returncode is None:
                step.status, step.note = (
                    "failed",
                    (f"stopped after {proc.seconds:.0f} s (the budget's limit)"),
                )
            elif proc.returncode != 0:
                step.status = "failed"
                step.note = step.note or f"exit status {proc.returncode}"
            else:
                step.status = "ok"

    def record(self) -> dict[str, Any]:
        # The benchmark is recorded as it ends (ok, failed or cut), not a verdict on the check.
        checked = [s for s in self.steps if s.name != "bench"]
        ok = bool(checked) and all(s.status == "ok" for s in checked)
        return {
            "format": RECORD_FORMAT,
            "ok": ok,
            "command": show([sys.executable, "-m", "fastmix.bench.gpu_check", *self.args.argv]),
            "via_make": bool(os.environ.get("MAKELEVEL")),
            "seconds": round(time.perf_counter() - self.t0, 1),
            "budget_s": self.args.budget,
            "environment": self.env,
            "steps": [asdict(s) for s in self.steps],
        }

    def save(self) -> tuple[Path, Path]:
        from fastmix.files import atomic_write

        rec = self.record()
        js = atomic_write(
            self.out / "gpu_check.json", json.dumps(rec, indent=1, default=str) + "\n"
        )
        md = atomic_write(self.out / "gpu_check.md", markdown(rec))
        return js, md


def step_data(check: Check) -> Step:
    """The betons every variant trains on (and the test set) are there, converted if not."""
    from fastmix.errors import ConfigError, DataError
    from fastmix.train.run import require_betons

    step = Step("data", "betons for all six variants")

    def missing() -> list[str]:
        gaps = []
        for cfg in check.configs():
            try:
                require_betons(cfg)
            except (ConfigError, DataError) as e:
                gaps.append(str(e))
        manifest = check.data / "manifest.json"
        test = check.configs()[0]["data"]["test"]
        try:
            if test not in json.loads(manifest.read_text())["betons"]:
                gaps.append(f"{check.data}: no {test} beton")
        except (OSError, ValueError, KeyError):
            gaps.append(f"{manifest}: missing or unreadable")
        return sorted(set(gaps))

    gaps = missing()
    if not gaps:
        step.status, step.note = "ok", f"present in {show([str(check.data)])}"
        step.seconds = 0.0
        return step
    cmd = [*check.fastmix, "convert", "--offline", "--no-progress", "--out", str(check.data)]
    for r in check.args.raw:
        cmd += ["--raw", r]
    log = check.out / "logs" / "convert.log"
    budget = check.budget_for(STEP_CAPS["data"])
    if budget is None:
        step.note = "no time left"
        return step
    proc = run_timed(cmd, log, budget)
    check.finish(step, proc, cmd, log)
    built = re.search(r"built (\d+), up to date (\d+), skipped (\d+), failed (\d+)", proc.output)
    if built:
        step.figures = dict(
            zip(("built", "up_to_date", "skipped", "failed"), map(int, built.groups()), strict=True)
        )
    gaps = missing()
    if gaps:
        step.status = "failed"
        step.note = "still missing after convert: " + "; ".join(gaps)
    return step


def _marked_test_files(tests: Path) -> list[Path]:
    return sorted(
        p
        for p in tests.glob("test_*.py")
        if re.search(r"pytest\.mark\.cuda\b", p.read_text(errors="replace"))
    )


def step_tests(check: Check) -> Step:
    """``pytest -m cuda`` on the files that carry the marker, on the check's betons."""
    step = Step("tests", "CUDA-marked tests")
    root = _repo_root()
    files = _marked_test_files(root / "tests") if root else []
    if not files:
        step.status, step.note = "failed", "no tests/ folder with CUDA-marked tests found here"
        return step
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "cuda",
        "-q",
        "-rfEs",
        "-p",
        "no:cacheprovider",
        *(str(f.relative_to(root)) for f in files),
    ]
    env = dict(os.environ, FASTMIX_TEST_BETONS=str(check.data.resolve()))
    log = check.out / "logs" / "tests.log"
    budget = check.budget_for(STEP_CAPS["tests"])
    if budget is None:
        step.note = "no time left"
        return step
    proc = run_timed(cmd, log, budget, cwd=root, env=env)
    check.finish(step, proc, cmd, log)
    step.command = f"FASTMIX_TEST_BETONS={show([str(check.data)])} {step.command}"
    counts = {
        k: int(n)
        for n, k in re.findall(
            r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", _tail(proc.output, 1)
        )
    }
    step.figures = counts
    if step.status == "ok" and not counts.get("passed") and check.args.device != "cpu":
        step.status, step.note = "failed", "no CUDA test ran (all skipped?)"
    return step


def _repo_root() -> Path | None:
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (root / "tests" / "conftest.py").is_file():
            return root
    return None


def _run_figures(run: Path) -> dict[str, Any]:
    rows = _metrics_rows(run)
    if not rows:
        return {}
    val = [float(r["val_acc"]) for r in rows]
    rates = sorted(float(r["images_per_s"]) for r in rows)
    return {
        "epochs": len(rows),
        "final_val_acc": val[-1],
        "best_val_acc": max(val),
        "step_seconds": round(sum(float(r["seconds"]) for r in rows), 2),
        "median_images_per_s": rates[len(rates) // 2],
    }


def step_train_all(check: Check) -> tuple[Step, list[Path]]:
    """``fastmix train --variant all`` at the given settings, timed, per-run figures."""
    from fastmix.config import VARIANTS

    step = Step("train", "six models trained (`--variant all`)")
    runs_dir = check.out / "runs"
    shutil.rmtree(runs_dir, ignore_errors=True)
    runs = [runs_dir / f"{v}-s0" for v in VARIANTS]
    cmd = [
        *check.fastmix,
        "train",
        "--variant",
        "all",
        "--data",
        str(check.data),
        "--out",
        str(runs_dir),
        "--no-progress",
        *check.train_flags(),
    ]
    log = check.out / "logs" / "train_all.log"
    budget = check.budget_for(STEP_CAPS["train"])
    if budget is None:
        step.note = "no time left"
        return step, runs
    proc = run_timed(cmd, log, budget, watch=runs)
    check.finish(step, proc, cmd, log)
    step.figures = {
        "wall_s": round(proc.seconds, 2),
        "runs": {
            r.name: {**_run_figures(r), "epoch_end_wall_s": proc.epochs[r.name]} for r in runs
        },
    }
    return step, runs


def step_eval(check: Check, runs: list[Path]) -> Step:
    """``fastmix eval`` of the six runs, timed; each run's summary."""
    step = Step("eval", "six models evaluated (`fastmix eval`)")
    if not all((r / "done.json").is_file() for r in runs):
        step.note = "training did not finish"
        return step
    cmd = [
        *check.fastmix,
        "eval",
        *map(str, runs),
        "--data",
        str(check.data),
        "--device",
        check.args.device,
        "--no-progress",
    ]
    log = check.out / "logs" / "eval.log"
    budget = check.budget_for(STEP_CAPS["eval"])
    if budget is None:
        step.note = "no time left"
        return step
    proc = run_timed(cmd, log, budget)
    check.finish(step, proc, cmd, log)
    per_run = {}
    for r in runs:
        try:
            res = json.loads((r / "results.json").read_text())
        except (OSError, ValueError):
            continue
        s = res["summary"]
        per_run[r.name] = {
            "device": res["inference"]["device"],
            "inference_s": res["inference"]["seconds"],
            "seconds": res.get("seconds"),
            "test_accuracy": s["test_accuracy"],
            "mnist_c_mean": s["mnist_c_mean"],
            "ood_auroc_held_out_mean": s["ood_auroc_held_out_mean"],
            "ece_before": s["ece_before"],
            "ece_after": s["ece_after"],
        }
    step.figures = {"wall_s": round(proc.seconds, 2), "runs": per_run}
    return step


def step_base(check: Check) -> Step:
    """``fastmix train --variant base`` alone: wall time to the first epoch at 99.3%."""
    step = Step("base", f"base alone, to {TARGET_VAL_ACC:.1%} validation accuracy")
    out = check.out / "base"
    shutil.rmtree(out, ignore_errors=True)
    run = out / "base-s0"
    cmd = [
        *check.fastmix,
        "train",
        "--variant",
        "base",
        "--data",
        str(check.data),
        "--out",
        str(out),
        "--no-progress",
        *check.train_flags(),
    ]
    log = check.out / "logs" / "train_base.log"
    budget = check.budget_for(STEP_CAPS["base"])
    if budget is None:
        step.note = "no time left"
        return step
    proc = run_timed(cmd, log, budget, watch=[run])
    check.finish(step, proc, cmd, log)
    rows, walls = _metrics_rows(run), proc.epochs[run.name]
    fig: dict[str, Any] = {
        "wall_s": round(proc.seconds, 2),
        **_run_figures(run),
        "epoch_end_wall_s": walls,
        "target_val_acc": TARGET_VAL_ACC,
    }
    hit = next((i for i, r in enumerate(rows) if float(r["val_acc"]) >= TARGET_VAL_ACC), None)
    if hit is not None:
        fig.update(
            target_epoch=hit + 1,
            target_val_acc_reached=float(rows[hit]["val_acc"]),
            target_wall_s=walls[hit] if hit < len(walls) else None,
            target_step_seconds=round(sum(float(r["seconds"]) for r in rows[: hit + 1]), 2),
        )
    step.figures = fig
    return step


def step_bench(check: Check) -> Step:
    """``fastmix bench train`` through the CLI: its output and JSON as they are."""
    step = Step("bench", "`fastmix bench train`")
    js = check.out / "bench_train.json"
    js.unlink(missing_ok=True)
    cmd = [*check.fastmix, "bench", "train", "--json", str(js)]
    log = check.out / "logs" / "bench_train.log"
    budget = check.budget_for(STEP_CAPS["bench"])
    if budget is None:
        step.note = "no time left"
        return step
    proc = run_timed(cmd, log, budget)
    check.finish(step, proc, cmd, log)
    step.output_tail = _tail(proc.output, 30)
    try:
        step.figures = {"json": json.loads(js.read_text()).get("train")}
    except (OSError, ValueError):
        pass
    return step


# ----------------------------------------------------------------------------- markdown ---


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.2f}"


def _secs(x: Any) -> str:
    return "–" if x is None else f"{float(x):.1f} s"


def markdown(rec: dict[str, Any]) -> str:
    """The record as a section for bench/RESULTS.md's GPU section: machine, then every figure
    with the command that produced it, then the per-run table."""
    env = rec["environment"]
    steps = {s["name"]: s for s in rec["steps"]}
    if env.get("rehearsal"):
        title = f"### CPU rehearsal of the GPU check ({env['date'][:10]}): not GPU figures"
    else:
        title = (
            f"### GPU check, {env['date'][:10]}: {env.get('gpu')} "
            f"({env.get('gpu_memory_gib')} GiB), driver {env.get('driver')}"
        )
    lines = [
        title,
        "",
        f"torch {env['torch']} (CUDA {env['cuda']}, cuDNN {env['cudnn']}), Python "
        f"{env['python']}, ffcv {env['ffcv']}, numba {env['numba']}, numpy {env['numpy']}; "
        f"{env['cpu']}, {env['cores']} cores. `{rec['command']}`"
        f"{' (`make gpu-check`)' if rec['via_make'] else ''}, {rec['seconds']:.0f} s in all, "
        f"budget {rec['budget_s']:.0f} s"
        f"; {'every step passed' if rec['ok'] else 'NOT every step passed'}.",
        "",
        "| step | result | seconds | command |",
        "|---|---|---|---|",
    ]
    for s in rec["steps"]:
        lines.append(
            f"| {s['title']} | {_result(s)} | {_secs(s['seconds'])} | `{s['command'] or '–'}` |"
        )
    train, ev = steps.get("train"), steps.get("eval")
    if train and ev and train["status"] == ev["status"] == "ok":
        total = train["seconds"] + ev["seconds"]
        tests = steps.get("tests")
        warm = (
            " (the CUDA tests ran first: Numba's and torch's on-disk caches were warm)"
            if tests and tests["status"] != "skipped"
            else ""
        )
        lines += [
            "",
            f"Six models trained and evaluated: **{total:.1f} s** "
            f"({train['seconds']:.1f} s + {ev['seconds']:.1f} s, wall clock around each "
            f"command, start-up and compilation included{warm}; aim: under "
            f"{AIM_SIX_SECONDS:.0f} s on one H200).",
        ]
    if train and train["figures"].get("runs"):
        runs = train["figures"]["runs"]
        evals = (ev or {}).get("figures", {}).get("runs", {})
        lines += [
            "",
            "| run | epochs | best val % | steps' s | img/s (median epoch) | "
            "epoch ends (s from launch) | test % | MNIST-C % | held-out AUROC % | "
            "ECE % before / after T |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, f in runs.items():
            e = evals.get(name, {})
            ends = ", ".join(f"{t:.1f}" for t in f.get("epoch_end_wall_s", [])) or "–"
            lines.append(
                f"| {name} | {f.get('epochs', '–')} | {_pct(f.get('best_val_acc'))} | "
                f"{f.get('step_seconds', '–')} | {f.get('median_images_per_s', '–')} | {ends} | "
                f"{_pct(e.get('test_accuracy'))} | {_pct(e.get('mnist_c_mean'))} | "
                f"{_pct(e.get('ood_auroc_held_out_mean'))} | {_pct(e.get('ece_before'))} / "
                f"{_pct(e.get('ece_after'))} |"
            )
    bench = steps.get("bench")
    if bench and bench["status"] != "skipped":
        lines += [
            "",
            "`fastmix bench train` output (last lines):",
            "",
            "```",
            bench["output_tail"] or "(none)",
            "```",
        ]
    failed = [s for s in rec["steps"] if s["status"] == "failed" and s["name"] != "bench"]
    for s in failed:
        lines += ["", f"{s['title']} failed: {s['note']}."]
        if s["log"]:
            lines += [
                f"Last lines of {s['log']}:",
                "",
                "```",
                s["output_tail"] or "(no output)",
                "```",
            ]
    return "\n".join(lines) + "\n"


def _result(s: dict[str, Any]) -> str:
    f = s["figures"]
    if s["status"] == "skipped":
        return f"skipped ({s['note']})" if s["note"] else "skipped"
    if s["status"] == "failed":
        return f"**failed**: {s['note']}"
    if s["name"] == "tests":
        return ", ".join(f"{n} {k}" for k, n in f.items()) or "ok"
    if s["name"] == "base":
        if "target_epoch" not in f:
            return (
                f"{TARGET_VAL_ACC:.1%} not reached in {f.get('epochs')} epochs (best "
                f"{_pct(f.get('best_val_acc'))}%)"
            )
        return (
            f"epoch {f['target_epoch']} ({_pct(f['target_val_acc_reached'])}%): "
            f"{_secs(f['target_wall_s'])} from launch, {_secs(f['target_step_seconds'])} "
            "of training steps"
        )
    if s["name"] == "data":
        return s["note"] or ", ".join(f"{n} {k}" for k, n in f.items())
    return "ok"


# --------------------------------------------------------------------------------- main ---


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastmix.bench.gpu_check",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="bench/out/gpu", help="folder for the record, logs, runs")
    p.add_argument("--data", default="data", help="betons folder (converted when incomplete)")
    p.add_argument(
        "--raw",
        action="append",
        default=[],
        metavar="DIR",
        help="raw data folder for the conversion",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for the whole check; steps that would run past it are cut (default: the "
        "sum of the caps of the steps run, "
        + ", ".join(f"{k} {v:.0f} s" for k, v in STEP_CAPS.items())
        + ")",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=STEP_NAMES,
        help="leave a step out (repeatable)",
    )
    p.add_argument(
        "--device",
        default="cuda",
        help="cuda (the check) or cpu (a rehearsal of the steps, not GPU figures)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="PRESET",
        help="preset for every training (default: none, default settings)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override for every training",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    problems = preflight(args.device)
    if problems:
        print(
            "gpu-check: cannot run on this machine:\n" + "\n".join(f"  - {p}" for p in problems),
            file=sys.stderr,
        )
        return EXIT_CANNOT_RUN
    check = Check(args, environment(args.device))
    print(
        f"gpu-check: {check.env.get('gpu') or 'CPU rehearsal'}, torch {check.env['torch']}, "
        f"budget {args.budget:.0f} s; record in {args.out}",
        flush=True,
    )
    data = check.add(step_data(check))
    _say(data)
    if data.status != "ok":
        check.save()
        print(f"gpu-check: no betons to train on ({data.note})", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if "tests" not in args.skip:
        _say(check.add(step_tests(check)))
    if "train" not in args.skip:
        train, runs = step_train_all(check)
        _say(check.add(train))
        _say(check.add(step_eval(check, runs)))
    if "base" not in args.skip:
        _say(check.add(step_base(check)))
    if "bench" not in args.skip:
        _say(check.add(step_bench(check)))
    js, md = check.save()
    rec = check.record()
    print(
        f"gpu-check: {'every step passed' if rec['ok'] else 'a step failed'} in "
        f"{rec['seconds']:.0f} s; record: {js}, {md}"
    )
    return 0 if rec["ok"] else EXIT_FAILED


def _say(step: Step) -> None:
    print(f"  {step.title}: {step.status} ({_secs(step.seconds)}) {step.note}".rstrip(), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
