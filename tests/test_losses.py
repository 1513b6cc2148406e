"""Tests of lcrnet_jax.losses: the RPN and LCR losses on hand cases (their normalisations)."""

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax import losses
from lcrnet_jax.targets import LCRTargets, RPNTargets


def _smooth_l1(x, beta):
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def _bce(logit, label):  # binary cross-entropy of a sigmoid logit
    return math.log1p(math.exp(-logit)) if label else math.log1p(math.exp(logit))


# Two images of four anchors: (label, sampled, logit, deltas - box targets).
_ANCHORS = [
    [
        (1, True, 2.0, (0.1, -0.05, 0.5, 0.0)),  # positive
        (0, True, 0.5, (1.0, -1.0, 0.3, 0.2)),  # negative: its box does not count
        (-1, False, 4.0, (2.0, 2.0, 2.0, 2.0)),  # ignored
        (1, False, -2.0, (3.0, 0.0, 0.0, 0.0)),  # positive left out of the sample
    ],
    [
        (1, True, -1.0, (-0.3, 0.2, 0.0, 0.01)),  # positive
        (0, True, -3.0, (0.7, 0.0, 0.0, 0.0)),  # negative
        (0, False, 1.5, (0.4, 0.0, 0.0, 0.0)),  # negative left out of the sample
        (-1, False, -0.5, (1.0, 1.0, 0.0, 0.0)),  # ignored
    ],
]


def _inputs():
    rng = np.random.default_rng(0)
    labels = np.array([[a[0] for a in image] for image in _ANCHORS], np.int32)
    sampled = np.array([[a[1] for a in image] for image in _ANCHORS])
    logits = np.array([[a[2] for a in image] for image in _ANCHORS], np.float32)
    diff = np.array([[a[3] for a in image] for image in _ANCHORS], np.float32)
    box_targets = rng.normal(size=diff.shape).astype(np.float32)
    targets = RPNTargets(
        labels=jnp.asarray(labels),
        box_targets=jnp.asarray(box_targets),
        sampled=jnp.asarray(sampled),
    )
    return jnp.asarray(logits), jnp.asarray(box_targets + diff), targets


def _expected(beta):
    """The docstring's definition: BCE over the sampled anchors and smooth-L1 summed over
    the 4 deltas of the sampled positives, both divided by the sampled anchors of the
    whole batch (4 here)."""
    sampled = [a for image in _ANCHORS for a in image if a[1]]
    cls = sum(_bce(logit, label == 1) for label, _, logit, _ in sampled) / len(sampled)
    box = sum(
        _smooth_l1(d, beta) for label, _, _, diff in sampled if label == 1 for d in diff
    ) / len(sampled)
    return cls, box


@pytest.mark.parametrize(
    "config",
    [
        losses.LossConfig(),
        losses.LossConfig(rpn_cls_weight=2.0, rpn_box_weight=0.5, rpn_box_beta=0.5),
    ],
)
def test_rpn_loss_hand_values(config):
    logits, deltas, targets = _inputs()
    total, metrics = losses.rpn_loss(logits, deltas, targets, config)
    cls, box = _expected(config.rpn_box_beta)
    assert set(metrics) == {"rpn_cls", "rpn_box"}
    np.testing.assert_allclose(metrics["rpn_cls"], cls, rtol=1e-5)
    np.testing.assert_allclose(metrics["rpn_box"], box, rtol=1e-5)
    expected_total = config.rpn_cls_weight * cls + config.rpn_box_weight * box
    np.testing.assert_allclose(total, expected_total, rtol=1e-5)


def test_a_regression_target_that_does_not_count_may_hold_nan():
    rng = np.random.default_rng(1)
    b, s, c, j = 1, 3, 4, 13
    regression = rng.normal(size=(b, s, 5, j)).astype(np.float32)
    weights = np.ones((b, s, 5, j), np.float32)
    weights[0, 1, 2:] = 0.0  # a 2D-only person's 3D rows
    targets = LCRTargets(
        rois=jnp.zeros((b, s, 4)), classes=jnp.array([[1, 2, 0]]),
        regression=jnp.asarray(regression), regression_weights=jnp.asarray(weights),
        valid=jnp.ones((b, s), bool),
    )  # fmt: skip
    outputs = jnp.asarray(rng.normal(size=(b, s, c, 5, j)), jnp.float32)

    def loss(regression_out, targets):
        head = SimpleNamespace(logits=jnp.zeros((b, s, c)), regression=regression_out,
                               classifies=True)  # fmt: skip
        return losses.lcr_loss([head], targets)[0]

    nan_where_ignored = targets.replace(
        regression=jnp.where(weights > 0, regression, jnp.nan).astype(jnp.float32)
    )
    value, grad = jax.value_and_grad(loss)(outputs, nan_where_ignored)
    expected, expected_grad = jax.value_and_grad(loss)(outputs, targets)
    assert value == expected and np.isfinite(value)
    np.testing.assert_array_equal(grad, expected_grad)


def _head(logits, regression, classifies=True):
    return SimpleNamespace(
        logits=jnp.asarray(logits, jnp.float32),
        regression=jnp.asarray(regression, jnp.float32),
        classifies=classifies,
    )


