"""Anomaly scores against independent references (naive numpy formulas, torch float64)."""

import numpy as np
import pytest
import torch

from fastmix.evaluate import scores as S


def _logits(seed: int, n: int = 64, c: int = 10, scale: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, size=(n, c))


# ----------------------------------------------------------------- naive references (moderate
# logits only: exp() of them does not overflow)


def naive_softmax(z):
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def naive_msp(z):
    return -naive_softmax(z).max(axis=1)


def naive_xent(z):
    return z.mean(axis=1) - np.log(np.exp(z).sum(axis=1))


def naive_energy(z, T=1.0):
    return -T * np.log(np.exp(z / T).sum(axis=1))


def naive_maxlogit(z):
    return -z.max(axis=1)


def naive_entropy(z):
    p = naive_softmax(z)
    return -(p * np.log(p)).sum(axis=1)


NAIVE = {
    "msp": naive_msp,
    "xent": naive_xent,
    "energy": naive_energy,
    "maxlogit": naive_maxlogit,
    "entropy": naive_entropy,
}


def torch_ref(name: str, z: np.ndarray, T: float = 1.0) -> np.ndarray:
    t = torch.as_tensor(z, dtype=torch.float64)
    if name == "msp":
        out = -torch.softmax(t, dim=1).max(dim=1).values
    elif name == "xent":
        out = t.mean(dim=1) - torch.logsumexp(t, dim=1)
    elif name == "energy":
        out = -T * torch.logsumexp(t / T, dim=1)
    elif name == "maxlogit":
        out = -t.max(dim=1).values
    elif name == "entropy":
        lp = torch.log_softmax(t, dim=1)
        out = -(lp.exp() * lp).sum(dim=1)
    else:
        raise KeyError(name)
    return out.numpy()


def test_score_names():
    assert set(S.SCORES) == {"msp", "xent", "energy", "maxlogit", "entropy"}


@pytest.mark.parametrize("name", sorted(NAIVE))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_naive_formula(name, seed):
    z = _logits(seed)
    got = S.SCORES[name](z)
    assert got.shape == (z.shape[0],) and got.dtype == np.float64
    np.testing.assert_allclose(got, NAIVE[name](z), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(NAIVE))
@pytest.mark.parametrize("scale", [0.1, 5.0, 60.0, 500.0])
def test_scores_match_torch_float64(name, scale):
    z = _logits(7, n=50, c=7, scale=scale)
    np.testing.assert_allclose(S.SCORES[name](z), torch_ref(name, z), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 10.0])
def test_energy_temperature(T):
    z = _logits(3)
    np.testing.assert_allclose(S.energy(z, T=T), naive_energy(z, T), rtol=1e-12)
    np.testing.assert_allclose(S.energy(z, T=T), torch_ref("energy", z, T), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32])
def test_any_dtype_computed_in_float64(dtype):
    z = np.array([[3, 1, -2, 0], [0, 0, 0, 0], [7, 7, 1, 2]], dtype=dtype)
    z64 = z.astype(np.float64)
    for name, fn in S.SCORES.items():
        got = fn(z)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, NAIVE[name](z64), rtol=1e-12, atol=1e-15)


