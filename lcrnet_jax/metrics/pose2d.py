"""2D pose metrics: PCKh (LCR-Net++ Sec. 4.2). 2D in pixels; fractions in [0, 1]."""

from __future__ import annotations

import numpy as np

from lcrnet_jax.metrics.common import as_mask, as_pair, joint_errors, masked_mean


def pckh(pred, gt, visible, head_size, threshold: float = 0.5) -> tuple[np.ndarray, float]:
    """PCKh: fraction of joints within `threshold` head sizes of the ground truth (MPII).

    Protocol (MPII `computePCK`): a visible joint is correct when its distance to the
    ground truth is at most `threshold * head_size` (<=); invisible joints do not count.
    PCKh@0.5 is the standard single-person metric.

    Args:
      pred: (..., J, 2) predicted joints in pixels.
      gt: (..., J, 2) ground-truth joints in pixels.
      visible: (..., J) bool annotated joints.
      head_size: (...) head sizes in pixels (`mpii_head_size`), one per pose.
      threshold: fraction of the head size.

    Returns:
      (per_joint, total): per_joint (J,) fraction of correct visible joints over all
      poses, NaN for a joint never visible; total the fraction over every visible joint
      of every pose (MPII's pooled average, i.e. per_joint weighted by visible counts).
    """
    pred, gt = as_pair(pred, gt, (2,))
    visible = as_mask(visible, pred.shape[:-1])
    head_size = np.asarray(head_size, np.float64)
    if head_size.shape != pred.shape[:-2]:
        raise ValueError(f"head_size has shape {head_size.shape}, expected {pred.shape[:-2]}")
    if not np.all(np.isfinite(head_size) & (head_size > 0)):
        raise ValueError("head_size must be positive and finite for every pose")
    correct = joint_errors(pred, gt) <= threshold * head_size[..., None]
    j = pred.shape[-2]
    correct, visible = correct.reshape(-1, j), visible.reshape(-1, j)
    per_joint = masked_mean(correct, visible, axis=0)
    return per_joint, float(masked_mean(correct, visible, axis=None))
