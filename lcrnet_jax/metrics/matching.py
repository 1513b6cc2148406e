"""Matching and average precision helpers of the multi-person metrics.

`voc_ap` is the PASCAL VOC area under the precision/recall curve (MPII's `evaluateAP`);
`coco_match` and `coco_precision_recall` are pycocotools' `evaluateImg` matching and
`accumulate` for one threshold.
"""

from __future__ import annotations

import numpy as np


def voc_ap(scores: np.ndarray, labels: np.ndarray, num_positives: int) -> float:
    """PASCAL VOC (2010+) AP of detections ranked by descending score (stable)."""
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(labels[order])
    recall = np.concatenate([[0.0], tp / num_positives, [1.0]])
    precision = np.concatenate([[0.0], tp / np.arange(1, len(tp) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    step = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[step] - recall[step - 1]) * precision[step]))


def coco_match(iou, gt_ignore, gt_crowd, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools `evaluateImg` greedy matching, detections in score order.

    Args:
      iou: (D, G) OKS, detections sorted by score, people sorted non-ignored first.
      gt_ignore, gt_crowd: (G,) bool.
      thresholds: (T,) OKS thresholds.

    Returns:
      (matched (T, D) bool, matched_ignored (T, D) bool).
    """
    num_t, (num_d, num_g) = len(thresholds), iou.shape
    taken = np.zeros((num_t, num_g), bool)
    matched = np.zeros((num_t, num_d), bool)
    on_ignored = np.zeros((num_t, num_d), bool)
    if num_g == 0:  # an image without people: every detection is unmatched
        return matched, on_ignored
    thr = np.minimum(thresholds, 1 - 1e-10)[:, None]
    last = num_g - 1 - np.arange(num_g)  # reversed argmax picks the last of ties
    for d in range(num_d):
        ok = (iou[d][None] >= thr) & (~taken | gt_crowd[None])  # (T, G)
        for group in (~gt_ignore, gt_ignore):
            cand = ok & group[None] & ~matched[:, d : d + 1]
            val = np.where(cand, iou[d][None], -np.inf)
            m = last[np.argmax(val[:, ::-1], axis=1)]
            found = np.any(cand, axis=1)
            taken[found, m[found]] = True
            matched[found, d] = True
            on_ignored[found, d] = gt_ignore[m[found]]
    return matched, on_ignored


_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def coco_precision_recall(tp: np.ndarray, fp: np.ndarray, npos: int) -> tuple[float, float]:
    """pycocotools `accumulate` for one threshold: (mean 101-point precision, recall)."""
    if len(tp) == 0:
        return 0.0, 0.0
    recall = tp / npos
    precision = tp / (fp + tp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, _RECALL_POINTS, side="left")
    q = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(np.mean(q)), float(recall[-1])
