"""The NMS baseline of LCR-Net++ Sec. 3.6: the top-scoring candidate of each region.

It shares `postprocess.ppi`'s candidate layout and grouping boxes, so its people are
exactly the leaders of PPI's groups.
"""

from __future__ import annotations

import jax.numpy as jnp

from lcrnet_jax import ops
from lcrnet_jax.postprocess.ppi import PPIConfig, PPIResult, _prepare, _result, checked_entry

_DEFAULT_CONFIG = PPIConfig()


@checked_entry
def nms_poses(
    poses2d,
    poses3d,
    scores,
    *,
    image_size,
    upper_body=None,
    valid=None,
    rois=None,
    config: PPIConfig = _DEFAULT_CONFIG,
) -> PPIResult:
    """NMS baseline of Sec. 3.6: the top-scoring candidate of each region, unchanged.

    Greedy NMS (`lcrnet_jax.ops.nms`) on the boxes `ppi` groups by, in the same +1 pixel
    convention: the kept candidates are exactly the leaders of `ppi`'s groups, kept if
    their score is > config.person_threshold. `config.t3d` and `config.min_mode_score`
    are not used, nor is `upper_body` (accepted so that `Candidates.ppi_inputs()` fits
    both functions).

    Args and returns as `ppi`; the scores are the kept candidates' own scores.
    """
    data = _prepare(poses2d, poses3d, scores, image_size, upper_body, valid, rois, config)
    # Continuous IoU of boxes grown by one pixel = IoU in the inclusive-pixel convention.
    boxes = data["box"].T + jnp.array([0.0, 0.0, 1.0, 1.0])
    # Candidates at or below the threshold could only suppress candidates scoring lower.
    keep = data["valid"] & (data["score"] > config.person_threshold)
    index, count = ops.nms(
        boxes, data["score"], config.iou_threshold, config.max_people, valid=keep
    )
    valid = jnp.arange(config.max_people) < count
    pose = jnp.concatenate([data["pose2d"][index], data["pose3d_rows"][index]], axis=1)
    return _result(data["score"][index], pose, valid)
