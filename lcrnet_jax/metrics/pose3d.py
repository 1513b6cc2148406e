"""3D pose metrics: MPJPE, PA-MPJPE, 3DPCK and its AUC (LCR-Net++ Sec. 4.1, 4.3), and
the camera-space (absolute) root error and 3DPCK (beyond the paper).

Units: 3D in metres (any consistent unit for the errors); fractions in [0, 1].
"""

from __future__ import annotations

import jax
import numpy as np

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.metrics.common import as_mask, as_pair, joint_errors, masked_mean


def mpjpe(pred, gt, visible=None) -> np.ndarray:
    """Mean per-joint position error (MPJPE) of each pose, without any alignment.

    Protocol: for each pose, the mean over its visible joints of the Euclidean distance
    between predicted and ground-truth joints. Poses are compared as given: centre them
    first (e.g. `geometry.center_on_torso`) for the root-relative "Abs." error.

    Args:
      pred: (..., J, 3) predicted poses (any unit, e.g. metres).
      gt: (..., J, 3) ground-truth poses, same shape and unit.
      visible: (..., J) bool joints to count, or None for all.

    Returns:
      (...) error per pose in the input unit; NaN for a pose with no visible joint.
    """
    pred, gt = as_pair(pred, gt, (3,))
    return masked_mean(joint_errors(pred, gt), as_mask(visible, pred.shape[:-1]), axis=-1)


_procrustes = jax.jit(geometry.procrustes_align)


def pa_mpjpe(pred, gt, visible=None) -> np.ndarray:
    """MPJPE after Procrustes alignment (PA-MPJPE, the paper's "Align." error).

    Protocol: each predicted pose is first mapped onto its ground truth by the
    similarity transform (proper rotation without reflection, uniform scale,
    translation) minimising the squared error over the visible joints
    (`geometry.procrustes_align`, computed in float32), then `mpjpe` is taken over the
    same visible joints.

    Args:
      pred: (..., J, 3) predicted poses.
      gt: (..., J, 3) ground-truth poses, same shape and unit.
      visible: (..., J) bool joints used for the fit and the error, or None for all.

    Returns:
      (...) aligned error per pose in the input unit; NaN for a pose with no visible joint.
    """
    pred, gt = as_pair(pred, gt, (3,))
    visible = as_mask(visible, pred.shape[:-1])
    aligned = np.asarray(_procrustes(pred, gt, visible), np.float64)
    return mpjpe(aligned, gt, visible)


PCK3D_AUC_THRESHOLDS = np.linspace(0.0, 0.15, 31)
"""0, 5, ..., 150 mm in metres: the MPI-INF-3DHP / MuPoTS-3D AUC thresholds."""


def pck3d(pred, gt, visible=None, threshold: float = 0.15) -> float:
    """3DPCK: fraction of visible joints within `threshold` metres of the ground truth.

    A joint counts as correct when its 3D Euclidean error is < `threshold` (strictly, as
    the MPI-INF-3DHP and MuPoTS-3D code: an error on the threshold is wrong).
    Pooled over every visible joint of every pose; no alignment is applied.

    Args:
      pred: (..., J, 3) predicted poses in metres (root-relative as the protocol wants).
      gt: (..., J, 3) ground-truth poses in metres.
      visible: (..., J) bool joints to count, or None for all.
      threshold: radius in metres (15 cm by default).

    Returns:
      Fraction in [0, 1]; NaN when no joint is visible.
    """
    pred, gt = as_pair(pred, gt, (3,))
    visible = as_mask(visible, pred.shape[:-1])
    return float(masked_mean(joint_errors(pred, gt) < threshold, visible, axis=None))


def pck3d_auc(pred, gt, visible=None, thresholds=PCK3D_AUC_THRESHOLDS) -> float:
    """Area under the 3DPCK curve: the mean of `pck3d` over `thresholds`.

    Args:
      pred, gt, visible: as in `pck3d`.
      thresholds: (T,) radii in metres; default 0 to 150 mm in 5 mm steps (31 values).

    Returns:
      Fraction in [0, 1]. No error is < 0, so with the default thresholds a perfect
      prediction scores 30/31, as in the official code.
    """
    pred, gt = as_pair(pred, gt, (3,))
    visible = as_mask(visible, pred.shape[:-1])
    thresholds = np.asarray(thresholds, np.float64).reshape(-1)
    correct = joint_errors(pred, gt)[..., None] < thresholds  # (..., J, T)
    per_t = masked_mean(correct, visible[..., None], axis=tuple(range(correct.ndim - 1)))
    return float(np.mean(per_t))


def absolute_errors(
    pred_cam,
    gt_cam,
    visible=None,
    *,
    joint_set: str | skeleton.JointSet = "lcr13",
    threshold: float = 0.15,
) -> tuple[np.ndarray, float]:
    """Camera-space errors: root position error and absolute 3DPCK (MuPoTS-3D style).

    Protocol: poses in camera space (camera at the origin), compared without any
    alignment. The root is the torso centre (`geometry.torso_center`); absolute 3DPCK
    is `pck3d` of the camera-space joints (MuPoTS-3D's "absolute" 3DPCK, 15 cm). A
    predicted pose with non-finite joints (no translation found) has a NaN root error
    and counts its joints as wrong.

    Args:
      pred_cam: (..., J, 3) predicted camera-space poses, metres, in `joint_set` order.
      gt_cam: (..., J, 3) ground-truth camera-space poses, metres.
      visible: (..., J) bool joints counted by 3DPCK, or None for all.
      joint_set: the poses' joint set (its torso joints define the root).
      threshold: 3DPCK radius in metres.

    Returns:
      (root error per pose (...) metres, NaN where not finite; absolute 3DPCK in [0, 1]).
    """
    pred_cam, gt_cam = as_pair(pred_cam, gt_cam, (3,))
    root = joint_errors(
        geometry.torso_center(pred_cam, joint_set)[..., None, :],
        geometry.torso_center(gt_cam, joint_set)[..., None, :],
    )[..., 0]
    return root, pck3d(pred_cam, gt_cam, visible, threshold)
