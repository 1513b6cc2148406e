import dataclasses
import itertools
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import build_dataset
from lcrnet_jax import geometry, skeleton
from lcrnet_jax.data import features, pipeline, pseudo_gt_file

L17 = {name: i for i, name in enumerate(skeleton.LCR17.joints)}


def _record(height=100, width=200, num_people=2, seed=0):
    """A record in the features schema with LCR-17 people inside a (height, width) image."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    joints3d = rng.normal(0, 0.4, (num_people, 17, 3)).astype(np.float32) + [0, 0, 5]
    k = np.array([120.0, 120.0, width / 2, height / 2], np.float32)
    joints2d = np.asarray(geometry.project(joints3d, k))
    visible = rng.random((num_people, 17)) < 0.8
    visible &= (joints2d >= 0).all(-1) & (joints2d < [width, height]).all(-1)
    return {
        "image": image,
        "image_id": "x",
        "intrinsics": k,
        "people": {
            "joints2d": joints2d,
            "joints3d": joints3d,
            "visible": visible,
            "has_3d": np.ones(num_people, bool),
            "box": np.zeros((num_people, 4), np.float32),
        },
    }


def test_evaluation_fits_the_long_side_and_maps_back_to_original_pixels():
    record = _record()
    record["image"][:] = 0
    record["image"][40:60, 100:120] = 255  # a white square
    ex = pipeline.transform_record(
        record, index=7, image_size=64, src_joint_set="lcr17", joint_set="lcr17", max_people=3
    )
    assert set(ex) == set(pipeline.BATCH_KEYS)
    assert ex["scale"] == pytest.approx(0.32) and ex["offset"].tolist() == [0, 0]
    assert ex["image_size"].tolist() == [32, 64] and ex["index"] == 7
    assert not ex["image"][32:].any()  # zero beyond the valid region
    # The square [100, 120) x [40, 60) lands on [32, 38.4) x [12.8, 19.2).
    assert (ex["image"][14:18, 33:37] > 200).all() and (ex["image"][:12] < 30).all()
    back = (ex["poses2d"][:2] - ex["offset"]) / ex["scale"]
    np.testing.assert_allclose(back, record["people"]["joints2d"], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(ex["visible"][:2], record["people"]["visible"])
    k = record["intrinsics"]
    np.testing.assert_allclose(
        ex["intrinsics"], [k[0] * 0.32, k[1] * 0.32, k[2] * 0.32, k[3] * 0.32]
    )
    # 2D stays the projection of 3D in network pixels (3D is torso-centred: center3d
    # holds the camera-space torso centre).
    centers = geometry.torso_center(record["people"]["joints3d"], "lcr17")
    np.testing.assert_allclose(ex["center3d"][:2], centers, atol=1e-6)
    assert not ex["center3d"][2:].any()
    absolute = ex["poses3d"][:2] + ex["center3d"][:2, None]
    np.testing.assert_allclose(
        geometry.project(absolute, ex["intrinsics"]), ex["poses2d"][:2], atol=1e-3
    )


def test_flip_is_an_involution_on_image_and_annotations():
    record = _record(height=48, width=64)
    flip = pipeline.Augment(scale_range=(1.0, 1.0), flip_probability=1.0)
    kwargs = dict(image_size=(48, 64), joint_set="lcr17", max_people=2, augment=flip)
    once = pipeline.transform_record(
        record, index=0, src_joint_set="lcr17", rng=np.random.default_rng(0), **kwargs
    )
    people = record["people"]
    # Left and right swap: the new left wrist is the mirrored old right wrist.
    x_right = people["joints2d"][:, L17["right_wrist"], 0]
    np.testing.assert_allclose(once["poses2d"][:, L17["left_wrist"], 0], 64 - x_right, atol=1e-4)
    assert once["intrinsics"][2] == pytest.approx(64 - record["intrinsics"][2])
    np.testing.assert_array_equal(once["image"], record["image"][:, ::-1])
    # The flipped camera-space pose still projects onto the flipped 2D.
    flipped_abs = once["poses3d"] + once["center3d"][:, None]
    np.testing.assert_allclose(
        geometry.project(flipped_abs, once["intrinsics"]), once["poses2d"], atol=1e-3
    )
    flipped = {
        "image": once["image"],
        "intrinsics": once["intrinsics"],
        "people": {
            "joints2d": once["poses2d"],
            "joints3d": once["poses3d"],
            "visible": once["visible"],
            "has_3d": once["has_3d"],
            "box": np.zeros((2, 4), np.float32),
        },
    }
    twice = pipeline.transform_record(
        flipped, index=0, src_joint_set="lcr17", rng=np.random.default_rng(1), **kwargs
    )
    np.testing.assert_array_equal(twice["image"], record["image"])
    np.testing.assert_allclose(twice["poses2d"], people["joints2d"], atol=1e-4)
    np.testing.assert_array_equal(twice["visible"], people["visible"])
    centred = geometry.center_on_torso(people["joints3d"], "lcr17")
    np.testing.assert_allclose(twice["poses3d"], centred, atol=1e-5)
    np.testing.assert_allclose(twice["intrinsics"], record["intrinsics"], atol=1e-4)


def test_conversion_to_lcr13_keeps_visibility_and_uses_the_dataset_rules():
    record = _record()
    ex = pipeline.transform_record(record, index=0, image_size=200, src_joint_set="lcr17")
    assert ex["poses2d"].shape == (16, 13, 2) and ex["poses3d"].shape == (16, 13, 3)
    np.testing.assert_array_equal(ex["visible"][:2], record["people"]["visible"][:, :13])
    # COCO has no head joint: the midpoint of the ears, invisible without ears or eyes.
    coco = skeleton.COCO17
    joints = np.zeros((1, 17, 2), np.float32)
    joints[0, coco.index("left_ear")] = [10, 20]
    joints[0, coco.index("right_ear")] = [30, 20]
    joints[0, coco.index("left_hip")] = [5, 30]
    visible = np.zeros((1, 17), bool)
    visible[0, [coco.index("left_ear"), coco.index("right_ear"), coco.index("left_hip")]] = True
    record = {
        "image": np.zeros((40, 40, 3), np.uint8),
        "intrinsics": np.zeros(4, np.float32),
        "people": {
            "joints2d": joints,
            "joints3d": np.zeros((1, 17, 3), np.float32),
            "visible": visible,
            "has_3d": np.zeros(1, bool),
            "box": np.zeros((1, 4), np.float32),
        },
    }
    ex = pipeline.transform_record(record, index=0, image_size=40, src_joint_set="coco17")
    head = skeleton.LCR13.index("head")
    np.testing.assert_allclose(ex["poses2d"][0, head], [20, 20])
    assert ex["visible"][0].sum() == 2 and ex["visible"][0, head]
    assert not ex["has_3d"].any() and not ex["poses3d"].any() and not ex["intrinsics"].any()
    flip = pipeline.Augment(scale_range=(1.0, 1.0), flip_probability=1.0)
    flipped = pipeline.transform_record(
        record,
        index=0,
        image_size=40,
        src_joint_set="coco17",
        rng=np.random.default_rng(0),
        augment=flip,
    )
    assert not flipped["poses2d"][0, ~flipped["visible"][0]].any()  # unknown joints stay 0
    np.testing.assert_allclose(flipped["poses2d"][0, head], [20, 20])


def test_people_are_padded_with_masks_and_invisible_people_dropped():
    record = _record(num_people=3)
    record["people"]["visible"][1] = False  # nobody to see
    ex = pipeline.transform_record(
        record, index=0, image_size=200, src_joint_set="lcr17", max_people=4
    )
    assert ex["person_valid"].tolist() == [True, True, False, False]
    assert ex["people_beyond_slots"] == 0  # the slots were not full
    np.testing.assert_array_equal(ex["visible"][1], record["people"]["visible"][2, :13])
    assert (
        not ex["poses2d"][2:].any() and not ex["visible"][2:].any() and not ex["has_3d"][2:].any()
    )
    one = pipeline.transform_record(
        record, index=0, image_size=200, src_joint_set="lcr17", max_people=1
    )
    assert one["person_valid"].tolist() == [True]
    assert one["people_beyond_slots"] == 1  # the person nobody sees is not counted


def test_people_left_out_become_ignored_regions_in_network_pixels():
    record = _record(height=100, width=200, num_people=4)
    people = record["people"]
    people["visible"][1:] = False  # 1: a crowd, 2: no box, 3: partly beyond the image
    people["box"][:] = [[0, 0, 50, 50], [20, 10, 60, 90], [0, 0, 0, 0], [190, 50, 230, 70]]
    flip = pipeline.Augment(scale_range=(1.0, 1.0), flip_probability=1.0)
    ex = pipeline.transform_record(
        record, index=0, image_size=(50, 100), src_joint_set="lcr17", max_people=3,
        rng=np.random.default_rng(0), augment=flip,
    )  # fmt: skip
    # Flipped about the width 200, then halved; the largest region first.
    np.testing.assert_allclose(ex["ignore_boxes"], [[70, 5, 90, 45], [0, 25, 5, 35], [0, 0, 0, 0]])
    assert ex["person_valid"].tolist() == [True, False, False]
    np.testing.assert_allclose(ex["boxes"], [[75, 0, 100, 25], [0, 0, 0, 0], [0, 0, 0, 0]])
    one = pipeline.transform_record(
        record, index=0, image_size=(50, 100), src_joint_set="lcr17", max_people=1
    )
    np.testing.assert_allclose(one["ignore_boxes"], [[10, 5, 30, 45]])


def test_people_beyond_the_slots_become_ignored_regions():
    record = _record(height=100, width=200, num_people=3)
    record["people"]["box"][:] = [[0, 0, 50, 50], [60, 10, 90, 90], [120, 20, 150, 60]]
    ex = pipeline.transform_record(
        record, index=0, image_size=200, src_joint_set="lcr17", max_people=2
    )
    assert ex["person_valid"].tolist() == [True, True] and ex["people_beyond_slots"] == 1
    np.testing.assert_allclose(ex["ignore_boxes"], [[120, 20, 150, 60], [0, 0, 0, 0]])


def test_record_boxes_take_the_crop_offset_per_axis_and_clip_to_the_valid_region():
    """Box [5, 20, 15, 40] of a 40-pixel-wide original, scale 2, offset (-5, -7), valid
    region 60 high and 50 wide; flipped, it is [25, 20, 35, 40] first."""
    kwargs = dict(width=40, scale=2.0, offset=np.array([-5.0, -7.0]), valid_size=(60, 50))
    box = np.array([[5.0, 20.0, 15.0, 40.0]])
    plain = pipeline._network_boxes(box, flip=False, **kwargs)
    np.testing.assert_allclose(plain, [[5, 33, 25, 60]])
    np.testing.assert_allclose(
        pipeline._network_boxes(box, flip=True, **kwargs), [[45, 33, 50, 60]]
    )


def test_pseudo_ground_truth_never_replaces_annotated_3d():
    record = _record(num_people=2)
    pseudo = {
        "valid": np.ones(2, bool),
        "joints3d": np.full((2, 17, 3), 0.3, np.float32),
        "joints2d": np.full((2, 17, 2), 5.0, np.float32),
        "joint_set": "lcr17",
    }
    kwargs = dict(index=0, image_size=200, src_joint_set="lcr17", joint_set="lcr17", max_people=2)
    ex = pipeline.transform_record(record, pseudo_gt=pseudo, **kwargs)
    plain = pipeline.transform_record(record, **kwargs)
    assert not ex["pseudo_3d"].any() and ex["has_3d"].all()
    for key in ("poses2d", "poses3d", "center3d"):
        np.testing.assert_array_equal(ex[key], plain[key])


def test_3d_that_cannot_make_every_output_joint_is_no_3d():
    """LCR-13 people with 3D, read as LCR-17: the extra joints have no 3D source."""
    record = _record(num_people=2)
    people = record["people"]
    for key in ("joints2d", "joints3d", "visible"):
        people[key] = people[key][:, :13]
    ex = pipeline.transform_record(
        record, index=0, image_size=200, src_joint_set="lcr13", joint_set="lcr17", max_people=2
    )
    assert ex["person_valid"].all() and not ex["has_3d"].any()
    assert not ex["poses3d"].any() and not ex["center3d"].any()


def test_people_counts_tell_annotated_pseudo_and_2d_only_people_apart_by_source():
    batch = {
        "person_valid": np.array([[True, True, True, False], [True, True, False, False]]),
        "has_3d": np.array([[True, True, False, True], [True, False, False, False]]),
        "pseudo_3d": np.array([[False, True, False, False], [True, False, False, False]]),
        "source": np.array([0, 1]),
    }
    assert pipeline.people_counts(batch, ["a", "b"]) == {
        "people/a/3d": 1.0, "people/a/pseudo_3d": 1.0, "people/a/2d_only": 1.0,
        "people/b/3d": 0.0, "people/b/pseudo_3d": 1.0, "people/b/2d_only": 1.0,
    }  # fmt: skip


def test_training_crop_marks_joints_that_leave_the_image():
    record = _record(height=64, width=64, num_people=2, seed=3)
    zoom = pipeline.Augment(scale_range=(2.0, 2.0), flip_probability=0.0)
    ex = pipeline.transform_record(
        record, index=0, image_size=64, src_joint_set="lcr17", joint_set="lcr17",
        rng=np.random.default_rng(4), augment=zoom, max_people=2,
    )  # fmt: skip
    assert ex["scale"] == pytest.approx(2.0) and (ex["offset"] <= 0).all()
    assert ex["image_size"].tolist() == [64, 64]
    np.testing.assert_allclose(
        (ex["poses2d"] - ex["offset"]) / ex["scale"], record["people"]["joints2d"], atol=1e-4
    )
    inside = ((ex["poses2d"] >= 0) & (ex["poses2d"] < 64)).all(-1)
    np.testing.assert_array_equal(ex["visible"], record["people"]["visible"] & inside)
    assert (record["people"]["visible"] & ~inside).any()  # the crop hid some joints


def test_training_crops_and_flips_keep_image_labels_and_camera_aligned():
    """Zoomed (cropped in x and y) training examples, flipped or not, on a canvas that is
    neither square nor the image's size: every canvas pixel shows the original pixel that
    the labels' mapping sends there, and the 3D still projects onto the 2D with the
    example's intrinsics (principal point mirrored about the image width, then cropped)."""
    canvas, crops = (48, 64), set()
    # Landscape: cropped in x and y; portrait: 96 x 64 scaled, cropped in y only.
    for (height, width), flip_probability in itertools.product(((60, 90), (90, 60)), (0.0, 1.0)):
        record = _record(height=height, width=width, num_people=2, seed=1)
        x = (np.arange(width) + 0.5) / width * 250  # ramps: red = x, green = y (pixel centres)
        y = (np.arange(height) + 0.5) / height * 250
        record["image"][..., 0] = np.round(x)[None, :]
        record["image"][..., 1] = np.round(y)[:, None]
        zoom = pipeline.Augment(scale_range=(2.0, 2.0), flip_probability=flip_probability)
        for seed in range(3):
            ex = pipeline.transform_record(
                record, index=0, image_size=canvas, src_joint_set="lcr17", joint_set="lcr17",
                rng=np.random.default_rng(seed + 3 * int(flip_probability)), augment=zoom,
                max_people=2,
            )  # fmt: skip
            scale, offset = float(ex["scale"]), ex["offset"]
            assert scale == pytest.approx(2 * min(48 / height, 64 / width))
            assert ex["image_size"].tolist() == list(canvas)
            crops.add(tuple(np.round(offset, 3)))
            # Image: canvas pixel centre -> original position -> the ramps' values.
            cols, rows = np.arange(2, canvas[1] - 2), np.arange(2, canvas[0] - 2)
            u = (cols + 0.5 - offset[0]) / scale
            v = (rows + 0.5 - offset[1]) / scale
            u = width - u if flip_probability else u
            red = ex["image"][rows[:, None], cols[None, :], 0].astype(float)
            green = ex["image"][rows[:, None], cols[None, :], 1].astype(float)
            np.testing.assert_allclose(red, np.broadcast_to(u / width * 250, red.shape), atol=1.5)
            np.testing.assert_allclose(
                green, np.broadcast_to(v[:, None] / height * 250, green.shape), atol=1.5
            )
            # Labels: network = (mirrored) original * scale + offset.
            joints = record["people"]["joints2d"]
            if flip_probability:
                joints = skeleton.flip_poses(joints, "lcr17", image_width=width)
            np.testing.assert_allclose(ex["poses2d"], joints * scale + offset, atol=1e-3)
            # Camera: the 3D projects onto the 2D with the example's intrinsics.
            absolute = ex["poses3d"] + ex["center3d"][:, None]
            np.testing.assert_allclose(
                geometry.project(absolute, ex["intrinsics"]), ex["poses2d"], atol=1e-3
            )
    assert len(crops) == 12 and min(c[0] for c in crops) < -20 and min(c[1] for c in crops) < -20


