"""fastmix.files.atomic_write: the file is replaced whole or not at all, no temporary stays."""

from __future__ import annotations

import pytest

from fastmix.files import atomic_write


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "new" / "results.json"
    assert atomic_write(path, "first") == path  # creates the folder
    assert path.read_text() == "first"
    atomic_write(path, b"second")
    assert path.read_bytes() == b"second"
    # the rename fails (the target is a non-empty folder): the target is untouched and the
    # temporary written beside it is removed
    target = tmp_path / "folder"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(OSError):
        atomic_write(target, "third")
    assert (target / "inside").is_dir()
    assert not [p.name for p in tmp_path.rglob("*") if ".tmp-" in p.name]
