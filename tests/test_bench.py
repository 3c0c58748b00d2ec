"""`fastmix bench` runs its code paths on small settings (no figures asserted: no timed tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastmix.cli import main


def test_bench_train_and_e2e_smoke(data_dir, tmp_path):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "train",
            "--models",
            "lenet_oe,lenet",
            "--steps",
            "2",
            "--rounds",
            "1",
            "--no-compile",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    record = json.loads(out.read_text())
    assert record["machine"]["cores"] >= 1 and "torch" in record["machine"]
    assert record["machine"]["ffcv"] == "1.0.2"  # the installed distribution, not ffcv.__version__
    models = record["train"]["models"]
    assert models["lenet_oe"]["params"] == 21_840  # the OE paper's network
    for row in models.values():
        assert row["one_run_images_per_s"] > 0 and row["six_runs_images_per_s"] > 0
        assert len(row["rounds"]["one"]) == 1
    pool = record["train"]["pool"]  # the max-pool kernel beside F.max_pool2d, both orders
    assert pool["step_speedup"] > 0 and [len(v) for v in pool["rounds_ms"].values()] == [2, 2]
    code = main(
        [
            "bench",
            "e2e",
            "--data",
            str(data_dir),
            "--e2e-variants",
            "base,sp_oe",
            "--config",
            "smoke",
            "--reference-steps",
            "12",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    e2e = json.loads(out.read_text())["e2e"]
    assert set(e2e["fastmix"]["test_acc"]) == set(e2e["reference"]["test_acc"]) == {"base", "sp_oe"}
    assert e2e["reference"]["max_steps"] == 12
    assert e2e["ratio"] == pytest.approx(e2e["reference"]["wall_s"] / e2e["fastmix"]["wall_s"])


def test_bench_loader_smoke_interleaves_and_plots(shared_data, tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "loader.png"
    code = main(["bench", "loader", "--raw", str(shared_data), "--loader-n", "1536",
                 "--baseline-n", "1024", "--loader-epochs", "2", "--no-latency",
                 "--plot", str(png), "--json", str(out)])  # fmt: skip
    assert code == 0
    loader = json.loads(out.read_text())["loader"]
    for v in ("none", "sp", "pixmix"):
        assert len(loader["baseline"][v]["epochs"]) == 2  # one epoch per round, per config
        rates = {t: r["epochs"] for t, r in loader["ffcv"][v].items()}
        assert set(rates) == {"1", "2"} and all(len(e) == 2 and min(e) > 0 for e in rates.values())
        s = loader["thread_scaling"][v]
        assert s["min"] <= s["median"] <= s["max"]
        ratios = [a / b for a, b in zip(rates["2"], rates["1"], strict=True)]
        assert abs(s["median"] - sum(ratios) / 2) < 1e-9  # median of two = their mean
        machine = loader["machine_scaling"][v]  # the probe loops ran in the same rounds
        assert set(machine) == {"vector", "chain"}
        assert all(0 < m["min"] <= m["median"] <= m["max"] for m in machine.values())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_machine_probe_counts_its_tasks_and_does_the_work():
    from fastmix.bench.bench_loader import MachineProbe, time_epoch

    for kind in ("vector", "chain"):
        probe = MachineProbe(2, kind, calls=3)
        before = probe.rows.copy()
        assert sum(len(b[1]) for b in probe) == 3 * MachineProbe.TASKS
        assert not np.array_equal(probe.rows, before)  # the loop ran (not optimised away)
        rate, per_cpu = time_epoch(probe)
        assert rate > 0 and per_cpu > 0
