"""People from a batch of network outputs: candidates, then PPI or the NMS baseline
(LCR-Net++ Sec. 3.6)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from lcrnet_jax.model import lcrnet
from lcrnet_jax.postprocess import candidates as candidates_lib
from lcrnet_jax.postprocess import nms_baseline
from lcrnet_jax.postprocess import ppi as ppi_lib

METHODS = ("ppi", "nms")


def integrate_proposals(
    proposals: lcrnet.PoseProposals,
    image_size: jax.Array,
    *,
    upper_body_classes: np.ndarray,
    ppi_config: ppi_lib.PPIConfig,
    method: str = "ppi",
    rescore_sigma: float | None = None,
) -> ppi_lib.PPIResult:
    """People from a batch of network outputs: candidates then PPI or NMS, per image.

    Args:
      proposals: `PoseProposals` with a batch axis B (network pixels).
      image_size: (B, 2) int (height, width) of each image's valid region.
      upper_body_classes: (C,) bool, the upper-body anchor classes.
      ppi_config: PPI parameters (static).
      method: "ppi" or "nms".
      rescore_sigma: Eq. 6 rescoring of the proposals (pixels), None for none.

    Returns:
      `PPIResult` with a leading batch axis: (B, P, J, 2), (B, P, J, 3), (B, P), (B, P).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    integrate = ppi_lib.ppi if method == "ppi" else nms_baseline.nms_poses

    def one(boxes, probs, poses2d, poses3d, valid, size, config):
        candidates = candidates_lib.candidates_from_outputs(
            boxes,
            probs,
            poses2d,
            poses3d,
            upper_body_classes=upper_body_classes,
            valid=valid,
            rescore_sigma=rescore_sigma,
        )
        return integrate(**candidates.ppi_inputs(), image_size=size, config=config)

    p = proposals
    args = (p.boxes, p.probs, p.poses2d, p.poses3d, p.valid, image_size)
    if p.boxes.shape[0] == 1:
        single = one(*(a[0] for a in args), ppi_config)
        return jax.tree.map(lambda x: x[None], single)
    # Under vmap the PPI's buffer compaction only costs (see `ppi.PPIConfig.min_buffer`).
    no_compaction = dataclasses.replace(ppi_config, min_buffer=2**30)
    return jax.vmap(lambda *a: one(*a, no_compaction))(*args)
