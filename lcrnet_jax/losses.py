"""Losses: L = L_RPN + L_classif + L_reg (LCR-Net++ Eq. 1-5).

Normalisations follow Faster R-CNN (Detectron), each stated where it is computed:
  - RPN objectness: binary cross-entropy averaged over the sampled anchors.
  - RPN boxes: smooth-L1 (beta = 1/9, as Detectron) summed over the 4 deltas of the
    positive sampled anchors, divided by the number of sampled anchors.
  - Classification (Eq. 3): softmax cross-entropy over the C classes averaged over the
    sampled RoIs.
  - Regression (Eq. 4-5): smooth-L1 (beta = 1) of the ground-truth class's 5 x J
    regression, foreground RoIs only, summed over the 5 coordinates (x, y, X, Y, Z),
    averaged over the J joints and divided by the number of sampled RoIs, so that a
    pose weighs like a 5-value box regression whatever J (the regression of every
    other class gets no gradient).
With the iterative head (Sec. 3.4) every estimate gets its own classification and
regression loss; their sum enters L.
Each function returns (total, {name: scalar}).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import optax

from lcrnet_jax.targets import LCRTargets, RPNTargets


def smooth_l1(x, beta: float = 1.0):
    """Eq. 5 with a transition point `beta`: 0.5 x^2 / beta if |x| < beta else |x| - 0.5 beta."""
    ax = jnp.abs(x)
    return jnp.where(ax < beta, 0.5 * ax**2 / beta, ax - 0.5 * beta)


def rpn_loss(objectness, deltas, targets: RPNTargets, *, box_beta: float = 1.0 / 9):
    """RPN loss of (B, N) objectness logits and (B, N, 4) deltas against `targets`."""
    sampled = targets.sampled.astype(jnp.float32)
    num = jnp.maximum(jnp.sum(sampled), 1.0)
    positive = (targets.labels == 1).astype(jnp.float32) * sampled
    bce = optax.sigmoid_binary_cross_entropy(objectness, positive)
    cls = jnp.sum(bce * sampled) / num
    box = jnp.sum(smooth_l1(deltas - targets.box_targets, box_beta) * positive[..., None]) / num
    return cls + box, {"rpn_cls": cls, "rpn_box": box}


def lcr_loss(head_outputs: Sequence, targets: LCRTargets, *, regression_weight: float = 1.0):
    """Classification + regression loss of every head estimate.

    Args:
      head_outputs: a sequence of objects with `logits` (B, S, C) and `regression`
        (B, S, C, 5, J), one per estimate (the model's `head` output).
      targets: the sampled RoIs' targets (the head ran on `targets.rois`).
      regression_weight: weight of L_reg.

    Returns:
      (total, metrics): metrics has "cls", "reg" (last estimate), "cls_accuracy" and
      "foreground_fraction" of the sampled RoIs, and "cls_<i>", "reg_<i>" per estimate
      when there are several.
    """
    valid = targets.valid.astype(jnp.float32)
    num = jnp.maximum(jnp.sum(valid), 1.0)
    classes = targets.classes
    total = 0.0
    metrics = {}
    for i, out in enumerate(head_outputs):
        ce = optax.softmax_cross_entropy_with_integer_labels(out.logits, classes)
        cls = jnp.sum(ce * valid) / num
        chosen = jnp.take_along_axis(out.regression, classes[..., None, None, None], axis=2)[
            :, :, 0
        ]  # (B, S, 5, J)
        err = smooth_l1(chosen - targets.regression) * targets.regression_weights
        reg = jnp.sum(err * valid[..., None, None]) / (num * err.shape[-1])
        total = total + cls + regression_weight * reg
        if len(head_outputs) > 1:
            metrics[f"cls_{i}"], metrics[f"reg_{i}"] = cls, reg
        metrics["cls"], metrics["reg"] = cls, reg
        correct = jnp.argmax(out.logits, axis=-1) == classes
        metrics["cls_accuracy"] = jnp.sum(correct * valid) / num
    metrics["foreground_fraction"] = jnp.sum((classes > 0) * valid) / num
    return total, metrics
