import logging
import types

import numpy as np
import pytest

from data_builders.mpii_human_pose import mpii_human_pose_dataset_builder as mpii
from lcrnet_jax import skeleton
from tests import fake_datasets as fake

TINY = mpii.MpiiConfig(name="tiny", val_images=2, seed=0)


def _build(data_dir, manual_dir, config=TINY):
    return fake.build(mpii.MpiiHumanPose, config, data_dir, manual_dir)


def test_builds_mpii_splits_people_and_visibility(tmp_path, caplog):
    written = fake.write_mpii(tmp_path / "manual")
    with caplog.at_level(logging.WARNING):
        source = _build(tmp_path / "data", tmp_path / "manual")
    names = written["names"]
    assert "skipped 1 corrupt or missing file(s)" in caplog.text and names[7] in caplog.text
    corrupt = str(tmp_path / "manual" / "images" / names[7])
    skipped = {s: fake.skipped(tmp_path / "data", "mpii_human_pose/tiny", s) for s in source}
    assert skipped["test"] == (0, [])
    assert sorted(skipped.values()) == [(0, []), (0, []), (1, [corrupt])]  # train or validation
    assert source["train"].dataset_info.metadata["joint_set"] == "mpii16"
    train, val, test = (fake.records(source[s]) for s in ("train", "validation", "test"))

    # Training images with people (7 is corrupt), split by whole videos; test images with
    # people (5 has none).
    assert set(train) | set(val) == set(names[:5]) and not set(train) & set(val)
    assert len(val) >= 2
    for a, b in [(0, 1), (2, 3)]:
        assert (names[a] in val) == (names[b] in val)
    assert set(test) == {names[6]}
    assert not test[names[6]]["people"]["annotated"].any()
    assert test[names[6]]["people"]["scale"].shape == (2,)
    # objpos is (x, y) with -0.5, for test people (no joints) as for training people.
    for image, record in [(6, test[names[6]]), (0, {**train, **val}[names[0]])]:
        for p, center in enumerate(record["people"]["objpos"]):
            np.testing.assert_allclose(center, written["objpos"][(image, p)] - 0.5, atol=1e-4)

    first = {**train, **val}[names[0]]
    people = first["people"]
    assert people["joints2d"].shape == (3, 16, 2) and int(first["video_index"]) == 1
    assert int(first["activity_id"]) == 1  # act(1).act_id as released (fake: image + 1)
    np.testing.assert_array_equal(people["single_person"], [False, False, True])
    np.testing.assert_array_equal(people["groups"], [0b01, 0b11, 0])  # in groups 0 and 1
    truth = written["joints"][(0, 0)]
    annotated = np.ones(16, bool)
    annotated[9] = False
    np.testing.assert_array_equal(people["annotated"][0], annotated)
    np.testing.assert_allclose(people["joints2d"][0][annotated], truth[annotated] - 0.5, atol=1e-4)
    expected_visible = annotated.copy()
    expected_visible[[3, 4]] = False  # is_visible '0' and 0; an empty one counts as visible
    np.testing.assert_array_equal(people["visible"][0], expected_visible)
    assert not people["visible"][1, 2] and people["annotated"][1, 2]  # outside the image
    assert (people["head_box"][0, 2:] - people["head_box"][0, :2] == [8, 9]).all()
    second = {**train, **val}[names[1]]["people"]
    assert not second["annotated"][1].any() and not second["box"][1].any()

    lcr, lcr_visible = skeleton.convert(people["joints2d"], people["visible"], "mpii16", "lcr13")
    head = skeleton.LCR13.index("head")
    # Person 0 lacks the head top (joint 9): no head; person 2 has both neck and top.
    assert not lcr_visible[0, head] and lcr_visible[2, head]
    np.testing.assert_allclose(
        lcr[2, head],
        0.5 * (written["joints"][(0, 2)][8] + written["joints"][(0, 2)][9]) - 0.5,
        atol=1e-4,
    )


def test_validation_split_is_deterministic_and_keeps_videos_whole():
    images = [
        mpii._Image(i, f"{i}.jpg", True, [], set(), video, -1, [])
        for i, video in enumerate([1, 1, 2, 2, 2, -1, -1, 3])
    ]
    a = mpii.validation_images(images, 3, seed=0)
    assert a == mpii.validation_images(images, 3, seed=0) and len(a) >= 3
    for members in ([0, 1], [2, 3, 4]):
        assert len(a & set(members)) in (0, len(members))
    assert any(mpii.validation_images(images, 3, seed=s) != a for s in range(1, 6))
    # Videos are added only until the count is reached: one-image videos, one image.
    singles = [mpii._Image(i, f"{i}.jpg", True, [], set(), i, -1, []) for i in range(4)]
    assert len(mpii.validation_images(singles, 1, seed=0)) == 1


def test_missing_and_corrupt_annotations(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"mpii_human_pose_v1_u12_\*\.mat.*human-pose"):
        _build(tmp_path / "data", tmp_path / "absent")
    fake.write_mpii(tmp_path / "manual", groups=False)
    mat = tmp_path / "manual" / "mpii_human_pose_v1_u12_2" / "mpii_human_pose_v1_u12_1.mat"
    mat.write_bytes(mat.read_bytes()[:300])
    with pytest.raises(ValueError, match="mpii_human_pose_v1_u12_1.mat"):
        _build(tmp_path / "data", tmp_path / "manual")


def _struct(**fields):
    """What scipy.io.loadmat(struct_as_record=False) gives for a MATLAB struct."""
    return types.SimpleNamespace(_fieldnames=list(fields), **fields)


def test_a_point_with_an_empty_coordinate_is_not_annotated():
    """MATLAB stores a missing value as an empty array: such a point has no position."""
    empty = np.zeros((0, 0))
    points = [
        _struct(id=np.array([[k]]), x=np.array([[10.0 + k]]), y=empty if k == 3 else 20.0)
        for k in range(16)
    ]
    rect = _struct(annopoints=_struct(point=np.array(points, dtype=object)))
    person = mpii._person(rect)
    annotated = np.arange(16) != 3
    np.testing.assert_array_equal(person.annotated, annotated)
    np.testing.assert_allclose(person.joints[annotated, 0], 9.5 + np.arange(16)[annotated])
