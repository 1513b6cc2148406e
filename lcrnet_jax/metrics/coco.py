"""COCO keypoint metrics: object keypoint similarity (OKS) and OKS AP/AR (pycocotools).

2D in pixels, areas in square pixels; AP and AR in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.metrics.common import as_mask, as_poses, as_values, count_images, per_image
from lcrnet_jax.metrics.matching import coco_match, coco_precision_recall

# COCO's OKS constants times 10, per joint name without its side (pycocotools' values).
_COCO_SIGMAS_X10 = {
    "nose": 0.26,
    "eye": 0.25,
    "ear": 0.35,
    "shoulder": 0.79,
    "elbow": 0.72,
    "wrist": 0.62,
    "hip": 1.07,
    "knee": 0.87,
    "ankle": 0.89,
}


COCO_SIGMAS = np.array([_COCO_SIGMAS_X10[n.split("_")[-1]] for n in skeleton.COCO17.joints]) / 10.0
"""COCO's per-keypoint OKS sigmas, in `skeleton.COCO17` order."""


_OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)


_AREA_RANGES = {"all": (0.0, 1e10), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}


def oks(pred, gt, gt_visible, gt_area, *, sigmas=COCO_SIGMAS, gt_boxes=None) -> np.ndarray:
    """Object keypoint similarity between every prediction and every person (COCO).

    OKS(p, g) = mean over g's labelled joints of exp(-d^2 / (2 * area * (2 sigma)^2)),
    d the pixel distance (pycocotools `computeOks`). For a person without labelled
    joints, d is the distance from each predicted joint to g's box grown by its width
    (height) on each side, 3x its size (pycocotools' rule for such annotations, which are
    ignored when scoring).

    Args:
      pred: (P, J, 2) predicted joints in pixels.
      gt: (G, J, 2) annotated joints in pixels.
      gt_visible: (G, J) bool labelled joints (COCO v > 0).
      gt_area: (G,) person areas in square pixels (COCO segment area).
      sigmas: (J,) per-joint constants (default: COCO's 17).
      gt_boxes: (G, 4) x1, y1, x2, y2 person boxes; needed for people without labelled
        joints (None: the box of the labelled joints, i.e. empty for them).

    Returns:
      (P, G) OKS in [0, 1].
    """
    pred, gt = as_poses(pred, (2,), "pred"), as_poses(gt, (2,), "gt")
    sigmas = np.asarray(sigmas, np.float64)
    if pred.ndim != 3 or gt.ndim != 3 or not pred.shape[1] == gt.shape[1] == sigmas.shape[0]:
        raise ValueError(
            f"pred {pred.shape}, gt {gt.shape} and sigmas {sigmas.shape} must be (P, J, 2), "
            "(G, J, 2) and (J,)"
        )
    vis = as_mask(gt_visible, gt.shape[:2], "gt_visible")
    area = as_values(gt_area, gt.shape[:1], "gt_area")
    if np.any(area < 0):
        raise ValueError(f"gt_area must be >= 0 square pixels, got {area.min()}")
    if gt_boxes is None:
        gt_boxes = geometry.pose_box(gt, vis, margin=0.0)
    boxes = as_values(gt_boxes, (gt.shape[0], 4), "gt_boxes")
    size = boxes[:, 2:] - boxes[:, :2]
    lo, hi = boxes[:, :2] - size, boxes[:, :2] + size * 2  # (G, 2)
    d = pred[:, None] - gt[None]  # (P, G, J, 2)
    outside = np.maximum(lo[None, :, None] - pred[:, None], 0.0) + np.maximum(
        pred[:, None] - hi[None, :, None], 0.0
    )
    labelled = np.any(vis, axis=-1)  # (G,)
    d = np.where(labelled[None, :, None, None], d, outside)
    variances = (sigmas * 2) ** 2
    e = np.sum(d**2, axis=-1) / variances / (area[None, :, None] + np.spacing(1)) / 2
    counted = np.where(labelled[:, None], vis, True)[None]  # (1, G, J)
    return np.sum(np.where(counted, np.exp(-e), 0.0), -1) / np.sum(counted, -1)


