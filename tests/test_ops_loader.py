"""fastmix.augment.ffcv_ops / fastmix.data.loader / fastmix.data.streams through the real FFCV
Loader on small betons written by fastmix.converters.beton.write_beton. Labels of the training
beton are the sample indices, so batches can be matched to samples and to the kernels whatever
the order."""

from __future__ import annotations

import threading

import numba
import numpy as np
import pytest
import torch
from fastmix.converters.beton import write_beton
from ffcv.fields.decoders import IntDecoder, NDArrayDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.loader.epoch_iterator import EpochIterator
from ffcv.pipeline.compiler import Compiler
from ffcv.transforms import ToTensor

from fastmix.augment import pillow_ops, pixmix, salt_pepper
from fastmix.augment.ffcv_ops import Views, run_load_balanced
from fastmix.augment.spec import Augmentation, view_seed
from fastmix.data.inputs import to_model_input
from fastmix.data.loader import cycle, make_eval_loader, make_outlier_loader, make_train_loader
from fastmix.data.streams import OutlierKey, StreamKey, TrainStream
from fastmix.errors import ConfigError, DataError
from fastmix.rng import derive_seed
from fastmix.runtime import set_torch_threads

N = 72
BATCH = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("betons")
    g = np.random.default_rng(0)
    images = np.zeros((N, 28, 28), np.uint8)
    for i in range(N):
        y, x = g.integers(2, 12, 2)
        images[i, y : y + 14, x : x + 12] = g.integers(40, 256, (14, 12))
    train = d / "train.beton"
    write_beton(train, images, np.arange(N, dtype=np.int64))
    outliers = g.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    out_path = d / "outliers.beton"
    write_beton(out_path, outliers, np.full(40, -1, np.int64))
    bank = g.integers(0, 256, (5, 32, 32), dtype=np.uint8)
    return {"train": train, "images": images, "outliers": out_path, "bank": bank}


def _epoch(loader):
    """One epoch as (images (n,1,28,28), labels (n,)) in visiting order (batches cloned)."""
    xs, ys = [], []
    for x, y in loader:
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
        xs.append(x.clone())
        ys.append(y.clone())
    return torch.cat(xs).numpy(), torch.cat(ys).numpy()


def _by_index(x, y):
    order = np.argsort(y)
    return x[order], y[order]


AUG = {k: Augmentation(k) for k in ("none", "sp", "pixmix")}


def _kernel(variant, data, labels, seed, epoch):
    """The kernel run directly on the samples ``labels`` with the view's per-sample seed."""
    images = data["images"][labels]
    out = np.empty(images.shape, np.float32)
    idx = labels.astype(np.int64)
    vs = view_seed(seed, AUG[variant])
    if variant == "pixmix":
        pixmix.pixmix_batch(
            images, idx, data["bank"], out, vs, epoch, 4, 3.0, 3.0, pillow_ops.N_OPS_BASIC
        )
    elif variant == "sp":
        salt_pepper.salt_pepper_batch(images, idx, out, vs, epoch, salt_pepper.SP_AMOUNT)
    else:
        out = images.astype(np.float32) / np.float32(255)
    return out


@pytest.mark.parametrize("variant", ["pixmix", "sp"])
def test_train_loader_applies_kernel_with_the_right_epoch(data, variant):
    loader = make_train_loader(
        data["train"], AUG[variant], BATCH, seed=3, fractal_bank=data["bank"]
    )
    assert len(loader) == N // BATCH
    seen = []
    for epoch in range(2):
        assert loader.epoch == epoch
        x, y = _epoch(loader)
        assert len(y) == len(loader) * BATCH and len(set(y)) == len(y)  # drop_last, no repeats
        assert x.min() >= 0.0 and x.max() <= 1.0
        np.testing.assert_array_equal(x[:, 0], _kernel(variant, data, y, 3, epoch))
        seen.append(dict(zip(y.tolist(), x, strict=True)))
    common = sorted(set(seen[0]) & set(seen[1]))
    changed = [not np.array_equal(seen[0][i], seen[1][i]) for i in common]
    assert np.mean(changed) > 0.8  # the epoch reached the kernel
    loader.set_epoch(7)
    x, y = _epoch(loader)
    np.testing.assert_array_equal(x[:, 0], _kernel(variant, data, y, 3, 7))


