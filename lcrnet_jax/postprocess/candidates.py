"""Pose candidates from per-RoI network outputs, as the authors' code makes them (Sec. 3.6).

Every (RoI, non-background class) pair is a candidate pose; `candidates_from_outputs`
keeps those scoring above the original code's threshold (optionally after the Eq. 6
rescoring) and lays them out flat for `postprocess.ppi` and `postprocess.nms_baseline`.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from lcrnet_jax.postprocess.rescoring import rescore


@flax.struct.dataclass
class Candidates:
    """Flat pose candidates of one image: every (RoI, non-background class) pair.

    N = R * (C - 1), ordered RoI-major then class; `valid` marks the kept pairs.

    Attributes:
      poses2d: (N, J, 2) pixels.
      poses3d: (N, J, 3) metres.
      scores: (N,) class probabilities (rescored by Eq. 6 if asked).
      upper_body: (N,) bool, the class is an upper-body anchor pose.
      rois: (N, 4) x1, y1, x2, y2 pixels of the candidate's RoI.
      valid: (N,) bool.
      roi_index: (N,) int32 RoI of each candidate.
      class_index: (N,) int32 class of each candidate (1 .. C - 1; 0 is background).
    """

    poses2d: jax.Array
    poses3d: jax.Array
    scores: jax.Array
    upper_body: jax.Array
    rois: jax.Array
    valid: jax.Array
    roi_index: jax.Array
    class_index: jax.Array

    def ppi_inputs(self) -> dict[str, jax.Array]:
        """The candidate arguments of `ppi` and `nms_poses`: `ppi(**c.ppi_inputs(), ...)`."""
        return {
            "poses2d": self.poses2d,
            "poses3d": self.poses3d,
            "scores": self.scores,
            "upper_body": self.upper_body,
            "valid": self.valid,
            "rois": self.rois,
        }


@functools.partial(
    jax.jit, static_argnames=("rescore_sigma", "min_candidates", "candidate_threshold")
)
def candidates_from_outputs(
    boxes,
    probs,
    poses2d,
    poses3d,
    *,
    upper_body_classes,
    valid=None,
    rescore_sigma: float | None = None,
    min_candidates: int = 500,
    candidate_threshold: float = 0.1,
) -> Candidates:
    """Flattens per-RoI network outputs into PPI candidates as the original code does.

    A (RoI, class) pair is kept if its probability is >= candidate_threshold / (C - 1),
    C - 1 being the number of non-background classes (the authors' code:
    `0.1 / (scores.shape[1] - 1)`). As in
    the authors' original detection code, if fewer than `min(min_candidates, n - 1)`
    pairs (n = number of valid pairs) score above that, the threshold is lowered to the
    score of the `min(min_candidates, n - 1)`-th best pair.

    Args:
      boxes: (R, 4) RoIs x1, y1, x2, y2 pixels.
      probs: (R, C) softmax class probabilities, class 0 = background.
      poses2d: (R, C, J, 2) pixels, one pose per class (the background's is dropped).
      poses3d: (R, C, J, 3) metres.
      upper_body_classes: (C,) bool, True for upper-body anchor classes.
      valid: (R,) bool, real RoIs; None for all.
      rescore_sigma: if set and > 0, scores are first rescored by Eq. 6 with this sigma
        (pixels) and the RoI as box; the threshold then applies to the rescored scores.
      min_candidates: the original's minimum number of kept pairs (0 disables it).
      candidate_threshold: the factor of the threshold (`PPIConfig.candidate_threshold`).

    Returns:
      `Candidates` with N = R * (C - 1) entries.
    """
    boxes = jnp.asarray(boxes, jnp.float32)
    probs = jnp.asarray(probs, jnp.float32)
    poses2d = jnp.asarray(poses2d, jnp.float32)
    poses3d = jnp.asarray(poses3d, jnp.float32)
    upper_body_classes = jnp.asarray(upper_body_classes, bool)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must be (R, C) with C >= 2, got shape {probs.shape}")
    num_rois, num_classes = probs.shape
    joints = poses2d.shape[2] if poses2d.ndim == 4 else None
    expected = {
        "boxes": (boxes, (num_rois, 4)),
        "poses2d": (poses2d, (num_rois, num_classes, joints, 2)),
        "poses3d": (poses3d, (num_rois, num_classes, joints, 3)),
        "upper_body_classes": (upper_body_classes, (num_classes,)),
    }
    if valid is not None:
        valid = jnp.asarray(valid, bool)
        expected["valid"] = (valid, (num_rois,))
    for name, (array, shape) in expected.items():
        if array.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if valid is None:
        valid = jnp.ones(num_rois, bool)

    fg = slice(1, None)
    scores = probs[:, fg]
    if rescore_sigma:
        scores = rescore(scores, poses2d[:, fg], boxes[:, None], sigma=rescore_sigma)
    scores = scores.reshape(-1)
    pair_valid = jnp.repeat(valid, num_classes - 1)
    threshold = candidate_threshold / (num_classes - 1)
    if min_candidates > 0 and scores.size > 1:
        k = min(min_candidates, scores.size - 1)
        top = lax.top_k(jnp.where(pair_valid, scores, -jnp.inf), k)[0]
        floor_count = jnp.minimum(k, jnp.sum(pair_valid) - 1)
        floor = top[jnp.maximum(floor_count - 1, 0)]
        too_few = jnp.sum(pair_valid & (scores > threshold)) < floor_count
        threshold = jnp.where(too_few, floor, threshold)
    classes = jnp.tile(jnp.arange(1, num_classes, dtype=jnp.int32), num_rois)
    rois_index = jnp.repeat(jnp.arange(num_rois, dtype=jnp.int32), num_classes - 1)
    return Candidates(
        poses2d=poses2d[:, fg].reshape(-1, joints, 2),
        poses3d=poses3d[:, fg].reshape(-1, joints, 3),
        scores=scores,
        upper_body=upper_body_classes[classes],
        rois=boxes[rois_index],
        valid=pair_valid & (scores >= threshold),
        roi_index=rois_index,
        class_index=classes,
    )
