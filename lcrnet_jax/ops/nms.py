"""Greedy non-maximum suppression with static shapes (RPN proposals, LCR-Net++ Sec. 3.5).

The RPN of LCR-Net++ follows Faster R-CNN ("we use the same parameters as [9] for RPN"):
its proposals are pruned by NMS at IoU 0.7 (6000 -> 1000 at test time, as the authors'
released inference code does).

`nms` keeps the same boxes in the same order as `torchvision.ops.nms`: boxes are visited
by descending score (ties: lower index first) and a box is dropped when its IoU with a
box kept before it is > `iou_threshold` (continuous coordinates, area (x2 - x1)(y2 - y1)).

Blocked algorithm (as TF's `non_max_suppression_padded` and the MLPerf JAX detectors):
the sorted boxes are visited in tiles of T = `_TILE`. A tile is first cut by the boxes
kept so far ((T, T) IoU blocks, only as many as there are kept boxes), then resolved
inside by a fixed-point iteration on its (T, T) IoU, which reaches the greedy answer in as
many steps as the longest chain of suppressions inside the tile (usually a handful). The
loop stops as soon as `max_outputs` boxes are kept, so 6000 -> 1000 proposals usually
touch only the first few tiles.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lcrnet_jax import geometry

# Boxes resolved together (T); IoU is computed in (T, T) blocks.
_TILE = 128


def nms(boxes, scores, iou_threshold, max_outputs: int, *, valid=None):
    """Greedy NMS with a static-size output, equal to `torchvision.ops.nms`.

    Args:
      boxes: (N, 4) x1, y1, x2, y2. Boxes with x2 < x1 or y2 < y1 count as empty
        (torchvision gives them a negative area instead).
      scores: (N,) float; NaN scores count as invalid.
      iou_threshold: a box is suppressed by a kept box with IoU > this, in [0, 1] (may
        be traced).
      max_outputs: size of the output (static int >= 0).
      valid: (N,) bool, False for padded boxes (never kept, never suppress); None for all.

    Returns:
      indices: (max_outputs,) int32 indices into `boxes` of the kept boxes by descending
        score, -1 after the last one.
      num_valid: int32 scalar, number of kept boxes (<= max_outputs).

    Raises:
      ValueError: on bad shapes or `max_outputs`.
    """
    boxes, scores, valid = _check(boxes, scores, valid, max_outputs, iou_threshold, "nms")
    return _greedy_nms(boxes, scores, None, valid, iou_threshold, max_outputs)


def batched_nms(boxes, scores, classes, iou_threshold, max_outputs: int, *, valid=None):
    """Greedy NMS run independently for each class, merged by descending score.

    Same kept set as `torchvision.ops.batched_nms`: a box is only suppressed by a kept box
    of the same class. The output order is by descending score across classes (ties:
    lower index first).

    Args:
      boxes: (N, 4) x1, y1, x2, y2.
      scores: (N,) float.
      classes: (N,) int class of each box.
      iou_threshold: IoU above which a kept box suppresses another of its class.
      max_outputs: size of the output (static int >= 0).
      valid: (N,) bool, False for padded boxes; None for all.

    Returns:
      indices: (max_outputs,) int32 kept indices, -1 padded.
      num_valid: int32 scalar, number of kept boxes.

    Raises:
      ValueError: on bad shapes or `max_outputs`.
    """
    boxes, scores, valid = _check(boxes, scores, valid, max_outputs, iou_threshold, "batched_nms")
    classes = jnp.asarray(classes)
    if classes.shape != scores.shape:
        raise ValueError(
            f"batched_nms: classes must have shape {scores.shape}, got {classes.shape}"
        )
    return _greedy_nms(boxes, scores, classes.astype(jnp.int32), valid, iou_threshold, max_outputs)


def _check(boxes, scores, valid, max_outputs, iou_threshold, name):
    if isinstance(iou_threshold, int | float) and not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"{name}: iou_threshold must be in [0, 1], got {iou_threshold}")
    boxes = jnp.asarray(boxes, jnp.float32)
    scores = jnp.asarray(scores, jnp.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}: boxes must be (N, 4), got shape {boxes.shape}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"{name}: scores must have shape {boxes.shape[:1]}, got {scores.shape}")
    if valid is None:
        valid = jnp.ones(scores.shape, bool)
    valid = jnp.asarray(valid)
    if valid.shape != scores.shape:
        raise ValueError(f"{name}: valid must have shape {scores.shape}, got {valid.shape}")
    if not geometry.is_whole(max_outputs) or max_outputs < 0:
        raise ValueError(f"{name}: max_outputs must be a static int >= 0, got {max_outputs!r}")
    return boxes, scores, valid.astype(bool) & ~jnp.isnan(scores)


def _suppresses(iou, cls_a, cls_b, threshold):
    """(.., Na, Nb) bool: IoU > threshold, and same class when classes are given."""
    hit = iou > threshold
    if cls_a is not None:
        hit = hit & (cls_a[:, None] == cls_b[None, :])
    return hit


def _greedy_nms(boxes, scores, classes, valid, threshold, max_outputs):
    n = boxes.shape[0]
    out = jnp.full((max_outputs,), -1, jnp.int32)
    if n == 0 or max_outputs == 0:
        return out, jnp.int32(0)
    tile = min(_TILE, n)
    padded = -n % tile
    # Valid boxes first, by descending score, then by index. `0 - s` maps -0.0 to +0.0.
    order = jax.lax.sort(
        ((~valid).astype(jnp.int32), 0.0 - scores, jnp.arange(n, dtype=jnp.int32)), num_keys=3
    )[2]
    order = jnp.pad(order, (0, padded))
    s_boxes = jnp.pad(boxes, ((0, padded), (0, 0)))[order]
    s_valid = jnp.pad(valid, (0, padded))[order] & (jnp.arange(n + padded) < n)
    s_cls = None if classes is None else jnp.pad(classes, (0, padded))[order]
    upper = jnp.arange(tile)[:, None] < jnp.arange(tile)[None, :]  # (T, T) earlier -> later
    slots = -(-max_outputs // tile) * tile  # kept boxes are compared by blocks of T

    def cut_by_kept(count, kept_boxes, kept_cls, tb, tc):
        """(T,) bool: tile boxes overlapping a kept box (only blocks holding kept boxes)."""

        def block(state):
            b, cut = state
            kb = jax.lax.dynamic_slice_in_dim(kept_boxes, b * tile, tile)
            kc = (
                None if kept_cls is None else jax.lax.dynamic_slice_in_dim(kept_cls, b * tile, tile)
            )
            hit = _suppresses(geometry.iou_matrix(kb, tb), kc, tc, threshold)
            hit = hit & (b * tile + jnp.arange(tile) < count)[:, None]
            return b + 1, cut | jnp.any(hit, axis=0)

        init = (jnp.int32(0), jnp.zeros((tile,), bool))
        return jax.lax.while_loop(lambda st: st[0] * tile < count, block, init)[1]

    def resolve_tile(alive, tb, tc):
        """Greedy answer inside a tile: fixed point of keep = alive & ~(kept earlier overlap)."""
        inner = _suppresses(geometry.iou_matrix(tb, tb), tc, tc, threshold) & upper

        def relax(keep):
            return alive & ~jnp.any(inner & keep[:, None], axis=0)

        def not_converged(pair):
            return jnp.any(pair[0] != pair[1])

        step = lambda pair: (pair[1], relax(pair[1]))
        return jax.lax.while_loop(not_converged, step, (alive, relax(alive)))[1]

    def tile_step(state):
        t, count, kept_idx, kept_boxes, kept_cls = state
        start = t * tile
        tb = jax.lax.dynamic_slice_in_dim(s_boxes, start, tile)
        tv = jax.lax.dynamic_slice_in_dim(s_valid, start, tile)
        tc = None if s_cls is None else jax.lax.dynamic_slice_in_dim(s_cls, start, tile)
        alive = tv & ~cut_by_kept(count, kept_boxes, kept_cls, tb, tc)
        keep = jax.lax.cond(jnp.any(alive), resolve_tile, lambda a, *_: a, alive, tb, tc)
        # Slots past max_outputs are out of range of kept_idx and dropped.
        slot = jnp.where(keep, count + jnp.cumsum(keep) - 1, slots)
        slot = jnp.where(slot < max_outputs, slot, slots)
        kept_idx = kept_idx.at[slot].set(
            jax.lax.dynamic_slice_in_dim(order, start, tile), mode="drop"
        )
        kept_boxes = kept_boxes.at[slot].set(tb, mode="drop")
        if kept_cls is not None:
            kept_cls = kept_cls.at[slot].set(tc, mode="drop")
        count = jnp.minimum(count + jnp.sum(keep, dtype=jnp.int32), max_outputs)
        return t + 1, count, kept_idx, kept_boxes, kept_cls

    def more(state):
        return (state[0] < (n + padded) // tile) & (state[1] < max_outputs)

    kept_cls = None if classes is None else jnp.zeros((slots,), jnp.int32)
    state = (jnp.int32(0), jnp.int32(0), out, jnp.zeros((slots, 4), jnp.float32), kept_cls)
    _, count, kept_idx, _, _ = jax.lax.while_loop(more, tile_step, state)
    return kept_idx, count
