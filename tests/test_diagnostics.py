import numpy as np
import pytest

from lcrnet_jax import geometry
from lcrnet_jax.evaluation import diagnostics


def _person(x, y, height=60.0):
    """A rough upright LCR-13 pose whose head is at (x, y), feet `height` lower."""
    ys = np.array([1.0, 1.0, 0.75, 0.75, 0.5, 0.5, 0.5, 0.5, 0.35, 0.35, 0.2, 0.2, 0.0])
    xs = np.array([-0.1, 0.1, -0.1, 0.1, -0.1, 0.1, -0.25, 0.25, -0.2, 0.2, -0.15, 0.15, 0.0])
    return np.stack([x + xs * height, y + ys * height], -1).astype(np.float32)


def _batch(people):
    """One 100 x 100 image with `people` (G, J, 2), every joint known."""
    g = len(people)
    return {
        "poses2d": np.asarray(people)[None],
        "visible": np.ones((1, g, 13), bool),
        "has_3d": np.ones((1, g), bool),
        "person_valid": np.ones((1, g), bool),
        "image_size": np.array([[100, 100]]),
    }


def _proposals(boxes, class_poses, foreground=0.9, top=1):
    """One image's RoIs (R, 4), each with K = 2 class poses (R, 2, J, 2); class `top`
    (1 or 2) the most probable, background probability 1 - foreground."""
    r = len(boxes)
    probs = np.zeros((1, r, 3), np.float32)
    probs[..., 0] = 1.0 - foreground
    probs[..., top] = 0.8 * foreground
    probs[..., 3 - top] = 0.2 * foreground
    poses = np.concatenate([np.zeros((r, 1, 13, 2)), np.asarray(class_poses)], 1)[None]
    return {
        "boxes": np.asarray(boxes, np.float32)[None],
        "probs": probs,
        "poses2d": poses.astype(np.float32),
        "valid": np.ones((1, r), bool),
    }


def _box(pose):
    return np.asarray(geometry.pose_box(pose, margin=0.0))


def test_perfect_proposals_find_everyone_with_exact_poses():
    person = _person(50, 20)
    found = diagnostics.Diagnostics("lcr13")
    found.add(_proposals([_box(person)], [[person, person + 30]]), _batch([person]))
    summary = found.summary()
    assert summary["all"] == {
        "people": 1, "proposal": 1.0, "candidate": 1.0, "confident": 1.0,
        "pckh_top_class": 1.0, "pckh_best_class": 1.0,
    }  # fmt: skip
    assert summary["truncated"]["people"] == 0 and np.isnan(summary["truncated"]["proposal"])


def test_each_stage_fails_on_its_own():
    inside, cut = _person(30, 20), _person(70, 60)  # the second one's feet leave the image
    batch = _batch([inside, cut])
    far = _box(inside) + 60.0  # a RoI box that matches nobody
    # Right poses in a wrong box: the candidates find both, the proposals neither.
    stats = diagnostics.batch_diagnostics(
        _proposals([far, far], [[inside, inside], [cut, cut]]), batch, joint_set="lcr13"
    )
    np.testing.assert_array_equal(stats["truncated"], [False, True])
    np.testing.assert_array_equal(stats["proposal"], [False, False])
    np.testing.assert_array_equal(stats["candidate"], [True, True])
    np.testing.assert_array_equal(stats["pckh_top_class"], [[0, 0], [0, 0]])  # no RoI matched
    # Mostly background: found by the candidates, not by the confident ones.
    stats = diagnostics.batch_diagnostics(
        _proposals([_box(inside)], [[inside, inside]], foreground=0.3), batch, joint_set="lcr13"
    )
    np.testing.assert_array_equal(stats["confident"], [False, False])
    np.testing.assert_array_equal(stats["candidate"], [True, False])
    # The top class's pose is off by 20 pixels (the head size is 12): the oracle class
    # is right.
    stats = diagnostics.batch_diagnostics(
        _proposals([_box(inside)], [[inside, inside + 20.0]], top=2), batch, joint_set="lcr13"
    )
    np.testing.assert_array_equal(stats["pckh_top_class"][0], [0, 13])
    np.testing.assert_array_equal(stats["pckh_best_class"][0], [13, 13])


def test_truncation_reads_height_then_width_and_counts_known_joints():
    """A 100 px high, 200 px wide image: a person at x 135-165 is inside, one whose feet
    reach y = 120 is cut; so is one with an occluded joint (not visible, known from its
    3D) left of the image."""
    wide, low, occluded = _person(150, 20), _person(50, 60), _person(30, 20)
    occluded[7] = (-10.0, 50.0)  # its left wrist
    batch = _batch([wide, low, occluded])
    batch["image_size"] = np.array([[100, 200]])
    batch["visible"][0, 2, 7] = False
    stats = diagnostics.batch_diagnostics(
        _proposals([_box(wide)], [[wide, wide]]), batch, joint_set="lcr13"
    )
    np.testing.assert_array_equal(stats["truncated"], [False, True, True])


def test_table_and_empty_summary():
    with pytest.raises(ValueError, match="no batch"):
        diagnostics.Diagnostics("lcr13").summary()
    person = _person(50, 20)
    found = diagnostics.Diagnostics("lcr13")
    found.add(_proposals([_box(person)], [[person, person]]), _batch([person]))
    lines = diagnostics.format_table(found.summary()).splitlines()
    assert lines[0] == "| stage | all | inside | truncated |"
    assert lines[2] == "| people | 1 | 1 | 0 |"
    assert lines[3] == "| proposal | 1.000 | 1.000 | nan |"
    assert len(lines) == 3 + len(diagnostics.STAGES)
