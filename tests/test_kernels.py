"""Numba kernels (fastmix.rng, fastmix.augment.pixmix) against independent NumPy / Pillow
references.

References here are written from the PixMix paper's code (andyzoujm/pixmix pixmix_utils.py,
cifar.py) and Pillow's public API, fed the same random draws (the kernel's "plan").
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps
from scipy import stats

from fastmix import rng
from fastmix.augment import pillow_ops, pixmix, salt_pepper
from tests.conftest import run_python

H = W = 28
# Max |kernel - reference| for full PixMix: NumPy's float32 power may differ from libm powf
# by an ulp or two, and a few mixing rounds can amplify that; everything else is exact.
PIXMIX_ATOL = 2e-6


def _images(n: int, seed: int = 0) -> np.ndarray:
    """Half uniform noise, half digit-like (dark background, a bright blob), plus edge cases."""
    g = np.random.default_rng(seed)
    out = np.zeros((n, H, W), np.uint8)
    for i in range(n):
        if i % 2 == 0:
            out[i] = g.integers(0, 256, (H, W))
        else:
            y, x = g.integers(3, 10, 2)
            out[i, y : y + 15, x : x + 10] = g.integers(60, 256, (15, 10))
    if n >= 4:
        out[-1] = 77  # constant image: autocontrast / equalize must leave it alone
        out[-2] = 0
        out[-2, 5, 5] = 255  # two levels only
    return out


def _bank(m: int = 7, s: int = 32, seed: int = 1) -> np.ndarray:
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:s, 0:s]
    bank = np.empty((m, s, s), np.uint8)
    for i in range(m):
        f = g.uniform(0.1, 0.6, 2)
        bank[i] = (127.5 + 127.5 * np.sin(f[0] * xx + f[1] * yy * (i + 1))).astype(np.uint8)
    return bank


# ----------------------------------------------------------------------------- references


def ref_augment(x: np.ndarray, op: int, level: float, sign: float) -> np.ndarray:
    """pixmix_utils.py's ops on a mode "L" PIL image, IMAGE_SIZE = 28, sign pre-drawn."""
    im = Image.fromarray(x)
    size = x.shape[1]
    name = pillow_ops.OP_NAMES[op]
    enhance = float(level) * 1.8 / 10.0 + 0.1
    if name == "autocontrast":
        r = ImageOps.autocontrast(im)
    elif name == "equalize":
        r = ImageOps.equalize(im)
    elif name == "posterize":
        r = ImageOps.posterize(im, 4 - int(level * 4 / 10))
    elif name == "rotate":
        deg = int(level * 30 / 10)
        r = im.rotate(-deg if sign < 0 else deg, resample=Image.BILINEAR)
    elif name == "solarize":
        r = ImageOps.solarize(im, 256 - int(level * 256 / 10))
    elif name in ("shear_x", "shear_y"):
        s = float(level) * 0.3 / 10.0
        s = -s if sign < 0 else s
        data = (1, s, 0, 0, 1, 0) if name == "shear_x" else (1, 0, 0, s, 1, 0)
        r = im.transform((size, size), Image.AFFINE, data, resample=Image.BILINEAR)
    elif name in ("translate_x", "translate_y"):
        t = int(level * (size / 3) / 10)
        t = -t if sign < 0 else t
        data = (1, 0, t, 0, 1, 0) if name == "translate_x" else (1, 0, 0, 0, 1, t)
        r = im.transform((size, size), Image.AFFINE, data, resample=Image.BILINEAR)
    elif name == "color":
        r = ImageEnhance.Color(im).enhance(enhance)
    elif name == "contrast":
        r = ImageEnhance.Contrast(im).enhance(enhance)
    elif name == "brightness":
        r = ImageEnhance.Brightness(im).enhance(enhance)
    else:
        r = ImageEnhance.Sharpness(im).enhance(enhance)
    return np.asarray(r)


def _to_unit(u8: np.ndarray) -> np.ndarray:
    return u8.astype(np.float32) / np.float32(255)


def ref_add(i1, i2, a, b):
    i1, i2 = i1 * 2 - 1, i2 * 2 - 1
    return (a * i1 + b * i2 + 1) / 2


def ref_multiply(i1, i2, a, b):
    i1, i2 = i1 * 2, i2 * 2
    return (i1**a) * (np.clip(i2, np.float32(1e-37), None) ** b) / 2