class _Draws:
    """A stand-in for the augmentation generator whose every draw lies at fraction `t`
    of its range (`random()` returns `t`): the augmentation's extremes and midpoints."""

    def __init__(self, t):
        self.t = t

    def random(self):
        return self.t

    def uniform(self, low=0.0, high=1.0):
        return low + self.t * (high - low)


def test_a_flip_mirrors_an_off_centre_principal_point_about_the_image_width():
    record = _record(height=48, width=64)
    k = np.array([100.0, 110.0, 20.0, 30.0], np.float32)  # cx far from width / 2
    record["intrinsics"] = k
    record["people"]["joints2d"] = np.asarray(geometry.project(record["people"]["joints3d"], k))
    flip = pipeline.Augment(scale_range=(1.0, 1.0), flip_probability=1.0)
    ex = pipeline.transform_record(
        record, index=0, image_size=(48, 64), src_joint_set="lcr17", joint_set="lcr17",
        rng=np.random.default_rng(0), augment=flip, max_people=2,
    )  # fmt: skip
    np.testing.assert_allclose(ex["intrinsics"], [100, 110, 64 - 20, 30], atol=1e-5)
    v = ex["person_valid"]
    absolute = ex["poses3d"][v] + ex["center3d"][v][:, None]
    np.testing.assert_allclose(
        geometry.project(absolute, ex["intrinsics"]), ex["poses2d"][v], atol=1e-3
    )


