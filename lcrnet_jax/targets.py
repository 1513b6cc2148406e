"""Training targets: RPN anchor labels and LCR RoI labels/regression (LCR-Net++ Sec. 3.1, 4.2).

Everything has static shapes: ground truth is padded to P people per image with a
`person_valid` mask, RoIs to R per image with a `valid` mask, and the sampled sets to
fixed sizes with masks. Padded entries never match anything.

Ground-truth boxes of a person (Sec. 3.1 and 4.2 "Dealing with truncation"):
  - the full-body box: the pose box of the visible joints with a 10% margin; with
    upper-body classes it exists only when a lower-limb joint is visible;
  - with upper-body classes, also the upper-body box: the pose box of the visible
    joints from the hips up, labelled with the person's upper-body anchor class.
With an `extent` (beyond the paper), e.g. every joint whose 2D position is known, the
boxes span those joints instead, outside the image too: a person cut by the border gets
the box of the whole body, in whose frame the 2D pose is a whole anchor pose, instead
of a box around the visible part from which the regression must reach far outside.
The boxes span LCR-13's joints in every joint set (`skeleton.JointSet.box_joints`).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import geometry, ops, skeleton


@flax.struct.dataclass
class GroundTruthBoxes:
    """The ground-truth boxes of a batch: full-body boxes of the P people, then their
    upper-body boxes when upper-body classes are used (G = P or 2P).

    Attributes:
      boxes: (B, G, 4) pixels.
      valid: (B, G) bool.
      person: (B, G) int32 index of the person the box belongs to.
      upper_body: (B, G) bool, the box is an upper-body box.
    """

    boxes: jnp.ndarray
    valid: jnp.ndarray
    person: jnp.ndarray
    upper_body: jnp.ndarray


@flax.struct.dataclass
class RPNTargets:
    """Sampled RPN targets over the N anchors of each image.

    Attributes:
      labels: (B, N) int32, 1 foreground, 0 background, -1 ignored.
      box_targets: (B, N, 4) encoded deltas to the matched ground-truth box.
      sampled: (B, N) bool, the anchor is in the sampled minibatch.
    """

    labels: jnp.ndarray
    box_targets: jnp.ndarray
    sampled: jnp.ndarray


@flax.struct.dataclass
class LCRTargets:
    """Targets of the S sampled RoIs of each image.

    Attributes:
      rois: (B, S, 4) sampled boxes, pixels (ground-truth boxes may be among them); the
        foreground first, in the first `ops.max_positives(S, foreground_fraction)` rows
        at most.
      classes: (B, S) int32 class, 0 background, k >= 1 anchor k - 1.
      regression: (B, S, 5, J) pose regression targets (zeros for background).
      regression_weights: (B, S, 5, J) float, the weight of each target (0: it does
        not count).
      valid: (B, S) bool, the slot holds a sampled RoI.
    """

    rois: jnp.ndarray
    classes: jnp.ndarray
    regression: jnp.ndarray
    regression_weights: jnp.ndarray
    valid: jnp.ndarray


def ground_truth_boxes(
    poses2d,
    visible,
    person_valid,
    *,
    joint_set="lcr13",
    upper_body: bool,
    margin: float = 0.1,
    min_joints: int = 3,
    min_size: float = 4.0,
    extent=None,
) -> GroundTruthBoxes:
    """Full-body (and upper-body) boxes of every person.

    A box needs at least `min_joints` visible joints of its kind among those that span
    boxes (`JointSet.box_joints`: LCR-13's in every LCR joint set, so that a person gets
    the same boxes in each) and sides of at least `min_size` pixels: smaller ones give
    meaningless, huge 2D regression targets.

    Args:
      poses2d: (B, P, J, 2) pixels.
      visible: (B, P, J) bool.
      person_valid: (B, P) bool.
      joint_set: joint set of the poses.
      upper_body: use upper-body classes (adds the P upper-body boxes).
      margin: pose-box margin (10% in the paper).
      min_joints, min_size: the smallest box kept.
      extent: (B, P, J) bool, the joints the boxes span (the full-body box exists when
        one of its lower-limb joints is among them); None: the visible joints.
    """
    js = skeleton.get_joint_set(joint_set)
    person_valid = jnp.asarray(person_valid, bool)[..., None]
    visible = jnp.asarray(visible, bool) & person_valid
    extent = visible if extent is None else jnp.asarray(extent, bool) & person_valid
    full = anchors_lib.full_body_box(poses2d, extent, joint_set=js, margin=margin)
    batch, people = visible.shape[:2]
    person = jnp.broadcast_to(jnp.arange(people, dtype=jnp.int32), (batch, people))

    def big_enough(box, joints_visible):
        sides = box[..., 2:] - box[..., :2]
        return (jnp.sum(joints_visible, -1) >= min_joints) & jnp.all(sides >= min_size, -1)

    full_valid = big_enough(full, visible[..., jnp.asarray(js.box_joints)])
    if not upper_body:
        return GroundTruthBoxes(full, full_valid, person, jnp.zeros_like(person, bool))
    lower = jnp.any(extent[..., jnp.asarray(js.lower_limbs)], -1)
    upper = anchors_lib.upper_body_box(poses2d, extent, joint_set=js, margin=margin)
    upper_valid = big_enough(upper, visible[..., jnp.asarray(js.upper_box_joints)])
    return GroundTruthBoxes(
        boxes=jnp.concatenate([full, upper], axis=1),
        valid=jnp.concatenate([lower & full_valid, upper_valid], axis=1),
        person=jnp.concatenate([person, person], axis=1),
        upper_body=jnp.concatenate([jnp.zeros_like(lower), jnp.ones_like(upper_valid)], axis=1),
    )


def _match(boxes, boxes_valid, gt: GroundTruthBoxes):
    """Best ground-truth box of each box: (max IoU (B, N), index (B, N)); -1 IoU if none."""
    iou = geometry.iou_matrix(boxes, gt.boxes)  # (B, N, G)
    iou = jnp.where(gt.valid[:, None, :] & boxes_valid[:, :, None], iou, -1.0)
    return jnp.max(iou, axis=-1), jnp.argmax(iou, axis=-1), iou


def without_boxes(gt: GroundTruthBoxes, person_valid):
    """(B, P) bool: the valid people who got no ground-truth box (too few visible
    joints, or too small): neither targets nor background, their boxes are ignored
    regions (`in_ignored_region`)."""
    person_valid = jnp.asarray(person_valid, bool)
    batch, people = person_valid.shape
    boxed = jnp.any(gt.valid.reshape(batch, -1, people), axis=1)  # G = P or 2P, by person
    return person_valid & ~boxed


def in_ignored_region(boxes, ignore_boxes, iof: float):
    """Whether each box lies in an ignored region (COCO crowds, people without
    keypoints): its intersection with one region covers at least `iof` of its area, as
    Detectron's crowd filter (IoF 0.7). Such boxes are neither foreground nor background.

    Args:
      boxes: (B, N, 4) pixels.
      ignore_boxes: (B, Q, 4) pixels, empty (zero-area) rows for none; None: no region.
      iof: the least covered fraction of a box's area (> 1: never).

    Returns:
      (B, N) bool.
    """
    if ignore_boxes is None:
        return jnp.zeros(jnp.shape(boxes)[:2], bool)
    ignore_boxes = jnp.asarray(ignore_boxes, jnp.float32)
    area = geometry.box_area(boxes)[..., None]  # (B, N, 1)
    inter = geometry.box_intersection(boxes[..., :, None, :], ignore_boxes[..., None, :, :])
    region = geometry.box_area(ignore_boxes)[..., None, :] > 0  # (B, 1, Q)
    return jnp.any(region & (area > 0) & (inter >= iof * area), axis=-1)


def _sample(labels, valid, num_samples, positive_fraction, key):
    keys = jax.random.split(key, labels.shape[0])
    sample = jax.vmap(
        lambda lab, val, k: ops.sample_balanced(lab, num_samples, positive_fraction, k, valid=val)
    )
    return sample(labels, valid, keys)  # (B, S) indices, (B, S) mask


def rpn_targets(
    anchors,
    gt: GroundTruthBoxes,
    image_size,
    key,
    *,
    positive_iou: float = 0.7,
    negative_iou: float = 0.3,
    num_samples: int = 256,
    positive_fraction: float = 0.5,
    box_weights=(1.0, 1.0, 1.0, 1.0),
    border: float = 0.0,
    ignore_boxes=None,
    ignore_iof: float = 0.7,
) -> RPNTargets:
    """Faster R-CNN RPN targets: IoU >= 0.7 positive, < 0.3 negative, the best anchor
    of each ground-truth box positive; anchors not inside the image are ignored; 256
    anchors sampled per image, at most half positive. With `border`, "inside" means
    inside the image enlarged by that fraction of its size on each side: anchors that
    straddle the border learn boxes that reach beyond it (ground-truth boxes with an
    `extent`). Negative anchors in an ignored region (`in_ignored_region`) are ignored.

    Args:
      anchors: (N, 4) anchors, pixels (the model's RPN order).
      gt: ground-truth boxes (all kinds: full-body and upper-body).
      image_size: (B, 2) int (height, width) of each image's valid region.
      key: PRNG key for the sampling.
      border: see above (0: Detectron's straddle threshold 0).
      ignore_boxes: (B, Q, 4) ignored regions, pixels (zero rows for none); None: none.
      ignore_iof: see `in_ignored_region`.

    Returns:
      RPNTargets over the N anchors.
    """
    batch = gt.boxes.shape[0]
    anchors = jnp.broadcast_to(jnp.asarray(anchors, jnp.float32), (batch,) + anchors.shape)
    size = jnp.asarray(image_size, jnp.float32)[:, None, :]  # (B, 1, 2) h, w
    inside = jnp.all(ops.clip_boxes(anchors, size[:, 0], border) == anchors, axis=-1)
    best_iou, best_gt, iou = _match(anchors, inside, gt)
    # The best anchor of each ground-truth box (all anchors tied at that IoU).
    gt_best = jnp.max(iou, axis=1, keepdims=True)  # (B, 1, G)
    is_best = jnp.any((iou == gt_best) & (gt_best > 0), axis=-1)
    negative = (best_iou < negative_iou) & ~in_ignored_region(anchors, ignore_boxes, ignore_iof)
    labels = jnp.where(negative, 0, -1)
    labels = jnp.where((best_iou >= positive_iou) | is_best, 1, labels)
    labels = jnp.where(inside, labels, -1).astype(jnp.int32)
    indices, mask = _sample(labels, inside, num_samples, positive_fraction, key)
    sampled = jnp.zeros(labels.shape, bool)
    sampled = jax.vmap(lambda s, i, m: s.at[i].max(m))(sampled, indices, mask)
    matched = jnp.take_along_axis(gt.boxes, best_gt[..., None], axis=1)
    box_targets = ops.encode_boxes(matched, anchors, weights=box_weights)
    return RPNTargets(labels=labels, box_targets=box_targets, sampled=sampled)


def lcr_targets(
    rois,
    rois_valid,
    gt: GroundTruthBoxes,
    poses2d,
    poses3d,
    anchors: anchors_lib.AnchorPoses,
    key,
    *,
    has_3d=None,
    known2d=None,
    weights2d=None,
    foreground_iou: float = 0.5,
    num_samples: int = 512,
    foreground_fraction: float = 0.25,
    add_ground_truth: bool = True,
    ignore_boxes=None,
    ignore_iof: float = 0.7,
) -> LCRTargets:
    """Labels and pose regression targets of sampled RoIs (Sec. 3.1).

    A RoI whose IoU with every ground-truth box is below `foreground_iou` is
    background; otherwise it takes the box with the highest IoU, whose person gives
    the class argmin_k D3D(A_k, P) (the upper-body twin for an upper-body box) and the
    regression target (2D normalised in the RoI minus the class's 2D anchor, 3D minus
    its 3D anchor, divided by the anchors' std). The ground-truth boxes are added to
    the RoIs first, as in Faster R-CNN. Background RoIs in an ignored region
    (`in_ignored_region`: a crowd, a person without keypoints) are never sampled. 2D
    targets count for every joint whose position is known (`known2d`: synthetic data
    and pseudo ground truth know occluded joints too); 3D targets count only for people
    with 3D (`has_3d`: annotated or pseudo ground truth).

    People without 3D (2D-only, no pseudo ground truth: too few joints, or a search
    that found none) are never trained towards a zero pose: their 3D regression rows
    get weight 0, and their class does not come from D3D but from 2D only
    (`anchors.classify_poses_2d`: the anchor whose orthographic view is nearest to the
    person's known 2D joints after centring and scaling, the twin for an upper-body
    box). They remain foreground RoIs with their 2D regression and are full targets of
    the RPN.

    Args:
      rois: (B, R, 4) proposals, pixels.
      rois_valid: (B, R) bool.
      gt: ground-truth boxes from `ground_truth_boxes`.
      poses2d: (B, P, J, 2) pixels; poses3d: (B, P, J, 3) torso-centred metres.
      anchors: the anchor poses (with upper-body twins iff `gt` has upper-body boxes).
      key: PRNG key for the sampling.
      has_3d: (B, P) bool, None for all.
      known2d: (B, P, J) bool, the 2D position of the joint is known; None for all.
      weights2d: (B, P, J) float, the weight of each known joint's 2D targets; None: 1.
      foreground_iou: IoU threshold of the foreground (0.5).
      num_samples: RoIs per image (512 for ResNet in the paper).
      foreground_fraction: at most this fraction of foreground RoIs (0.25).
      add_ground_truth: add the ground-truth boxes to the candidate RoIs.
      ignore_boxes: (B, Q, 4) ignored regions, pixels (zero rows for none); None: none.
      ignore_iof: see `in_ignored_region`.

    Returns:
      LCRTargets for S = num_samples RoIs per image.
    """
    rois = jnp.asarray(rois, jnp.float32)
    rois_valid = jnp.asarray(rois_valid, bool)
    if add_ground_truth:
        rois = jnp.concatenate([rois, gt.boxes], axis=1)
        rois_valid = jnp.concatenate([rois_valid, gt.valid], axis=1)
    best_iou, best_gt, _ = _match(rois, rois_valid, gt)
    foreground = best_iou >= foreground_iou
    person = jnp.take_along_axis(gt.person, best_gt, axis=1)  # (B, N)
    upper = jnp.take_along_axis(gt.upper_body, best_gt, axis=1)
    take = jax.vmap(lambda x, i: x[i])
    if has_3d is None:
        has_3d = jnp.ones(jnp.shape(poses3d)[:2], bool)
    if known2d is None:
        known2d = jnp.ones(jnp.shape(poses2d)[:3], bool)
    pose3d = take(jnp.asarray(poses3d, jnp.float32), person)  # (B, N, J, 3)
    with_3d = take(jnp.asarray(has_3d, bool), person)  # (B, N)
    classes = jnp.where(
        with_3d,
        anchors_lib.classify_poses(pose3d, anchors, upper_body=upper),
        anchors_lib.classify_poses_2d(
            take(jnp.asarray(poses2d, jnp.float32), person),
            take(jnp.asarray(known2d, bool), person),
            anchors,
            upper_body=upper,
        ),
    )
    background = jnp.where(in_ignored_region(rois, ignore_boxes, ignore_iof), -1, 0)
    classes = jnp.where(foreground, classes, background).astype(jnp.int32)

    indices, mask = _sample(classes, rois_valid, num_samples, foreground_fraction, key)
    rois = take(rois, indices)
    classes = jnp.where(mask, take(classes, indices), 0)
    person = take(person, indices)
    pose2d = take(jnp.asarray(poses2d, jnp.float32), person)
    pose3d = take(pose3d, indices)
    regression = anchors_lib.encode_poses(pose2d, pose3d, rois, classes, anchors)
    person_3d = take(jnp.asarray(has_3d, bool), person)  # (B, S)
    joint_2d = take(jnp.asarray(known2d, bool), person).astype(jnp.float32)  # (B, S, J)
    if weights2d is not None:
        joint_2d = joint_2d * take(jnp.asarray(weights2d, jnp.float32), person)
    rows_2d = jnp.broadcast_to(joint_2d[:, :, None, :], (*joint_2d.shape[:2], 2, joint_2d.shape[2]))
    rows_3d = jnp.broadcast_to(
        person_3d[:, :, None, None], (*joint_2d.shape[:2], 3, joint_2d.shape[2])
    )
    weights = jnp.concatenate([rows_2d, rows_3d.astype(jnp.float32)], axis=2)
    weights = weights * (classes > 0)[..., None, None]  # (B, S, 5, J) rows x, y, X, Y, Z
    return LCRTargets(
        rois=rois, classes=classes, regression=regression, regression_weights=weights, valid=mask
    )
