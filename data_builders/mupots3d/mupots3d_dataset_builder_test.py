import json
import logging

import numpy as np
import pytest

from data_builders.mupots3d import mupots3d_dataset_builder as mupots
from lcrnet_jax import skeleton
from tests import fake_datasets as fake

TINY = mupots.MupotsConfig(name="tiny", sequences=(1, 2))


def _build(data_dir, manual_dir, config=TINY):
    return fake.build(mupots.Mupots3d, config, data_dir, manual_dir)


def test_builds_mupots_test_sequences_and_muco_train(tmp_path, caplog):
    written = fake.write_mupots(tmp_path / "manual")
    with caplog.at_level(logging.WARNING):
        source = _build(tmp_path / "data", tmp_path / "manual")
    assert "skipped 1 corrupt or missing file(s)" in caplog.text and "img_000002.jpg" in caplog.text
    assert source["test"].dataset_info.metadata["joint_set"] == "mupots17"
    corrupt = str(tmp_path / "manual" / "MultiPersonTestSet" / "TS2" / "img_000002.jpg")
    assert fake.skipped(tmp_path / "data", "mupots3d/tiny", "test[:2]") == (1, [corrupt])
    assert fake.skipped(tmp_path / "data", "mupots3d/tiny", "train") == (0, [])
    test = fake.records(source["test"])
    assert len(test) == 5 and "TS2/img_000002.jpg" not in test

    record = test["TS1/img_000001.jpg"]
    truth = written[1]
    assert int(record["sequence"]) == 1 and int(record["frame"]) == 1
    np.testing.assert_allclose(record["intrinsics"], fake.MUPOTS_INTRINSICS, rtol=1e-4)
    people = record["people"]
    np.testing.assert_allclose(people["joints3d"], truth["annot3"][1] / 1000, rtol=1e-5)
    np.testing.assert_allclose(people["joints3d_univ"], truth["univ"][1] / 1000, rtol=1e-5)
    np.testing.assert_allclose(people["joints2d"], truth["annot2"][1], rtol=1e-5)
    np.testing.assert_array_equal(people["occluded"], truth["occluded"][1])
    np.testing.assert_array_equal(people["is_valid"], [True, False])
    np.testing.assert_array_equal(people["has_3d"], [True, False])
    h, w = fake.MUPOTS_SIZE
    x, y = truth["annot2"][1, 0, :, 0], truth["annot2"][1, 0, :, 1]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    np.testing.assert_array_equal(people["visible"][0], inside & ~truth["occluded"][1, 0])
    assert not people["visible"][1].any()

    lcr, _ = skeleton.convert(people["joints3d"], None, "mupots17", "lcr17")
    pelvis = skeleton.MUPOTS17.index("pelvis")
    np.testing.assert_allclose(
        lcr[:, skeleton.LCR17.index("pelvis")], people["joints3d"][:, pelvis]
    )

    train = fake.records(source["train"])
    (muco,) = train.values()
    np.testing.assert_allclose(muco["intrinsics"], [40, 42, 24, 16])
    cam = np.array([a["keypoints_cam"] for a in written["muco"]["annotations"]])
    np.testing.assert_allclose(muco["people"]["joints3d"], cam[:, :17] / 1000, rtol=1e-5)
    # MuCo's 21 joints: the first 17 are MuPoTS's, in 2D as in 3D.
    img = np.array([a["keypoints_img"] for a in written["muco"]["annotations"]])
    np.testing.assert_allclose(muco["people"]["joints2d"], img[:, :17], rtol=1e-5)
    np.testing.assert_allclose(muco["people"]["box"][0], [1, 2, 11, 22])


def test_corrupt_sequence_is_skipped_and_missing_sequence_is_named(tmp_path, caplog):
    fake.write_mupots(tmp_path / "manual", muco=False)
    (tmp_path / "manual" / "MultiPersonTestSet" / "TS2" / "annot.mat").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING):
        source = _build(tmp_path / "data", tmp_path / "manual")
    assert set(source) == {"test"} and len(source["test"]) == 3
    assert "TS2: corrupt MATLAB file" in caplog.text
    config = mupots.MupotsConfig(name="three", sequences=(1, 2, 3))
    with pytest.raises(FileNotFoundError, match="lacks MultiPersonTestSet/TS3/annot.mat"):
        _build(tmp_path / "data", tmp_path / "manual", config)


def test_muco_images_without_two_focal_lengths_and_centre_values_are_left_out(tmp_path):
    """MuCo-3DHP's images carry `f` = [fx, fy] and `c` = [cx, cy]; others are not read."""
    data = fake.write_mupots(tmp_path, sequences=(1,))["muco"]
    good, other = data["images"]
    data["images"] = [good, dict(other, f=[40.0]), dict(other, id=9, c=[24.0, 16.0, 1.0])]
    (tmp_path / "muco.json").write_text(json.dumps(data))
    images, people = mupots.read_muco(tmp_path / "muco.json")
    assert [im["id"] for im in images] == [good["id"]] and sorted(people) == [7]
