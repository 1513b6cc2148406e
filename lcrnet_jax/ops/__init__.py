"""Detection ops in jax.numpy: RoIAlign, NMS, anchors and box coding, RoI sampling, and
per-image work on each device's own images (`per_image`).

Pure functions with static shapes (padded inputs carry masks), jit- and vmap-safe.
"""

from lcrnet_jax.ops.boxes import clip_boxes, decode_boxes, encode_boxes, generate_rpn_anchors
from lcrnet_jax.ops.nms import batched_nms, nms
from lcrnet_jax.ops.per_image import per_image, under_mesh
from lcrnet_jax.ops.roi_align import roi_align, sample_grids
from lcrnet_jax.ops.sampling import max_positives, sample_balanced

__all__ = [
    "batched_nms",
    "clip_boxes",
    "decode_boxes",
    "encode_boxes",
    "generate_rpn_anchors",
    "max_positives",
    "nms",
    "per_image",
    "roi_align",
    "sample_balanced",
    "sample_grids",
    "under_mesh",
]
