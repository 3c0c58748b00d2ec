"""`fastmix bench` runs its code paths on small settings (no figures asserted: no timed tests)."""

from __future__ import annotations

import json

from fastmix.cli import main


def test_bench_train_and_e2e_smoke(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    code = main(["bench", "train", "--data", str(data_dir), "--variants", "base,pixmix_oe",
                 "--steps", "2", "--no-compile", "--json", str(out)])
    assert code == 0
    record = json.loads(out.read_text())
    assert record["machine"]["cores"] >= 1 and "torch" in record["machine"]
    v = record["train"]["variants"]
    assert v["base"]["images_per_s"] > 0
    # OE batches carry one outlier per in-distribution image by default
    assert abs(v["pixmix_oe"]["total_images_per_s"] / v["pixmix_oe"]["images_per_s"] - 2) < 1e-9
