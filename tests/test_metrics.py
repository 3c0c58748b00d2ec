"""Detection metrics against scikit-learn and brute-force references written here."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from fastmix.evaluate import metrics as M
from fastmix.evaluate import scores as S


def sk_all(id_s, ood_s):
    """sklearn references; OOD = label 1."""
    y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))]
    s = np.r_[id_s, ood_s]
    return {
        "auroc": roc_auc_score(y, s),
        "aupr_out": average_precision_score(y, s),
        "aupr_in": average_precision_score(1 - y, -s),
    }


def brute_fpr_at_tpr(id_s, ood_s, tpr=0.95):
    """Scan distinct thresholds from the highest down, flag s >= t."""
    id_s, ood_s = np.asarray(id_s, float), np.asarray(ood_s, float)
    for t in sorted(set(np.r_[id_s, ood_s].tolist()), reverse=True):
        if np.sum(ood_s >= t) / len(ood_s) >= tpr - 1e-12:
            return np.sum(id_s >= t) / len(id_s)
    raise AssertionError("unreachable")


def brute_auroc(id_s, ood_s):
    """O(n*m) pair count, ties count half."""
    d = np.asarray(ood_s, float)[:, None] - np.asarray(id_s, float)[None, :]
    return (np.sum(d > 0) + 0.5 * np.sum(d == 0)) / d.size


def check_against_sklearn(id_s, ood_s):
    ref = sk_all(id_s, ood_s)
    got = M.ood_metrics(id_s, ood_s)
    assert set(got) == {"auroc", "aupr_in", "aupr_out", "fpr95"}
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, abs=1e-12), k
    assert got["fpr95"] == pytest.approx(brute_fpr_at_tpr(id_s, ood_s), abs=1e-15)
    for v in got.values():
        assert 0.0 <= v <= 1.0


# ------------------------------------------------------------------------------- vs sklearn


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("n_id,n_ood", [(1, 1), (5, 3), (100, 40), (1000, 2000)])
def test_random_scores_vs_sklearn(seed, n_id, n_ood):
    rng = np.random.default_rng(seed)
    id_s = rng.normal(0.0, 1.0, n_id)
    ood_s = rng.normal(1.0, 1.5, n_ood)
    check_against_sklearn(id_s, ood_s)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("levels", [2, 3, 7])
def test_heavy_ties_vs_sklearn(seed, levels):
    rng = np.random.default_rng(seed)
    id_s = rng.integers(0, levels, 300).astype(float)
    ood_s = rng.integers(0, levels, 150).astype(float) + rng.integers(0, 2, 150)
    check_against_sklearn(id_s, ood_s)
    assert M.auroc(id_s, ood_s) == pytest.approx(brute_auroc(id_s, ood_s), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_integer_inputs_and_infinities(seed):
    rng = np.random.default_rng(seed)
    id_s = rng.integers(-3, 3, 50)
    ood_s = rng.integers(-1, 5, 30)
    check_against_sklearn(id_s, ood_s)
    id_f = np.r_[id_s.astype(float), -np.inf]
    ood_f = np.r_[ood_s.astype(float), np.inf]
    assert M.auroc(id_f, ood_f) == pytest.approx(brute_auroc(id_f, ood_f), abs=1e-12)


def test_fpr_matches_sklearn_roc_curve():
    rng = np.random.default_rng(5)
    for _ in range(20):
        id_s = rng.integers(0, 20, 200).astype(float)
        ood_s = rng.integers(5, 25, 137).astype(float)
        y = np.r_[np.zeros(200), np.ones(137)]
        fpr, tpr, _ = roc_curve(y, np.r_[id_s, ood_s], drop_intermediate=False)
        ref = fpr[np.argmax(tpr >= 0.95)]
        assert M.fpr_at_tpr(id_s, ood_s) == pytest.approx(ref, abs=1e-15)


@pytest.mark.parametrize("tpr", [0.5, 0.8, 0.9, 0.95, 0.99, 1.0])
def test_fpr_other_levels_vs_brute(tpr):
    rng = np.random.default_rng(int(tpr * 100))
    id_s = rng.normal(0, 1, 300)
    ood_s = rng.normal(1, 1, 123)
    assert M.fpr_at_tpr(id_s, ood_s, tpr) == brute_fpr_at_tpr(id_s, ood_s, tpr)


# ------------------------------------------------------------------------------- hand cases


def test_perfect_separation():
    id_s, ood_s = np.arange(10.0), np.arange(10.0) + 100
    got = M.ood_metrics(id_s, ood_s)
    assert got == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}


def test_perfectly_wrong():
    got = M.ood_metrics(np.arange(10.0) + 100, np.arange(20.0))
    assert got["auroc"] == 0.0
    assert got["fpr95"] == 1.0


@pytest.mark.parametrize("n_id,n_ood", [(10, 10), (30, 7)])
def test_constant_scores(n_id, n_ood):
    got = M.ood_metrics(np.full(n_id, 0.3), np.full(n_ood, 0.3))
    assert got["auroc"] == 0.5
    # a single threshold flags everything: precision = class fraction, FPR = 1
    assert got["aupr_out"] == pytest.approx(n_ood / (n_id + n_ood))
    assert got["aupr_in"] == pytest.approx(n_id / (n_id + n_ood))
    assert got["fpr95"] == 1.0


def test_fpr95_hand_case_is_0_3():
    """20 OOD, 10 ID.  19 OOD scores lie in [20, 38] and one at -5; three ID scores lie above
    20 and seven below.  TPR first reaches 19/20 = 0.95 at the threshold 20, where 3 of the 10
    ID scores are flagged: FPR@95 = 0.3."""
    ood = np.r_[np.arange(20.0, 39.0), -5.0]
    idd = np.r_[25.5, 30.5, 35.5, np.arange(7.0)]
    assert len(ood) == 20 and len(idd) == 10
    assert M.fpr_at_tpr(idd, ood) == pytest.approx(0.3, abs=0)
    assert M.ood_metrics(idd, ood)["fpr95"] == 0.3
    # AUROC by hand: pairs where ID beats OOD: ID 25.5 beats 20..25 (6), 30.5 beats 11,
    # 35.5 beats 16, and every ID beats the OOD at -5 (10) -> 43 of 200 pairs lost
    assert M.auroc(idd, ood) == pytest.approx(1 - 43 / 200)


def test_fpr_tie_at_threshold_is_counted():
    """ID scores tied with the cut-off OOD score are flagged too (s >= t)."""
    ood = np.arange(1.0, 21.0)  # 20 OOD; 95% reached at t = 2
    idd = np.array([2.0, 2.0, 0.0, 0.0])
    assert M.fpr_at_tpr(idd, ood) == 0.5


def test_aupr_hand_case():
    # descending: OOD(3), ID(2), OOD(1): precision 1 at recall 0.5, 2/3 at recall 1
    assert M.aupr_out([2.0], [3.0, 1.0]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # ID positive with negated scores: ID(-2) ranked between OOD(-1) and OOD(-3): P = 1/2
    assert M.aupr_in([2.0], [3.0, 1.0]) == pytest.approx(0.5)


# ------------------------------------------------------------------------------- properties

ints = st.lists(st.integers(-5, 5), min_size=1, max_size=40)
floats = st.lists(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=40
)


@settings(max_examples=150, deadline=None)
@given(a=ints, b=ints)
def test_prop_auroc_antisymmetric_with_ties(a, b):
    a, b = np.array(a, float), np.array(b, float)
    assert M.auroc(a, b) + M.auroc(b, a) == pytest.approx(1.0, abs=1e-12)
    assert M.auroc(a, b) == pytest.approx(brute_auroc(a, b), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(a=ints, b=ints)
def test_prop_monotone_invariance(a, b):
    a, b = np.array(a, float), np.array(b, float)
    base = M.ood_metrics(a, b)

    def f(x):  # strictly increasing on the integers, exact in float64
        return x**3 + 2 * x - 7

    def g(x):
        return np.exp(x / 3.0)

    for t in (f, g):
        got = M.ood_metrics(t(a), t(b))
        for k in base:
            assert got[k] == pytest.approx(base[k], abs=1e-12), k


@settings(max_examples=100, deadline=None)
@given(a=floats, b=floats)
def test_prop_matches_sklearn(a, b):
    a, b = np.array(a), np.array(b)
    check_against_sklearn(a, b)


@settings(max_examples=60, deadline=None)
@given(a=ints, b=ints)
def test_prop_aupr_in_is_aupr_out_swapped(a, b):
    a, b = np.array(a, float), np.array(b, float)
    assert M.aupr_in(a, b) == pytest.approx(M.aupr_out(-b, -a), abs=1e-15)


# ------------------------------------------------------------------------------- draws


def test_draws_with_all_ood_equals_single():
    rng = np.random.default_rng(0)
    id_s, ood_s = rng.normal(0, 1, 500), rng.normal(1, 1, 300)
    ref = M.ood_metrics(id_s, ood_s)
    for n_ood, n_draws in [(300, 1), (2000, 1), (300, 5)]:
        got = M.ood_metrics_draws(id_s, ood_s, n_ood=n_ood, n_draws=n_draws, seed=3)
        assert set(got) == {"mean", "std"}
        for k in ref:
            assert got["mean"][k] == pytest.approx(ref[k], abs=1e-15)
            assert got["std"][k] == 0.0


def test_draws_subsample_protocol():
    rng = np.random.default_rng(1)
    id_s, ood_s = rng.normal(0, 1, 1000), rng.normal(1, 1, 5000)
    got = M.ood_metrics_draws(id_s, ood_s, n_ood=2000, n_draws=10, seed=0)
    # independent re-implementation of the protocol with the same generator
    r = np.random.default_rng(0)
    rows = []
    for _ in range(10):
        sub = ood_s[np.sort(r.choice(5000, size=2000, replace=False))]
        rows.append(sk_all(id_s, sub))
    for k in ("auroc", "aupr_in", "aupr_out"):
        vals = np.array([row[k] for row in rows])
        assert got["mean"][k] == pytest.approx(vals.mean(), abs=1e-12)
        assert got["std"][k] == pytest.approx(vals.std(), abs=1e-12)
        assert got["std"][k] > 0
    again = M.ood_metrics_draws(id_s, ood_s, n_ood=2000, n_draws=10, seed=0)
    assert again == got


# ------------------------------------------------------------------------------- error detection


def test_error_detection_auroc():
    rng = np.random.default_rng(4)
    n, c = 400, 10
    labels = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), labels] += rng.normal(2.0, 2.0, n)
    wrong = logits.argmax(1) != labels
    assert 0 < wrong.sum() < n
    for name in S.SCORES:
        s = S.SCORES[name](logits)
        ref = roc_auc_score(wrong.astype(int), s)
        assert M.error_detection_auroc(logits, labels, name) == pytest.approx(ref, abs=1e-12)
    assert M.error_detection_auroc(logits.astype(np.float32), labels) > 0.5
    assert M.error_detection_auroc(logits, labels, S.msp_logit) == pytest.approx(
        M.error_detection_auroc(logits, labels, "msp"), abs=1e-12
    )


def test_error_detection_bad_inputs():
    logits = np.eye(3)
    with pytest.raises(ValueError, match="wrong"):
        M.error_detection_auroc(logits, np.array([0, 1, 2]))  # all correct
    with pytest.raises(ValueError, match="unknown score"):
        M.error_detection_auroc(logits, np.array([0, 1, 0]), "nope")
    with pytest.raises(ValueError):
        M.error_detection_auroc(logits, np.array([0, 1]))
    with pytest.raises(ValueError):
        M.error_detection_auroc(logits, np.array([0, 1, -1]))


# ------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "fn", [M.auroc, M.aupr_in, M.aupr_out, M.fpr_at_tpr, M.ood_metrics, M.ood_metrics_draws]
)
@pytest.mark.parametrize(
    "a,b,msg",
    [
        ([], [1.0], "empty"),
        ([1.0], [], "empty"),
        ([1.0, np.nan], [1.0], "NaN"),
        ([1.0], [np.nan], "NaN"),
        (np.zeros((2, 2)), [1.0], "1-d"),
    ],
)
def test_bad_inputs_raise(fn, a, b, msg):
    with pytest.raises(ValueError, match=msg):
        fn(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("tpr", [0.0, -0.1, 1.5])
def test_bad_tpr(tpr):
    with pytest.raises(ValueError):
        M.fpr_at_tpr([0.0], [1.0], tpr)
