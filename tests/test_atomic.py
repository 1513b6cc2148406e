"""Tests of lcrnet_jax.data.atomic."""

import pytest

from lcrnet_jax.data import atomic


def test_atomic_path_renames_only_complete_outputs(tmp_path):
    with atomic.atomic_path(tmp_path / "done.json") as tmp:
        assert tmp.suffix == ".json" and tmp.parent == tmp_path
        tmp.write_text("{}")
    with pytest.raises(RuntimeError), atomic.atomic_path(tmp_path / "half.json") as tmp:
        tmp.write_text("{")
        raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError), atomic.atomic_path(tmp_path / "frames") as tmp:
        tmp.mkdir()
        (tmp / "000000.png").write_bytes(b"")
        raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["done.json"]