def test_scale_jitter_is_log_uniform_and_the_crop_reaches_the_far_corner():
    """Draws at the top of their ranges: scale x4, the crop at its largest (the canvas
    ends at the image's bottom-right corner); at their middles: x2, the geometric mean."""
    record = _record(height=60, width=90)
    zoom = pipeline.Augment(scale_range=(1.0, 4.0), flip_probability=0.0)
    kwargs = dict(image_size=(48, 64), src_joint_set="lcr17", augment=zoom)
    base = min(48 / 60, 64 / 90)
    far = pipeline.transform_record(record, index=0, rng=_Draws(1.0), **kwargs)
    assert far["scale"] == pytest.approx(4 * base)
    np.testing.assert_allclose(
        far["offset"], [-(90 * 4 * base - 64), -(60 * 4 * base - 48)], rtol=1e-5
    )
    assert far["image_size"].tolist() == [48, 64]
    mid = pipeline.transform_record(record, index=0, rng=_Draws(0.5), **kwargs)
    assert mid["scale"] == pytest.approx(2 * base)
    np.testing.assert_allclose(
        mid["offset"], [-(90 * 2 * base - 64) / 2, -(60 * 2 * base - 48) / 2], rtol=1e-5
    )


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="joint_set"):
        pipeline.make_loader([_record()], batch_size=1, image_size=32)
    with pytest.raises(ValueError, match="image_size"):
        pipeline.transform_record(_record(), index=0, image_size=(0, 3), src_joint_set="lcr17")
    with pytest.raises(ValueError, match="unknown joint set"):
        pipeline.make_loader([_record()], batch_size=1, image_size=32, src_joint_set="smpl")
    with pytest.raises(ValueError, match="split"):
        pipeline.make_loader("synthetic_people/test", batch_size=1, image_size=32)
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        build_dataset.build("nope")
    with pytest.raises(ValueError, match=r"scale_range must be \(min, max\) with 0 < min <= max"):
        pipeline.Augment(scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match=r"scale_range must be \(min, max\) with 0 < min"):
        pipeline.Augment(scale_range=(0.0, 1.0))  # a zero scale
    with pytest.raises(ValueError, match=r"flip_probability must be in \[0, 1\], got 2"):
        pipeline.Augment(flip_probability=2)
    with pytest.raises(ValueError, match="unknown config 'big' of lsp; available: original, ext"):
        build_dataset.build("lsp/big")