def test_jit_off_gives_the_same_batches(data):
    on = _epoch(
        make_train_loader(data["train"], AUG["pixmix"], BATCH, seed=5, fractal_bank=data["bank"])
    )
    Compiler.set_enabled(False)
    try:
        loader = make_train_loader(
            data["train"], AUG["pixmix"], BATCH, seed=5, fractal_bank=data["bank"]
        )
        off = _epoch(loader)
    finally:
        Compiler.set_enabled(True)
    np.testing.assert_array_equal(on[1], off[1])
    np.testing.assert_array_equal(on[0], off[0])


def test_same_seed_same_batches_other_seed_other_order(data):
    a = _epoch(make_train_loader(data["train"], AUG["sp"], BATCH, seed=11))
    b = _epoch(make_train_loader(data["train"], AUG["sp"], BATCH, seed=11))
    c = _epoch(make_train_loader(data["train"], AUG["sp"], BATCH, seed=12))
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


def test_seeds_share_no_epoch_order(data):
    """FFCV orders epoch e by default_rng(s + e): with s the bare training seed, seed 1's epoch
    e would be seed 0's epoch e + 1. The derived order seeds share none, training or outlier."""
    epochs = 4
    orders = {}
    for seed in (0, 1):
        loader = make_train_loader(data["train"], AUG["none"], BATCH, seed=seed)
        for e in range(epochs):
            orders[("train", seed, e)] = tuple(_epoch(loader)[1])
        outliers = make_outlier_loader(data["outliers"], 8, seed=seed)
        for e in range(epochs):
            x = _epoch(outliers)[0]
            orders[("outlier", seed, e)] = tuple(hash(bytes(img)) for img in x)
    for kind in ("train", "outlier"):
        seen = [orders[(kind, s, e)] for s in (0, 1) for e in range(epochs)]
        assert len(set(seen)) == len(seen), kind


def test_derive_seed_separates_purposes_seeds_and_parts():
    seeds = [
        derive_seed(s, p, *parts)
        for s in range(4)
        for p, parts in [
            ("data_order", ()),
            ("dropout", ()),
            ("view", ("sp",)),
            ("view", ("pixmix",)),
        ]
    ]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(3, "view", "sp") == derive_seed(3, "view", "sp")
    assert derive_seed(0, "view", "ab") != derive_seed(0, "view", "a", "b")


@pytest.mark.parametrize("variant", ["pixmix", "sp"])
def test_thread_count_does_not_change_samples(data, variant):
    """1 thread against 2 threads under the dynamic (load-balanced) schedule."""
    runs = {}
    for workers in (1, 2):
        loader = make_train_loader(
            data["train"],
            AUG[variant],
            BATCH,
            seed=2,
            fractal_bank=data["bank"],
            num_workers=workers,
        )
        runs[workers] = _by_index(*_epoch(loader))
    np.testing.assert_array_equal(runs[1][1], runs[2][1])
    np.testing.assert_array_equal(runs[1][0], runs[2][0])


def test_none_variant_and_eval_loader_return_the_stored_images(data):
    x, y = _by_index(*_epoch(make_train_loader(data["train"], AUG["none"], BATCH, seed=0)))
    np.testing.assert_array_equal(x[:, 0], data["images"][y].astype(np.float32) / np.float32(255))
    ev = make_eval_loader(data["train"], 30)
    sizes = [len(yb) for _, yb in ev]
    assert sizes == [30, 30, 12]  # sequential, last partial batch kept
    x, y = _epoch(ev)
    np.testing.assert_array_equal(y, np.arange(N))
    np.testing.assert_array_equal(np.rint(x[:, 0] * 255).astype(np.uint8), data["images"])
    np.testing.assert_array_equal(x, to_model_input(data["images"]).numpy())


