"""Tests of lcrnet_jax.data.npz."""

import numpy as np
import pytest

from lcrnet_jax import anchors
from lcrnet_jax.data import npz


def test_read_npz_reads_every_array_and_names_damaged_files(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.arange(3), name="lcr13")
    arrays = npz.read_npz(good)
    assert sorted(arrays) == ["name", "x"] and str(arrays["name"]) == "lcr13"
    np.testing.assert_array_equal(arrays["x"], np.arange(3))
    np.savez(tmp_path / "empty.npz")
    assert npz.read_npz(tmp_path / "empty.npz") == {}

    content = good.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(content[: len(content) // 2])
    flipped = bytearray(content)
    flipped[content.index(b"\x00\x00\x00\x00\x00\x00\x00\x00")] ^= 0xFF  # in x's data
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    np.save(tmp_path / "one.npy", np.arange(2))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    cases = {
        "truncated.npz": "cannot be read as an .npz file: ",
        "flipped.npz": "cannot be read as an .npz file: Bad CRC-32",
        "text.npz": "is not an .npz file (no zip archive header)",
        "one.npz": "is not an .npz file (no zip archive header)",
    }
    for name, message in cases.items():
        with pytest.raises(ValueError) as error:
            npz.read_npz(tmp_path / name, "corpus file")
        assert str(error.value).startswith(f"corpus file {tmp_path / name} {message}")
        assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="corpus file not found: .*missing.npz"):
        npz.read_npz(tmp_path / "missing.npz", "corpus file")


def test_a_truncated_anchor_file_is_named(tmp_path):
    path = tmp_path / "mean_pose.npz"
    np.savez(path, x=np.zeros(1000))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"anchor file .*mean_pose.npz cannot be read as an .npz"):
        anchors.load_anchor_poses(path)


def test_a_reason_of_several_lines_is_named_in_one(tmp_path, monkeypatch):
    """numpy's reasons may span lines (a header's repr): the message stays one line."""
    path = tmp_path / "x.npz"
    np.savez(path, x=np.arange(3))

    def damaged(*args, **kwargs):
        raise ValueError("Cannot parse header: {'descr':\n   '<i8', 'fortran_order'")

    monkeypatch.setattr(npz.np, "load", damaged)
    with pytest.raises(ValueError) as error:
        npz.read_npz(path)
    assert str(error.value) == (
        f"array file {path} cannot be read as an .npz file: Cannot parse header: "
        "{'descr': '<i8', 'fortran_order'"
    )
