"""MPII Human Pose: head sizes, PCKh@0.5 and multi-person mAP (LCR-Net++ Sec. 4.2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lcrnet_jax import skeleton
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
        dist = np.linalg.norm(pred[:, None] - gt[None], axis=-1) / head[None, :, None]
        close = (dist <= threshold) & vis[None]  # (P, G, J)
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


def protocol_metrics(records: Sequence[Mapping], predictions: Sequence[dict]) -> dict:
    """Single-person PCKh@0.5 and multi-person mAP on LCR-14 joints.

    The 13 LCR joints and a head top (`skeleton.extrapolate_head_top`), head sizes from
    the annotated head boxes. For PCKh each annotated person, in order, takes the
    prediction not yet taken with the highest PCKh; a person without one has every
    joint wrong.

    Args:
      records: the images' records (native MPII annotations).
      predictions: per image, {"poses2d", "poses3d", "scores"} of the real people.
    """
    gt2d, gt_known, head, pred2d, scores = [], [], [], [], []
    for record, prediction in zip(records, predictions, strict=True):
        people = record["people"]
        joints, known = skeleton.convert(people["joints2d"], people["annotated"], "mpii16", "lcr14")
        gt2d.append(joints)
        gt_known.append(known)
        head.append(mpii_head_size(people["head_box"]))
        pred2d.append(skeleton.extrapolate_head_top(prediction["poses2d"]))  # LCR-14
        scores.append(prediction["scores"])
    ap = mpii_multi_person_ap(pred2d, scores, gt2d, gt_known, head)
    correct, counted = 0, 0
    for g2d, known, size, p2d in zip(gt2d, gt_known, head, pred2d, strict=True):
        taken = np.zeros(len(p2d), bool)
        for g in range(len(g2d)):
            if not known[g].any():
                continue
            hits = np.linalg.norm(p2d - g2d[g], axis=-1) <= 0.5 * size[g]  # (P, J)
            per_pred = np.where(taken, -1, (hits & known[g]).sum(-1))
            best = int(np.argmax(per_pred)) if len(p2d) else -1
            if best >= 0 and per_pred[best] > 0:
                taken[best] = True
                correct += int(per_pred[best])
            counted += int(known[g].sum())
    return {
        "pckh": correct / counted if counted else np.nan,
        "map": ap["mean"],
        "num_people": int(sum(k.any(-1).sum() for k in gt_known)),
    }