def test_outlier_loader_labels_order_and_cycling(data):
    loader = make_outlier_loader(data["outliers"], 8, seed=9)
    assert len(loader) == 5
    e0, e1 = _epoch(loader), _epoch(loader)
    assert np.all(e0[1] == -1) and np.all(e1[1] == -1)
    assert not np.array_equal(e0[0], e1[0])  # a new order every epoch
    assert sorted(map(bytes, e0[0])) == sorted(map(bytes, e1[0]))  # same samples (40 = 5 x 8)
    stream = cycle(make_outlier_loader(data["outliers"], 8, seed=9))
    batches = [next(stream)[0].clone() for _ in range(12)]  # crosses two epoch boundaries
    np.testing.assert_array_equal(torch.cat(batches[:5]).numpy(), e0[0])
    np.testing.assert_array_equal(torch.cat(batches[5:10]).numpy(), e1[0])


def test_unfinished_epoch_then_next_epoch(data):
    loader = make_train_loader(data["train"], AUG["sp"], BATCH, seed=4)
    it = iter(loader)
    next(it)  # abandon epoch 0 after one batch
    x, y = _epoch(loader)
    np.testing.assert_array_equal(x[:, 0], _kernel("sp", data, y, 4, 1))


def test_torch_threads_restored_after_ffcv_changes_them(data):
    set_torch_threads(1)
    loader = make_train_loader(data["train"], AUG['none'], BATCH, seed=0, num_workers=1,
                               torch_threads=2)  # fmt: skip
    assert torch.get_num_threads() == 2
    for _ in loader:
        assert torch.get_num_threads() == 2
    set_torch_threads()


def test_errors_name_the_fault(data, tmp_path):
    with pytest.raises(ConfigError, match="none, pixmix, sp"):
        Augmentation("mixup")
    with pytest.raises(ConfigError, match="an Augmentation or a non-empty list"):
        make_train_loader(data["train"], "pixmix", BATCH, seed=0)
    with pytest.raises(ConfigError, match="fractal_bank"):
        make_train_loader(data["train"], AUG["pixmix"], BATCH, seed=0)
    with pytest.raises(ConfigError, match="num_workers"):
        make_train_loader(data["train"], AUG["none"], BATCH, seed=0, num_workers=10_000)
    with pytest.raises(DataError, match="missing.beton"):
        make_eval_loader(tmp_path / "missing.beton", BATCH)
    with pytest.raises(DataError, match="smaller than the images"):
        make_train_loader(
            data["train"], AUG["pixmix"], BATCH, seed=0, fractal_bank=data["bank"][:, :20]
        )
    with pytest.raises(ConfigError, match="severity"):
        Augmentation("pixmix", pixmix_severity=11)
    bad = tmp_path / "bad.beton"
    bad.write_bytes(b"not a beton")
    with pytest.raises(DataError, match="bad.beton"):
        make_eval_loader(bad, BATCH)


def test_run_load_balanced_sets_the_task_size_only_for_the_call():
    seen = []
    numba.set_parallel_chunksize(3)
    try:
        run_load_balanced(lambda tag: seen.append((tag, numba.get_parallel_chunksize())), 7, "a")
        assert seen == [("a", 7)] and numba.get_parallel_chunksize() == 3

        def fails():
            raise RuntimeError("kernel failed")

        with pytest.raises(RuntimeError, match="kernel failed"):
            run_load_balanced(fails, 5)
        assert numba.get_parallel_chunksize() == 3
    finally:
        numba.set_parallel_chunksize(0)


def test_load_balanced_kernel_equals_static_schedule(data):
    """Same batch through kernels.pixmix_batch on 2 threads: Numba's default static blocks
    against tasks of one chunk taken dynamically."""
    images = data["images"][:37]  # not a multiple of the chunk size
    indices = np.arange(100, 137, dtype=np.int64)
    previous = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        outs = []
        for task in (None, 1):
            out = np.full((37, 28, 28), np.nan, np.float32)
            args = (images, indices, data["bank"], out, 5, 2, 4, 3.0, 3.0, pillow_ops.N_OPS_BASIC)
            if task is None:
                pixmix.pixmix_batch(*args)
            else:
                run_load_balanced(pixmix.pixmix_batch, task, *args)
            outs.append(out)
    finally:
        numba.set_num_threads(previous)
    assert np.isfinite(outs[0]).all()
    np.testing.assert_array_equal(outs[0], outs[1])


