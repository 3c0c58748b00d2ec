"""Calibration metrics and temperature scaling against hand cases and independent references."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastmix.evaluate import calibration as K


def ref_ece_mce(conf, correct, n_bins=15):
    """Guo et al. style loop: bins (lo, hi], confidence 0 goes to the first bin."""
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    edges = np.linspace(0, 1, n_bins + 1)
    e, m = 0.0, 0.0
    for b in range(n_bins):
        inb = (conf > edges[b]) & (conf <= edges[b + 1])
        if b == 0:
            inb |= conf == 0.0
        if inb.any():
            gap = abs(correct[inb].mean() - conf[inb].mean())
            e += inb.mean() * gap
            m = max(m, gap)
    return e, m


def ref_rms(conf, correct, beta=100, skip_last=False):
    """The Hendrycks calib_err binning; skip_last=True reproduces the reference's bug."""
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    idx = np.argsort(conf, kind="stable")
    conf, correct = conf[idx], correct[idx]
    bins = [[i * beta, (i + 1) * beta] for i in range(max(1, len(conf) // beta))]
    bins[-1] = [bins[-1][0], len(conf)]
    total = 0.0
    for lo, hi in bins[:-1] if skip_last else bins:
        total += (hi - lo) / len(conf) * (conf[lo:hi].mean() - correct[lo:hi].mean()) ** 2
    return np.sqrt(total)


def sample_labels(rng, z):
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    u = rng.random((z.shape[0], 1))
    return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), z.shape[1] - 1).astype(np.int64)


# ------------------------------------------------------------------------------- hand cases


@pytest.mark.parametrize(
    "conf,n_correct,n,expected",
    [(0.8, 8, 10, 0.0), (0.8, 80, 100, 0.0), (0.9, 5, 10, 0.4), (0.6, 10, 10, 0.4)],
)
def test_ece_mce_single_bin(conf, n_correct, n, expected):
    c = np.full(n, conf)
    k = np.r_[np.ones(n_correct), np.zeros(n - n_correct)].astype(bool)
    assert K.ece(c, k) == pytest.approx(expected, abs=1e-12)
    assert K.mce(c, k) == pytest.approx(expected, abs=1e-12)


def test_ece_two_bins_by_hand():
    # 4 at 0.95 with 3 right: gap 0.2; 6 at 0.3 with 1 right: gap 0.3 - 1/6 = 2/15
    c = np.r_[np.full(4, 0.95), np.full(6, 0.3)]
    k = np.r_[1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    assert K.ece(c, k) == pytest.approx(0.4 * 0.2 + 0.6 * 2 / 15)  # = 0.16
    assert K.ece(c, k) == pytest.approx(0.16)
    assert K.mce(c, k) == pytest.approx(0.2)


def test_bins_right_closed_and_zero_in_first():
    lo, hi, count, acc, conf = K.reliability_bins(
        np.array([0.0, 1 / 3, 0.34, 2 / 3, 1.0]), np.array([1, 0, 1, 1, 0]), n_bins=3
    )
    np.testing.assert_allclose(lo, [0, 1 / 3, 2 / 3])
    np.testing.assert_allclose(hi, [1 / 3, 2 / 3, 1])
    assert count.tolist() == [2, 2, 1]  # 1/3 closes bin 0, 2/3 closes bin 1
    np.testing.assert_allclose(acc, [0.5, 1.0, 0.0])
    np.testing.assert_allclose(conf, [1 / 6, (0.34 + 2 / 3) / 2, 1.0])


def test_reliability_empty_bins_nan():
    _, _, count, acc, conf = K.reliability_bins(np.array([0.95, 0.97]), np.array([1, 1]))
    assert count.sum() == 2 and count[-1] == 2
    assert np.isnan(acc[:-1]).all() and np.isnan(conf[:-1]).all()
    assert K.mce(np.array([0.95, 0.97]), np.array([1, 1])) == pytest.approx(0.04)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_mce_vs_loop_reference(seed, n_bins):
    rng = np.random.default_rng(seed)
    c = rng.beta(5, 1, 1000)
    c[:5] = [0.0, 1.0, 0.2, 0.4, 0.6]  # values on bin edges
    k = rng.random(1000) < c**1.5
    e, m = ref_ece_mce(c, k, n_bins)
    assert K.ece(c, k, n_bins) == pytest.approx(e, abs=1e-12)
    assert K.mce(c, k, n_bins) == pytest.approx(m, abs=1e-12)


# ------------------------------------------------------------------------------- RMS


def test_rms_includes_last_bin():
    """250 samples, bins of 100: [0, 100) calibrated, [100, 250) (the last bin, holding the
    remainder) has confidence 0.9 and accuracy 0.  RMS = sqrt(150/250 * 0.81); the reference
    code, which skips the last bin, would report 0."""
    c = np.r_[np.full(100, 0.5), np.full(150, 0.9)]
    k = np.r_[np.ones(50), np.zeros(50), np.zeros(150)]
    expected = np.sqrt(150 / 250 * 0.81)
    assert K.rms_calibration_error(c, k) == pytest.approx(expected)
    assert ref_rms(c, k) == pytest.approx(expected)
    assert ref_rms(c, k, skip_last=True) == 0.0


def test_rms_single_bin_when_small():
    c = np.full(30, 0.7)
    k = np.r_[np.ones(15), np.zeros(15)]
    assert K.rms_calibration_error(c, k) == pytest.approx(0.2)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n,bin_size", [(1000, 100), (1234, 100), (57, 10), (99, 100)])
def test_rms_vs_reference(seed, n, bin_size):
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.1, 1, n)
    k = rng.random(n) < c**2
    assert K.rms_calibration_error(c, k, bin_size) == pytest.approx(
        ref_rms(c, k, bin_size), abs=1e-12
    )


def test_rms_perfectly_calibrated_by_construction():
    # 10 bins of 100, each bin: confidence q, exactly 100*q correct
    qs = np.linspace(0.1, 1.0, 10)
    c = np.repeat(qs, 100)
    k = np.concatenate(
        [np.r_[np.ones(int(round(q * 100))), np.zeros(100 - int(round(q * 100)))] for q in qs]
    )
    assert K.rms_calibration_error(c, k) == pytest.approx(0.0, abs=1e-12)
    assert K.ece(c, k) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------- NLL, Brier


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scale", [0.5, 5.0, 100.0])
def test_nll_brier_vs_torch(seed, scale):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, scale, (200, 10))
    y = rng.integers(0, 10, 200)
    t = torch.as_tensor(z, dtype=torch.float64)
    ref_nll = F.cross_entropy(t, torch.as_tensor(y)).item()
    p = torch.softmax(t, 1).numpy()
    ref_brier = np.mean(np.sum((p - np.eye(10)[y]) ** 2, axis=1))
    assert K.nll(z, y) == pytest.approx(ref_nll, rel=1e-12)
    assert K.brier(z, y) == pytest.approx(ref_brier, rel=1e-12, abs=1e-15)


