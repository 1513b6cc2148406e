"""Shared checks and reductions of the metric functions (`lcrnet_jax.metrics`).

Metrics run on the host at evaluation time: inputs are numpy-convertible arrays, outputs
numpy floats. Per-pose metrics are batched over leading axes; the multi-person protocols
take one array per image (a list, or a padded array with a `*_valid` mask).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_poses(x, dims: tuple[int, ...], name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim < 2 or x.shape[-1] not in dims:
        raise ValueError(
            f"{name} must have shape (..., J, {'|'.join(map(str, dims))}), got {x.shape}"
        )
    return x


def as_pair(pred, gt, dims: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = as_poses(pred, dims, "pred"), as_poses(gt, dims, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred has shape {pred.shape} but gt has shape {gt.shape}")
    return pred, gt


def as_values(x, shape: tuple[int, ...], name: str) -> np.ndarray:
    """`x` as float64 of exactly `shape`; ValueError naming `name` otherwise."""
    x = np.asarray(x, np.float64)
    if x.shape != shape:
        raise ValueError(f"{name} has shape {x.shape}, expected {shape}")
    return x


def as_mask(visible, shape: tuple[int, ...], name: str = "visible") -> np.ndarray:
    if visible is None:
        return np.ones(shape, bool)
    visible = np.asarray(visible, bool)
    if visible.shape != shape:
        raise ValueError(f"{name} has shape {visible.shape}, expected {shape}")
    return visible


def masked_mean(values: np.ndarray, mask: np.ndarray, axis) -> np.ndarray:
    """Mean of `values` where `mask`; NaN where nothing is selected."""
    count = np.sum(mask, axis=axis)
    total = np.sum(np.where(mask, values, 0.0), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def joint_errors(pred, gt) -> np.ndarray:
    """Euclidean distance between corresponding joints.

    Args:
      pred: (..., J, D) predicted joints (D = 2 pixels or D = 3 metres).
      gt: (..., J, D) ground truth, same shape.

    Returns:
      (..., J) distances in the input units.
    """
    pred, gt = as_pair(pred, gt, (2, 3))
    return np.linalg.norm(pred - gt, axis=-1)


def nanmean(values) -> float:
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(np.mean(values)) if values.size else float("nan")


def count_images(*named: tuple[str, Sequence]) -> int:
    """Number of images shared by per-image sequences; ValueError naming a mismatch."""
    counts = {name: len(x) for name, x in named}
    if len(set(counts.values())) != 1:
        raise ValueError(f"per-image inputs must have the same number of images, got {counts}")
    return next(iter(counts.values()))


def per_image(x: Sequence | None, frames: int, name: str) -> Sequence:
    if x is None:
        return [None] * frames
    if len(x) != frames:
        raise ValueError(f"{name} has {len(x)} entries, expected {frames} images")
    return x
