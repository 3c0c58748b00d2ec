"""Property-based fuzzing (hypothesis) of the parsers that read what users hand us.

The IDX reader (arbitrary bytes, and mutations of valid plain and gzip files), the config parser
(arbitrary ``--set`` strings, arbitrary dicts merged into the defaults, arbitrary run config
files) and the checkpoint loader (mutated checkpoints) may refuse their input, but only with the
project's own error types (``DataError``, ``ConfigError``, ``CheckpointError``), never with a
stray ``ValueError``/``KeyError``/``OverflowError`` from deep inside.
"""

from __future__ import annotations

import atexit
import functools
import gzip
import io
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from fastmix.converters.idx import parse_idx, read_idx_images, read_idx_labels
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from fastmix.config import load_config, merge, parse_override, validate
from fastmix.errors import ConfigError, DataError
from tests.conftest import idx_bytes

FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

_TMP = Path(tempfile.mkdtemp(prefix="fastmix-fuzz-"))
atexit.register(shutil.rmtree, _TMP, True)


def _file(data: bytes, name: str = "f") -> Path:
    """Write ``data`` to a per-process scratch file (hypothesis and tmp_path do not mix)."""
    path = _TMP / f"{name}-{os.getpid()}"
    path.write_bytes(data)
    return path


VALID_IMAGES = idx_bytes(np.random.default_rng(0).integers(0, 256, (3, 28, 28)))
VALID_LABELS = idx_bytes(np.random.default_rng(0).integers(0, 10, 7))


def _check_idx_array(arr: np.ndarray, data: bytes) -> None:
    assert arr.dtype == np.uint8
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    assert arr.shape == dims and len(data) == 4 + 4 * ndim + math.prod(dims)


# ------------------------------------------------------------------------------ IDX reader ---


@FUZZ
@given(data=st.binary(max_size=200))
@example(data=b"")
@example(data=bytes([0, 0, 8, 3]) + (2**31).to_bytes(4, "big") * 2 + (4).to_bytes(4, "big"))
@example(data=bytes([0, 0, 8, 255]))
@example(data=bytes([0, 0, 8, 2]) + (0).to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big"))
def test_parse_idx_arbitrary_bytes(data):
    """Any byte string: a uint8 array matching the header, or a DataError.

    The second example is the bug this test found: dimensions whose product wraps around 2**64
    in int64 arithmetic passed the length check and crashed in ``reshape`` (ValueError).
    """
    for ndim in (None, 1, 3):
        try:
            arr = parse_idx(data, "fuzz", expect_ndim=ndim)
        except DataError as e:
            assert str(e).startswith("fuzz: ")
        else:
            _check_idx_array(arr, data)


@st.composite
def _headers(draw):
    """Well-formed-looking IDX: a header with small dims and roughly the right payload."""
    ndim = draw(st.integers(1, 4))
    dims = draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim))
    dtype = draw(st.sampled_from([8, 8, 8, 9, 0x0D]))
    payload = draw(st.binary(min_size=max(0, math.prod(dims) - 2), max_size=math.prod(dims) + 2))
    return bytes([0, 0, dtype, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload


@FUZZ
@given(data=_headers())
def test_parse_idx_structured(data):
    try:
        arr = parse_idx(data, "fuzz")
    except DataError:
        return
    _check_idx_array(arr, data)


def _mutate(base: bytes, edits: list[tuple[int, int]], cut: int | None, extra: bytes) -> bytes:
    out = bytearray(base)
    for pos, val in edits:
        out[pos % len(out)] = val
    if cut is not None:
        out = out[: cut % (len(out) + 1)]
    return bytes(out) + extra


_edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6)
_cut = st.none() | st.integers(0, 10_000)
_extra = st.binary(max_size=8)


@FUZZ
@given(edits=_edits, cut=_cut, extra=_extra, compress=st.booleans(), images=st.booleans())
def test_read_idx_files_mutated(edits, cut, extra, compress, images):
    """Flip bytes of / truncate / extend a valid file (plain or gzip, the mutation applied to
    the compressed bytes): the readers return checked arrays or raise DataError naming it."""
    base = VALID_IMAGES if images else VALID_LABELS
    if compress:
        base = gzip.compress(base, mtime=0)
    path = _file(_mutate(base, edits, cut, extra), "mutated.gz" if compress else "mutated")
    for reader in (read_idx_images, read_idx_labels):
        try:
            arr = reader(path)
        except DataError as e:
            assert str(path) in str(e)
            continue
        if reader is read_idx_images:
            assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[1:] == (28, 28)
            assert len(arr) > 0
        else:
            assert arr.dtype == np.int64 and arr.ndim == 1
            assert arr.size == 0 or (arr.min() >= 0 and arr.max() < 10)


@FUZZ
@given(data=st.binary(max_size=300))
def test_read_idx_files_arbitrary_gzip_payload(data):
    """Arbitrary bytes behind a gzip magic, and arbitrary content gzip-compressed."""
    for blob in (b"\x1f\x8b" + data, gzip.compress(data, mtime=0)):
        path = _file(blob, "payload.gz")
        for reader in (read_idx_images, read_idx_labels):
            try:
                reader(path)
            except DataError as e:
                assert str(path) in str(e)


# --------------------------------------------------------------------------- config parser ---

_text = st.text(st.characters(codec="utf-8"), max_size=40)
_override = st.one_of(
    _text,
    st.builds(
        lambda s, k, v: f"{s}.{k}={v}",
        st.sampled_from(["train", "eval", "oe", "augment", "data", "model", "x", ""]),
        st.sampled_from(
            [
                "lr",
                "epochs",
                "ood_sets",
                "kind",
                "seed",
                "log_every",
                "batch_size",
                "lambda",
                "nope",
                "",
            ]
        ),
        st.one_of(
            _text,
            st.sampled_from(
                [
                    "nan",
                    "inf",
                    "-inf",
                    "-1",
                    "0",
                    "1e400",
                    "[]",
                    "['x']",
                    "[1, 2]",
                    "{a=1}",
                    "true",
                    "2024-01-01",
                    "'cpu'",
                    '"""x"""',
                    "1\nx = 2",
                    "9" * 30,
                ]
            ),
        ),
    ),
)


@FUZZ
@given(text=_override)
@example(text="train.lr=inf")
@example(text="train.log_every=0")
@example(text="train.seed=-1")
@example(text="eval.ood_sets=['cifar10']")
@example(text="train.lr=1\n[train]")
def test_overrides_never_crash(text):
    try:
        parsed = parse_override(text)
    except ConfigError:
        return
    assert isinstance(parsed, dict) and len(parsed) == 1
    try:
        cfg = load_config("base", ["smoke"], [text])
    except ConfigError:
        return
    validate(cfg)  # what load_config returns is valid


_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    _text,
    st.lists(_text, max_size=3),
    st.lists(st.integers(), max_size=3),
)
_section = st.sampled_from(["train", "eval", "oe", "augment", "data", "model", "variant", "zz"])
_key = st.sampled_from(
    [
        "lr",
        "epochs",
        "ood_sets",
        "kind",
        "seed",
        "ratio",
        "width",
        "name",
        "dir",
        "momentum",
        "n_ood",
        "sp_amount",
        "zz",
    ]
)
_update = st.dictionaries(
    _section, st.one_of(_scalar, st.dictionaries(_key, _scalar, max_size=4)), max_size=3
)