def _loader(data_dir, **kwargs):
    options = dict(split="train", data_dir=data_dir, batch_size=4, image_size=64, max_people=4)
    return pipeline.make_loader("synthetic_people/test", **{**options, **kwargs})


def _equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_loader_batches_have_the_documented_keys_shapes_and_dtypes(data_dir):
    batch = next(iter(_loader(data_dir, joint_set="lcr17")))
    assert set(batch) == set(pipeline.BATCH_KEYS)
    shapes = {k: (v.shape, v.dtype) for k, v in batch.items()}
    assert shapes == {
        "image": ((4, 64, 64, 3), np.uint8),
        "image_size": ((4, 2), np.int32),
        "scale": ((4,), np.float32),
        "offset": ((4, 2), np.float32),
        "poses2d": ((4, 4, 17, 2), np.float32),
        "poses3d": ((4, 4, 17, 3), np.float32),
        "center3d": ((4, 4, 3), np.float32),
        "visible": ((4, 4, 17), bool),
        "has_3d": ((4, 4), bool),
        "person_valid": ((4, 4), bool),
        "intrinsics": ((4, 4), np.float32),
        "index": ((4,), np.int64),
        "source": ((4,), np.int32),
        "pseudo_3d": ((4, 4), bool),
        "boxes": ((4, 4, 4), np.float32),
        "ignore_boxes": ((4, 4, 4), np.float32),
        "people_beyond_slots": ((4,), np.int32),
    }
    assert batch["person_valid"][:, 0].all() and (batch["has_3d"] == batch["person_valid"]).all()
    np.testing.assert_allclose(
        geometry.torso_center(batch["poses3d"], "lcr17")[batch["person_valid"]], 0, atol=1e-5
    )


