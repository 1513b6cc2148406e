"""Tests of lcrnet_jax.postprocess.rescoring (Eq. 6)."""

import numpy as np

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