def test_brier_hand():
    # uniform over 4 classes: (3/4)^2 + 3 (1/4)^2 = 0.75 ; log 4 nll
    z = np.zeros((3, 4))
    y = np.array([0, 1, 3])
    assert K.brier(z, y) == pytest.approx(0.75)
    assert K.nll(z, y) == pytest.approx(np.log(4))


# ------------------------------------------------------------------------------- temperature


@pytest.mark.parametrize("T0", [0.5, 1.5, 3.0])
def test_fit_temperature_recovers_known_T(T0):
    rng = np.random.default_rng(int(T0 * 10))
    z_true = rng.normal(0, 2.0, (20000, 10))
    y = sample_labels(rng, z_true)
    z = z_true * T0
    T = K.fit_temperature(z, y)
    assert T == pytest.approx(T0, rel=0.05)
    assert K.nll(z / T, y) <= K.nll(z, y) + 1e-12
    # independent check: dense grid over the search range, fitted NLL is no worse
    grid = T0 * np.exp(np.linspace(-0.3, 0.3, 25))
    nlls = np.array([K.nll(z / g, y) for g in grid])
    assert K.nll(z / T, y) <= nlls.min() + 1e-12
    assert abs(grid[np.argmin(nlls)] - T) <= 0.03 * T  # grid step is 2.5%


def test_fit_temperature_stationary_point():
    rng = np.random.default_rng(9)
    z = rng.normal(0, 3.0, (3000, 10))
    y = sample_labels(rng, z * 0.7)
    T = K.fit_temperature(z, y)
    # d/dT NLL(z/T) = 0 at the optimum: check with torch autograd in float64
    t = torch.tensor(T, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(torch.as_tensor(z) / t, torch.as_tensor(y))
    loss.backward()
    assert abs(t.grad.item()) < 1e-7
    assert K.fit_temperature(z, y) == T  # deterministic


def test_fit_temperature_hits_bound_for_separable_data():
    z = np.eye(5)[np.arange(50) % 5] * 3.0
    y = np.arange(50) % 5
    assert K.fit_temperature(z, y) == 0.05


def test_fit_temperature_hits_upper_bound_for_random_labels():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (2000, 10))
    y = rng.integers(0, 10, 2000)
    assert K.fit_temperature(z, y) == 20.0


def test_temperature_improves_overconfident_model():
    rng = np.random.default_rng(2)
    z_true = rng.normal(0, 1.5, (5000, 10))
    y = sample_labels(rng, z_true)
    z = 3.0 * z_true  # overconfident
    before = K.calibration_report(z, y)
    T = K.fit_temperature(z, y)
    after = K.calibration_report(z, y, temperature=T)
    assert after["temperature"] == T and before["temperature"] == 1.0
    assert after["nll"] < before["nll"]
    assert after["ece"] < before["ece"]
    assert after["accuracy"] == before["accuracy"]


