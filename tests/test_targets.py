import inspect
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import geometry, losses, ops, skeleton, targets
from tests.test_anchors import _toy_poses


@pytest.fixture(scope="module")
def toy_anchors():
    poses, _ = _toy_poses()
    return anchors_lib.fit_anchor_poses(poses, 4, upper_body=True, seed=3)


def _person(anchors, anchor_index, box):
    """A person whose pose is anchor `anchor_index` placed in `box`."""
    box = jnp.asarray(box, jnp.float32)
    pose2d = anchors_lib.denormalize_in_box(anchors.pose2d[anchor_index], box)
    return pose2d, anchors.pose3d[anchor_index]


def _scene(anchors):
    """One image, 3 slots: person 0 whole, person 1 with invisible legs, slot 2 padding."""
    p0_2d, p0_3d = _person(anchors, 1, [20.0, 30.0, 80.0, 190.0])
    p1_2d, p1_3d = _person(anchors, 2, [120.0, 40.0, 200.0, 240.0])
    poses2d = jnp.stack([p0_2d, p1_2d, jnp.zeros_like(p0_2d)])[None]
    poses3d = jnp.stack([p0_3d, p1_3d, jnp.zeros_like(p0_3d)])[None]
    visible = np.ones((1, 3, 13), bool)
    visible[0, 1, :4] = False
    person_valid = np.array([[True, True, False]])
    return poses2d, poses3d, jnp.asarray(visible), jnp.asarray(person_valid)


def test_ground_truth_boxes_follow_the_truncation_rule(toy_anchors):
    poses2d, _, visible, person_valid = _scene(toy_anchors)
    gt = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=True)
    np.testing.assert_array_equal(gt.valid, [[True, False, False, True, True, False]])
    np.testing.assert_array_equal(gt.person, [[0, 1, 2, 0, 1, 2]])
    np.testing.assert_array_equal(gt.upper_body, [[False] * 3 + [True] * 3])
    np.testing.assert_allclose(gt.boxes[0, 0], geometry.pose_box(poses2d[0, 0]), rtol=1e-6)
    plain = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=False)
    np.testing.assert_array_equal(plain.valid, [[True, True, False]])


def test_boxes_span_the_lcr13_joints_of_every_lcr_joint_set(toy_anchors):
    poses2d, _, visible, person_valid = _scene(toy_anchors)
    lcr13 = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=True)
    more = jnp.asarray(skeleton.complete(poses2d, "lcr13", "lcr_mupots"), jnp.float32)
    more = more.at[..., skeleton.LCR_MUPOTS.index("head_top"), 1].add(-50.0)  # far above
    seen = jnp.concatenate([visible, jnp.ones((1, 3, 4), bool)], axis=-1)
    gt = targets.ground_truth_boxes(
        more, seen, person_valid, joint_set="lcr_mupots", upper_body=True
    )
    np.testing.assert_allclose(gt.boxes, lcr13.boxes, rtol=1e-6)  # the head top is outside
    np.testing.assert_array_equal(gt.valid, lcr13.valid)
    # Person 0 seen by its head and right shoulder only: no box in either joint set,
    # however many of the other joints (neck, thorax, pelvis, head top) are visible.
    few = visible.at[0, 0].set(False).at[0, 0, jnp.asarray([10, 12])].set(True)
    few_seen = jnp.concatenate([few, jnp.ones((1, 3, 4), bool)], axis=-1)
    lcr13 = targets.ground_truth_boxes(poses2d, few, person_valid, upper_body=True)
    gt = targets.ground_truth_boxes(
        more, few_seen, person_valid, joint_set="lcr_mupots", upper_body=True
    )
    np.testing.assert_array_equal(lcr13.valid, [[False, False, False, False, True, False]])
    np.testing.assert_array_equal(gt.valid, lcr13.valid)
    assert skeleton.LCR17.box_joints == skeleton.LCR_MUPOTS.box_joints == tuple(range(13))
    assert skeleton.MPII16.box_joints == tuple(range(16))


