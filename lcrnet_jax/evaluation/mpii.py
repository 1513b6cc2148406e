"""MPII Human Pose: head sizes, single-person PCKh@0.5 by localisation, multi-person mAP
per group, and their evaluator (LCR-Net++ Sec. 4.2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.evaluation.base import ProtocolEvaluator
from lcrnet_jax.metrics import pose2d
from lcrnet_jax.metrics.common import as_mask, as_poses, count_images, nanmean, per_image
from lcrnet_jax.metrics.matching import voc_ap


def mpii_head_size(head_boxes) -> np.ndarray:
    """MPII head size: 0.6 times the diagonal of the annotated head box.

    Args:
      head_boxes: (..., 4) x1, y1, x2, y2 in pixels.

    Returns:
      (...) head sizes in pixels.
    """
    head_boxes = np.asarray(head_boxes, np.float64)
    if head_boxes.shape[-1:] != (4,):
        raise ValueError(f"head_boxes must have shape (..., 4), got {head_boxes.shape}")
    return 0.6 * np.linalg.norm(head_boxes[..., 2:] - head_boxes[..., :2], axis=-1)


def mpii_multi_person_ap(
    pred_poses2d: Sequence,
    pred_scores: Sequence,
    gt_poses2d: Sequence,
    gt_visible: Sequence,
    gt_head_sizes: Sequence,
    *,
    pred_valid: Sequence | None = None,
    gt_valid: Sequence | None = None,
    threshold: float = 0.5,
) -> dict:
    """MPII multi-person mAP: per-joint AP with PCKh-based matching, mean over joints.

    Protocol (MPII `evaluateAP` / `assignGTmulti`), per image (or group):
      1. For every prediction p and person g, PCKh(p, g) = fraction of g's annotated
         joints that p places within `threshold` of g's head size (<=).
      2. Each prediction keeps only its best person (highest PCKh, first on ties);
         each person then takes, among the predictions that kept it, the one with the
         highest PCKh (first on ties); a PCKh of 0 never matches. Scores play no part
         in the matching (the MPII code is not greedy by score).
      3. Every joint of every prediction is a detection scored by its score; it is a
         true positive when its prediction is matched and the joint is within the
         threshold of the matched person's joint, else a false positive (also when that
         person lacks the joint).
      4. Per joint, detections of all images are ranked by score (stable) and AP is the
         PASCAL VOC area under the interpolated precision/recall curve, the number of
         positives being the number of annotated joints. mAP = mean over joints.

    Args:
      pred_poses2d: per image, (P, J, 2) predicted joints in pixels.
      pred_scores: per image, (P,) person scores or (P, J) joint scores.
      gt_poses2d: per image, (G, J, 2) annotated joints in pixels (same joint order).
      gt_visible: per image, (G, J) bool: the joint is annotated.
      gt_head_sizes: per image, (G,) head sizes in pixels (`mpii_head_size`).
      pred_valid: per image, (P,) bool real predictions; None for all.
      gt_valid: per image, (G,) bool real people; None for all.
      threshold: PCKh threshold (fraction of the head size).

    Returns:
      dict with "per_joint" (J,) AP in [0, 1] (NaN for a joint never annotated) and
      "mean" (mean over the joints with annotations).
    """
    frames = count_images(
        ("pred_poses2d", pred_poses2d),
        ("pred_scores", pred_scores),
        ("gt_poses2d", gt_poses2d),
        ("gt_visible", gt_visible),
        ("gt_head_sizes", gt_head_sizes),
    )
    pred_valid = per_image(pred_valid, frames, "pred_valid")
    gt_valid = per_image(gt_valid, frames, "gt_valid")
    scores, labels, num_gt = [], [], 0
    for f in range(frames):
        pred = as_poses(pred_poses2d[f], (2,), "pred_poses2d")
        gt = as_poses(gt_poses2d[f], (2,), "gt_poses2d")
        if pred.ndim != 3 or gt.ndim != 3 or pred.shape[1] != gt.shape[1]:
            raise ValueError(
                f"image {f}: pred_poses2d {pred.shape} and gt_poses2d {gt.shape} must be "
                "(P, J, 2) and (G, J, 2)"
            )
        num_p, num_j = pred.shape[:2]
        score = np.asarray(pred_scores[f], np.float64)
        if score.shape == (num_p,):
            score = np.broadcast_to(score[:, None], (num_p, num_j))
        if score.shape != (num_p, num_j):
            raise ValueError(
                f"image {f}: pred_scores has shape {score.shape}, expected ({num_p},) or "
                f"({num_p}, {num_j})"
            )
        keep_p = as_mask(pred_valid[f], (num_p,), "pred_valid")
        keep_g = as_mask(gt_valid[f], gt.shape[:1], "gt_valid")
        vis = as_mask(gt_visible[f], gt.shape[:2], "gt_visible")[keep_g]
        head = np.asarray(gt_head_sizes[f], np.float64).reshape(-1)
        if head.shape != gt.shape[:1]:
            raise ValueError(f"image {f}: gt_head_sizes has {head.shape}, expected {gt.shape[:1]}")
        pred, score, gt, head = pred[keep_p], score[keep_p], gt[keep_g], head[keep_g]
        if not np.all(np.isfinite(head) & (head >= 0)):
            raise ValueError(f"image {f}: gt_head_sizes must be >= 0 and finite, got {head}")
        # A head size of 0 matches nothing, as the toolkit's division by it.
        dist = np.linalg.norm(pred[:, None] - gt[None], axis=-1)
        close = (dist <= threshold * head[None, :, None]) & (head > 0)[None, :, None]
        close &= vis[None]  # (P, G, J)
        with np.errstate(invalid="ignore", divide="ignore"):
            pck = np.nan_to_num(np.sum(close, -1) / np.sum(vis, -1)[None])  # (P, G)
        if pck.size:
            best = np.argmax(pck, axis=1)
            pck = np.where(np.arange(gt.shape[0])[None] == best[:, None], pck, 0.0)
            winner = np.argmax(pck, axis=0)  # (G,) best prediction per person
            matched = pck[winner, np.arange(gt.shape[0])] > 0
            pred_to_gt = np.full(pred.shape[0], -1)
            pred_to_gt[winner[matched]] = np.flatnonzero(matched)
            label = np.zeros(pred.shape[:2], bool)
            hit = pred_to_gt >= 0
            label[hit] = close[np.flatnonzero(hit), pred_to_gt[hit]]
        else:
            label = np.zeros(pred.shape[:2], bool)
        scores.append(score)
        labels.append(label)
        num_gt = num_gt + np.sum(vis, axis=0)
    scores = np.concatenate(scores) if scores else np.zeros((0, 0))
    labels = np.concatenate(labels) if labels else np.zeros((0, 0), bool)
    num_gt = np.broadcast_to(num_gt, scores.shape[1:])
    per_joint = np.array(
        [
            voc_ap(scores[:, j], labels[:, j], num_gt[j]) if num_gt[j] > 0 else np.nan
            for j in range(scores.shape[1])
        ]
    )
    return {"per_joint": per_joint, "mean": nanmean(per_joint)}


def mpii_localisation_match(pred_centers, objpos, scale, *, radius: float = 1.0) -> np.ndarray:
    """Picks each person's pose from the benchmark's rough localisation only.

    The paper (Sec. 4.2) detects on the whole image and uses the localisation "only to
    select the pose that corresponds to each ground truth"; its rule is not given. Ours:
    each person takes the prediction whose torso centre is nearest to its `objpos`, the
    distance measured in person heights (MPII: `scale` = height / 200 px); with none
    within `radius` person heights (or a person without a scale) the person is missed.
    People choose independently (single-person people are apart by the benchmark's
    definition). Ground-truth joints play no part.

    Args:
      pred_centers: (P, 2) torso centres of the predictions in pixels.
      objpos: (G, 2) the people's rough positions in pixels.
      scale: (G,) the people's scales (person height / 200 px).
      radius: the largest accepted distance, in person heights.

    Returns:
      (G,) int index of each person's prediction, -1 for a missed person.
    """
    centers = np.asarray(pred_centers, np.float64).reshape(-1, 2)
    objpos = np.asarray(objpos, np.float64).reshape(-1, 2)
    height = 200.0 * np.asarray(scale, np.float64).reshape(-1)
    if height.shape != objpos.shape[:1]:
        raise ValueError(f"scale has {height.shape[0]} entries, objpos {objpos.shape[0]}")
    if not len(centers):
        return np.full(len(objpos), -1)
    dist = np.linalg.norm(centers[None] - objpos[:, None], axis=-1)  # (G, P) pixels
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.where(height[:, None] > 0, dist / height[:, None], np.inf)
    best = np.argmin(dist, axis=1)
    return np.where(dist[np.arange(len(objpos)), best] <= radius, best, -1)


def mpii_group_members(pred_centers, objpos, scale, *, margin: float = 0.5) -> np.ndarray:
    """Which predictions belong to a multi-person group (whole-image detection).

    The official protocol crops each group around the box of its people's `objpos`
    (group scale = mean of their scales) and scores the group's predictions against its
    people only (`evaluateAP`); the crop's margin is not given. Ours: a prediction
    belongs to the group when its torso centre lies in that box grown by `margin`
    group person heights (200 px x group scale) on every side; predictions of no group
    are not scored (people outside the groups are not false positives).

    Args:
      pred_centers: (P, 2) torso centres of the predictions in pixels.
      objpos: (G, 2) rough positions of the group's people in pixels.
      scale: (G,) their scales.
      margin: growth of the box, in group person heights.

    Returns:
      (P,) bool.
    """
    centers = np.asarray(pred_centers, np.float64).reshape(-1, 2)
    objpos = np.asarray(objpos, np.float64).reshape(-1, 2)
    grow = margin * 200.0 * float(np.mean(scale))
    lo, hi = objpos.min(axis=0) - grow, objpos.max(axis=0) + grow
    return np.all((centers >= lo) & (centers <= hi), axis=-1)


class MPIIEvaluator(ProtocolEvaluator):
    """MPII Human Pose: single-person PCKh@0.5 and multi-person mAP on MPII-14 joints.

    Joints: the official toolkit's 14 (`skeleton.MPII14`: the 12 limb joints, the upper
    neck and the head top; a model's upper neck and head top made by `skeleton.complete`,
    approximate for a model whose head is not MPII's head centre, e.g. one trained on
    Human3.6M alone); head sizes from the annotated head boxes (`mpii_head_size`).
      - Single person (MPII `evaluatePCKh`): the people flagged `single_person` with an
        annotated joint and a head box; each takes its pose by `mpii_localisation_match`
        (objpos and scale, never the ground-truth joints); a missed person has every
        joint wrong. PCKh@0.5 pooled over their annotated joints (`pose2d.pckh`).
      - Multi-person (MPII `evaluateAP`): per annotated group (the builder's `groups`
        bits, from the toolkit's groups_v12.mat; a person may be in several) without a
        single-person person (the toolkit's `getMultiPersonGroups`), the group's people
        against the predictions of `mpii_group_members`; AP per joint over all groups,
        mean over joints (`mpii_multi_person_ap`). NaN without groups.
    Reported: "pckh", "num_single", "single_missed", "map", "num_groups".

    Args:
      source: the split's records (native MPII annotations).
      joint_set: the model's joint set (`skeleton.MODEL_JOINT_SETS`).
      radius: `mpii_localisation_match` radius, in person heights.
      margin: `mpii_group_members` margin, in group person heights.
    """

    name = "mpii_human_pose"
    records_since = ("1.1.0", "people's multi-person `groups`")

    def __init__(self, source, *, joint_set: str, radius: float = 1.0, margin: float = 0.5):
        self.radius, self.margin = radius, margin
        super().__init__(source, joint_set=joint_set)

    def annotation(self, record: Mapping) -> dict:
        people = record["people"]
        joints, known = skeleton.convert(
            people["joints2d"], people["annotated"], "mpii16", "mpii14"
        )
        return {
            "joints": joints,
            "known": known,
            "head": mpii_head_size(people["head_box"]),
            "objpos": np.asarray(people["objpos"], np.float64).reshape(-1, 2),
            "scale": np.asarray(people["scale"], np.float64).reshape(-1),
            "single": np.asarray(people["single_person"], bool).reshape(-1),
            "groups": np.asarray(people["groups"], np.int64).reshape(-1),
        }

    def metrics(self, annotations: Sequence[dict], predictions: Sequence[dict]) -> dict:
        poses = [skeleton.complete(p["poses2d"], self.joint_set, "mpii14") for p in predictions]
        centers = [geometry.torso_center(p["poses2d"], self.joint_set) for p in predictions]
        scores = [p["scores"] for p in predictions]
        return {
            **self._single_person(annotations, poses, centers),
            **self._multi_person(annotations, poses, centers, scores),
        }

    def _single_person(self, annotations, poses, centers) -> dict:
        pred, gt, known, head, missed = [], [], [], [], 0
        for a, pose, center in zip(annotations, poses, centers, strict=True):
            single = a["single"] & a["known"].any(-1) & (a["head"] > 0)
            pick = mpii_localisation_match(
                center, a["objpos"][single], a["scale"][single], radius=self.radius
            )
            missed += int(np.sum(pick < 0))
            chosen = np.full((len(pick), *pose.shape[1:]), np.inf)  # missed: every joint wrong
            chosen[pick >= 0] = pose[pick[pick >= 0]]
            pred.append(chosen)
            gt.append(a["joints"][single])
            known.append(a["known"][single])
            head.append(a["head"][single])
        out = {"pckh": np.nan, "num_single": int(sum(len(h) for h in head))}
        if out["num_single"]:
            concat = (np.concatenate(x) for x in (pred, gt, known, head))
            out["pckh"] = pose2d.pckh(*concat)[1]
        out["single_missed"] = missed
        return out

    def _multi_person(self, annotations, poses, centers, scores) -> dict:
        groups = {"pred": [], "scores": [], "gt": [], "known": [], "head": []}
        for a, pose, center, score in zip(annotations, poses, centers, scores, strict=True):
            for g in range(int(np.bitwise_or.reduce(a["groups"], initial=0)).bit_length()):
                members = (a["groups"] >> g) & 1 > 0
                if not members.any() or a["single"][members].any():  # getMultiPersonGroups
                    continue
                inside = mpii_group_members(
                    center, a["objpos"][members], a["scale"][members], margin=self.margin
                )
                groups["pred"].append(pose[inside])
                groups["scores"].append(score[inside])
                for key, value in (("gt", "joints"), ("known", "known"), ("head", "head")):
                    groups[key].append(a[value][members])
        out = {"map": np.nan, "num_groups": len(groups["gt"])}
        if groups["gt"]:
            out["map"] = mpii_multi_person_ap(
                groups["pred"], groups["scores"], groups["gt"], groups["known"], groups["head"]
            )["mean"]
        return out