# ------------------------------------------------------------------------------- reports


def test_calibration_report_vs_parts():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 3, (500, 10)).astype(np.float32)
    y = rng.integers(0, 10, 500)
    T = 1.7
    rep = K.calibration_report(z, y, temperature=T)
    assert set(rep) == {"ece", "mce", "rms", "nll", "brier", "accuracy", "temperature"}
    p = torch.softmax(torch.as_tensor(z.astype(np.float64)) / T, 1).numpy()
    conf, correct = p.max(1), p.argmax(1) == y
    e, m = ref_ece_mce(conf, correct)
    assert rep["ece"] == pytest.approx(e, abs=1e-12)
    assert rep["mce"] == pytest.approx(m, abs=1e-12)
    assert rep["rms"] == pytest.approx(ref_rms(conf, correct), abs=1e-12)
    assert rep["nll"] == pytest.approx(K.nll(z.astype(np.float64) / T, y), rel=1e-12)
    assert rep["accuracy"] == pytest.approx(correct.mean())
    assert rep["temperature"] == T


def test_calibration_with_ood_protocol():
    rng = np.random.default_rng(4)
    z_in = rng.normal(0, 3, (400, 10))
    y = rng.integers(0, 10, 400)
    z_out = rng.normal(0, 1, (150, 10))
    T = 1.3
    rep = K.calibration_with_ood(z_in, y, z_out, temperature=T)
    only_in = K.calibration_report(z_in, y, temperature=T)
    assert set(rep) == set(only_in)
    p_in = torch.softmax(torch.as_tensor(z_in) / T, 1).numpy()
    p_out = torch.softmax(torch.as_tensor(z_out) / T, 1).numpy()
    conf = np.r_[p_in.max(1), p_out.max(1)]
    correct = np.r_[p_in.argmax(1) == y, np.zeros(150, bool)]
    e, m = ref_ece_mce(conf, correct)
    assert rep["ece"] == pytest.approx(e, abs=1e-12)
    assert rep["mce"] == pytest.approx(m, abs=1e-12)
    assert rep["rms"] == pytest.approx(ref_rms(conf, correct), abs=1e-12)
    for key in ("nll", "brier", "accuracy", "temperature"):  # ID only
        assert rep[key] == only_in[key]


def test_calibration_with_ood_uniform_ood_is_cheap():
    """OOD with uniform softmax (confidence 1/C) costs little; confident OOD costs a lot."""
    rng = np.random.default_rng(5)
    z_in = np.eye(10)[rng.integers(0, 10, 300)] * 50.0
    y = z_in.argmax(1)
    flat = K.calibration_with_ood(z_in, y, np.zeros((100, 10)))
    confident = K.calibration_with_ood(z_in, y, np.eye(10)[np.zeros(100, int)] * 50.0)
    assert flat["ece"] == pytest.approx(100 / 400 * 0.1, abs=1e-9)
    assert confident["ece"] == pytest.approx(100 / 400 * 1.0, abs=1e-9)


# ------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "conf,correct",
    [
        ([], []),
        ([0.5, 0.6], [1]),
        ([0.5, np.nan], [1, 0]),
        ([1.2], [1]),
        ([-0.1], [0]),
        ([0.5], [2]),
        (np.zeros((2, 2)), np.zeros((2, 2))),
    ],
)
def test_bad_conf_correct(conf, correct):
    for fn in (K.ece, K.mce, K.rms_calibration_error, K.reliability_bins):
        with pytest.raises(ValueError):
            fn(np.asarray(conf), np.asarray(correct))


def test_bad_logits_labels():
    z = np.zeros((3, 4))
    for fn in (K.nll, K.brier, K.fit_temperature, K.calibration_report):
        with pytest.raises(ValueError):
            fn(z, np.array([0, 1]))
        with pytest.raises(ValueError):
            fn(z, np.array([0, 1, 4]))
        with pytest.raises(ValueError):
            fn(z, np.array([0, 1, -1]))
        with pytest.raises(ValueError):
            fn(np.zeros((0, 4)), np.zeros(0, int))
        with pytest.raises(ValueError):
            fn(np.array([[0.0, np.nan, 0, 0]] * 3), np.array([0, 1, 2]))
    with pytest.raises(ValueError):
        K.calibration_report(z, np.array([0, 1, 2]), temperature=0.0)
    with pytest.raises(ValueError):
        K.calibration_with_ood(z, np.array([0, 1, 2]), np.zeros((2, 5)))
    with pytest.raises(ValueError):
        K.calibration_with_ood(z, np.array([0, 1, 2]), np.zeros((0, 4)))
