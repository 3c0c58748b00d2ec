"""The model frontier's default-model rule (``fastmix.bench.frontier``) and its time estimate."""

from __future__ import annotations

from fastmix.bench.frontier import BUDGET_S, _choose, six_variant_seconds


def _model(rate: float, seconds: float, met: list[bool], values: list[float]) -> dict:
    bars = [0.994, 0.993, 0.985, 0.94]
    return {
        "cost": {"six_runs_images_per_s": rate},
        "six_variant_s": seconds,
        "checks": [
            {"met": m, "value": v, "bar": b} for m, v, b in zip(met, values, bars, strict=True)
        ],
    }


def test_the_cheapest_model_meeting_every_floor_wins():
    models = {
        "slow_all": _model(1_000, 900, [True] * 4, [0.995, 0.995, 0.99, 0.95]),
        "fast_all": _model(5_000, 200, [True] * 4, [0.995, 0.995, 0.99, 0.95]),
        "fastest_some": _model(20_000, 50, [False, True, True, True], [0.99, 0.995, 0.99, 0.95]),
    }
    assert _choose(models) == "fast_all"


def test_without_a_model_meeting_all_floors_the_budget_then_priority_then_shortfall_decide():
    models = {
        # meets the first floor, but its six variants take longer than the budget
        "accurate_slow": _model(2_000, BUDGET_S + 1, [True, False, False, True], [0.995, 0, 0, 1]),
        # both miss only the first floor; the smaller shortfall wins, not the cheaper model
        "close": _model(20_000, 190, [False, True, True, False], [0.9936, 1, 1, 0.938]),
        "cheap": _model(26_000, 150, [False, True, True, False], [0.9915, 1, 1, 0.92]),
        "fails_second": _model(30_000, 100, [False, False, True, True], [0.999, 0, 1, 1]),
    }
    assert _choose(models) == "close"
    del models["close"], models["cheap"], models["fails_second"]
    assert _choose(models) == "accurate_slow"  # nothing fits the budget: priority over all


def test_six_variant_seconds_counts_the_outliers_of_the_oe_runs(tmp_path):
    run = tmp_path / "base-s0"
    run.mkdir()
    (run / "config.toml").write_text("[train]\nepochs = 2\n[oe]\nratio = 2\n")
    # 2 epochs x 55,000 x (3 + 3 x 3) images at 11,000 images/s
    assert six_variant_seconds(tmp_path, 11_000.0) == 2 * 55_000 * 12 / 11_000
    assert six_variant_seconds(tmp_path, None) is None
