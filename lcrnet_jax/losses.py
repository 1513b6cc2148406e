"""Losses: L = L_RPN + L_classif + L_reg (LCR-Net++ Eq. 1-5).

Normalisations follow Faster R-CNN (Detectron), each stated where it is computed:
  - RPN objectness: binary cross-entropy averaged over the sampled anchors.
  - RPN boxes: smooth-L1 (beta `rpn_box_beta` = 1/9, as Detectron) summed over the 4 deltas of the
    positive sampled anchors, divided by the number of sampled anchors.
  - Classification (Eq. 3): softmax cross-entropy over the C classes averaged over the
    sampled RoIs.
  - Regression (Eq. 4-5): smooth-L1 (beta `regression_beta` = 1) of the ground-truth class's 5 x J
    regression, foreground RoIs only, summed over the 5 coordinates (x, y, X, Y, Z),
    averaged over the J joints and divided by the number of sampled RoIs, so that a
    pose weighs like a 5-value box regression whatever J (the regression of every
    other class gets no gradient).
L = rpn_cls_weight L_objectness + rpn_box_weight L_box + cls_weight L_classif
  + regression_weight L_reg, all weights 1 by default (`LossConfig`, `config.loss`).
With the iterative head (Sec. 3.4) every estimate gets its own classification and
regression loss; their sum enters L.
Each function returns (total, {name: scalar}).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import optax

from lcrnet_jax.targets import LCRTargets, RPNTargets


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms and the smooth-L1 transition points (`config.loss`)."""

    rpn_cls_weight: float = 1.0
    rpn_box_weight: float = 1.0
    rpn_box_beta: float = 1.0 / 9
    cls_weight: float = 1.0
    regression_weight: float = 1.0
    regression_beta: float = 1.0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not value >= 0.0 or (field.name.endswith("beta") and value == 0.0):
                raise ValueError(f"config.loss.{field.name} must be >= 0 (betas > 0), got {value}")


def loss_config(section: Mapping) -> LossConfig:
    """`config.loss` -> `LossConfig`, one field per key; an unknown key is an error."""
    names = {f.name for f in dataclasses.fields(LossConfig)}
    unknown = sorted(set(section) - names)
    if unknown:
        raise ValueError(f"unknown config.loss keys {unknown}; valid keys: {sorted(names)}")
    return LossConfig(**{k: float(v) for k, v in section.items()})


def smooth_l1(x, beta: float = 1.0):
    """Eq. 5 with a transition point `beta`: 0.5 x^2 / beta if |x| < beta else |x| - 0.5 beta."""
    ax = jnp.abs(x)
    return jnp.where(ax < beta, 0.5 * ax**2 / beta, ax - 0.5 * beta)


def rpn_loss(objectness, deltas, targets: RPNTargets, config: LossConfig = LossConfig()):
    """RPN loss of (B, N) objectness logits and (B, N, 4) deltas against `targets`."""
    sampled = targets.sampled.astype(jnp.float32)
    num = jnp.maximum(jnp.sum(sampled), 1.0)
    positive = (targets.labels == 1).astype(jnp.float32) * sampled
    bce = optax.sigmoid_binary_cross_entropy(objectness, positive)
    cls = jnp.sum(bce * sampled) / num
    box_l1 = smooth_l1(deltas - targets.box_targets, config.rpn_box_beta)
    box = jnp.sum(box_l1 * positive[..., None]) / num
    return config.rpn_cls_weight * cls + config.rpn_box_weight * box, {
        "rpn_cls": cls,
        "rpn_box": box,
    }


def lcr_loss(head_outputs: Sequence, targets: LCRTargets, config: LossConfig = LossConfig()):
    """Classification + regression loss of every head estimate.

    Args:
      head_outputs: a sequence of objects with `logits` (B, S, C), `regression`
        (B, S, C, 5, J) and `classifies` (bool), one per estimate (the model's `head`
        output).
      targets: the sampled RoIs' targets (the head ran on `targets.rois`).
      config: loss weights and the regression's smooth-L1 beta.

    Returns:
      (total, metrics): metrics has "cls", "reg" (last estimate), "cls_accuracy" and
      "foreground_fraction" of the sampled RoIs, and "cls_<i>", "reg_<i>" per estimate
      when there are several. An estimate that does not classify (`classifies`, a joint
      refinement's) adds no classification loss to the total.
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
        # Selected, not multiplied: a target that does not count may hold NaN (a
        # 2D-only person's 3D), and NaN * 0 is NaN in the loss and the gradient.
        diff = jnp.where(targets.regression_weights > 0, chosen - targets.regression, 0.0)
        err = smooth_l1(diff, config.regression_beta) * targets.regression_weights
        reg = jnp.sum(err * valid[..., None, None]) / (num * err.shape[-1])
        if out.classifies:
            total = total + config.cls_weight * cls
        total = total + config.regression_weight * reg
        if len(head_outputs) > 1:
            metrics[f"cls_{i}"], metrics[f"reg_{i}"] = cls, reg
        metrics["cls"], metrics["reg"] = cls, reg
        correct = jnp.argmax(out.logits, axis=-1) == classes
        metrics["cls_accuracy"] = jnp.sum(correct * valid) / num
    metrics["foreground_fraction"] = jnp.sum((classes > 0) * valid) / num
    return total, metrics