def test_loader_is_deterministic_for_a_seed_and_resumes_from_its_state(data_dir):
    first = iter(_loader(data_dir, seed=3))
    a = [next(first)]
    state = first.get_state()
    a += [next(first), next(first)]
    second = iter(_loader(data_dir, seed=3))
    assert all(_equal(x, next(second)) for x in a)
    assert not _equal(a[0], next(iter(_loader(data_dir, seed=4))))
    resumed = iter(_loader(data_dir, seed=3))
    resumed.set_state(state)
    assert _equal(next(resumed), a[1]) and _equal(next(resumed), a[2])


def test_evaluation_loader_shards_cover_the_split_once(data_dir):
    indices = []
    for shard in range(2):
        loader = _loader(data_dir, batch_size=5, train=False, shard_index=shard, shard_count=2)
        batches = list(loader)
        assert [len(b["index"]) for b in batches] == [5, 5, 2]  # last partial batch kept
        indices.append(np.concatenate([b["index"] for b in batches]))
    assert sorted(np.concatenate(indices).tolist()) == list(range(24))
    assert not set(indices[0]) & set(indices[1])


def test_evaluation_shards_of_unequal_lengths_cover_the_split_once(data_dir):
    """24 records on 5 hosts: none is left out (a host's share of an evaluation)."""
    shards = [
        np.concatenate([b["index"] for b in _loader(data_dir, batch_size=2, train=False,
                                                    shard_index=shard, shard_count=5)])
        for shard in range(5)
    ]  # fmt: skip
    assert [s.tolist() for s in shards] == [
        list(range(0, 5)), list(range(5, 10)), list(range(10, 15)), list(range(15, 20)),
        list(range(20, 24)),
    ]  # fmt: skip
    assert [pipeline.evaluation_share(3, h, 5) for h in range(5)] == [
        (0, 1), (1, 2), (2, 3), (3, 3), (3, 3),
    ]  # fmt: skip


@pytest.mark.slow
def test_worker_processes_give_the_same_examples(data_dir):
    # Grain workers batch their own share of the records: the same examples come out,
    # grouped differently.
    def examples(loader):
        it = iter(loader)
        batches = [next(it) for _ in range(6)]  # one epoch of 24 records
        return {int(i): {k: b[k][n] for k in b} for b in batches for n, i in enumerate(b["index"])}

    serial = examples(_loader(data_dir, seed=1))
    workers = examples(_loader(data_dir, seed=1, num_workers=2))
    assert sorted(serial) == sorted(workers) == list(range(24))
    assert all(_equal(serial[i], workers[i]) for i in serial)


def test_encoded_images_decode_at_reduced_size_with_the_same_geometry():
    record = _record(height=300, width=400)
    record["image"] = np.zeros((300, 400, 3), np.uint8)
    record["image"][100:180, 200:280] = 255
    encoded = {**record, "image": features.encode_image(record["image"], "jpeg")}
    kwargs = dict(index=0, image_size=64, src_joint_set="lcr17", max_people=2)
    ex, ex_bytes = (pipeline.transform_record(r, **kwargs) for r in (record, encoded))
    # 400 -> 64 pixels: JPEG decoding at 1/4 size (draft mode) before the resize.
    assert ex_bytes["image_size"].tolist() == ex["image_size"].tolist() == [48, 64]
    assert np.abs(ex_bytes["image"].astype(int) - ex["image"]).mean() < 3
    assert (ex_bytes["image"][18:27, 34:43] > 200).all()  # the square: [32, 44.8) x [16, 28.8)
    np.testing.assert_array_equal(ex_bytes["poses2d"], ex["poses2d"])


# ------------------------------------------------- pseudo ground truth (Sec. 3.7) sidecars

_PEOPLE = (2, 1)  # people per record of the pseudo-GT dataset
_HEIGHT, _WIDTH = 40, 60


