"""Tests of lcrnet_jax.postprocess.detect."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax.model import lcrnet
from lcrnet_jax.postprocess import detect as detect_lib
from lcrnet_jax.postprocess import ppi as ppi_lib
from tests.test_predictor import tiny_config


def test_batched_integration_equals_per_image():
    key = jax.random.PRNGKey(1)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    batch, rois, classes = 2, 6, tiny_config().num_classes
    center = jax.random.uniform(k1, (batch, rois, 1, 1, 2), minval=10, maxval=50)
    poses2d = center + 15 * jax.random.normal(k2, (batch, rois, classes, 13, 2))
    poses3d = 0.3 * jax.random.normal(k3, (batch, rois, classes, 13, 3))
    proposals = lcrnet.PoseProposals(
        boxes=jnp.concatenate([center[:, :, 0, 0] - 20, center[:, :, 0, 0] + 20], -1),
        objectness=jnp.ones((batch, rois)),
        probs=jax.nn.softmax(3 * jax.random.normal(k4, (batch, rois, classes))),
        poses2d=poses2d,
        poses3d=poses3d,
        valid=jnp.array([[True] * 6, [True] * 4 + [False] * 2]),
    )
    sizes = jnp.array([[60, 64], [64, 60]])
    upper = np.arange(classes) > classes // 2
    kwargs = dict(upper_body_classes=upper, ppi_config=ppi_lib.PPIConfig())
    both = detect_lib.integrate_proposals(proposals, sizes, **kwargs)  # vmapped
    assert both.poses2d.shape == (2, 32, 13, 2) and both.valid.any(1).all()
    for b in range(batch):
        one = jax.tree.map(lambda x, b=b: x[b : b + 1], proposals)
        alone = detect_lib.integrate_proposals(one, sizes[b : b + 1], **kwargs)
        for name in ("poses2d", "poses3d", "scores", "valid"):
            np.testing.assert_allclose(
                getattr(alone, name)[0], getattr(both, name)[b], rtol=1e-5, atol=1e-4
            )
    with pytest.raises(ValueError, match="method must be one of"):
        detect_lib.integrate_proposals(proposals, sizes, method="mean", **kwargs)