def test_ground_truth_boxes_span_the_extent_but_need_visible_joints(toy_anchors):
    poses2d, _, visible, person_valid = _scene(toy_anchors)
    known = jnp.ones_like(visible)
    gt = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=True, extent=known)
    # Person 1's legs are hidden but known: its full-body box now exists and spans them.
    np.testing.assert_array_equal(gt.valid, [[True, True, False, True, True, False]])
    np.testing.assert_allclose(gt.boxes[0, 1], geometry.pose_box(poses2d[0, 1]), rtol=1e-6)
    seen = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=True)
    np.testing.assert_allclose(gt.boxes[0, 4], seen.boxes[0, 4], rtol=1e-6)  # upper body
    assert float(gt.boxes[0, 1, 3]) > float(seen.boxes[0, 4, 3]) + 10  # reaches the feet
    # A person with 2 visible joints gets no box, however many are known.
    few = visible.at[0, 0, 2:].set(False)
    gt = targets.ground_truth_boxes(poses2d, few, person_valid, upper_body=False, extent=known)
    np.testing.assert_array_equal(gt.valid, [[False, True, False]])


def test_a_box_needs_min_joints_visible_joints_and_min_size_on_both_sides():
    """Person 0 with exactly `min_joints` (3) visible joints keeps its box; person 1,
    all visible but 50 x 1.5 px (60 x 1.8 with the margin), is too flat for one."""
    xs = jnp.linspace(0.0, 50.0, 13)
    spread = jnp.stack([xs, 2.0 * xs], -1)
    flat = jnp.stack([xs, 100.0 + 1.5 * (jnp.arange(13) % 2)], -1)
    visible = np.ones((1, 2, 13), bool)
    visible[0, 0, 3:] = False
    gt = targets.ground_truth_boxes(
        jnp.stack([spread, flat])[None], visible, np.ones((1, 2), bool), upper_body=False
    )
    np.testing.assert_array_equal(gt.valid, [[True, False]])


def _boxes(boxes):
    """GroundTruthBoxes of one image: valid full-body boxes of people 0, 1, ..."""
    boxes = jnp.asarray(boxes, jnp.float32)[None]
    count = boxes.shape[1]
    return targets.GroundTruthBoxes(
        boxes=boxes,
        valid=jnp.ones((1, count), bool),
        person=jnp.arange(count, dtype=jnp.int32)[None],
        upper_body=jnp.zeros((1, count), bool),
    )


def test_the_best_anchor_rule_takes_the_best_inside_anchor_that_overlaps():
    """Box A in the top-left corner overlaps the anchor [-8, -8, 24, 24] most (IoU 0.56),
    which is outside the image: the best inside anchor, [8, 8, 40, 40] (IoU 0.19), is
    its positive. Box B overlaps no anchor: it makes no positive."""
    anchors = ops.generate_rpn_anchors((4, 4), stride=16, sizes=(32,), aspect_ratios=(1.0,))
    gt = _boxes([[0.0, 0.0, 24.0, 24.0], [180.0, 180.0, 220.0, 220.0]])
    out = targets.rpn_targets(anchors, gt, jnp.array([[256, 256]]), jax.random.key(0))
    positives = np.asarray(anchors)[np.asarray(out.labels[0]) == 1]
    np.testing.assert_array_equal(positives, [[8.0, 8.0, 40.0, 40.0]])


def test_thresholds_at_equality_are_inclusive(toy_anchors):
    """IoF exactly the ignore threshold is ignored, an anchor at IoU exactly 0.7 is
    positive, a RoI at IoU exactly 0.5 foreground."""
    box = jnp.array([[[0.0, 0.0, 10.0, 10.0]]])
    assert targets.in_ignored_region(box, jnp.array([[[0.0, 0.0, 7.0, 10.0]]]), 0.7).all()
    # The box itself (IoU 1), IoU 0.7, 0.5 (neither), 0 (negative).
    anchors = jnp.array([[0.0, 0, 10, 10], [0, 0, 7, 10], [0, 0, 10, 5], [50, 50, 60, 60]])
    out = targets.rpn_targets(anchors, _boxes(box[0]), jnp.array([[64, 64]]), jax.random.key(0))
    np.testing.assert_array_equal(out.labels, [[1, 1, -1, 0]])
    poses2d, poses3d, _, _ = _scene(toy_anchors)
    gt = _boxes([[20.0, 30.0, 80.0, 190.0]])  # person 0's anchor box: its class is 2
    half = jnp.array([[[20.0, 30.0, 50.0, 190.0]]])  # IoU 4800 / 9600
    lcr = targets.lcr_targets(
        half, jnp.ones((1, 1), bool), gt, poses2d, poses3d, toy_anchors, jax.random.key(0),
        num_samples=1, foreground_fraction=1.0, add_ground_truth=False,
    )  # fmt: skip
    np.testing.assert_array_equal(lcr.classes, [[2]])