def ref_pixmix(x: np.ndarray, bank: np.ndarray, plan: np.ndarray) -> np.ndarray:
    """cifar.py's pixmix() in NumPy/Pillow, taking every random choice from ``plan``."""
    bi, cy, cx = (int(v) for v in plan[:3])
    picture = bank[bi, cy : cy + H, cx : cx + W]
    if plan[3]:
        mixed = _to_unit(ref_augment(x, int(plan[4]), plan[5], plan[6]))
    else:
        mixed = _to_unit(x)
    for j in range(int(plan[7])):
        aug, op, level, sign, mix, a, b = plan[8 + 7 * j : 15 + 7 * j]
        partner = _to_unit(ref_augment(x, int(op), level, sign)) if aug else _to_unit(picture)
        a, b = np.float32(a), np.float32(b)
        mixed = (ref_add if mix == 0 else ref_multiply)(mixed, partner, a, b)
        mixed = np.clip(mixed, 0, 1)
    return mixed


def ref_salt_pepper(x, seed, epoch, index, amount):
    """scikit-image 's&p' semantics on the kernel's draws: one uint64 per pixel, row-major."""
    state = rng.new_state(seed, epoch, index)
    z = np.array([rng.next_u64(state) for _ in range(x.size)], np.uint64).reshape(x.shape)
    u = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
    flipped = u < amount
    salted = (z & np.uint64(1)) == 1
    out = _to_unit(x)
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


def _plans(
    n, seed=0, epoch=0, k=4, beta=3.0, severity=3.0, n_ops=pillow_ops.N_OPS_BASIC, bank=(7, 32, 32)
):
    idx = np.arange(n, dtype=np.int64)
    return pixmix.draw_pixmix_plans(seed, epoch, idx, bank, H, W, k, beta, severity, n_ops)


def _pixmix(images, idx, bank, seed=0, epoch=0, k=4, beta=3.0, severity=3.0, n_ops=9):
    out = np.empty(images.shape, np.float32)
    pixmix.pixmix_batch(images, idx, bank, out, seed, epoch, k, beta, severity, n_ops)
    return out


def _sp(images, idx, seed=0, epoch=0, amount=0.1):
    out = np.empty(images.shape, np.float32)
    salt_pepper.salt_pepper_batch(images, idx, out, seed, epoch, amount)
    return out


# ----------------------------------------------------------------------------- uint8 ops vs Pillow


@pytest.mark.parametrize("op", range(pillow_ops.N_OPS_ALL), ids=pillow_ops.OP_NAMES)
def test_op_matches_pillow_exactly(op):
    images = _images(12, seed=op)
    levels = np.random.default_rng(100 + op).uniform(0.1, 10.0, 5)
    out = np.empty((H, W), np.uint8)
    for x in images:
        for level in levels:
            for sign in (1.0, -1.0):
                pillow_ops.augment_u8(x, op, level, sign, out)
                np.testing.assert_array_equal(out, ref_augment(x, op, level, sign))


def test_rotate_every_whole_degree_matches_pillow():
    images = _images(4, seed=3)
    out = np.empty((H, W), np.uint8)
    for deg in range(-pillow_ops.MAX_ROTATE_DEG, pillow_ops.MAX_ROTATE_DEG + 1):
        for x in images:
            pillow_ops.rotate_u8(x, deg, out)
            ref = np.asarray(Image.fromarray(x).rotate(deg, resample=Image.BILINEAR))
            np.testing.assert_array_equal(out, ref, err_msg=f"{deg} degrees")


def test_affine_convention_shear_maps_output_to_input():
    # PIL AFFINE (1, s, 0, 0, 1, 0): output pixel centre (x+.5, y+.5) samples the input at
    # (x+.5 + s (y+.5), y+.5). Input pixel (row 20, col 10) = 200, s = 0.25: output row 20 samples
    # input column x + 5.125 (after the -0.5 of the bilinear filter), so output column 5 gets
    # 0.875 * 200 and column 4 gets 0.125 * 200 (truncated): the content moves LEFT by s*(y+.5).
    x = np.zeros((H, W), np.uint8)
    x[20, 10] = 200
    out = np.empty((H, W), np.uint8)
    pillow_ops.affine_bilinear_u8(x, 1.0, 0.25, 0.0, 0.0, 1.0, 0.0, out)
    assert (out[20, 5], out[20, 4], int(out.sum())) == (175, 25, 200)


# ----------------------------------------------------------------------------- mixing formulas