@pytest.mark.parametrize("j", [2, 13])
def test_regression_loss_is_averaged_over_the_joints(j):
    """One foreground and one background RoI, every regression of the foreground's class
    off by 0.5: the 5 x J smooth-L1 terms (0.125 each) are summed, divided by the J
    joints and the 2 sampled RoIs, so a pose weighs 5 * 0.125 / 2 whatever J."""
    b, s, c = 1, 2, 2
    regression = np.zeros((b, s, c, 5, j), np.float32)
    regression[0, 0, 1] = 0.5  # the foreground's class: off by 0.5 everywhere
    regression[0, 0, 0] = 3.0  # another class: no loss
    regression[0, 1] = 3.0  # the background: no regression loss
    weights = np.zeros((b, s, 5, j), np.float32)
    weights[0, 0] = 1.0
    targets = LCRTargets(
        rois=jnp.zeros((b, s, 4)), classes=jnp.array([[1, 0]]),
        regression=jnp.zeros((b, s, 5, j)), regression_weights=jnp.asarray(weights),
        valid=jnp.ones((b, s), bool),
    )  # fmt: skip
    logits = np.zeros((b, s, c), np.float32)
    total, metrics = losses.lcr_loss([_head(logits, regression)], targets)
    assert _smooth_l1(0.5, 1.0) == 0.125
    np.testing.assert_allclose(metrics["reg"], 5 * j * 0.125 / (2 * j), rtol=1e-6)
    np.testing.assert_allclose(metrics["cls"], math.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(total, 5 * 0.125 / 2 + math.log(2.0), rtol=1e-6)


def test_classification_loss_ignores_slots_without_a_sampled_roi():
    """An image with one sampled RoI in two slots: the empty slot (class 0, as
    `lcr_targets` leaves it) adds no cross-entropy even when its logits favour class 1,
    and the loss is divided by the one sampled RoI."""
    b, s, c, j = 1, 2, 2, 2
    logits = np.array([[[0.0, 1.0], [0.0, 3.0]]], np.float32)
    targets = LCRTargets(
        rois=jnp.zeros((b, s, 4)), classes=jnp.array([[1, 0]]),
        regression=jnp.zeros((b, s, 5, j)), regression_weights=jnp.zeros((b, s, 5, j)),
        valid=jnp.array([[True, False]]),
    )  # fmt: skip
    regression = np.zeros((b, s, c, 5, j), np.float32)
    total, metrics = losses.lcr_loss([_head(logits, regression)], targets)
    ce = math.log1p(math.exp(-1.0))  # -log softmax([0, 1])[1]
    np.testing.assert_allclose(metrics["cls"], ce, rtol=1e-6)
    np.testing.assert_allclose(total, ce, rtol=1e-6)
    assert metrics["reg"] == 0.0
    assert metrics["cls_accuracy"] == 1.0 and metrics["foreground_fraction"] == 1.0


def test_loss_config_defaults_are_detectrons_and_a_nan_weight_is_refused():
    config = losses.LossConfig()
    assert config.rpn_box_beta == pytest.approx(1 / 9) and config.regression_beta == 1.0
    weights = ("rpn_cls_weight", "rpn_box_weight", "cls_weight", "regression_weight")
    assert [getattr(config, name) for name in weights] == [1.0] * 4
    with pytest.raises(ValueError, match="cls_weight must be >= 0"):
        losses.LossConfig(cls_weight=float("nan"))


def test_a_regression_weight_scales_its_terms_and_the_foreground_fraction_counts_sampled_rois():
    """One foreground RoI (joint 1 hidden: weight 0.5), one background, one empty slot;
    every regression off by 0.5 (smooth-L1 0.125): (5 * 0.125 + 5 * 0.125 * 0.5) / (2 J)
    over the 2 sampled RoIs and J = 2 joints; half the sampled RoIs are foreground."""
    b, s, c, j = 1, 3, 2, 2
    weights = np.zeros((b, s, 5, j), np.float32)
    weights[0, 0, :, 0], weights[0, 0, :, 1] = 1.0, 0.5
    targets = LCRTargets(
        rois=jnp.zeros((b, s, 4)), classes=jnp.array([[1, 0, 0]]),
        regression=jnp.zeros((b, s, 5, j)), regression_weights=jnp.asarray(weights),
        valid=jnp.array([[True, True, False]]),
    )  # fmt: skip
    regression = np.full((b, s, c, 5, j), 0.5, np.float32)
    _, metrics = losses.lcr_loss([_head(np.zeros((b, s, c)), regression)], targets)
    np.testing.assert_allclose(metrics["reg"], (5 * 0.125 + 5 * 0.125 * 0.5) / (2 * j), rtol=1e-6)
    assert metrics["foreground_fraction"] == 0.5


def test_an_estimate_that_does_not_classify_adds_only_its_regression_and_weights_apply():
    """Two estimates of one foreground RoI, the second a joint refinement (it does not
    classify): the total is one cross-entropy (log 2) and two regressions (5 * 0.125)."""
    b, s, c, j = 1, 1, 2, 2
    targets = LCRTargets(
        rois=jnp.zeros((b, s, 4)), classes=jnp.array([[1]]),
        regression=jnp.zeros((b, s, 5, j)), regression_weights=jnp.ones((b, s, 5, j)),
        valid=jnp.ones((b, s), bool),
    )  # fmt: skip
    logits, regression = np.zeros((b, s, c)), np.full((b, s, c, 5, j), 0.5)
    heads = [_head(logits, regression), _head(logits, regression, classifies=False)]
    total, metrics = losses.lcr_loss(heads, targets)
    np.testing.assert_allclose(total, math.log(2.0) + 2 * 5 * 0.125, rtol=1e-6)
    assert {"cls_0", "reg_0", "cls_1", "reg_1"} <= set(metrics)
    weighted = losses.LossConfig(cls_weight=2.0, regression_weight=0.5)
    total, _ = losses.lcr_loss(heads, targets, weighted)
    np.testing.assert_allclose(total, 2 * math.log(2.0) + 0.5 * 2 * 5 * 0.125, rtol=1e-6)
