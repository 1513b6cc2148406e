"""Tests of lcrnet_jax.postprocess.rescoring (Eq. 6)."""

import numpy as np
import pytest

from lcrnet_jax.postprocess import rescoring
from tests.test_ppi import J


def test_rescore_hand_values():
    box = np.array([0.0, 0.0, 100.0, 50.0])
    inside = np.tile([50.0, 25.0], (J, 1))
    np.testing.assert_allclose(rescoring.rescore(0.8, inside, box), 0.8)
    outside = inside.copy()
    outside[0] = (125.0, 25.0)  # 25 px right of the box: f = exp(-1)
    outside[1] = (115.0, 70.0)  # 15 px right, 20 px below: D = 25 px
    outside[2] = (0.0, 50.0)  # on a corner: inside
    expected = 0.8 * (J - 2 + 2 * np.exp(-1.0)) / J
    np.testing.assert_allclose(rescoring.rescore(0.8, outside, box), expected, rtol=1e-6)
    np.testing.assert_allclose(
        rescoring.rescore(0.8, outside, box, sigma=50.0),
        0.8 * (J - 2 + 2 * np.exp(-0.25)) / J,
        rtol=1e-6,
    )
    batched = rescoring.rescore(np.full((2, 3), 0.5), np.broadcast_to(outside, (2, 3, J, 2)), box)
    assert batched.shape == (2, 3)
    for sigma in (0.0, -25.0, np.inf):
        with pytest.raises(ValueError, match=f"sigma must be > 0 pixels, got {sigma!r}"):
            rescoring.rescore(0.8, outside, box, sigma=sigma)


def test_rescore_left_and_above_the_box_and_batched_equals_single_calls():
    box = np.array([10.0, 20.0, 110.0, 70.0])
    pose = np.tile([60.0, 45.0], (J, 1))
    pose[0] = (-15.0, 45.0)  # 25 px left of the box: f = exp(-1)
    pose[1] = (60.0, -5.0)  # 25 px above: f = exp(-1)
    pose[2] = (-5.0, 0.0)  # 15 px left, 20 px above: D = 25 px
    pose[3] = (10.0, 20.0)  # the top-left corner: inside
    expected = 0.8 * (J - 3 + 3 * np.exp(-1.0)) / J
    np.testing.assert_allclose(rescoring.rescore(0.8, pose, box), expected, rtol=1e-6)
    # A batch of different poses, boxes and scores: each entry as its own call.
    rng = np.random.default_rng(0)
    poses = rng.uniform(-60.0, 180.0, (2, 3, J, 2))
    corner = rng.uniform(0.0, 60.0, (2, 3, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(20.0, 90.0, (2, 3, 2))], -1)
    scores = rng.uniform(0.1, 1.0, (2, 3))
    batched = rescoring.rescore(scores, poses, boxes)
    assert batched.shape == (2, 3)
    single = [
        [rescoring.rescore(scores[i, k], poses[i, k], boxes[i, k]) for k in range(3)]
        for i in range(2)
    ]
    np.testing.assert_allclose(batched, np.array(single), rtol=1e-6)
    assert len(np.unique(np.round(np.asarray(batched) / scores, 6))) == 6  # all differ