def oks_ap(
    pred_poses2d: Sequence,
    pred_scores: Sequence,
    gt_poses2d: Sequence,
    gt_visible: Sequence,
    *,
    gt_areas: Sequence | None = None,
    gt_boxes: Sequence | None = None,
    gt_crowd: Sequence | None = None,
    pred_valid: Sequence | None = None,
    gt_valid: Sequence | None = None,
    sigmas=COCO_SIGMAS,
    max_dets: int = 20,
    area_ranges: Sequence[str] = tuple(_AREA_RANGES),
) -> dict:
    """COCO keypoint AP/AR with OKS (pycocotools `COCOeval(iouType="keypoints")`).

    Protocol, as pycocotools: per image the `max_dets` highest-scoring predictions
    (stable order) are matched greedily in score order to people, at each OKS threshold
    0.50:0.05:0.95, each to the unmatched person of highest OKS >= threshold (crowd
    people may take several; regular people are preferred to ignored ones). People that
    are crowd or have no labelled joint are ignored: matching them neither helps nor
    hurts. For the "medium" (32^2..96^2) and "large" (> 96^2) ranges, people outside the
    range are ignored too, and so are unmatched predictions whose area (extent of their
    joints) is outside it. Precision is interpolated at 101 recall points over all
    images ranked by score (ties: image order, then rank). AP averages over thresholds
    and recall points; AR is the final recall averaged over thresholds.

    Args:
      pred_poses2d: per image, (P, J, 2) predicted joints in pixels.
      pred_scores: per image, (P,) person scores.
      gt_poses2d: per image, (G, J, 2) annotated joints in pixels.
      gt_visible: per image, (G, J) bool labelled joints (COCO v > 0).
      gt_areas: per image, (G,) areas in square pixels (COCO: the segment area);
        None: the area of `gt_boxes`.
      gt_boxes: per image, (G, 4) x1, y1, x2, y2 boxes; None: the labelled joints' box.
        At least one of `gt_areas` and `gt_boxes` is required.
      gt_crowd: per image, (G,) bool crowd regions; None for none.
      pred_valid, gt_valid: per image, (P,) / (G,) bool real entries; None for all.
      sigmas: (J,) OKS constants (default: COCO's 17 keypoints).
      max_dets: predictions kept per image.
      area_ranges: the ranges scored, among "all", "medium" and "large" (fewer: faster).

    Returns:
      dict with "AP", "AP50", "AP75", "AR", "AR50", "AR75" (range "all"), "AP_medium",
      "AR_medium", "AP_large", "AR_large" in [0, 1], those of the `area_ranges` scored;
      NaN where no person counts (pycocotools -1).
    """
    if gt_areas is None and gt_boxes is None:
        raise ValueError("oks_ap needs gt_areas or gt_boxes to know each person's area")
    if not (geometry.is_whole(max_dets) and max_dets >= 0):
        raise ValueError(f"max_dets must be an int >= 0, got {max_dets!r}")
    if not set(area_ranges) <= set(_AREA_RANGES):
        raise ValueError(f"area_ranges must be among {tuple(_AREA_RANGES)}, got {area_ranges}")
    ranges = {a: _AREA_RANGES[a] for a in area_ranges}
    frames = count_images(
        ("pred_poses2d", pred_poses2d),
        ("pred_scores", pred_scores),
        ("gt_poses2d", gt_poses2d),
        ("gt_visible", gt_visible),
    )
    gt_areas, gt_boxes, gt_crowd = (
        per_image(x, frames, n)
        for x, n in ((gt_areas, "gt_areas"), (gt_boxes, "gt_boxes"), (gt_crowd, "gt_crowd"))
    )
    pred_valid = per_image(pred_valid, frames, "pred_valid")
    gt_valid = per_image(gt_valid, frames, "gt_valid")
    num_t = len(_OKS_THRESHOLDS)
    acc = {a: {"scores": [], "tp": [], "ignore": [], "npos": 0} for a in ranges}
    for f in range(frames):
        pred = as_poses(pred_poses2d[f], (2,), "pred_poses2d")
        gt = as_poses(gt_poses2d[f], (2,), "gt_poses2d")
        score = as_values(pred_scores[f], pred.shape[:1], f"pred_scores[{f}]")
        keep_p = as_mask(pred_valid[f], score.shape, "pred_valid")
        keep_g = as_mask(gt_valid[f], gt.shape[:1], "gt_valid")
        vis = as_mask(gt_visible[f], gt.shape[:2], "gt_visible")[keep_g]
        crowd = np.zeros(gt.shape[:1], bool)
        if gt_crowd[f] is not None:
            crowd = as_mask(gt_crowd[f], gt.shape[:1], "gt_crowd")
        crowd = crowd[keep_g]
        pred, score, gt = pred[keep_p], score[keep_p], gt[keep_g]
        boxes = None
        if gt_boxes[f] is not None:
            boxes = as_values(gt_boxes[f], (len(keep_g), 4), f"gt_boxes[{f}]")[keep_g]
        if gt_areas[f] is not None:
            area = as_values(gt_areas[f], keep_g.shape, f"gt_areas[{f}]")[keep_g]
        else:
            area = np.asarray(geometry.box_area(boxes), np.float64)
        order = np.argsort(-score, kind="stable")[:max_dets]
        pred, score = pred[order], score[order]
        if len(gt) == 0 and len(pred) == 0:
            continue
        iou = oks(pred, gt, vis, area, sigmas=sigmas, gt_boxes=boxes)
        extent = pred.max(axis=1) - pred.min(axis=1) if len(pred) else np.zeros((0, 2))
        pred_area = extent[:, 0] * extent[:, 1]
        base_ignore = crowd | ~np.any(vis, axis=-1)
        for name, (lo, hi) in ranges.items():
            ignore = base_ignore | (area < lo) | (area > hi)
            gorder = np.argsort(ignore, kind="stable")
            matched, on_ignored = coco_match(
                iou[:, gorder], ignore[gorder], crowd[gorder], _OKS_THRESHOLDS
            )
            out_of_range = (pred_area < lo) | (pred_area > hi)
            dt_ignore = on_ignored | (~matched & out_of_range[None])
            a = acc[name]
            a["scores"].append(score)
            a["tp"].append(matched)
            a["ignore"].append(dt_ignore)
            a["npos"] += int(np.sum(~ignore))
    ap, ar = {}, {}
    for name, a in acc.items():
        ap[name], ar[name] = np.full(num_t, np.nan), np.full(num_t, np.nan)
        if a["npos"] > 0:
            rank = np.argsort(-np.concatenate(a["scores"]), kind="stable")
            tp = np.concatenate(a["tp"], axis=1)[:, rank]
            ignore = np.concatenate(a["ignore"], axis=1)[:, rank]
            tp_sum = np.cumsum(tp & ~ignore, axis=1, dtype=np.float64)
            fp_sum = np.cumsum(~tp & ~ignore, axis=1, dtype=np.float64)
            for t in range(num_t):
                ap[name][t], ar[name][t] = coco_precision_recall(tp_sum[t], fp_sum[t], a["npos"])
    t50, t75 = 0, 5  # indices of OKS 0.50 and 0.75 in _OKS_THRESHOLDS
    out = {}
    if "all" in ap:
        out |= {
            "AP": float(np.mean(ap["all"])),
            "AP50": float(ap["all"][t50]),
            "AP75": float(ap["all"][t75]),
            "AR": float(np.mean(ar["all"])),
            "AR50": float(ar["all"][t50]),
            "AR75": float(ar["all"][t75]),
        }
    for name in (n for n in ("medium", "large") if n in ap):
        out |= {f"AP_{name}": float(np.mean(ap[name])), f"AR_{name}": float(np.mean(ar[name]))}
    return out
