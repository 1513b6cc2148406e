"""Rescoring of pose proposals by how well they fit their box (LCR-Net++ Sec. 3.6, Eq. 6)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnames=("sigma",))
def rescore(scores, poses2d, boxes, sigma: float = 25.0):
    """Eq. 6: scales scores by how far the pose's joints stray outside its box.

    s' = s * mean_j f(p_j, B), f = 1 inside B (borders included) and
    exp(-D^2 / sigma^2) outside, D = Euclidean distance from the joint to B.

    Args:
      scores: (...,) scores.
      poses2d: (..., J, 2) pixels.
      boxes: (..., 4) x1, y1, x2, y2 pixels, the box each pose was regressed in.
      sigma: pixels, > 0.

    Returns:
      (...,) rescored scores.
    """
    if not 0.0 < float(sigma) < math.inf:
        raise ValueError(f"sigma must be > 0 pixels, got {sigma!r}")
    poses2d = jnp.asarray(poses2d, jnp.float32)
    boxes = jnp.asarray(boxes, jnp.float32)[..., None, :]  # (..., 1, 4)
    outside = jnp.maximum(jnp.maximum(boxes[..., :2] - poses2d, poses2d - boxes[..., 2:]), 0.0)
    falloff = jnp.exp(-jnp.sum(outside**2, axis=-1) / sigma**2)  # (..., J)
    return jnp.asarray(scores, jnp.float32) * jnp.mean(falloff, axis=-1)
