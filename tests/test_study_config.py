"""Studies that cannot mean what they say are refused through the real CLI, before any run
directory is written: ConfigError, exit status 2, the setting named."""

from __future__ import annotations

import pytest

from fastmix.cli import main

CASES = [
    (
        ["--set", "data.train='gaussian_noise'"],
        "data.train = 'gaussian_noise'.*without class labels",
    ),
    (
        ["--set", "data.test='fmnist_test'"],
        "data.test = 'fmnist_test' is fashion-mnist.*family_shift = true",
    ),
    (
        ["--variant", "base_oe", "--set", "oe.source='mnist_val'"],
        "oe.source = 'mnist_val' is the training set's family",
    ),
    (["--set", "data.val='mnist_test'"], "data.val = data.test = 'mnist_test'"),
    # the report: Fashion-MNIST's test set as validation set too (was an IndexError
    # traceback from cross_entropy after the run directory had been created)
    (
        [
            "--set",
            "data.train='fmnist_train'",
            "--set",
            "data.val='fmnist_test'",
            "--set",
            "data.test='fmnist_test'",
        ],
        "data.val = data.test = 'fmnist_test'",
    ),
    (["--set", "data.corrupted='cifar_c'"], "data.corrupted: unknown -C set 'cifar_c'"),
]


@pytest.mark.parametrize(("args", "message"), CASES)
def test_bad_study_is_a_config_error_before_anything_is_written(
    args, message, data_dir, tmp_path, capsys
):
    out = tmp_path / "runs"
    argv = [
        "train",
        "--config",
        "smoke",
        "--data",
        str(data_dir),
        "--out",
        str(out),
        "--no-progress",
    ]
    if "--variant" not in args:
        argv += ["--variant", "base"]
    code = main([*argv, *args])
    err = capsys.readouterr().err
    assert code == 2
    import re

    assert re.search(message, err), err
    assert "Traceback" not in err
    assert not out.exists()


def test_family_shift_says_so_and_trains(data_dir, tmp_path):
    """The same cross-family test set is accepted once the config says so."""
    code = main(
        [
            "train",
            "--variant",
            "base",
            "--config",
            "smoke",
            "--data",
            str(data_dir),
            "--out",
            str(tmp_path),
            "--no-progress",
            "--set",
            "data.test='fmnist_test'",
            "--set",
            "data.family_shift=true",
            "--set",
            "train.max_steps=2",
        ]
    )
    assert code == 0 and (tmp_path / "base-s0" / "done.json").is_file()
