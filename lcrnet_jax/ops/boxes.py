"""RPN anchors, Faster R-CNN box coding and clipping (LCR-Net++ Sec. 3.1 and 3.5).

The localization module of LCR-Net++ is the RPN of Faster R-CNN (Sec. 3.5): anchors
per cell of the stride-16 map of every size and aspect ratio (the ResNet-50 model's 15,
sizes 32 to 512, ratios 0.5, 1, 2; the VGG16 model's 9, sizes 128 to 512), proposals
decoded from (dx, dy, dw, dh) deltas and clipped to the image. Coordinates are
continuous pixels (README "Conventions"): a box (x1, y1, x2, y2) has width x2 - x1, no
+1. IoU is `lcrnet_jax.geometry.iou_matrix`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from lcrnet_jax.geometry import is_whole

# Smallest width/height used in logs when encoding, so that empty (padded) boxes give
# large negative but finite dw/dh.
_MIN_SIZE = 1e-6


def generate_rpn_anchors(
    feature_size: tuple[int, int],
    *,
    stride: int = 16,
    sizes: Sequence[float] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    whole_pixels: bool = False,
):
    """Anchor boxes of every cell of a feature map.

    Cell (i, j) (row i, column j) is centred at ((j + 0.5) * stride, (i + 0.5) * stride)
    in image pixels. Each cell has A = len(aspect_ratios) * len(sizes) anchors of area
    size**2 and aspect ratio h / w = ratio (w = size / sqrt(ratio), h = size * sqrt(ratio)),
    ordered ratio-major: anchor a has ratio aspect_ratios[a // len(sizes)] and size
    sizes[a % len(sizes)] (the order of Detectron and torchvision's AnchorGenerator).

    Args:
      feature_size: (H, W) cells of the feature map.
      stride: image pixels per cell.
      sizes: anchor sizes in pixels (square root of the area).
      aspect_ratios: height / width ratios.
      whole_pixels: Detectron's `generate_anchors` (the released models'): each ratio's
        box of area stride**2 is first rounded to whole pixels, w0 = round(stride /
        sqrt(ratio)), h0 = round(w0 * ratio) (halves to even), then scaled by size /
        stride; e.g. 46 x 24, 32 x 32 and 22 x 44 pixels at size 32, stride 16.

    Returns:
      (H * W * A, 4) float32 anchors x1, y1, x2, y2, row-major over (i, j), then over the
      A anchors of the cell: anchor (i, j, a) is row (i * W + j) * A + a.

    Raises:
      ValueError: on a bad feature size, stride, size or ratio.
    """
    if len(feature_size) != 2 or not all(is_whole(s) and s >= 0 for s in feature_size):
        raise ValueError(
            f"generate_rpn_anchors: feature_size must be (H, W) ints, got {feature_size!r}"
        )
    if stride <= 0 or not sizes or not aspect_ratios:
        raise ValueError(
            f"generate_rpn_anchors: need stride > 0 and non-empty sizes and aspect_ratios, got "
            f"stride={stride!r}, sizes={sizes!r}, aspect_ratios={aspect_ratios!r}"
        )
    if min(sizes) <= 0 or min(aspect_ratios) <= 0:
        raise ValueError(
            f"generate_rpn_anchors: sizes and aspect_ratios must be > 0, got sizes={sizes!r}, "
            f"aspect_ratios={aspect_ratios!r}"
        )
    height, width = feature_size
    ratios = np.asarray(aspect_ratios, np.float64)[:, None]  # (ratios, 1)
    scale = np.asarray(sizes, np.float64)[None, :]  # (1, sizes)
    if whole_pixels:
        base_w = np.round(np.sqrt(stride * stride / ratios))
        base_h = np.round(base_w * ratios)
        half_w, half_h = (base / stride * scale / 2 for base in (base_w, base_h))
    else:
        half_w, half_h = scale / np.sqrt(ratios) / 2, scale * np.sqrt(ratios) / 2
    half_w = jnp.asarray(half_w.reshape(-1), jnp.float32)  # (A,)
    half_h = jnp.asarray(half_h.reshape(-1), jnp.float32)
    cx = (jnp.arange(width, dtype=jnp.float32) + 0.5) * stride
    cy = (jnp.arange(height, dtype=jnp.float32) + 0.5) * stride
    cy, cx = jnp.meshgrid(cy, cx, indexing="ij")  # (H, W)
    cx, cy = cx[..., None], cy[..., None]
    anchors = jnp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)
    return anchors.reshape(-1, 4)


def _center_size(boxes):
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode_boxes(boxes, anchors, *, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)):
    """Faster R-CNN regression targets of `boxes` relative to `anchors`.

    dx = wx * (cx - acx) / aw, dy = wy * (cy - acy) / ah, dw = ww * log(w / aw),
    dh = wh * log(h / ah), with centres and sizes in continuous pixels.

    Args:
      boxes: (..., 4) target boxes x1, y1, x2, y2; broadcast against `anchors`.
      anchors: (..., 4) reference boxes.
      weights: (wx, wy, ww, wh) multipliers (Detectron's BBOX_REG_WEIGHTS).

    Returns:
      (..., 4) deltas (dx, dy, dw, dh). Widths and heights below 1e-6 (e.g. zero-padded
      boxes) are taken as 1e-6, so the deltas stay finite.
    """
    boxes = jnp.asarray(boxes, jnp.float32)
    anchors = jnp.asarray(anchors, jnp.float32)
    wx, wy, ww, wh = _weights(weights, "encode_boxes")
    cx, cy, w, h = _center_size(boxes)
    acx, acy, aw, ah = _center_size(anchors)
    aw = jnp.maximum(aw, _MIN_SIZE)
    ah = jnp.maximum(ah, _MIN_SIZE)
    return jnp.stack(
        [
            wx * (cx - acx) / aw,
            wy * (cy - acy) / ah,
            ww * jnp.log(jnp.maximum(w, _MIN_SIZE) / aw),
            wh * jnp.log(jnp.maximum(h, _MIN_SIZE) / ah),
        ],
        axis=-1,
    )


def decode_boxes(
    deltas,
    anchors,
    *,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    clamp: float = math.log(1000 / 16),
):
    """Boxes from Faster R-CNN deltas: the inverse of `encode_boxes`.

    dw and dh (after dividing by their weights) are clamped to at most `clamp` before the
    exponential, so that a wild prediction cannot overflow (log(1000 / 16) as Detectron).

    Args:
      deltas: (..., 4) (dx, dy, dw, dh); broadcast against `anchors`.
      anchors: (..., 4) reference boxes x1, y1, x2, y2.
      weights: (wx, wy, ww, wh) used when encoding.
      clamp: upper bound of dw / ww and dh / wh.

    Returns:
      (..., 4) boxes x1, y1, x2, y2 in pixels.
    """
    deltas = jnp.asarray(deltas, jnp.float32)
    anchors = jnp.asarray(anchors, jnp.float32)
    wx, wy, ww, wh = _weights(weights, "decode_boxes")
    acx, acy, aw, ah = _center_size(anchors)
    cx = deltas[..., 0] / wx * aw + acx
    cy = deltas[..., 1] / wy * ah + acy
    w = jnp.exp(jnp.minimum(deltas[..., 2] / ww, clamp)) * aw
    h = jnp.exp(jnp.minimum(deltas[..., 3] / wh, clamp)) * ah
    return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def clip_boxes(boxes, image_size, border: float = 0.0):
    """Clips boxes to the image: x to [0, width], y to [0, height]; with `border`, to the
    image enlarged by that fraction of its size on each side (x to [-b W, (1 + b) W]).

    Args:
      boxes: (..., N, 4) or (..., 4) boxes x1, y1, x2, y2 in pixels.
      image_size: (..., 2) (height, width) in pixels, either with the same leading axes as
        `boxes` or with one axis fewer (one size for each set of N boxes), e.g. boxes
        (B, N, 4) with image_size (B, 2), or boxes (N, 4) with image_size (2,).

    Returns:
      Boxes of the shape of `boxes`, clipped.

    Raises:
      ValueError: if `image_size` does not end with 2 or does not broadcast.
    """
    boxes = jnp.asarray(boxes, jnp.float32)
    image_size = jnp.asarray(image_size, jnp.float32)
    if boxes.shape[-1:] != (4,) or image_size.shape[-1:] != (2,):
        raise ValueError(
            f"clip_boxes: boxes must be (..., 4) and image_size (..., 2), got "
            f"{boxes.shape} and {image_size.shape}"
        )
    if image_size.ndim == boxes.ndim - 1 and boxes.ndim >= 2:
        image_size = image_size[..., None, :]
    try:
        upper = jnp.broadcast_to(image_size[..., ::-1], boxes.shape[:-1] + (2,))  # (W, H)
    except ValueError as err:
        raise ValueError(
            f"clip_boxes: image_size {image_size.shape} does not broadcast to boxes {boxes.shape}"
        ) from err
    upper = jnp.concatenate([upper, upper], axis=-1)  # (..., 4): W, H, W, H
    return jnp.clip(boxes, -border * upper, (1.0 + border) * upper)


def _weights(weights, name):
    if len(weights) != 4 or min(weights) <= 0:
        raise ValueError(f"{name}: weights must be 4 positive numbers, got {weights!r}")
    return tuple(float(x) for x in weights)