def test_lcr_labels_on_hand_made_boxes(toy_anchors):
    poses2d, poses3d, visible, person_valid = _scene(toy_anchors)
    gt = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=True)
    rois = jnp.stack([gt.boxes[0, 0], gt.boxes[0, 4], jnp.array([300.0, 300, 340, 380])])[None]
    out = targets.lcr_targets(
        rois, jnp.ones((1, 3), bool), gt, poses2d, poses3d, toy_anchors,
        jax.random.key(0), num_samples=8, foreground_fraction=0.5, add_ground_truth=False,
    )  # fmt: skip
    assert int(out.valid.sum()) == 3
    by_box = {tuple(np.round(np.asarray(r), 2)): int(c) for r, c, v in
              zip(out.rois[0], out.classes[0], out.valid[0], strict=True) if v}  # fmt: skip
    key = lambda b: tuple(np.round(np.asarray(b), 2))  # noqa: E731
    assert by_box[key(gt.boxes[0, 0])] == 2  # person 0 -> anchor 1 -> class 2
    assert by_box[key(gt.boxes[0, 4])] == 2 + 1 + 4  # truncated person 1 -> upper-body twin
    assert by_box[key(rois[0, 2])] == 0  # far box -> background
    # The anchor pose placed in its own full-body box is a zero regression target.
    slot = [i for i in range(8) if out.valid[0, i] and int(out.classes[0, i]) == 2][0]
    np.testing.assert_allclose(out.regression[0, slot], 0.0, atol=1e-4)
    np.testing.assert_array_equal(out.regression_weights[0, slot], 1.0)
    background = [i for i in range(8) if out.valid[0, i] and int(out.classes[0, i]) == 0][0]
    np.testing.assert_array_equal(out.regression_weights[0, background], 0.0)


def test_hidden_joints_2d_targets_take_their_weight(toy_anchors):
    poses2d, poses3d, visible, person_valid = _scene(toy_anchors)
    gt = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=True)
    out = targets.lcr_targets(
        gt.boxes[:, 4:5], jnp.ones((1, 1), bool), gt, poses2d, poses3d, toy_anchors,
        jax.random.key(0), weights2d=jnp.where(visible, 1.0, 0.5), num_samples=1,
        foreground_fraction=1.0, add_ground_truth=False,
    )  # fmt: skip
    assert int(out.classes[0, 0]) > 0  # person 1's upper-body box, its legs hidden
    expect_2d = np.where(np.asarray(visible[0, 1]), 1.0, 0.5)
    np.testing.assert_array_equal(out.regression_weights[0, 0, :2], [expect_2d] * 2)
    np.testing.assert_array_equal(out.regression_weights[0, 0, 2:], 1.0)


def test_lcr_sampling_adds_ground_truth_and_respects_the_fraction(toy_anchors):
    poses2d, poses3d, visible, person_valid = _scene(toy_anchors)
    gt = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=True)
    key = jax.random.key(1)
    xy = jax.random.uniform(key, (1, 64, 2), minval=0, maxval=200)
    rois = jnp.concatenate([xy, xy + 40], -1)
    out = targets.lcr_targets(
        rois, jnp.ones((1, 64), bool), gt, poses2d, poses3d, toy_anchors, key,
        num_samples=32, foreground_fraction=0.25,
    )  # fmt: skip
    fg = int(((out.classes > 0) & out.valid).sum())
    assert 3 <= fg <= 8  # the 3 ground-truth boxes are foreground, at most 25%
    assert int(out.valid.sum()) == 32
    again = targets.lcr_targets(
        rois, jnp.ones((1, 64), bool), gt, poses2d, poses3d, toy_anchors, key,
        num_samples=32, foreground_fraction=0.25,
    )  # fmt: skip
    np.testing.assert_array_equal(out.rois, again.rois)


