"""Tests of lcrnet_jax.postprocess.candidates."""

import inspect

import numpy as np
import pytest

from lcrnet_jax.postprocess import candidates as candidates_lib
from lcrnet_jax.postprocess import nms_baseline, ppi
from tests.test_ppi import HAND, IMAGE, J


def _outputs(num_rois=3, num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    boxes = np.array(
        [[0, 0, 40, 80], [100, 0, 140, 80], [50, 50, 90, 130], [10, 10, 60, 60]], np.float32
    )
    poses2d = rng.uniform(0, 100, (num_rois, num_classes, J, 2)).astype(np.float32)
    poses3d = rng.normal(0, 0.3, (num_rois, num_classes, J, 3)).astype(np.float32)
    return boxes[:num_rois], poses2d, poses3d


def test_candidates_from_outputs_threshold_and_order():
    boxes, poses2d, poses3d = _outputs()
    threshold = np.float32(0.1 / 3)  # three non-background classes
    probs = np.array(
        [
            [0.9, threshold, 0.05, 0.0],
            [0.5, 0.45, 0.03, 0.02],
            [0.2, 0.7, 0.05, 0.05],
        ],
        np.float32,
    )
    upper_classes = np.array([False, False, True, True])
    cands = candidates_lib.candidates_from_outputs(
        boxes, probs, poses2d, poses3d, upper_body_classes=upper_classes, min_candidates=0
    )
    np.testing.assert_array_equal(cands.valid, [1, 1, 0, 1, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(cands.roi_index, np.repeat([0, 1, 2], 3))
    np.testing.assert_array_equal(cands.class_index, np.tile([1, 2, 3], 3))
    np.testing.assert_allclose(cands.scores, probs[:, 1:].reshape(-1))
    np.testing.assert_array_equal(cands.upper_body, np.tile([False, True, True], 3))
    np.testing.assert_allclose(cands.poses3d[5], poses3d[1, 3])
    np.testing.assert_allclose(cands.poses2d[5], poses2d[1, 3])
    np.testing.assert_allclose(cands.rois[5], boxes[1])
    # The original keeps at least min(min_candidates, n - 1) pairs: here 4 of the 9.
    floor = candidates_lib.candidates_from_outputs(
        boxes, probs, poses2d, poses3d, upper_body_classes=upper_classes, min_candidates=4
    )
    np.testing.assert_array_equal(floor.valid, [1, 1, 0, 1, 0, 0, 1, 1, 1])
    few = probs * np.array([1, 0.1, 0.1, 0.1], np.float32)
    floor = candidates_lib.candidates_from_outputs(
        boxes, few, poses2d, poses3d, upper_body_classes=upper_classes, min_candidates=4
    )
    np.testing.assert_array_equal(np.flatnonzero(floor.valid), [1, 3, 6, 7, 8])  # ties at 4th
    # Invalid RoIs never give candidates.
    masked = candidates_lib.candidates_from_outputs(
        boxes, probs, poses2d, poses3d, upper_body_classes=upper_classes,
        valid=np.array([True, False, True]), min_candidates=0,
    )  # fmt: skip
    np.testing.assert_array_equal(masked.valid, [1, 1, 0, 0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize(
    "min_candidates, kept",
    [
        (0, [0, 5]),  # off: the two valid pairs >= 0.05
        (2, [0, 5]),  # min(2, n - 1) = 2 already above 0.05
        (3, [0, 1, 5]),  # min(3, n - 1) = 3: the threshold falls to the 3rd best, 0.04
        (10, [0, 1, 5]),  # min(10, n - 1) = 3 too: never all n = 4 valid pairs
    ],
)
def test_the_candidate_floor_counts_and_keeps_only_valid_pairs(min_candidates, kept):
    """The authors' floor: when fewer than m = min(min_candidates, n - 1) of the n valid
    pairs reach 0.1 / (C - 1) = 0.05, exactly the m best valid pairs are kept; an
    invalid RoI's high scores neither count towards m nor get kept."""
    boxes, poses2d, poses3d = _outputs(num_rois=3, num_classes=3)
    probs = np.array(
        [
            [0.66, 0.30, 0.04],  # pairs 0, 1
            [0.02, 0.90, 0.08],  # pairs 2, 3: an invalid RoI
            [0.79, 0.01, 0.20],  # pairs 4, 5
        ],
        np.float32,
    )
    cands = candidates_lib.candidates_from_outputs(
        boxes, probs, poses2d, poses3d, upper_body_classes=np.zeros(3, bool),
        valid=np.array([True, False, True]), min_candidates=min_candidates,
    )  # fmt: skip
    np.testing.assert_array_equal(np.flatnonzero(cands.valid), kept)


def test_candidates_from_outputs_rescores_and_feeds_ppi():
    boxes, poses2d, poses3d = _outputs(num_rois=4, num_classes=5)  # 16 candidates
    poses3d[:] = 0.0  # one 3D mode
    probs = np.full((4, 5), 0.2, np.float32)
    poses2d[0, 1] = 20.0  # inside box 0
    poses2d[0, 2] = 20.0
    poses2d[0, 2, 0] = (65.0, 80.0)  # 25 px right of box 0
    cands = candidates_lib.candidates_from_outputs(
        boxes, probs, poses2d, poses3d, upper_body_classes=np.zeros(5, bool),
        rescore_sigma=25.0, min_candidates=0,
    )  # fmt: skip
    np.testing.assert_allclose(cands.scores[0], 0.2)
    np.testing.assert_allclose(cands.scores[1], 0.2 * (J - 1 + np.exp(-1.0)) / J, rtol=1e-6)
    result = ppi.ppi(**cands.ppi_inputs(), image_size=IMAGE, config=HAND)
    nms = nms_baseline.nms_poses(**cands.ppi_inputs(), image_size=IMAGE, config=HAND)
    assert 0 < int(result.valid.sum()) and float(result.scores[0]) > 0.5
    assert int(nms.valid.sum()) == 0  # no single candidate scores above 0.5
    # 0 is off, as `PPIConfig.rescore_sigma` (Eq. 6 divided by it: NaN scores, none kept).
    off = candidates_lib.candidates_from_outputs(
        boxes, probs, poses2d, poses3d, upper_body_classes=np.zeros(5, bool),
        rescore_sigma=0.0, min_candidates=0,
    )  # fmt: skip
    np.testing.assert_allclose(off.scores, 0.2)


def test_candidate_defaults_are_those_of_the_ppi_config():
    """Called without them, `candidates_from_outputs` takes the authors' rule, as
    `PPIConfig()` (and so `detect`) does."""
    params = inspect.signature(candidates_lib.candidates_from_outputs).parameters
    config = ppi.PPIConfig()
    for name in ("candidate_threshold", "min_candidates"):
        assert params[name].default == getattr(config, name), name


def test_candidates_from_outputs_bad_shapes_raise():
    boxes, poses2d, poses3d = _outputs()
    probs = np.full((3, 4), 0.25, np.float32)
    with pytest.raises(ValueError, match="poses3d must have shape"):
        candidates_lib.candidates_from_outputs(
            boxes, probs, poses2d, poses3d[:, :3], upper_body_classes=np.zeros(4, bool)
        )
    with pytest.raises(ValueError, match="upper_body_classes"):
        candidates_lib.candidates_from_outputs(
            boxes, probs, poses2d, poses3d, upper_body_classes=np.zeros(3, bool)
        )
