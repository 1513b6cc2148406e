"""People from a batch of network outputs: candidates, then PPI or the NMS baseline
(LCR-Net++ Sec. 3.6). `detect` is the one path from network outputs to people
(`image_candidates` the one way an image's outputs become candidates), `polish`
the one way PPI's people are moved again by the network (`LCRNet.polish`), and
`ppi_config_from_mapping` the one way a settings mapping (`config.ppi`) becomes a
`PPIConfig`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lcrnet_jax.model import lcrnet
from lcrnet_jax.postprocess import candidates as candidates_lib
from lcrnet_jax.postprocess import nms_baseline
from lcrnet_jax.postprocess import ppi as ppi_lib

METHODS = ("ppi", "nms")


def ppi_config_from_mapping(mapping: Mapping[str, Any]) -> ppi_lib.PPIConfig:
    """A `PPIConfig` from a mapping of its fields (e.g. `config.ppi.to_dict()`), 1:1.

    Missing fields take the `PPIConfig` defaults; an unknown key raises ValueError naming it
    and the known fields. Lists become tuples (configs hold lists).
    """
    known = [f.name for f in dataclasses.fields(ppi_lib.PPIConfig)]
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise ValueError(f"unknown PPI settings {unknown}; known: {known}")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items()}
    return ppi_lib.PPIConfig(**fields)


def image_candidates(
    boxes, probs, poses2d, poses3d, valid, *, upper_body_classes, config: ppi_lib.PPIConfig
) -> candidates_lib.Candidates:
    """One image's pose candidates from its network outputs (no batch axis), with the
    candidate settings of `config` (Eq. 6 rescoring, thresholds): what PPI, NMS and the
    evaluation's baselines take (`candidates.candidates_from_outputs`)."""
    return candidates_lib.candidates_from_outputs(
        boxes,
        probs,
        poses2d,
        poses3d,
        upper_body_classes=upper_body_classes,
        valid=valid,
        rescore_sigma=config.rescore_sigma,
        min_candidates=config.min_candidates,
        candidate_threshold=config.candidate_threshold,
    )


def detect(
    proposals: lcrnet.PoseProposals,
    image_size: jax.Array,
    *,
    upper_body_classes: np.ndarray,
    ppi: ppi_lib.PPIConfig,
    method: str = "ppi",
) -> ppi_lib.PPIResult:
    """People from a batch of network outputs: candidates then PPI or NMS, per image.

    Args:
      proposals: `PoseProposals` with a batch axis B (network pixels).
      image_size: (B, 2) int (height, width) of each image's valid region.
      upper_body_classes: (C,) bool, the upper-body anchor classes.
      ppi: every PPI and candidate setting (static); NMS uses its `iou_threshold`,
        `person_threshold`, `box_joints` and `max_people`.
      method: "ppi" or "nms".

    Returns:
      `PPIResult` with a leading batch axis: (B, P, J, 2), (B, P, J, 3), (B, P), (B, P).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    integrate = ppi_lib.ppi if method == "ppi" else nms_baseline.nms_poses

    def one(boxes, probs, poses2d, poses3d, valid, size, config):
        candidates = image_candidates(
            boxes, probs, poses2d, poses3d, valid,
            upper_body_classes=upper_body_classes, config=config,
        )  # fmt: skip
        return integrate(**candidates.ppi_inputs(), image_size=size, config=config)

    p = proposals
    args = (p.boxes, p.probs, p.poses2d, p.poses3d, p.valid, image_size)
    if p.boxes.shape[0] == 1:
        single = one(*(a[0] for a in args), ppi)
        return jax.tree.map(lambda x: x[None], single)
    # Under vmap the PPI's buffer compaction only costs (see `ppi.PPIConfig.min_buffer`).
    no_compaction = dataclasses.replace(ppi, min_buffer=2**30)
    return jax.vmap(lambda *a: one(*a, no_compaction))(*args)


def polish(
    model: lcrnet.LCRNet, variables, images, image_size, people: ppi_lib.PPIResult
) -> ppi_lib.PPIResult:
    """PPI's people with their 2D poses moved by `LCRNet.polish` (`joint_polish` passes
    of the model's config; 0 returns them as they are). Invalid rows stay zeros.

    Args:
      model: the network.
      variables: its variables.
      images: (B, H, W, 3) the images `people` were found in, as given to the network.
      image_size: (B, 2) int (height, width) of each image's valid region.
      people: `PPIResult` with a batch axis (network pixels).
    """
    if not model.config.joint_polish:
        return people
    moved = model.apply(variables, images, image_size, people.poses2d, method="polish")
    return people.replace(poses2d=jnp.where(people.valid[..., None, None], moved, 0.0))