def test_rpn_targets_hand_case():
    anchors = ops.generate_rpn_anchors((4, 4), stride=16, sizes=(32,), aspect_ratios=(1.0,))
    gt = targets.GroundTruthBoxes(
        boxes=jnp.array([[[8.0, 8.0, 40.0, 40.0]]]),
        valid=jnp.array([[True]]),
        person=jnp.zeros((1, 1), jnp.int32),
        upper_body=jnp.zeros((1, 1), bool),
    )
    out = targets.rpn_targets(anchors, gt, jnp.array([[64, 64]]), jax.random.key(0), num_samples=16)
    exact = int(np.argmin(np.abs(np.asarray(anchors) - np.array([8, 8, 40, 40])).sum(-1)))
    assert int(out.labels[0, exact]) == 1 and bool(out.sampled[0, exact])
    np.testing.assert_allclose(out.box_targets[0, exact], 0.0, atol=1e-6)
    outside = np.any(np.asarray(anchors) < 0, -1) | np.any(np.asarray(anchors) > 64, -1)
    assert np.all(np.asarray(out.labels[0])[outside] == -1)
    assert not np.any(np.asarray(out.sampled[0])[outside])
    assert int((out.labels[0] == 0).sum()) > 0

    # With a border of an eighth of the image, the anchors straddling its edge by up to
    # 8 px can be labelled too (those far from the person are negatives); the others stay
    # ignored.
    anchors = ops.generate_rpn_anchors((4, 4), stride=16, sizes=(32, 48), aspect_ratios=(1.0,))
    wide = targets.rpn_targets(
        anchors, gt, jnp.array([[64, 64]]), jax.random.key(0), num_samples=16, border=0.125
    )
    a, labels = np.asarray(anchors), np.asarray(wide.labels[0])
    within = np.all((a >= -8) & (a <= 72), -1)
    straddling = within & np.any((a < 0) | (a > 64), -1)
    assert np.any(straddling) and np.any(~within)
    assert np.any(labels[straddling] == 0) and np.all(labels[~within] == -1)


def test_background_in_ignored_regions_is_never_sampled(toy_anchors):
    """A crowd at the right of the image: anchors and RoIs within it are not negatives,
    those that cover much more than it are; a person inside it stays foreground."""
    poses2d, poses3d, visible, person_valid = _scene(toy_anchors)
    crowd = jnp.array([[[100.0, 0.0, 240.0, 256.0]]])
    gt = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=True)
    inside = jnp.array([[[150.0, 10.0, 180.0, 40.0], [100.0, 0.0, 240.0, 256.0]]])
    covering = jnp.array([[[0.0, 0.0, 256.0, 256.0]]])
    np.testing.assert_array_equal(
        targets.in_ignored_region(jnp.concatenate([inside, covering], 1), crowd, 0.7),
        [[True, True, False]],
    )
    assert not targets.in_ignored_region(inside, jnp.zeros_like(crowd), 0.7).any()  # padding
    assert not targets.in_ignored_region(inside, crowd, 1.5).any()

    anchors = ops.generate_rpn_anchors((8, 8), stride=32, sizes=(32, 64), aspect_ratios=(1.0,))
    size = jnp.array([[256, 256]])
    rpn = jax.jit(targets.rpn_targets, static_argnames=("num_samples", "positive_fraction"))
    kwargs = dict(num_samples=512, positive_fraction=0.5)
    plain = rpn(anchors, gt, size, jax.random.key(0), **kwargs)
    out = rpn(anchors, gt, size, jax.random.key(0), ignore_boxes=crowd, **kwargs)
    within = np.asarray(targets.in_ignored_region(anchors[None], crowd, 0.7))[0]
    plain_labels, labels = np.asarray(plain.labels[0]), np.asarray(out.labels[0])
    assert np.any(plain_labels[within] == 0) and not np.any(labels[within] == 0)
    assert not np.any(np.asarray(out.sampled[0])[within & (labels < 1)])
    np.testing.assert_array_equal(labels[labels == 1], plain_labels[labels == 1])
    np.testing.assert_array_equal(labels[~within], plain_labels[~within])

    rois = jnp.concatenate([inside, covering, gt.boxes], 1)
    lcr = dict(rois=rois, rois_valid=jnp.ones(rois.shape[:2], bool), gt=gt, poses2d=poses2d,
               poses3d=poses3d, anchors=toy_anchors, key=jax.random.key(1), num_samples=16,
               foreground_fraction=0.5, add_ground_truth=False)  # fmt: skip
    picked = lambda t: {tuple(b) for b in np.asarray(t.rois[0])[np.asarray(t.valid[0])].tolist()}  # noqa: E731
    static = ("num_samples", "foreground_fraction", "add_ground_truth")
    lcr_targets = jax.jit(targets.lcr_targets, static_argnames=static)
    plain, out = lcr_targets(**lcr), lcr_targets(ignore_boxes=crowd, **lcr)
    assert {tuple(b) for b in inside[0].tolist()} <= picked(plain)
    assert picked(out) == picked(plain) - {tuple(b) for b in inside[0].tolist()}
    assert int((out.classes[0] > 0).sum()) == int((plain.classes[0] > 0).sum()) > 0