def test_helpers_softmax_log_softmax():
    z = _logits(11, scale=20.0)
    t = torch.as_tensor(z)
    np.testing.assert_allclose(S.log_softmax(z), torch.log_softmax(t, 1).numpy(), atol=1e-13)
    np.testing.assert_allclose(S.softmax(z), torch.softmax(t, 1).numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(S.softmax(z).sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(S.logsumexp(z), torch.logsumexp(t, 1).numpy(), rtol=1e-14)


def test_huge_logits_are_finite():
    z = np.array([[1000.0, 0, 0], [-1000.0, 1000.0, 3.0], [1e5, -1e5, 0.0]])
    for fn in S.SCORES.values():
        assert np.all(np.isfinite(fn(z)))
    np.testing.assert_allclose(S.oe_xent(z), torch_ref("xent", z), rtol=1e-14)
    np.testing.assert_allclose(S.energy(z), torch_ref("energy", z), rtol=1e-14)


def test_msp_float64_saturation_documented():
    """[1000, 0, ...] vs [999, 0, ...]: 1 - MSP ~ 9e-435 and 2.4e-434 are below float64's
    resolution near 1 (2**-53), so MSP ties at exactly -1.0 -- as does the torch float64
    reference.  msp_logit (log-odds, strictly monotone in MSP) keeps them apart."""
    z = np.zeros((2, 10))
    z[0, 0], z[1, 0] = 1000.0, 999.0
    m = S.msp(z)
    assert m[0] == m[1] == -1.0
    assert np.array_equal(m, torch_ref("msp", z))
    lo = S.msp_logit(z)
    np.testing.assert_allclose(lo, [np.log(9.0) - 1000.0, np.log(9.0) - 999.0], rtol=1e-15)
    assert lo[0] < lo[1]  # the more confident one is less anomalous
    # saturation only starts at a margin of about 36.7 = 53 ln 2: below it MSP separates
    z2 = np.zeros((2, 2))
    z2[0, 0], z2[1, 0] = 30.0, 29.0
    m2 = S.msp(z2)
    assert m2[0] < m2[1]
    np.testing.assert_allclose(m2, -1.0 / (1.0 + np.exp(-np.array([30.0, 29.0]))), rtol=1e-15)


@pytest.mark.parametrize("seed", [0, 1])
def test_msp_logit_same_order_as_msp(seed):
    z = _logits(seed, n=200, scale=2.0)
    m, lo = S.msp(z), S.msp_logit(z)
    np.testing.assert_allclose(lo, np.log1p(m) - np.log(-m), atol=1e-9)  # log((1-p)/p)
    assert np.array_equal(np.argsort(m, kind="mergesort"), np.argsort(lo, kind="mergesort"))


def test_msp_ties_in_max():
    z = np.array([[2.0, 2.0, 0.0], [5.0, 5.0, 5.0]])
    np.testing.assert_allclose(S.msp(z), naive_msp(z), rtol=1e-15)
    np.testing.assert_allclose(S.msp_logit(z), [np.log(np.exp(2.0) + 1.0) - 2.0, np.log(2.0)])


@pytest.mark.parametrize("name", ["msp", "xent", "entropy"])
@pytest.mark.parametrize("c", [2, 10, 100])
def test_uniform_logits_are_most_anomalous(name, c):
    rng = np.random.default_rng(c)
    z = rng.normal(0, 2.0, size=(300, c))
    z[0] = 0.7  # uniform row (any constant)
    s = S.SCORES[name](z)
    assert np.argmax(s) == 0 and np.all(s[1:] < s[0])
    bound = {"msp": -1.0 / c, "xent": -np.log(c), "entropy": np.log(c)}[name]
    np.testing.assert_allclose(s[0], bound, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(NAIVE))
def test_confident_less_anomalous_than_flat(name):
    z = np.array([[10.0, 0, 0, 0], [2.0, 0, 0, 0], [0.5, 0, 0, 0]])
    s = S.SCORES[name](z)
    assert s[0] < s[1] < s[2]


def test_shift_invariance_and_not():
    z = _logits(5)
    for name in ("msp", "entropy"):
        np.testing.assert_allclose(S.SCORES[name](z + 100.0), S.SCORES[name](z), atol=1e-12)
    # energy and maxlogit are NOT shift invariant: they drop by the shift
    np.testing.assert_allclose(S.energy(z + 3.0), S.energy(z) - 3.0, rtol=1e-12)
    np.testing.assert_allclose(S.max_logit(z + 3.0), S.max_logit(z) - 3.0, rtol=1e-12)
    np.testing.assert_allclose(S.oe_xent(z + 3.0), S.oe_xent(z), rtol=1e-12)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(5),
        np.zeros((2, 3, 4)),
        np.zeros((3, 0)),
        np.array([[0.0, np.nan]]),
        np.array([[0.0, np.inf]]),
        np.array([["a", "b"]]),
    ],
)
def test_bad_logits_raise(bad):
    for fn in S.SCORES.values():
        with pytest.raises(ValueError):
            fn(bad)


def test_energy_bad_temperature():
    with pytest.raises(ValueError):
        S.energy(np.zeros((1, 3)), T=0.0)


def test_empty_batch_ok():
    z = np.zeros((0, 10))
    for fn in S.SCORES.values():
        assert fn(z).shape == (0,)