@pytest.mark.parametrize("first_round", [True, False])
def test_mix_add_and_multiply_match_numpy(first_round):
    g = np.random.default_rng(5)
    start = g.integers(0, 256, (H, W)).astype(np.uint8)
    partner = g.integers(0, 256, (H, W)).astype(np.uint8)
    partner[:3] = 0  # exercise the 1e-37 clip
    mixed0 = _to_unit(start) if first_round else g.uniform(0, 1, (H, W)).astype(np.float32)
    for _ in range(20):
        branch = g.random() < 0.5
        a = np.float32(g.beta(3, 1) if branch else 1 + np.float32(g.beta(1, 3)))
        b = np.float32(g.beta(1, 3) if branch else -np.float32(g.beta(1, 3)))
        m = mixed0.copy()
        pixmix.mix_add(m, partner, a, b)
        np.testing.assert_allclose(m, np.clip(ref_add(mixed0, _to_unit(partner), a, b), 0, 1),
                                   rtol=0, atol=1e-7)  # fmt: skip
        m = mixed0.copy()
        pixmix.mix_multiply(m, start, first_round, partner, a, b, *pixmix.multiply_workspace(H, W))
        ref = np.clip(ref_multiply(mixed0, _to_unit(partner), a, b), 0, 1)
        np.testing.assert_allclose(m, ref, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- full PixMix


@pytest.mark.parametrize("n_ops", [pillow_ops.N_OPS_BASIC, pillow_ops.N_OPS_ALL])
def test_pixmix_matches_reference_on_same_draws(n_ops):
    n = 48
    images = _images(n, seed=11)
    bank = _bank()
    idx = np.arange(100, 100 + n, dtype=np.int64)
    out = _pixmix(images, idx, bank, seed=3, epoch=2, n_ops=n_ops)
    plans = pixmix.draw_pixmix_plans(3, 2, idx, bank.shape, H, W, 4, 3.0, 3.0, n_ops)
    assert plans[:, pixmix.P_ROUNDS].max() == 4  # every path exercised
    assert set(plans[:, 8 + pixmix.R_MIX][plans[:, 7] > 0]) == {0.0, 1.0}
    worst = 0.0
    for i in range(n):
        single = np.empty((H, W), np.float32)
        pixmix.apply_pixmix_plan(images[i], bank, plans[i], single)
        np.testing.assert_array_equal(single, out[i])  # the batch used exactly this plan
        worst = max(worst, float(np.abs(ref_pixmix(images[i], bank, plans[i]) - out[i]).max()))
    assert worst <= PIXMIX_ATOL
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0


def test_pixmix_k0_is_identity_or_one_augment():
    images = _images(16, seed=2)
    idx = np.arange(16, dtype=np.int64)
    out = _pixmix(images, idx, _bank(), k=0)
    plans = _plans(16, k=0)
    for i in range(16):
        expect = (
            images[i]
            if plans[i, 3] == 0
            else ref_augment(images[i], int(plans[i, 4]), plans[i, 5], plans[i, 6])
        )
        np.testing.assert_array_equal(out[i], _to_unit(expect))


# ----------------------------------------------------------------------------- salt and pepper


def test_salt_pepper_matches_numpy_reference():
    images = _images(6, seed=4)
    idx = np.array([5, 0, 9, 2**40, 3, 7], dtype=np.int64)
    out = _sp(images, idx, seed=9, epoch=1, amount=0.2)
    for i in range(len(idx)):
        np.testing.assert_array_equal(out[i], ref_salt_pepper(images[i], 9, 1, idx[i], 0.2))


def test_salt_pepper_flips_the_configured_fraction():
    n, amount = 400, 0.1
    images = np.full((n, H, W), 128, np.uint8)
    out = _sp(images, np.arange(n, dtype=np.int64), amount=amount)
    flipped = out != np.float32(128 / 255)
    total = flipped.size
    p_hat = flipped.mean()
    assert abs(p_hat - amount) < 5 * np.sqrt(amount * (1 - amount) / total)
    salt = (out[flipped] == 1.0).mean()
    assert abs(salt - 0.5) < 5 * np.sqrt(0.25 / flipped.sum())
    assert set(np.unique(out)) == {0.0, np.float32(128 / 255), 1.0}


def test_salt_pepper_amount_zero_and_one():
    images = _images(4, seed=8)
    idx = np.arange(4, dtype=np.int64)
    np.testing.assert_array_equal(_sp(images, idx, amount=0.0), _to_unit(images))
    assert set(np.unique(_sp(images, idx, amount=1.0))) == {0.0, 1.0}


# ----------------------------------------------------------------------------- statistics


@pytest.fixture(scope="module")
def many_plans():
    return _plans(20000, seed=123, n_ops=pillow_ops.N_OPS_ALL)


def _chi2_uniform_p(values, n_cats):
    counts = np.bincount(values.astype(np.int64), minlength=n_cats)
    assert len(counts) == n_cats
    return stats.chisquare(counts).pvalue


def _coin_ok(x, p=0.5):
    x = np.asarray(x, bool)
    return abs(x.mean() - p) < 5 * np.sqrt(p * (1 - p) / len(x))


def test_mixing_rounds_uniform_on_0_to_k(many_plans):
    assert _chi2_uniform_p(many_plans[:, pixmix.P_ROUNDS], 5) > 1e-3


def test_coins_are_fair_and_ops_uniform(many_plans):
    p = many_plans
    assert _coin_ok(p[:, pixmix.P_AUG] == 1)
    r = p[:, pixmix.P_ROUNDS].astype(int)
    ops = [p[p[:, pixmix.P_AUG] == 1, pixmix.P_OP]]
    levels, signs, partner_aug, mixes = [], [], [], []
    levels.append(p[p[:, pixmix.P_AUG] == 1, pixmix.P_LEVEL])
    signs.append(p[p[:, pixmix.P_AUG] == 1, pixmix.P_SIGN])
    for j in range(4):
        rows = p[r > j, 8 + 7 * j : 15 + 7 * j]
        partner_aug.append(rows[:, pixmix.R_AUG] == 1)
        mixes.append(rows[:, pixmix.R_MIX])
        sel = rows[rows[:, pixmix.R_AUG] == 1]
        ops.append(sel[:, pixmix.R_OP])
        levels.append(sel[:, pixmix.R_LEVEL])
        signs.append(sel[:, pixmix.R_SIGN])
    assert _coin_ok(np.concatenate(partner_aug))
    assert _coin_ok(np.concatenate(mixes) == 1)  # multiply vs add
    assert _coin_ok(np.concatenate(signs) < 0)
    assert _chi2_uniform_p(np.concatenate(ops), pillow_ops.N_OPS_ALL) > 1e-3
    lv = np.concatenate(levels)
    assert stats.kstest(lv, stats.uniform(0.1, 3.0 - 0.1).cdf).pvalue > 1e-3
    assert _chi2_uniform_p(p[:, pixmix.P_BANK], 7) > 1e-3
    assert _chi2_uniform_p(p[:, pixmix.P_CROP_Y], 5) > 1e-3
    assert _chi2_uniform_p(p[:, pixmix.P_CROP_X], 5) > 1e-3


def test_get_ab_follows_its_beta_laws(many_plans):
    p = many_plans
    r = p[:, pixmix.P_ROUNDS].astype(int)
    ab = np.concatenate(
        [p[r > j, 8 + 7 * j + pixmix.R_A : 8 + 7 * j + pixmix.R_B + 1] for j in range(4)]
    )
    a, b = ab[:, 0], ab[:, 1]
    first = a < 1.0  # branch 1: a ~ Beta(3,1) < 1, b > 0; branch 2: a = 1 + Beta(1,3) > 1, b < 0
    assert np.all((b > 0) == first)
    assert _coin_ok(first)
    beta31 = stats.beta(3, 1).cdf
    beta13 = stats.beta(1, 3).cdf
    assert stats.kstest(a[first], beta31).pvalue > 1e-3
    assert stats.kstest(b[first], beta13).pvalue > 1e-3
    assert stats.kstest(a[~first] - 1, beta13).pvalue > 1e-3
    assert stats.kstest(-b[~first], beta13).pvalue > 1e-3


def test_rng_uniform_randint_and_beta_laws():
    st = rng.new_state(7, 0, 0)
    u = np.array([rng.uniform(st) for _ in range(20000)])
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    ints = np.array([rng.randint(st, -2, 4) for _ in range(14000)])
    assert ints.min() == -2 and ints.max() == 4
    assert _chi2_uniform_p(ints + 2, 7) > 1e-3
    x = np.array([rng.beta(st, 1.0, 2.5) for _ in range(5000)])
    assert stats.kstest(x, stats.beta(1, 2.5).cdf).pvalue > 1e-3
    with pytest.raises(ValueError):
        rng.beta(st, 2.0, 2.0)


def test_next_uniform_is_splitmix64_and_the_array_forms_step():
    """Vigna's splitmix64.c seeded with 0 first outputs 0xE220A8397B1DCDAF, then
    0x6E789E6AA1B965F4; the functional step draws what ``uniform`` draws from the same state."""
    s, u = rng.next_uniform(np.uint64(0))
    assert s == rng.GAMMA and u == (0xE220A8397B1DCDAF >> 11) * 2.0**-53
    s, u = rng.next_uniform(np.uint64(s))  # a Python int over 2**63 does not type as uint64
    assert s == 2 * rng.GAMMA % 2**64 and u == (0x6E789E6AA1B965F4 >> 11) * 2.0**-53
    st = rng.new_state(3, 1, 4)
    s = st[0]
    for _ in range(1000):
        s, u = rng.next_uniform(np.uint64(s))
        assert u == rng.uniform(st) and s == st[0]
        assert 0.0 <= u < 1.0


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_output_and_epoch_index_seed_change_it():
    images = _images(32, seed=6)
    bank = _bank()
    idx = np.arange(32, dtype=np.int64)
    base = _pixmix(images, idx, bank, seed=1, epoch=0)
    np.testing.assert_array_equal(base, _pixmix(images, idx, bank, seed=1, epoch=0))
    for other in (_pixmix(images, idx, bank, seed=1, epoch=1),
                  _pixmix(images, idx, bank, seed=2, epoch=0),
                  _pixmix(images, idx + 32, bank, seed=1, epoch=0)):  # fmt: skip
        differs = [not np.array_equal(base[i], other[i]) for i in range(32)]
        assert np.mean(differs) > 0.8  # a few samples may come out unmixed both times
    sp = _sp(images, idx, seed=1, epoch=0)
    np.testing.assert_array_equal(sp, _sp(images, idx, seed=1, epoch=0))
    assert not np.array_equal(sp, _sp(images, idx, seed=1, epoch=1))


def test_independent_of_thread_count_and_batch_order():
    images = _images(64, seed=7)
    bank = _bank()
    idx = np.arange(1000, 1064, dtype=np.int64)
    perm = np.random.default_rng(0).permutation(64)
    before = numba.get_num_threads()
    results = {}
    try:
        for nt in (1, 2):
            numba.set_num_threads(min(nt, numba.config.NUMBA_NUM_THREADS))
            results[nt] = (_pixmix(images, idx, bank), _sp(images, idx))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(results[1][0], results[2][0])
    np.testing.assert_array_equal(results[1][1], results[2][1])
    shuffled = _pixmix(images[perm], idx[perm], bank)
    np.testing.assert_array_equal(shuffled, results[1][0][perm])


# ----------------------------------------------------------------------------- JIT on vs off

_JIT_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from fastmix.augment import pillow_ops, pixmix, salt_pepper
    from fastmix import rng
    from tests.test_kernels import _bank, _images
    images = _images(8, seed=21)
    bank = _bank()
    idx = np.array([3, 1, 4, 1, 5, 9, 2, 6], dtype=np.int64)
    px = np.empty(images.shape, np.float32)
    pixmix.pixmix_batch(images, idx, bank, px, 5, 3, 4, 3.0, 3.0, pillow_ops.N_OPS_ALL)
    sp = np.empty(images.shape, np.float32)
    salt_pepper.salt_pepper_batch(images, idx, sp, 5, 3, 0.3)
    plans = pixmix.draw_pixmix_plans(5, 3, idx, bank.shape, 28, 28, 4, 3.0, 3.0,
                                     pillow_ops.N_OPS_ALL)
    ops = np.empty((pillow_ops.N_OPS_ALL, 2, 28, 28), np.uint8)
    for op in range(pillow_ops.N_OPS_ALL):
        for j in range(2):
            pillow_ops.augment_u8(images[j], op, 2.0 + 3.5 * j, 1.0 - 2.0 * j, ops[op, j])
    st = rng.new_state(-1, 2**40, 7)
    draws = [float(rng.next_u64(st) >> 11) for _ in range(5)]
    draws += [rng.uniform(st), float(rng.randint(st, -3, 11)),
              rng.beta(st, 3.0, 1.0), rng.beta(st, 1.0, 3.0)]
    s = rng.sample_state(-1, 2**40, 7)
    for _ in range(5):
        s, u = rng.next_uniform(np.uint64(s))  # a Python int over 2**63 does not type as uint64
        draws += [u, float(s >> 11)]
    draws = np.array(draws)
    np.savez(sys.argv[1], px=px, sp=sp, plans=plans, ops=ops, draws=draws)
    """
)


def _run_kernels_script(path: Path, disable_jit: bool) -> dict:
    run_python(_JIT_SCRIPT, str(path), jit=not disable_jit)
    with np.load(path) as f:
        return dict(f)


def test_jit_on_and_off_give_identical_results(tmp_path):
    off = _run_kernels_script(tmp_path / "off.npz", disable_jit=True)
    on = _run_kernels_script(tmp_path / "on.npz", disable_jit=False)
    for key in ("px", "sp", "plans", "ops", "draws"):
        np.testing.assert_array_equal(on[key], off[key], err_msg=key)
    assert off["plans"][:, pixmix.P_ROUNDS].max() >= 2