class PipelinePseudoGt(tfds.core.GeneratorBasedBuilder):
    """Two COCO-17 records of 40 x 60 pixels: two people without 3D, then one with 3D."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=features.pose_features(17, image_format="png"),
            metadata=tfds.core.MetadataDict(joint_set="coco17"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, people in enumerate(_coco_people()):
            yield (
                i,
                {
                    "image": features.encode_image(np.zeros((_HEIGHT, _WIDTH, 3), np.uint8), "png"),
                    "image_id": f"img{i}",
                    "intrinsics": np.zeros(4, np.float32),
                    "people": people,
                },
            )


def _coco_people() -> list[dict]:
    rng = np.random.default_rng(5)
    records = []
    for r, num in enumerate(_PEOPLE):
        visible = rng.random((num, 17)) < 0.6
        joints3d = (rng.normal(0, 0.4, (num, 17, 3)) + [0, 0, 5]) * (r == 1)  # 0 without 3D
        visible[:, [3, 4, 11]] = True  # both ears (the head) and a hip
        records.append(
            {
                "joints2d": rng.uniform(2, 38, (num, 17, 2)).astype(np.float32),
                "joints3d": joints3d.astype(np.float32),
                "visible": visible,
                "has_3d": np.full(num, r == 1),
                "box": np.zeros((num, 4), np.float32),
            }
        )
    return records


def _pseudo_table(joint_set="lcr17", image_ids=("img0", "img1"), split="train"):
    """A pseudo-GT table for the two records: record 0 person 0 matched, person 1 not."""
    rng = np.random.default_rng(6)
    j = skeleton.get_joint_set(joint_set).num_joints
    total = sum(_PEOPLE)
    joints3d = geometry.center_on_torso(rng.normal(0, 0.4, (total, j, 3)), joint_set)
    return pseudo_gt_file.PseudoGTFile(
        offsets=np.cumsum([0, *_PEOPLE]),
        image_id=np.asarray(image_ids),
        joints3d=np.asarray(joints3d, np.float32),
        joints2d=rng.uniform(2, 38, (total, j, 2)).astype(np.float32),
        annotated=np.ones((total, j), bool),
        valid=np.array([True, False, False]),
        distance=np.array([0.01, np.nan, np.nan], np.float32),
        joint_set=joint_set,
        corpus="mocap.npz",
        split=split,
    )


def _save(table, path):
    np.savez(path, format_version=pseudo_gt_file.FORMAT_VERSION, **dataclasses.asdict(table))
    return path


@pytest.fixture(scope="module")
def pseudo_dataset(tmp_path_factory):
    """(data_dir, dataset version directory holding pseudo_gt_train.npz, its table)."""
    data_dir = tmp_path_factory.mktemp("pseudo_tfds")
    PipelinePseudoGt(data_dir=data_dir, file_format="array_record").download_and_prepare()
    version_dir = data_dir / "pipeline_pseudo_gt" / "1.0.0"
    table = _pseudo_table()
    _save(table, version_dir / "pseudo_gt_train.npz")
    return str(data_dir), version_dir, table


def _pseudo_loader(data_dir, pseudo_gt, **kwargs):
    options = dict(split="train", data_dir=data_dir, batch_size=2, image_size=_WIDTH)
    options.update(max_people=3, train=False, pseudo_gt=pseudo_gt)
    return pipeline.make_loader("pipeline_pseudo_gt", **{**options, **kwargs})


def test_people_without_3d_take_the_pseudo_ground_truth_in_the_output_joints(pseudo_dataset):
    data_dir, version_dir, table = pseudo_dataset
    batch = next(iter(_pseudo_loader(data_dir, version_dir)))
    plain = next(iter(_pseudo_loader(data_dir, None)))
    assert plain["has_3d"].tolist() == [[False, False, False], [True, False, False]]
    assert batch["has_3d"].tolist() == [[True, False, False], [True, False, False]]
    assert batch["scale"].tolist() == [1.0, 1.0]  # network pixels = original pixels

    lcr13 = list(skeleton.LCR17.indices(skeleton.LCR13.joints))
    matched = table.record(0)
    np.testing.assert_allclose(batch["poses3d"][0, 0], matched["joints3d"][0, lcr13], atol=1e-6)
    # The dataset's visible joints stay; the completed ones come from the file.
    people = _coco_people()[0]
    native, visible = skeleton.convert(people["joints2d"], people["visible"], "coco17", "lcr13")
    np.testing.assert_array_equal(batch["visible"][0, :2], visible)
    expected = np.where(visible[0, :, None], native[0], matched["joints2d"][0, lcr13])
    np.testing.assert_allclose(batch["poses2d"][0, 0], expected, atol=1e-5)
    assert not visible[0].all()  # some joints were completed
    # Everything else is as without the file: the unmatched person, the one with real 3D.
    for key in ("poses2d", "poses3d", "visible", "person_valid"):
        np.testing.assert_array_equal(batch[key][0, 1:], plain[key][0, 1:])
        np.testing.assert_array_equal(batch[key][1], plain[key][1])
    assert not batch["poses3d"][0, 1].any() and not batch["poses2d"][0, 1][~visible[1]].any()
    assert not batch["center3d"][0, 0].any(), "pseudo 3D has no camera-space position"


def test_a_flip_keeps_the_pseudo_ground_truth_consistent(pseudo_dataset):
    data_dir, version_dir, table = pseudo_dataset
    flip = pipeline.Augment(scale_range=(1.0, 1.0), flip_probability=1.0)
    path = version_dir / "pseudo_gt_train.npz"  # the file itself this time
    flipped = next(iter(_pseudo_loader(data_dir, path, train=True, augment=flip)))
    plain = next(iter(_pseudo_loader(data_dir, table)))  # a PseudoGTFile
    lcr13 = skeleton.LCR13
    for b, index in enumerate(flipped["index"]):  # both records, in shuffled order
        ex = {k: v[index] for k, v in plain.items()}
        assert flipped["has_3d"][b].tolist() == ex["has_3d"].tolist()
        np.testing.assert_allclose(
            flipped["poses3d"][b], skeleton.flip_poses(ex["poses3d"], lcr13), atol=1e-6
        )
        known = (ex["visible"] | ex["has_3d"][:, None])[:, list(lcr13.flip_permutation)]
        mirrored = skeleton.flip_poses(ex["poses2d"], lcr13, image_width=_WIDTH)
        np.testing.assert_allclose(
            flipped["poses2d"][b], np.where(known[..., None], mirrored, 0.0), atol=1e-4
        )
    assert flipped["has_3d"].sum() == 2


def test_a_sidecar_that_does_not_match_the_split_raises(pseudo_dataset, tmp_path):
    data_dir, version_dir, table = pseudo_dataset
    short = dataclasses.replace(table, offsets=table.offsets[:2], image_id=table.image_id[:1])
    with pytest.raises(ValueError, match="has 1 records, the source 2"):
        _pseudo_loader(data_dir, short)
    swapped = _pseudo_table(image_ids=("img1", "img0"))
    with pytest.raises(ValueError, match="record 0 has image_id 'img0' but .* has 'img1'"):
        _pseudo_loader(data_dir, _save(swapped, tmp_path / "swapped.npz"))
    with pytest.raises(ValueError, match="for split 'test', expected 'train'"):
        _pseudo_loader(data_dir, _pseudo_table(split="test"))
    with pytest.raises(ValueError, match=r"lcr13 poses, which lack \['pelvis'"):
        _pseudo_loader(data_dir, _pseudo_table("lcr13"), joint_set="lcr17")
    with pytest.raises(FileNotFoundError, match="pseudo_gt_train.npz"):
        _pseudo_loader(data_dir, tmp_path)
    record = {**_record(num_people=2), "image_id": "x"}
    with pytest.raises(ValueError, match="record 4 has 3 people, the record 2"):
        pipeline.transform_record(
            record, index=4, image_size=32, src_joint_set="lcr17",
            pseudo_gt={**table.record(0), "valid": np.ones(3, bool), "joint_set": "lcr17"},
        )  # fmt: skip


def _with_nan(array, index):
    array = array.copy()
    array[index] = np.nan
    return array


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("offsets", None, r"is not a pseudo ground-truth file: it lacks \['offsets'\]"),
        ("offsets", lambda x: x[:-1], r"offsets has shape \(2,\) .*expected \(3,\) integers"),
        ("offsets", lambda x: x[::-1], "offsets must start at 0 and never decrease"),
        ("offsets", lambda x: x + 1, "offsets must start at 0 and never decrease"),
        ("valid", lambda x: x.astype(np.int8), "valid has dtype int8, expected bool"),
        ("annotated", lambda x: x.astype(np.float32), "annotated has dtype float32, expected"),
        ("valid", lambda x: x[:2], r"valid has shape \(2,\), expected \(3,\) \(3 people\)"),
        ("joints3d", lambda x: _with_nan(x, (0, 4, 1)), "joints3d holds NaN, inf or non-numbers"),
        ("joints2d", lambda x: _with_nan(x, (0, 0, 0)), "joints2d holds NaN, inf or non-numbers"),
        ("joint_set", lambda x: "h36m17", r"joint set 'h36m17', expected one of \('lcr17'"),
        ("distance", lambda x: np.array(["x", "y", "z"]), "distance has dtype <U1, expected float"),
        ("distance", lambda x: _with_nan(x, 0), r"distance holds NaN or values outside \[0, 2\]"),
        ("distance", lambda x: x + 2.5, r"distance holds NaN or values outside \[0, 2\]"),
        ("distance", lambda x: -x, r"distance holds NaN or values outside \[0, 2\]"),
    ],
)
def test_a_damaged_sidecar_is_named_with_the_command_that_rebuilds_it(
    tmp_path, name, damage, message
):
    """A key removed printed only `error: offsets`; truncated offsets an IndexError."""
    fields = dataclasses.asdict(_pseudo_table())
    if damage is None:
        del fields[name]
    else:
        fields[name] = damage(fields[name])
    path = tmp_path / "pseudo_gt_train.npz"
    np.savez(path, format_version=pseudo_gt_file.FORMAT_VERSION, **fields)
    rebuild = "; rebuild it with experiments/add_pseudo_gt.py --split=train$"
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}.*{message}.*{rebuild}"):
        pseudo_gt_file.load_pseudo_gt(path, "train")


def test_a_sidecar_is_read_for_its_own_split_only(tmp_path):
    path = _save(_pseudo_table(split="validation"), tmp_path / "pseudo_gt_train.npz")
    with pytest.raises(ValueError, match="made for split 'validation', not 'train'; rebuild"):
        pseudo_gt_file.load_pseudo_gt(path, "train")
    assert pseudo_gt_file.load_pseudo_gt(path, None).split == "validation"
    with pytest.raises(ValueError, match="is a dataset directory: pass a split"):
        pseudo_gt_file.load_pseudo_gt(tmp_path, None)


def test_a_sidecar_of_another_format_version_is_named_with_the_rebuild_command(tmp_path):
    path = tmp_path / "pseudo_gt_train.npz"
    newer = pseudo_gt_file.FORMAT_VERSION + 1
    np.savez(path, format_version=newer, **dataclasses.asdict(_pseudo_table()))
    message = (
        f"{path}: format version {newer}, expected {pseudo_gt_file.FORMAT_VERSION}; "
        "rebuild it with experiments/add_pseudo_gt.py --split=train"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        pseudo_gt_file.load_pseudo_gt(path, "train")


def test_a_sidecar_record_index_outside_the_split_is_refused():
    """Record len(table) is past the last record, not an empty one."""
    table = _pseudo_table()
    assert len(table.record(len(table) - 1)["valid"]) == _PEOPLE[-1]
    for index in (len(table), -1):
        with pytest.raises(ValueError, match=rf"record index {index} out of range \[0, 2\)"):
            table.record(index)


def test_people_without_pseudo_ground_truth_may_hold_nan(tmp_path):
    table = _pseudo_table()
    table = dataclasses.replace(table, joints3d=_with_nan(table.joints3d, 1))  # not valid
    loaded = pseudo_gt_file.load_pseudo_gt(_save(table, tmp_path / "pseudo_gt_train.npz"), "train")
    assert np.isnan(loaded.joints3d[1]).all() and np.isfinite(loaded.joints3d[0]).all()


def test_worker_processes_read_the_sidecar_themselves(pseudo_dataset):
    data_dir, version_dir, _ = pseudo_dataset
    serial = next(iter(_pseudo_loader(data_dir, version_dir, train=True, seed=2)))
    # Workers batch their own records: one record per batch keeps the comparison simple.
    loader = _pseudo_loader(data_dir, version_dir, train=True, seed=2, num_workers=1)
    workers = next(iter(loader))
    assert _equal(serial, workers) and workers["has_3d"].sum() == 2


# ------------------------------------------------------ mixtures of sources (Sec. 4.2-4.3)


class PipelineFlat(PipelinePseudoGt):
    """The same two records, every person 2D-only (like MPII, LSP, COCO)."""

    def _generate_examples(self):
        for key, record in super()._generate_examples():
            people = {**record["people"], "has_3d": np.zeros_like(record["people"]["has_3d"])}
            yield key, {**record, "people": people}


@pytest.fixture(scope="module")
def mixture_dir(data_dir):
    """synthetic_people/test (3D), pipeline_pseudo_gt (2D + sidecar), pipeline_flat (2D)."""
    PipelinePseudoGt(data_dir=data_dir, file_format="array_record").download_and_prepare()
    PipelineFlat(data_dir=data_dir, file_format="array_record").download_and_prepare()
    version_dir = f"{data_dir}/pipeline_pseudo_gt/1.0.0"
    _save(_pseudo_table(), f"{version_dir}/pseudo_gt_train.npz")
    return data_dir


def _mixture(data_dir, sources, **kwargs):
    options = dict(data_dir=data_dir, batch_size=4, image_size=64, max_people=4, seed=1)
    return pipeline.make_mixture(sources, **{**options, **kwargs})


MIX = (
    pipeline.Source("synthetic_people/test", weight=3.0, label="synthetic"),
    pipeline.Source("pipeline_pseudo_gt", weight=1.0, pseudo_gt=True, label="coco"),
)


def test_mixture_draws_by_weight_with_pseudo_ground_truth_and_resumes(mixture_dir):
    it = iter(_mixture(mixture_dir, MIX))
    batches = [next(it) for _ in range(4)]
    state = it.get_state()
    later = [next(it), next(it)]
    sources = np.concatenate([b["source"] for b in batches])
    assert np.bincount(sources, minlength=2).tolist() == [12, 4]  # 3 : 1
    coco = [(b, n) for b in batches for n in range(4) if b["source"][n] == 1]
    for b, n in coco:  # record 0: person 0 matched by the sidecar; record 1: real 3D
        expected = [True, False, False, False] if b["index"][n] == 0 else [False] * 4
        assert b["pseudo_3d"][n].tolist() == expected
        assert b["has_3d"][n, 0]
    counts = pipeline.people_counts(batches[0], ["synthetic", "coco"])
    assert sum(counts.values()) == batches[0]["person_valid"].sum()
    assert counts["people/synthetic/pseudo_3d"] == counts["people/synthetic/2d_only"] == 0
    again = iter(_mixture(mixture_dir, MIX))
    assert all(_equal(b, next(again)) for b in batches)
    resumed = iter(_mixture(mixture_dir, MIX))
    resumed.set_state(state)
    assert all(_equal(b, next(resumed)) for b in later)
    other = next(iter(_mixture(mixture_dir, MIX, seed=2)))
    assert not _equal(other, batches[0])


def test_hosts_take_turns_in_one_mixed_shuffled_augmented_stream(mixture_dir):
    """Two hosts get the one-host stream's examples alternately, sources and augmentation
    included: no two hosts share a shuffle order, a source pattern or a flip and scale
    draw."""
    options = dict(batch_size=1, augment=pipeline.Augment((0.7, 1.3), 0.5))
    one = iter(_mixture(mixture_dir, MIX, **options))
    hosts = [
        iter(_mixture(mixture_dir, MIX, shard_index=h, shard_count=2, **options)) for h in (0, 1)
    ]
    for _ in range(5):
        for host in hosts:
            assert _equal(next(host), next(one))


def test_mixture_bad_sources_fail_at_once_naming_the_fix(mixture_dir):
    bad = [dataclasses.replace(MIX[0], weight=0.0)]
    with pytest.raises(ValueError, match="'synthetic' has weight 0.0: weights must be > 0"):
        _mixture(mixture_dir, bad)
    with pytest.raises(
        FileNotFoundError, match=r"source 'nope': unknown dataset 'nope': datasets: cmu"
    ):
        _mixture(mixture_dir, [pipeline.Source("nope")])
    command = (
        f"python experiments/add_pseudo_gt.py --dataset=pipeline_flat --data_dir={mixture_dir} "
        "--corpus=mocap.npz --split=train"
    )
    with pytest.raises(ValueError, match="2D-only: set its pseudo_gt=True") as error:
        _mixture(mixture_dir, [pipeline.Source("pipeline_flat")], corpus="mocap.npz")
    assert str(error.value).endswith(command)
    with pytest.raises(FileNotFoundError, match="no pseudo ground truth") as error:
        flat = [pipeline.Source("pipeline_flat", pseudo_gt=True)]
        _mixture(mixture_dir, flat, corpus="mocap.npz")
    assert str(error.value).endswith(command)