def _ffcv_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if isinstance(t, EpochIterator) and t.is_alive()}


def test_close_stops_an_unfinished_epoch_and_the_loader_stays_usable(data):
    before = _ffcv_threads()
    loader = make_train_loader(data["train"], AUG["sp"], BATCH, seed=3)
    it = iter(loader)
    next(it)
    started = _ffcv_threads() - before
    assert len(started) == 1  # FFCV's worker thread, blocked on its full queue
    loader.close()
    loader.close()  # idempotent
    assert not any(t.is_alive() for t in started)
    x, y = _epoch(loader)  # the next epoch runs normally
    assert len(y) == N // BATCH * BATCH  # drop_last


def test_train_stream_left_early_stops_both_loaders(data):
    before = _ffcv_threads()
    key = StreamKey(data["train"], BATCH, 0, 2, False)
    okey = OutlierKey(data["outliers"], 8)
    batches = TrainStream(key, [AUG["none"]], [okey], None, None).batches(0)
    x, y, xo = next(batches)
    assert x.shape == (1, BATCH, 1, 28, 28) and xo[okey].shape == (8, 1, 28, 28)
    started = _ffcv_threads() - before
    assert len(started) == 2
    del batches  # what a training loop's ``break`` does to its generator
    assert not any(t.is_alive() for t in started)


def test_views_equal_single_augmentation_loaders(data):
    """One loader of three views (one read, one decode per batch) gives each view bit for bit
    what a loader of that augmentation alone gives: same order, same per-sample draws."""
    augs = [AUG["pixmix"], AUG["none"], AUG["sp"]]
    multi = make_train_loader(data["train"], augs, BATCH, seed=6, fractal_bank=data["bank"])
    for epoch in range(2):
        views, labels = [], []
        for x, y in multi:
            assert x.shape == (3, BATCH, 1, 28, 28) and x[0].is_contiguous()
            views.append(x.clone())
            labels.append(y.clone())
        views, labels = torch.cat(views, dim=1).numpy(), torch.cat(labels).numpy()
        for v, a in enumerate(augs):
            single = make_train_loader(data["train"], a, BATCH, seed=6, fractal_bank=data["bank"])
            single.set_epoch(epoch)
            x, y = _epoch(single)
            np.testing.assert_array_equal(y, labels)
            np.testing.assert_array_equal(x, views[v])
            np.testing.assert_array_equal(x[:, 0], _kernel(a.kind, data, y, 6, epoch))
    sp, pm = views[2], views[0]
    assert not np.array_equal(sp, views[1]) and not np.array_equal(pm, views[1])


class _CountingDecoder(NDArrayDecoder):
    """ffcv's decoder with a call counter (the pipeline runs as Python: JIT off)."""

    calls = 0

    def generate_code(self):
        inner = super().generate_code()

        def decode(*args):
            _CountingDecoder.calls += 1
            return inner(*args)

        return decode


def test_one_decode_per_batch_for_all_views(data):
    """Three views of every batch from a single decode of it: the loader's image pipeline has
    one decoder, and it runs once per batch (counted with FFCV's JIT off, so the decoder is a
    Python function; the kernels still run compiled)."""
    views = Views([AUG["none"], AUG["sp"], AUG["pixmix"]], 1, data["bank"])
    Compiler.set_enabled(False)
    try:
        loader = Loader(
            str(data["train"]),
            batch_size=BATCH,
            num_workers=1,
            order=OrderOption.RANDOM,
            seed=1,
            drop_last=True,
            pipelines={
                "image": [_CountingDecoder(), views, ToTensor()],
                "label": [IntDecoder(), ToTensor()],
            },
        )
        _CountingDecoder.calls = 0
        batches = sum(1 for x, _ in loader if x.shape[1] == 3)
    finally:
        Compiler.set_enabled(True)
    assert batches == N // BATCH and _CountingDecoder.calls == batches
