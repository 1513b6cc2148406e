"""Tests of lcrnet_jax.data.corpus (more through anchors and pseudo GT in
test_fit_anchors.py, test_add_pseudo_gt.py and test_records.py)."""

import numpy as np
import pytest

from lcrnet_jax import geometry
from lcrnet_jax.data import corpus

_NAME = "synthetic_people/test"


def _poses17(num, seed=0):
    rng = np.random.default_rng(seed)
    height = np.linspace(0.9, -0.7, 17)[None, :, None] * np.array([0.0, 1.0, 0.0])
    return (height + rng.normal(scale=0.2, size=(num, 17, 3))).astype(np.float32)


def test_npz_poses_come_out_torso_centred(tmp_path):
    """A corpus placed anywhere in the world is centred on its torso."""
    poses = _poses17(3) + np.array([5.0, -2.0, 10.0], np.float32)
    np.savez(tmp_path / "far.npz", poses3d=poses, joint_set="lcr17")
    loaded, joint_set = corpus.load_pose_corpus(str(tmp_path / "far.npz"))
    assert joint_set == "lcr17" and loaded.dtype == np.float32
    np.testing.assert_allclose(loaded, geometry.center_on_torso(poses, "lcr17"), atol=1e-5)
    assert np.abs(loaded.mean(axis=(0, 1))).max() < 1.0  # not 5 or 10 metres away


def test_a_corpus_without_poses_or_with_nan_is_refused(tmp_path):
    """An empty corpus and one with NaN coordinates are named, not used."""
    np.savez(tmp_path / "empty.npz", poses3d=np.zeros((0, 17, 3), np.float32), joint_set="lcr17")
    with pytest.raises(ValueError, match=r"empty.npz' holds no 3D pose$"):
        corpus.load_pose_corpus(str(tmp_path / "empty.npz"))
    poses = _poses17(4)
    poses[2, 5, 1] = np.nan
    np.savez(tmp_path / "nan.npz", poses3d=poses, joint_set="lcr17")
    with pytest.raises(ValueError, match="nan.npz' has NaN or infinite coordinates"):
        corpus.load_pose_corpus(str(tmp_path / "nan.npz"))


def test_people_without_3d_are_left_out_of_a_pose_dataset():
    """Only the people with `has_3d` give corpus poses."""
    poses = _poses17(3)
    records = [
        {"people": {"joints3d": poses[:2], "has_3d": np.array([True, False])}},
        {"people": {"joints3d": poses[2:], "has_3d": np.array([True])}},
    ]
    out = corpus.people_poses3d(records, [0, 1], src_joint_set="lcr17", joint_set="lcr17")
    expected = geometry.center_on_torso(poses[[0, 2]], "lcr17")
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_max_poses_reads_a_random_subset_of_a_datasets_records(data_dir, monkeypatch):
    """max_poses records of the split, drawn by the seed (not always the first ones)."""
    read = []
    people_poses3d = corpus.people_poses3d

    def spy(source, indices, **kwargs):
        read.append(tuple(int(i) for i in indices))
        return people_poses3d(source, indices, **kwargs)

    monkeypatch.setattr(corpus, "people_poses3d", spy)
    corpus.load_pose_corpus(f"{_NAME}:test", data_dir=data_dir)
    assert read == [tuple(range(8))]  # every record without max_poses
    read.clear()
    for seed in range(4):
        corpus.load_pose_corpus(f"{_NAME}:test", data_dir=data_dir, max_poses=2, seed=seed)
    assert all(len(set(r)) == 2 and set(r) <= set(range(8)) for r in read)
    assert len(set(read)) > 1  # the seed picks the records
