"""Region proposal network: the Localization component (LCR-Net++ Sec. 3.1, Faster R-CNN).

`RPNHead` scores A anchors per feature cell and regresses their box deltas;
`generate_proposals` turns them into a fixed number of proposals per image with static
shapes: top-k before NMS, decode, clip to the image, tiny boxes masked, NMS, top-k after.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from lcrnet_jax import ops
from lcrnet_jax.model.backbones import ConvNorm

BOX_CLAMP = math.log(1000.0 / 16.0)


@flax.struct.dataclass
class Proposals:
    """Fixed-size proposals; padded rows have zero boxes, zero scores and valid False.

    Attributes:
      boxes: (B, R, 4) x1, y1, x2, y2 in input-image pixels.
      scores: (B, R) objectness probabilities in [0, 1], descending over valid rows.
      valid: (B, R) bool, True for real proposals.
    """

    boxes: jax.Array
    scores: jax.Array
    valid: jax.Array


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then a 1x1 objectness logit and 4 box deltas per anchor.

    Attributes:
      num_rpn_anchors: A, anchors per feature cell (15 = 5 sizes x 3 ratios).
      channels: width of the 3x3 conv; None keeps the input width (Detectron).
      dtype: compute dtype.

    Params: "conv" (3x3, bias), "cls" (1x1 -> A), "bbox" (1x1 -> 4A, anchor-major).
    """

    num_rpn_anchors: int = 15
    channels: int | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Objectness and deltas for every anchor.

        Args:
          features: (B, Hf, Wf, C) trunk features.

        Returns:
          (objectness logits (B, N) float32, deltas (B, N, 4) float32) with
          N = Hf * Wf * A in the order (y, x, anchor) of `ops.generate_rpn_anchors`.
        """
        if features.ndim != 4:
            raise ValueError(f"features must be (B, Hf, Wf, C), got shape {features.shape}")
        b, h, w, c = features.shape
        init = nn.initializers.normal(0.01)
        conv = lambda f, k, relu, name: ConvNorm(  # noqa: E731
            f, k, norm="none", relu=relu, kernel_init=init, dtype=self.dtype, name=name
        )
        x = conv(self.channels or c, 3, True, "conv")(features)
        logits = conv(self.num_rpn_anchors, 1, False, "cls")(x)
        deltas = conv(4 * self.num_rpn_anchors, 1, False, "bbox")(x)
        n = h * w * self.num_rpn_anchors
        return (
            logits.reshape(b, n).astype(jnp.float32),
            deltas.reshape(b, n, 4).astype(jnp.float32),
        )


def generate_proposals(
    objectness: jax.Array,
    deltas: jax.Array,
    anchors: jax.Array,
    image_size: jax.Array,
    *,
    pre_nms_top_n: int,
    post_nms_top_n: int,
    nms_threshold: float = 0.7,
    min_size: float = 0.0,
    border: float = 0.0,
) -> Proposals:
    """RPN outputs -> proposals, per image, with static shapes (no gradient flows back).

    For each image: the `pre_nms_top_n` best anchors by objectness, their decoded boxes
    clipped to the valid image region (enlarged by `border`), boxes narrower or lower
    than `min_size` pixels (and empty ones, e.g. anchors in the padding) masked out,
    greedy NMS at `nms_threshold`, and the first `post_nms_top_n` survivors in
    descending score. Over a mesh that splits the batch, each device runs its own images
    (`ops.per_image`): their NMS loops do not wait for the other devices'.

    Args:
      objectness: (B, N) logits.
      deltas: (B, N, 4) Faster R-CNN box deltas (dx, dy, dw, dh), weights (1, 1, 1, 1).
      anchors: (N, 4) anchor boxes in pixels, same order as N.
      image_size: (B, 2) int (height, width) of each image's valid region, pixels.
      pre_nms_top_n: boxes kept before NMS (clipped to N).
      post_nms_top_n: R, proposals returned (clipped to the pre-NMS count).
      nms_threshold: IoU above which a lower-scoring box is suppressed.
      min_size: minimum box width and height in pixels.
      border: boxes are clipped to the image enlarged by this fraction of its size on
        each side (0: to the image).

    Returns:
      Proposals with R = min(post_nms_top_n, pre_nms_top_n, N) rows per image.
    """
    if objectness.ndim != 2 or deltas.shape != (*objectness.shape, 4):
        raise ValueError(
            f"objectness must be (B, N) and deltas (B, N, 4), got {objectness.shape} "
            f"and {deltas.shape}"
        )
    if anchors.shape != (objectness.shape[1], 4):
        raise ValueError(f"anchors must be ({objectness.shape[1]}, 4), got {anchors.shape}")
    if image_size.shape != (objectness.shape[0], 2):
        raise ValueError(
            f"image_size must be (B, 2) = ({objectness.shape[0]}, 2) (height, width), "
            f"got {image_size.shape}"
        )
    objectness = jax.lax.stop_gradient(objectness.astype(jnp.float32))
    deltas = jax.lax.stop_gradient(deltas.astype(jnp.float32))
    pre = min(pre_nms_top_n, objectness.shape[1])
    post = min(post_nms_top_n, pre)

    def one_image(logits, image_deltas, size, anchors):
        top, idx = jax.lax.top_k(logits, pre)
        boxes = ops.decode_boxes(image_deltas[idx], anchors[idx], clamp=BOX_CLAMP)
        boxes = ops.clip_boxes(boxes, size, border)
        wh = boxes[:, 2:] - boxes[:, :2]
        ok = jnp.all((wh >= min_size) & (wh > 0), axis=-1) & jnp.isfinite(top)
        keep, _ = ops.nms(boxes, top, nms_threshold, post, valid=ok)
        valid = keep >= 0
        sel = jnp.maximum(keep, 0)
        return (
            jnp.where(valid[:, None], boxes[sel], 0.0),
            jnp.where(valid, jax.nn.sigmoid(top[sel]), 0.0),
            valid,
        )

    boxes, scores, valid = ops.per_image(
        jax.vmap(one_image, in_axes=(0, 0, 0, None)),
        objectness,
        deltas,
        image_size.astype(jnp.float32),
        shared=(anchors,),
    )
    return Proposals(boxes=boxes, scores=scores, valid=valid)