def test_people_without_a_box_are_found(toy_anchors):
    poses2d, _, visible, person_valid = _scene(toy_anchors)
    visible = visible.at[0, 0, 2:].set(False)  # person 0: 2 visible joints, no box
    for upper_body in (True, False):
        gt = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=upper_body)
        np.testing.assert_array_equal(
            targets.without_boxes(gt, person_valid), [[True, False, False]]
        )


def test_losses_vanish_when_predictions_equal_targets(toy_anchors):
    poses2d, poses3d, visible, person_valid = _scene(toy_anchors)
    gt = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=True)
    rois = gt.boxes[:, :2]
    t = targets.lcr_targets(
        rois, jnp.ones((1, 2), bool), gt, poses2d, poses3d, toy_anchors, jax.random.key(0),
        num_samples=8, foreground_fraction=0.5,
    )  # fmt: skip
    c = toy_anchors.num_classes
    logits = 50.0 * jax.nn.one_hot(t.classes, c)
    regression = jnp.zeros(t.classes.shape + (c, 5, 13))
    regression = jnp.where(
        jax.nn.one_hot(t.classes, c, dtype=bool)[..., None, None], t.regression[:, :, None], 0.0
    )

    out = types.SimpleNamespace(logits=logits, regression=regression, classifies=True)
    total, metrics = losses.lcr_loss([out, out], t)
    assert float(total) < 1e-6 and float(metrics["cls_accuracy"]) == 1.0
    out.regression = regression + 0.5
    total, metrics = losses.lcr_loss([out], t)
    fg = float(((t.classes > 0) & t.valid).sum())
    assert float(total) > 0.1 * fg / float(t.valid.sum())
    doubled, _ = losses.lcr_loss([out], t, losses.LossConfig(regression_weight=2.0))
    np.testing.assert_allclose(doubled, total + metrics["reg"], rtol=1e-6)
    wide, wide_metrics = losses.lcr_loss([out], t, losses.LossConfig(regression_beta=2.0))
    assert float(wide_metrics["reg"]) < float(metrics["reg"])  # 0.5 offsets: quadratic zone
    # A joint refinement's estimate (frozen logits) adds its regression loss only.
    wrong = types.SimpleNamespace(logits=-logits, regression=regression, classifies=True)
    refined = types.SimpleNamespace(logits=-logits, regression=regression, classifies=False)
    alone, alone_metrics = losses.lcr_loss([wrong], t)
    both, both_metrics = losses.lcr_loss([wrong, refined], t)
    assert float(alone_metrics["cls"]) > 10.0 and float(both_metrics["cls_1"]) > 10.0
    np.testing.assert_allclose(both, alone + both_metrics["reg_1"], rtol=1e-6)


def test_loss_config_maps_config_loss_one_to_one():
    config = losses.loss_config({"regression_weight": 2, "rpn_box_beta": 0.5})
    assert config == losses.LossConfig(regression_weight=2.0, rpn_box_beta=0.5)
    assert losses.loss_config({}) == losses.LossConfig()
    with pytest.raises(ValueError, match=r"unknown config.loss keys \['regresion_weight'\]"):
        losses.loss_config({"regresion_weight": 1.0})
    with pytest.raises(ValueError, match="config.loss.cls_weight must be >= 0"):
        losses.LossConfig(cls_weight=-1.0)
    with pytest.raises(ValueError, match="regression_beta"):
        losses.LossConfig(regression_beta=0.0)


