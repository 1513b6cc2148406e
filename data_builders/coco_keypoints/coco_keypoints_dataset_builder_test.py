import json
import logging

import numpy as np
import pytest

from data_builders.coco_keypoints import coco_keypoints_dataset_builder as coco
from lcrnet_jax import skeleton
from tests import fake_datasets as fake


def _build(data_dir, manual_dir):
    return fake.build(coco.CocoKeypoints, None, data_dir, manual_dir)


def test_builds_coco_keypoints_with_crowds_occlusion_and_empty_val_images(tmp_path, caplog):
    written = fake.write_coco(tmp_path / "manual")
    with caplog.at_level(logging.WARNING):
        source = _build(tmp_path / "data", tmp_path / "manual")
    assert (
        "skipped 1 corrupt or missing file(s)" in caplog.text and "000000000003.jpg" in caplog.text
    )
    assert source["train"].dataset_info.metadata["joint_set"] == "coco17"
    corrupt = str(tmp_path / "manual" / "train2017" / "000000000003.jpg")
    assert fake.skipped(tmp_path / "data", "coco_keypoints", "train") == (1, [corrupt])
    assert fake.skipped(tmp_path / "data", "coco_keypoints", "validation") == (0, [])
    train, val = (
        fake.records(source["train"], "coco_image_id"),
        fake.records(source["validation"], "coco_image_id"),
    )
    # train keeps images with a keypoint-annotated person (2 has no person, 5 a crowd and
    # a person without keypoints; 3 is corrupt); validation keeps all.
    assert set(train) == {1, 4} and set(val) == {10, 11}
    assert val[10]["image"].shape == (*fake.COCO_SIZE, 3)  # grey converted to RGB
    assert val[11]["people"]["joints2d"].shape == (0, 17, 2)
    # OKS evaluation ignores a person without keypoints (num_keypoints 0), crowd or not.
    ann_ids = [a["id"] for a in written["val2017"]["annotations"] if a["category_id"] == 1]
    ignored = [a["num_keypoints"] == 0 for a in written["val2017"]["annotations"][:2]]
    assert ann_ids == [200, 201] and ignored == [False, True]
    order = np.argsort(val[10]["people"]["annotation_id"])
    np.testing.assert_array_equal(val[10]["people"]["ignore"][order], ignored)
    np.testing.assert_array_equal(val[10]["people"]["is_crowd"], [False, False])

    people = train[1]["people"]
    order = np.argsort(people["annotation_id"])
    np.testing.assert_array_equal(people["annotation_id"][order], [100, 101])
    np.testing.assert_array_equal(people["is_crowd"][order], [False, True])
    np.testing.assert_array_equal(people["ignore"][order], [False, True])
    person = order[0]
    ann = written["train2017"]["annotations"][0]
    kp = np.array(ann["keypoints"], np.float32).reshape(17, 3)
    annotated = kp[:, 2] > 0
    np.testing.assert_allclose(people["joints2d"][person][annotated], kp[annotated, :2] + 0.5)
    np.testing.assert_array_equal(people["annotated"][person], annotated)
    np.testing.assert_array_equal(people["visible"][person], kp[:, 2] == 2)
    x, y, w, h = ann["bbox"]
    np.testing.assert_allclose(people["box"][person], [x, y, x + w, y + h], rtol=1e-6)
    assert people["area"][person] == pytest.approx(ann["area"])

    lcr, lcr_visible = skeleton.convert(
        people["joints2d"][person], people["visible"][person], "coco17", "lcr13"
    )
    # The left ear (v = 1) is not visible, so COCO's head rule falls back to the eyes.
    eyes = kp[[1, 2], :2].mean(0) + 0.5
    np.testing.assert_allclose(lcr[skeleton.LCR13.index("head")], eyes)
    assert lcr_visible.all()


def test_missing_or_corrupt_annotations(tmp_path):
    with pytest.raises(FileNotFoundError, match="person_keypoints_train2017.json.*cocodataset"):
        _build(tmp_path / "data", tmp_path / "absent")
    fake.write_coco(tmp_path / "manual")
    (tmp_path / "manual" / "annotations" / "person_keypoints_val2017.json").write_text("{")
    with pytest.raises(ValueError, match="corrupt COCO annotation file .*val2017.json"):
        _build(tmp_path / "data", tmp_path / "manual")
    assert not list((tmp_path / "data").rglob("*.array_record*"))


@pytest.mark.parametrize("field, values", [("keypoints", [0] * 50), ("bbox", [1.0, 2.0, 3.0])])
def test_a_person_without_17_keypoints_or_a_4_value_bbox_is_refused(tmp_path, field, values):
    """COCO's person annotations hold 17 (x, y, v) keypoints and an [x, y, w, h] bbox."""
    written = fake.write_coco(tmp_path)
    data = written["val2017"]
    data["annotations"][0][field] = values
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="corrupt COCO annotation file .*bad.json"):
        coco.read_annotations(path)
