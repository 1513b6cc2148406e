"""Tests of lcrnet_jax.postprocess.detect."""

import dataclasses
import importlib
import types

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
        mirrored=jnp.zeros((batch, rois), bool),
    )
    sizes = jnp.array([[60, 64], [64, 60]])
    upper = np.arange(classes) > classes // 2
    kwargs = dict(upper_body_classes=upper, ppi=ppi_lib.PPIConfig())
    both = detect_lib.detect(proposals, sizes, **kwargs)  # vmapped
    assert both.poses2d.shape == (2, 32, 13, 2) and both.valid.any(1).all()
    for b in range(batch):
        one = jax.tree.map(lambda x, b=b: x[b : b + 1], proposals)
        alone = detect_lib.detect(one, sizes[b : b + 1], **kwargs)
        for name in ("poses2d", "poses3d", "scores", "valid"):
            np.testing.assert_allclose(
                getattr(alone, name)[0], getattr(both, name)[b], rtol=1e-5, atol=1e-4
            )
    with pytest.raises(ValueError, match="method must be one of"):
        detect_lib.detect(proposals, sizes, method="mean", **kwargs)


def test_ppi_config_from_mapping_is_one_to_one():
    fields = {f.name for f in dataclasses.fields(ppi_lib.PPIConfig)}
    config = detect_lib.ppi_config_from_mapping({"t3d": 0.125, "candidate_threshold": 0.2})
    assert config == ppi_lib.PPIConfig(t3d=0.125, candidate_threshold=0.2)
    with pytest.raises(ValueError, match=r"unknown PPI settings \['t3D'\]"):
        detect_lib.ppi_config_from_mapping({"t3D": 0.1})
    with pytest.raises(ValueError, match="min_candidates must be an int >= 0"):
        detect_lib.ppi_config_from_mapping({"min_candidates": -1})
    # Every experiment config holds every PPIConfig field in config.ppi, and only those.
    for name in ("base", "synthetic_tiny", "synthetic", "inthewild_r50", "mpii_r50",
                 "mpii_vgg16", "h36m_p1_vgg16", "h36m_p2_r50", "mupots_finetune"):  # fmt: skip
        exp = importlib.import_module(f"experiments.configs.{name}").get_config()
        assert set(exp.ppi.to_dict()) == fields, name
        detect_lib.ppi_config_from_mapping(exp.ppi.to_dict())


def test_candidate_settings_change_the_detection():
    """candidate_threshold, min_candidates and rescore_sigma reach the candidates."""
    key = jax.random.PRNGKey(3)
    k1, k2, k3 = jax.random.split(key, 3)
    rois, classes = 5, tiny_config().num_classes
    center = jax.random.uniform(k1, (1, rois, 1, 1, 2), minval=10, maxval=50)
    proposals = lcrnet.PoseProposals(
        boxes=jnp.concatenate([center[:, :, 0, 0] - 20, center[:, :, 0, 0] + 20], -1),
        objectness=jnp.ones((1, rois)),
        probs=jax.nn.softmax(3 * jax.random.normal(k2, (1, rois, classes))),
        poses2d=center + 15 * jax.random.normal(k3, (1, rois, classes, 13, 2)),
        poses3d=jnp.zeros((1, rois, classes, 13, 3)),
        valid=jnp.ones((1, rois), bool),
        mirrored=jnp.zeros((1, rois), bool),
    )
    sizes = jnp.array([[60, 64]])
    upper = np.zeros(classes, bool)
    base = ppi_lib.PPIConfig(t3d=10.0, iou_threshold=0.0, min_candidates=0, person_threshold=0)

    def total(**changes):
        config = dataclasses.replace(base, **changes)
        people = detect_lib.detect(proposals, sizes, upper_body_classes=upper, ppi=config)
        return float(jnp.sum(jnp.where(people.valid, people.scores, 0)))

    # One group, one mode holding every kept candidate: its score is their sum.
    assert total(candidate_threshold=1.0) < total() < total(candidate_threshold=0.0)
    # The floor keeps n - 1 of the n pairs whatever the threshold.
    assert total(candidate_threshold=1.0) < total(candidate_threshold=1.0, min_candidates=100)
    assert total(rescore_sigma=25.0) != pytest.approx(total())


class _Polisher:
    """A stand-in network whose `polish` moves every 2D joint by (3, -2) pixels."""

    def __init__(self, passes):
        self.config = types.SimpleNamespace(joint_polish=passes)

    def apply(self, variables, images, image_size, poses2d, method):
        assert method == "polish"
        return poses2d + jnp.array([3.0, -2.0])


def test_polish_moves_the_valid_people_and_leaves_the_other_rows_zeros():
    """PPI's padding rows (valid False) stay zeros after the network moved every row."""
    rng = np.random.default_rng(0)
    valid = jnp.array([[True, False, True], [False, False, False]])
    poses2d = jnp.where(valid[..., None, None], jnp.asarray(rng.uniform(0, 50, (2, 3, 13, 2))), 0)
    people = ppi_lib.PPIResult(
        poses2d=poses2d, poses3d=jnp.ones((2, 3, 13, 3)), scores=jnp.ones((2, 3)), valid=valid
    )
    images, sizes = jnp.zeros((2, 8, 8, 3), jnp.uint8), jnp.full((2, 2), 8)
    moved = detect_lib.polish(_Polisher(1), {}, images, sizes, people)
    want = np.where(np.asarray(valid)[..., None, None], np.asarray(poses2d) + [3.0, -2.0], 0.0)
    np.testing.assert_allclose(moved.poses2d, want, rtol=1e-6)
    assert not np.asarray(moved.poses2d)[~np.asarray(valid)].any()
    np.testing.assert_array_equal(moved.poses3d, people.poses3d)
    assert detect_lib.polish(_Polisher(0), {}, images, sizes, people) is people