def test_smooth_l1_hand_values():
    np.testing.assert_allclose(losses.smooth_l1(jnp.array([0.0, 0.5, -2.0])), [0.0, 0.125, 1.5])


def _two_person_targets(anchors, poses3d, has_3d):
    poses2d, _, visible, person_valid = _scene(anchors)
    gt = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=True)
    return targets.lcr_targets(
        gt.boxes, gt.valid, gt, poses2d, poses3d, anchors, jax.random.key(0),
        has_3d=has_3d, known2d=visible, num_samples=8, foreground_fraction=1.0,
        add_ground_truth=False,
    )  # fmt: skip


def test_person_without_3d_gets_no_3d_regression_loss_and_a_2d_class(toy_anchors):
    _, poses3d, _, _ = _scene(toy_anchors)
    has_3d = jnp.array([[True, False, False]])
    # Person 1 has no 3D: whatever its (meaningless) 3D pose, targets and loss are equal.
    zero = poses3d.at[0, 1].set(0.0)
    other = poses3d.at[0, 1].set(toy_anchors.pose3d[3])
    t_zero = _two_person_targets(toy_anchors, zero, has_3d)
    t_other = _two_person_targets(toy_anchors, other, has_3d)
    np.testing.assert_array_equal(t_zero.classes, t_other.classes)
    person1 = np.asarray(t_zero.valid[0] & (t_zero.rois[0, :, 0] > 100))
    assert person1.sum() == 1  # its upper-body box (its legs are invisible)
    np.testing.assert_array_equal(t_zero.regression_weights[0, person1, 2:], 0.0)
    assert float(t_zero.regression_weights[0, person1, :2].sum()) == 2 * 9  # 2D, upper body
    # Its class comes from 2D: it is anchor 2 placed in a box -> the twin of anchor 2.
    assert int(t_zero.classes[0, person1][0]) == 1 + 2 + toy_anchors.num_full_body

    c = toy_anchors.num_classes
    rows = jnp.zeros((5, 13)).at[2:].set(1.0)  # an error of 1 on every 3D row
    for t in (t_zero, t_other):
        logits = 50.0 * jax.nn.one_hot(t.classes, c)
        regression = jnp.broadcast_to(t.regression[:, :, None], t.classes.shape + (c, 5, 13))
        out = types.SimpleNamespace(logits=logits, regression=regression, classifies=True)
        wrong3d = types.SimpleNamespace(
            logits=logits, regression=regression + rows, classifies=True
        )
        _, base = losses.lcr_loss([out], t)
        assert float(base["reg"]) < 1e-9
        _, worse = losses.lcr_loss([wrong3d], t)
        per_roi = (t.regression_weights[0, :, 2:].sum((-1, -2)) > 0) & t.valid[0]
        # Only person 0's RoIs (with 3D) add 3D loss: 1 box of 13 joints x 3 rows x 0.5.
        assert int(per_roi.sum()) == 2  # person 0's full-body and upper-body boxes
        expected = 2 * 3 * 13 * 0.5 / (13 * float(t.valid.sum()))
        np.testing.assert_allclose(float(worse["reg"]) - float(base["reg"]), expected, rtol=1e-5)


def test_classify_poses_2d_finds_the_anchor_of_a_scaled_view(toy_anchors):
    k = toy_anchors.num_full_body
    views = toy_anchors.pose3d[:k, :, :2] * 250.0 + jnp.array([40.0, 70.0])  # pixels
    known = np.ones((k, 13), bool)
    known[:, :2] = False  # feet unknown
    classes = anchors_lib.classify_poses_2d(views, known, toy_anchors, upper_body=False)
    np.testing.assert_array_equal(classes, 1 + np.arange(k))
    twins = anchors_lib.classify_poses_2d(views, known, toy_anchors, upper_body=True)
    np.testing.assert_array_equal(twins, 1 + k + np.arange(k))