@FUZZ
@given(update=_update)
def test_merge_arbitrary_dicts(update):
    base = load_config("base")
    try:
        cfg = merge({k: v for k, v in base.items() if k != "variant"}, update, "fuzz")
        cfg["variant"] = {"name": "fuzz"}
        validate(cfg)
    except ConfigError:
        return


@FUZZ
@given(update=_update, drop=st.lists(_section, max_size=2))
def test_run_config_files_never_crash(update, drop):
    """A damaged ``<run>/config.toml`` (keys missing, sections replaced): ConfigError naming it."""
    from fastmix.config import dumps
    from fastmix.train.run_dir import read_run_config

    cfg = load_config("base")
    for name in drop:
        cfg.pop(name, None)
    for section, values in update.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    try:
        text = dumps({k: v for k, v in cfg.items() if isinstance(v, dict)})
    except ConfigError:
        return  # not expressible as TOML by our writer; nothing to test
    run = _TMP / f"run-{os.getpid()}"
    run.mkdir(exist_ok=True)
    (run / "config.toml").write_text(text)
    try:
        read_run_config(run)
    except ConfigError as e:
        assert "config.toml" in str(e)


# ------------------------------------------------------------------------ checkpoint loader ---


@functools.cache
def _checkpoint_bytes() -> bytes:
    import torch

    from fastmix.train.checkpoint import save_checkpoint
    from fastmix.train.models import build_model

    model = build_model("convnet", 4)
    path = _TMP / "valid.pt"
    save_checkpoint(
        path,
        {
            "config_hash": "x",
            "variant": "base",
            "epoch": 0,
            "step": 0,
            "model": model.state_dict(),
            "optimizer": {},
            "best_val_acc": 0.0,
        },
    )
    assert torch.load(io.BytesIO(path.read_bytes()), weights_only=True)["format"] == 1
    return path.read_bytes()


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(edits=_edits, cut=_cut, extra=_extra)
@example(edits=[(0, 129)], cut=None, extra=b"")  # found: IndexError from the unpickler
def test_mutated_checkpoints_are_refused_cleanly(edits, cut, extra):
    """Flipped bytes, truncation, trailing junk: a CheckpointError naming the file, or (a byte
    flipped inside a tensor's payload) a checkpoint whose structure is intact."""
    from fastmix.train.checkpoint import CheckpointError, load_checkpoint

    base = _checkpoint_bytes()
    data = _mutate(base, [(p * 97, v) for p, v in edits], cut, extra)
    assume(data != base)
    path = _file(data, "ckpt.pt")
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as e:
        assert str(path) in str(e)
    else:
        assert ckpt["format"] == 1 and isinstance(ckpt["model"], dict)