def test_rpn_targets_on_a_wide_image_encode_the_box_from_its_anchor():
    """A 32 x 96 image: anchor 0 at its right (inside only if width is the second size)
    matches the box [60, 0, 90, 32] with IoU 0.94 and regresses to it with unit weights
    (dy = 1 / 30, dh = log(32 / 30)); anchor 1 overlaps nothing: a negative."""
    anchors = jnp.array([[60.0, 0.0, 90.0, 30.0], [0.0, 0.0, 30.0, 30.0]])
    out = targets.rpn_targets(
        anchors, _boxes([[60.0, 0.0, 90.0, 32.0]]), jnp.array([[32, 96]]), jax.random.key(0),
        num_samples=2,
    )  # fmt: skip
    np.testing.assert_array_equal(out.labels, [[1, 0]])
    np.testing.assert_array_equal(out.sampled, [[True, True]])
    np.testing.assert_allclose(out.box_targets[0, 0], [0, 1 / 30, 0, np.log(32 / 30)], atol=1e-6)


def test_padded_ground_truth_rows_are_never_sampled_rois(toy_anchors):
    """No proposal: the RoIs are the 3 valid ground-truth boxes of the scene (of 6 rows,
    person 1's full-body box and the padded person's are not valid), all foreground."""
    poses2d, poses3d, visible, person_valid = _scene(toy_anchors)
    gt = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=True)
    out = targets.lcr_targets(
        jnp.zeros((1, 2, 4)), jnp.zeros((1, 2), bool), gt, poses2d, poses3d, toy_anchors,
        jax.random.key(0), num_samples=8, foreground_fraction=0.5,
    )  # fmt: skip
    assert int(out.valid.sum()) == 3 and bool(jnp.all(out.classes[out.valid] > 0))


def test_target_defaults_are_the_papers():
    """Sec. 3.1 and Faster R-CNN: RPN IoU 0.7 / 0.3, 256 anchors, half positive, unit box
    weights; RoIs foreground at IoU 0.5, 512 per image, a quarter foreground, ground
    truth added."""
    rpn = inspect.signature(targets.rpn_targets).parameters
    lcr = inspect.signature(targets.lcr_targets).parameters
    names = ("positive_iou", "negative_iou", "num_samples", "positive_fraction", "box_weights")
    assert [rpn[n].default for n in names] == [0.7, 0.3, 256, 0.5, (1.0, 1.0, 1.0, 1.0)]
    names = ("foreground_iou", "num_samples", "foreground_fraction", "add_ground_truth")
    assert [lcr[n].default for n in names] == [0.5, 512, 0.25, True]


def test_a_person_not_valid_gets_no_box_whatever_its_joints(toy_anchors):
    poses2d, _, visible, _ = _scene(toy_anchors)
    person_valid = jnp.array([[True, False, False]])  # person 1 seen, but not a person
    gt = targets.ground_truth_boxes(poses2d, visible, person_valid, upper_body=True)
    np.testing.assert_array_equal(gt.valid, [[True, False, False, True, False, False]])


def test_a_box_exactly_min_size_high_is_kept():
    """Joints 48 px wide and exactly 4 px (`min_size`) high, no margin: the box is kept."""
    xs = jnp.linspace(0.0, 48.0, 13)
    pose = jnp.stack([xs, 100.0 + 4.0 * (jnp.arange(13) % 2)], -1)
    gt = targets.ground_truth_boxes(
        pose[None, None], np.ones((1, 1, 13), bool), np.ones((1, 1), bool), upper_body=False,
        margin=0.0,
    )  # fmt: skip
    np.testing.assert_allclose(gt.boxes, [[[0.0, 100.0, 48.0, 104.0]]])
    assert bool(gt.valid[0, 0])


def test_an_anchor_at_iou_exactly_the_negative_threshold_is_not_a_negative():
    """IoU 0.6 (the box's best anchor: positive), exactly 0.3 (ignored), 0 (negative)."""
    anchors = jnp.array([[0.0, 0.0, 10.0, 6.0], [0.0, 0.0, 10.0, 3.0], [50.0, 50.0, 60.0, 60.0]])
    out = targets.rpn_targets(
        anchors, _boxes([[0.0, 0.0, 10.0, 10.0]]), jnp.array([[64, 64]]), jax.random.key(0)
    )
    np.testing.assert_array_equal(out.labels, [[1, -1, 0]])
