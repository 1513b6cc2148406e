"""Evaluation metrics and benchmark protocols (LCR-Net++ Sec. 4.1, 4.2, 4.3).

Per-pose 3D errors (MPJPE, PA-MPJPE) and the Human3.6M protocols P1/P2/P3 (Sec. 4.1),
MPII PCKh and multi-person AP (Sec. 4.2), 3DPCK, its AUC and the MuPoTS-3D protocol
(Sec. 4.3, Table 8), and COCO's OKS keypoint AP. Metrics run on the host at evaluation
time: inputs are numpy-convertible arrays, outputs numpy floats. Per-pose metrics are
batched over leading axes; the multi-person protocols take one array per image (a list,
or a padded array with a `*_valid` mask) and loop over images and people only where the
benchmark's own matching is a greedy assignment.

Units follow the README: 2D in pixels, 3D in metres (errors reported by the Human3.6M
helpers are converted to mm). Fractions (PCKh, 3DPCK, AP) are in [0, 1], not percent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from lcrnet_jax import geometry, skeleton

# ----------------------------------------------------------------------------------------
# Per-pose errors
# ----------------------------------------------------------------------------------------


def _poses(x, dims: tuple[int, ...], name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim < 2 or x.shape[-1] not in dims:
        raise ValueError(
            f"{name} must have shape (..., J, {'|'.join(map(str, dims))}), got {x.shape}"
        )
    return x


def _pair(pred, gt, dims: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _poses(pred, dims, "pred"), _poses(gt, dims, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred has shape {pred.shape} but gt has shape {gt.shape}")
    return pred, gt


def _mask(visible, shape: tuple[int, ...], name: str = "visible") -> np.ndarray:
    if visible is None:
        return np.ones(shape, bool)
    visible = np.asarray(visible, bool)
    if visible.shape != shape:
        raise ValueError(f"{name} has shape {visible.shape}, expected {shape}")
    return visible


def _masked_mean(values: np.ndarray, mask: np.ndarray, axis) -> np.ndarray:
    """Mean of `values` where `mask`; NaN where nothing is selected."""
    count = np.sum(mask, axis=axis)
    total = np.sum(np.where(mask, values, 0.0), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def joint_errors(pred, gt) -> np.ndarray:
    """Euclidean distance between corresponding joints.

    Args:
      pred: (..., J, D) predicted joints (D = 2 pixels or D = 3 metres).
      gt: (..., J, D) ground truth, same shape.

    Returns:
      (..., J) distances in the input units.
    """
    pred, gt = _pair(pred, gt, (2, 3))
    return np.linalg.norm(pred - gt, axis=-1)


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
    pred, gt = _pair(pred, gt, (3,))
    return _masked_mean(joint_errors(pred, gt), _mask(visible, pred.shape[:-1]), axis=-1)


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
    pred, gt = _pair(pred, gt, (3,))
    visible = _mask(visible, pred.shape[:-1])
    aligned = np.asarray(_procrustes(pred, gt, visible), np.float64)
    return mpjpe(aligned, gt, visible)


# ----------------------------------------------------------------------------------------
# Human3.6M protocols (Sec. 4.1)
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class H36MProtocol:
    """A Human3.6M evaluation protocol.

    Attributes:
      name: "p1", "p2" or "p3".
      train_subjects: subjects used for training.
      test_subjects: subjects used for testing.
      cameras: test cameras, 1-based in the order 54138969, 55011271, 58860488, 60457274.
      trials: test trials (sub-actions) 1 and/or 2.
      frame_step: test frames are those whose 0-based index in the 50 fps video is a
        multiple of `frame_step`.
      reported: the errors the paper reports, ("abs_mm", "align_mm") or ("align_mm",).
    """

    name: str
    train_subjects: tuple[int, ...]
    test_subjects: tuple[int, ...]
    cameras: tuple[int, ...]
    trials: tuple[int, ...]
    frame_step: int
    reported: tuple[str, ...]


H36M_PROTOCOLS: dict[str, H36MProtocol] = {
    # P1: every 64th frame of S11, camera 2 (928 frames in the paper).
    "p1": H36MProtocol("p1", (1, 5, 6, 7, 8, 9), (11,), (2,), (1, 2), 64, ("abs_mm", "align_mm")),
    # P2: every 5th frame of S9 and S11, all cameras and trials (about 110k frames).
    "p2": H36MProtocol(
        "p2", (1, 5, 6, 7, 8), (9, 11), (1, 2, 3, 4), (1, 2), 5, ("abs_mm", "align_mm")
    ),
    # P3 (Bogo et al.): as P2, camera 3 and trial 1 only, reported after alignment.
    "p3": H36MProtocol("p3", (1, 5, 6, 7, 8), (9, 11), (3,), (1,), 5, ("align_mm",)),
}


def h36m_protocol(protocol: str | H36MProtocol) -> H36MProtocol:
    """Looks up a Human3.6M protocol by name ("p1", "p2", "p3", case-insensitive)."""
    if isinstance(protocol, H36MProtocol):
        return protocol
    try:
        return H36M_PROTOCOLS[str(protocol).lower()]
    except KeyError:
        raise ValueError(
            f"unknown Human3.6M protocol {protocol!r}; expected one of {sorted(H36M_PROTOCOLS)}"
        ) from None


def h36m_test_mask(subject, camera, trial, frame, protocol: str | H36MProtocol) -> np.ndarray:
    """Which frames belong to a protocol's test set.

    The per-frame metadata follows the Human3.6M builder: `subject` in (1, 5, 6, 7, 8,
    9, 11); `camera` 1..4 (1-based in the order 54138969, 55011271, 58860488, 60457274);
    `trial` 1 or 2 (the sub-action); `frame` the 0-based index in the original 50 fps
    video. P1 keeps S11, camera 2, frames 0, 64, 128, ...; P2 keeps S9 and S11, every
    camera and trial, frames 0, 5, 10, ...; P3 keeps the P2 frames of camera 3, trial 1.

    Args:
      subject, camera, trial, frame: (N,) int arrays (broadcastable).
      protocol: "p1", "p2", "p3" or an `H36MProtocol`.

    Returns:
      (N,) bool, True for test frames of the protocol.
    """
    p = h36m_protocol(protocol)
    subject, camera, trial, frame = (np.asarray(a) for a in (subject, camera, trial, frame))
    return (
        np.isin(subject, p.test_subjects)
        & np.isin(camera, p.cameras)
        & np.isin(trial, p.trials)
        & (frame % p.frame_step == 0)
    )


_H36M_KEYS = ("subject", "camera", "trial", "frame")


def h36m_errors(
    pred,
    gt,
    protocol: str | H36MProtocol,
    *,
    metadata: Mapping[str, np.ndarray] | None = None,
    visible=None,
    joint_set: str | skeleton.JointSet | None = None,
    unit_scale: float = 1000.0,
) -> dict:
    """Abs. and Align. errors in mm of a Human3.6M protocol.

    "Abs." is `mpjpe` and "Align." is `pa_mpjpe`, averaged over the protocol's test
    frames with equal weight per frame. The paper reports both for P1 and P2 and only
    the aligned error for P3 (`H36MProtocol.reported`). The joints counted are those of
    the arrays given (13 or 17 in the paper) intersected with `visible`. The paper's
    per-action tables (Table 3) average the per-action means: that value is
    "action_mean_abs_mm" / "action_mean_align_mm" when `metadata` has "action".

    Args:
      pred: (N, J, 3) predicted poses.
      gt: (N, J, 3) ground-truth poses in the same joint order and unit.
      protocol: "p1", "p2", "p3" or an `H36MProtocol`.
      metadata: per-frame arrays "subject", "camera", "trial", "frame" (see
        `h36m_test_mask`) and optionally "action" (str); the frames outside the
        protocol's test set are dropped. None: every frame given is a test frame.
      visible: (N, J) bool joints to count, or None for all.
      joint_set: when given (e.g. "lcr17"), both poses are first centred on their torso
        (mean of hips and shoulders, `geometry.center_on_torso`), as LCR-Net++ predicts
        torso-centred poses; None compares them as given.
      unit_scale: factor from the input unit to mm (1000 for metres).

    Returns:
      dict with "protocol", "num_poses", "abs_mm", "align_mm" and, with actions,
      "per_action" ({action: {"num_poses", "abs_mm", "align_mm"}}),
      "action_mean_abs_mm" and "action_mean_align_mm".
    """
    p = h36m_protocol(protocol)
    pred, gt = _pair(pred, gt, (3,))
    if pred.ndim != 3:
        raise ValueError(f"pred and gt must have shape (N, J, 3), got {pred.shape}")
    visible = _mask(visible, pred.shape[:-1])
    actions = None
    if metadata is not None:
        missing = [k for k in _H36M_KEYS if k not in metadata]
        if missing:
            raise ValueError(f"metadata lacks {missing}; expected keys {_H36M_KEYS} (+ 'action')")
        keep = h36m_test_mask(*(metadata[k] for k in _H36M_KEYS), p)
        if keep.shape != pred.shape[:1]:
            raise ValueError(f"metadata has {keep.shape[0]} frames, poses have {pred.shape[0]}")
        pred, gt, visible = pred[keep], gt[keep], visible[keep]
        if "action" in metadata:
            actions = np.asarray(metadata["action"])[keep]
    if joint_set is not None:
        pred = np.asarray(geometry.center_on_torso(pred, joint_set), np.float64)
        gt = np.asarray(geometry.center_on_torso(gt, joint_set), np.float64)
    abs_mm = mpjpe(pred, gt, visible) * unit_scale
    align_mm = pa_mpjpe(pred, gt, visible) * unit_scale
    out = {
        "protocol": p.name,
        "num_poses": int(abs_mm.shape[0]),
        "abs_mm": float(np.mean(abs_mm)),
        "align_mm": float(np.mean(align_mm)),
    }
    if actions is not None:
        per_action = {}
        for action in np.unique(actions):
            sel = actions == action
            per_action[str(action)] = {
                "num_poses": int(np.sum(sel)),
                "abs_mm": float(np.mean(abs_mm[sel])),
                "align_mm": float(np.mean(align_mm[sel])),
            }
        out["per_action"] = per_action
        out["action_mean_abs_mm"] = float(np.mean([a["abs_mm"] for a in per_action.values()]))
        out["action_mean_align_mm"] = float(np.mean([a["align_mm"] for a in per_action.values()]))
    return out


# ----------------------------------------------------------------------------------------
# PCKh (Sec. 4.2)
# ----------------------------------------------------------------------------------------


def mpii_head_size(head_boxes) -> np.ndarray:
    """MPII head size: 0.6 times the diagonal of the annotated head box.

    Args:
      head_boxes: (..., 4) x1, y1, x2, y2 in pixels.

    Returns:
      (...) head sizes in pixels.
    """
    head_boxes = np.asarray(head_boxes, np.float64)
    if head_boxes.shape[-1:] != (4,):
        raise ValueError(f"head_boxes must have shape (..., 4), got {head_boxes.shape}")
    return 0.6 * np.linalg.norm(head_boxes[..., 2:] - head_boxes[..., :2], axis=-1)


def pckh(pred, gt, visible, head_size, threshold: float = 0.5) -> tuple[np.ndarray, float]:
    """PCKh: fraction of joints within `threshold` head sizes of the ground truth (MPII).

    Protocol (MPII `computePCK`): a visible joint is correct when its distance to the
    ground truth is at most `threshold * head_size` (<=); invisible joints do not count.
    PCKh@0.5 is the standard single-person metric.

    Args:
      pred: (..., J, 2) predicted joints in pixels.
      gt: (..., J, 2) ground-truth joints in pixels.
      visible: (..., J) bool annotated joints.
      head_size: (...) head sizes in pixels (`mpii_head_size`), one per pose.
      threshold: fraction of the head size.

    Returns:
      (per_joint, total): per_joint (J,) fraction of correct visible joints over all
      poses, NaN for a joint never visible; total the fraction over every visible joint
      of every pose (MPII's pooled average, i.e. per_joint weighted by visible counts).
    """
    pred, gt = _pair(pred, gt, (2,))
    visible = _mask(visible, pred.shape[:-1])
    head_size = np.asarray(head_size, np.float64)
    if head_size.shape != pred.shape[:-2]:
        raise ValueError(f"head_size has shape {head_size.shape}, expected {pred.shape[:-2]}")
    if np.any(~(head_size > 0)):
        raise ValueError("head_size must be positive and finite for every pose")
    correct = joint_errors(pred, gt) <= threshold * head_size[..., None]
    j = pred.shape[-2]
    correct, visible = correct.reshape(-1, j), visible.reshape(-1, j)
    per_joint = _masked_mean(correct, visible, axis=0)
    return per_joint, float(_masked_mean(correct, visible, axis=None))


# ----------------------------------------------------------------------------------------
# 3DPCK, AUC and MuPoTS-3D (Sec. 4.3)
# ----------------------------------------------------------------------------------------

PCK3D_AUC_THRESHOLDS = np.linspace(0.0, 0.15, 31)
"""0, 5, ..., 150 mm in metres: the MPI-INF-3DHP / MuPoTS-3D AUC thresholds."""


def pck3d(pred, gt, visible=None, threshold: float = 0.15) -> float:
    """3DPCK: fraction of visible joints within `threshold` metres of the ground truth.

    A joint counts as correct when its 3D Euclidean error is <= `threshold` (the
    MPI-INF-3DHP code uses <; they differ only for errors exactly on a threshold).
    Pooled over every visible joint of every pose; no alignment is applied.

    Args:
      pred: (..., J, 3) predicted poses in metres (root-relative as the protocol wants).
      gt: (..., J, 3) ground-truth poses in metres.
      visible: (..., J) bool joints to count, or None for all.
      threshold: radius in metres (15 cm by default).

    Returns:
      Fraction in [0, 1]; NaN when no joint is visible.
    """
    pred, gt = _pair(pred, gt, (3,))
    visible = _mask(visible, pred.shape[:-1])
    return float(_masked_mean(joint_errors(pred, gt) <= threshold, visible, axis=None))


def pck3d_auc(pred, gt, visible=None, thresholds=PCK3D_AUC_THRESHOLDS) -> float:
    """Area under the 3DPCK curve: the mean of `pck3d` over `thresholds`.

    Args:
      pred, gt, visible: as in `pck3d`.
      thresholds: (T,) radii in metres; default 0 to 150 mm in 5 mm steps (31 values).

    Returns:
      Fraction in [0, 1]; a perfect prediction scores 1.
    """
    pred, gt = _pair(pred, gt, (3,))
    visible = _mask(visible, pred.shape[:-1])
    thresholds = np.asarray(thresholds, np.float64).reshape(-1)
    correct = joint_errors(pred, gt)[..., None] <= thresholds  # (..., J, T)
    per_t = _masked_mean(correct, visible[..., None], axis=tuple(range(correct.ndim - 1)))
    return float(np.mean(per_t))


# The MuPoTS-3D evaluation code's joint subsets (names of `skeleton.MUPOTS17`).
MUPOTS_EVAL_JOINTS = tuple(
    n for n in skeleton.MUPOTS17.joints if n not in ("pelvis", "spine", "head")
)
"""The 14 joints scored by MuPoTS-3D's 3DPCK (pelvis, spine and head are not)."""
MUPOTS_MATCH_JOINTS = MUPOTS_EVAL_JOINTS[1:]
"""The 13 joints used to match predictions to people in 2D (no head top)."""
# Bone tree of the official `mpii_map_to_gt_bone_lengths`: joint -> parent, rooted at
# the pelvis (note: head top and head both hang from the neck).
_MUPOTS_PARENT = {
    "head_top": "neck",
    "neck": "spine",
    "right_shoulder": "neck",
    "right_elbow": "right_shoulder",
    "right_wrist": "right_elbow",
    "left_shoulder": "neck",
    "left_elbow": "left_shoulder",
    "left_wrist": "left_elbow",
    "right_hip": "pelvis",
    "right_knee": "right_hip",
    "right_ankle": "right_knee",
    "left_hip": "pelvis",
    "left_knee": "left_hip",
    "left_ankle": "left_knee",
    "spine": "pelvis",
    "head": "neck",
}


def _mupots_tree() -> tuple[int, np.ndarray, np.ndarray]:
    """Root index, parent index per joint and the (J, J) joint-to-ancestor-bone matrix."""
    js = skeleton.MUPOTS17
    root = js.index("pelvis")
    parent = np.array([js.index(_MUPOTS_PARENT.get(n, "pelvis")) for n in js.joints])
    # chain[j, b] = 1 when bone b (joint b to its parent) lies on the path from j to the
    # root; matrix powers of the parent map walk up the tree without a loop per pose.
    step = np.zeros((js.num_joints, js.num_joints))
    step[np.arange(js.num_joints), parent] = 1.0
    step[root, root] = 0.0
    chain, reach = np.eye(js.num_joints), np.eye(js.num_joints)
    for _ in range(js.num_joints):
        reach = reach @ step
        chain = chain + reach
    chain[:, root] = 0.0
    return root, parent, chain


def _mupots_check(poses, dim: int, name: str) -> np.ndarray:
    poses = _poses(poses, (dim,), name)
    if poses.shape[-2] != skeleton.MUPOTS17.num_joints:
        raise ValueError(f"{name} must be MuPoTS-17 poses (..., 17, {dim}), got {poses.shape}")
    return poses


def mupots_rescale_bones(pred, gt) -> np.ndarray:
    """Gives the predicted skeleton the ground truth's bone lengths (MuPoTS-3D protocol).

    As the official `mpii_map_to_gt_bone_lengths`: from the pelvis outwards, every
    predicted bone keeps its direction and takes the length of the ground-truth bone;
    the pelvis stays where predicted. The tree hangs spine and hips from the pelvis,
    the neck from the spine, shoulders, head and head top from the neck.

    Args:
      pred: (..., 17, 3) predicted MuPoTS-17 poses.
      gt: (..., 17, 3) ground-truth MuPoTS-17 poses (only bone lengths are used).

    Returns:
      (..., 17, 3) rescaled predictions.
    """
    pred, gt = _mupots_check(pred, 3, "pred"), _mupots_check(gt, 3, "gt")
    root, parent, chain = _mupots_tree()
    bones = pred - pred[..., parent, :]  # (..., J, 3)
    length = np.linalg.norm(gt - gt[..., parent, :], axis=-1, keepdims=True)
    norm = np.linalg.norm(bones, axis=-1, keepdims=True)
    bones = bones * length / np.maximum(norm, 1e-12)
    return pred[..., root : root + 1, :] + np.einsum("jb,...bc->...jc", chain, bones)


def mupots_match(
    gt_poses2d, pred_poses2d, *, pred_valid=None, threshold: float = 40.0
) -> np.ndarray:
    """Matches predicted people to annotated people in one frame (MuPoTS-3D protocol).

    The rule of the official `mpii_multiperson_get_identity_matching`: annotated people
    are taken in order; each takes, among the predictions not yet taken, the one with
    the most of the 13 `MUPOTS_MATCH_JOINTS` whose x and y both lie strictly within
    `threshold` pixels of its own (ties: the lowest prediction index); with no such
    joint the person is missed. Predicted joints are all treated as present.

    Args:
      gt_poses2d: (G, 17, 2) annotated MuPoTS-17 2D poses in pixels.
      pred_poses2d: (P, 17, 2) predicted MuPoTS-17 2D poses in pixels.
      pred_valid: (P,) bool real predictions (padding is False), or None for all.
      threshold: per-coordinate tolerance in pixels.

    Returns:
      (G,) int index of the matched prediction, -1 for a missed person.
    """
    gt = _mupots_check(gt_poses2d, 2, "gt_poses2d")
    pred = _mupots_check(pred_poses2d, 2, "pred_poses2d")
    if gt.ndim != 3 or pred.ndim != 3:
        raise ValueError("gt_poses2d and pred_poses2d must be (G, 17, 2) and (P, 17, 2)")
    available = _mask(pred_valid, pred.shape[:1], "pred_valid").copy()
    idx = list(skeleton.MUPOTS17.indices(MUPOTS_MATCH_JOINTS))
    close = np.all(np.abs(gt[:, None, idx] - pred[None, :, idx]) < threshold, axis=-1)
    counts = np.sum(close, axis=-1)  # (G, P)
    matching = np.full(gt.shape[0], -1)
    for g in range(gt.shape[0]):
        score = np.where(available, counts[g], 0)
        if score.size and score.max() > 0:
            matching[g] = int(np.argmax(score))
            available[matching[g]] = False
    return matching


def mupots_3dpck(
    pred_poses2d: Sequence,
    pred_poses3d: Sequence,
    gt_poses2d: Sequence,
    gt_poses3d: Sequence,
    sequence,
    *,
    pred_valid: Sequence | None = None,
    gt_valid: Sequence | None = None,
    threshold: float = 0.15,
    match_threshold: float = 40.0,
    rescale_bones: bool = True,
) -> dict:
    """MuPoTS-3D 3DPCK (paper Table 8), "all" and "matched" variants.

    Protocol (the official `mpii_mupots_multiperson_eval`): in every frame, predictions
    are matched to the annotated people by 2D pose (`mupots_match`). Poses are made
    root-relative (minus the pelvis); with `rescale_bones` the matched prediction gets
    the ground truth's bone lengths (`mupots_rescale_bones`). A joint is correct when
    its 3D error is <= `threshold` (see `pck3d`), over the 14 `MUPOTS_EVAL_JOINTS`. A
    sequence's 3DPCK is the fraction of correct joints over all its counted people
    (every annotated person of every frame weighs the same). "all" counts a missed
    person with all joints wrong; "matched" leaves missed people out. The headline is
    the mean over sequences (a sequence with no counted person is NaN and skipped).

    Args:
      pred_poses2d: per frame, (P, 17, 2) predicted MuPoTS-17 2D poses in pixels.
      pred_poses3d: per frame, (P, 17, 3) predicted 3D poses in metres.
      gt_poses2d: per frame, (G, 17, 2) annotated 2D poses in pixels.
      gt_poses3d: per frame, (G, 17, 3) annotated 3D poses in metres.
      sequence: (N,) sequence id per frame (e.g. 1..20 for TS1..TS20).
      pred_valid: per frame, (P,) bool real predictions; None for all.
      gt_valid: per frame, (G,) bool annotated people; None for all.
      threshold: 3DPCK radius in metres.
      match_threshold: 2D matching tolerance in pixels.
      rescale_bones: map predictions to ground-truth bone lengths first (official).

    Returns:
      dict with "all", "matched" (means over sequences), "num_annotated", "num_missed",
      and "per_sequence": {sequence id: {"all", "matched", "num_annotated",
      "num_missed"}}.
    """
    frames = _frames(
        ("pred_poses2d", pred_poses2d),
        ("pred_poses3d", pred_poses3d),
        ("gt_poses2d", gt_poses2d),
        ("gt_poses3d", gt_poses3d),
    )
    sequence = np.asarray(sequence).reshape(-1)
    if sequence.shape[0] != frames:
        raise ValueError(f"sequence has {sequence.shape[0]} entries, expected {frames} frames")
    pred_valid = _per_frame(pred_valid, frames, "pred_valid")
    gt_valid = _per_frame(gt_valid, frames, "gt_valid")
    root = skeleton.MUPOTS17.index("pelvis")
    eval_idx = list(skeleton.MUPOTS17.indices(MUPOTS_EVAL_JOINTS))
    # Per sequence: [correct joints of matched people, matched people, annotated, missed].
    tally: dict = {}
    for f in range(frames):
        g2 = _mupots_check(gt_poses2d[f], 2, "gt_poses2d")
        g3 = _mupots_check(gt_poses3d[f], 3, "gt_poses3d")
        p3 = _mupots_check(pred_poses3d[f], 3, "pred_poses3d")
        keep = _mask(gt_valid[f], g2.shape[:1], "gt_valid")
        g2, g3 = g2[keep], g3[keep]
        match = mupots_match(
            g2, pred_poses2d[f], pred_valid=pred_valid[f], threshold=match_threshold
        )
        hit = match >= 0
        gt_rel = g3[hit] - g3[hit][:, root : root + 1]
        pr = p3[match[hit]]
        pr = pr - pr[:, root : root + 1]
        if rescale_bones:
            pr = mupots_rescale_bones(pr, gt_rel)
        correct = joint_errors(pr[:, eval_idx], gt_rel[:, eval_idx]) <= threshold
        t = tally.setdefault(sequence[f].item(), np.zeros(4, np.int64))
        t += (int(np.sum(correct)), int(np.sum(hit)), len(match), int(np.sum(~hit)))
    n = len(eval_idx)
    per_sequence = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for seq in sorted(tally):
            correct, matched, annotated, missed = tally[seq]
            per_sequence[seq] = {
                "all": correct / (n * annotated),
                "matched": correct / (n * matched),
                "num_annotated": int(annotated),
                "num_missed": int(missed),
            }
    values = list(per_sequence.values())
    return {
        "all": _nanmean([v["all"] for v in values]),
        "matched": _nanmean([v["matched"] for v in values]),
        "num_annotated": sum(v["num_annotated"] for v in values),
        "num_missed": sum(v["num_missed"] for v in values),
        "per_sequence": per_sequence,
    }


def _nanmean(values) -> float:
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(np.mean(values)) if values.size else float("nan")


def _frames(*named: tuple[str, Sequence]) -> int:
    """Number of images shared by per-image sequences; ValueError naming a mismatch."""
    counts = {name: len(x) for name, x in named}
    if len(set(counts.values())) != 1:
        raise ValueError(f"per-image inputs must have the same number of images, got {counts}")
    return next(iter(counts.values()))


def _per_frame(x: Sequence | None, frames: int, name: str) -> Sequence:
    if x is None:
        return [None] * frames
    if len(x) != frames:
        raise ValueError(f"{name} has {len(x)} entries, expected {frames} images")
    return x


# ----------------------------------------------------------------------------------------
# Multi-person average precision: MPII (Sec. 4.2) and COCO OKS
# ----------------------------------------------------------------------------------------


def _voc_ap(scores: np.ndarray, labels: np.ndarray, num_positives: int) -> float:
    """PASCAL VOC (2010+) AP of detections ranked by descending score (stable)."""
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(labels[order])
    recall = np.concatenate([[0.0], tp / num_positives, [1.0]])
    precision = np.concatenate([[0.0], tp / np.arange(1, len(tp) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    step = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[step] - recall[step - 1]) * precision[step]))


def mpii_multi_person_ap(
    pred_poses2d: Sequence,
    pred_scores: Sequence,
    gt_poses2d: Sequence,
    gt_visible: Sequence,
    gt_head_sizes: Sequence,
    *,
    pred_valid: Sequence | None = None,
    gt_valid: Sequence | None = None,
    threshold: float = 0.5,
) -> dict:
    """MPII multi-person mAP: per-joint AP with PCKh-based matching, mean over joints.

    Protocol (MPII `evaluateAP` / `assignGTmulti`), per image (or group):
      1. For every prediction p and person g, PCKh(p, g) = fraction of g's annotated
         joints that p places within `threshold` of g's head size (<=).
      2. Each prediction keeps only its best person (highest PCKh, first on ties);
         each person then takes, among the predictions that kept it, the one with the
         highest PCKh (first on ties); a PCKh of 0 never matches. Scores play no part
         in the matching (the MPII code is not greedy by score).
      3. Every joint of every prediction is a detection scored by its score; it is a
         true positive when its prediction is matched and the joint is within the
         threshold of the matched person's joint, else a false positive (also when that
         person lacks the joint).
      4. Per joint, detections of all images are ranked by score (stable) and AP is the
         PASCAL VOC area under the interpolated precision/recall curve, the number of
         positives being the number of annotated joints. mAP = mean over joints.

    Args:
      pred_poses2d: per image, (P, J, 2) predicted joints in pixels.
      pred_scores: per image, (P,) person scores or (P, J) joint scores.
      gt_poses2d: per image, (G, J, 2) annotated joints in pixels (same joint order).
      gt_visible: per image, (G, J) bool: the joint is annotated.
      gt_head_sizes: per image, (G,) head sizes in pixels (`mpii_head_size`).
      pred_valid: per image, (P,) bool real predictions; None for all.
      gt_valid: per image, (G,) bool real people; None for all.
      threshold: PCKh threshold (fraction of the head size).

    Returns:
      dict with "per_joint" (J,) AP in [0, 1] (NaN for a joint never annotated) and
      "mean" (mean over the joints with annotations).
    """
    frames = _frames(
        ("pred_poses2d", pred_poses2d),
        ("pred_scores", pred_scores),
        ("gt_poses2d", gt_poses2d),
        ("gt_visible", gt_visible),
        ("gt_head_sizes", gt_head_sizes),
    )
    pred_valid = _per_frame(pred_valid, frames, "pred_valid")
    gt_valid = _per_frame(gt_valid, frames, "gt_valid")
    scores, labels, num_gt = [], [], 0
    for f in range(frames):
        pred = _poses(pred_poses2d[f], (2,), "pred_poses2d")
        gt = _poses(gt_poses2d[f], (2,), "gt_poses2d")
        if pred.ndim != 3 or gt.ndim != 3 or pred.shape[1] != gt.shape[1]:
            raise ValueError(
                f"image {f}: pred_poses2d {pred.shape} and gt_poses2d {gt.shape} must be "
                "(P, J, 2) and (G, J, 2)"
            )
        num_p, num_j = pred.shape[:2]
        score = np.asarray(pred_scores[f], np.float64)
        if score.shape == (num_p,):
            score = np.broadcast_to(score[:, None], (num_p, num_j))
        if score.shape != (num_p, num_j):
            raise ValueError(
                f"image {f}: pred_scores has shape {score.shape}, expected ({num_p},) or "
                f"({num_p}, {num_j})"
            )
        keep_p = _mask(pred_valid[f], (num_p,), "pred_valid")
        keep_g = _mask(gt_valid[f], gt.shape[:1], "gt_valid")
        vis = _mask(gt_visible[f], gt.shape[:2], "gt_visible")[keep_g]
        head = np.asarray(gt_head_sizes[f], np.float64).reshape(-1)
        if head.shape != gt.shape[:1]:
            raise ValueError(f"image {f}: gt_head_sizes has {head.shape}, expected {gt.shape[:1]}")
        pred, score, gt, head = pred[keep_p], score[keep_p], gt[keep_g], head[keep_g]
        dist = np.linalg.norm(pred[:, None] - gt[None], axis=-1) / head[None, :, None]
        close = (dist <= threshold) & vis[None]  # (P, G, J)
        with np.errstate(invalid="ignore", divide="ignore"):
            pck = np.nan_to_num(np.sum(close, -1) / np.sum(vis, -1)[None])  # (P, G)
        if pck.size:
            best = np.argmax(pck, axis=1)
            pck = np.where(np.arange(gt.shape[0])[None] == best[:, None], pck, 0.0)
            winner = np.argmax(pck, axis=0)  # (G,) best prediction per person
            matched = pck[winner, np.arange(gt.shape[0])] > 0
            pred_to_gt = np.full(pred.shape[0], -1)
            pred_to_gt[winner[matched]] = np.flatnonzero(matched)
            label = np.zeros(pred.shape[:2], bool)
            hit = pred_to_gt >= 0
            label[hit] = close[np.flatnonzero(hit), pred_to_gt[hit]]
        else:
            label = np.zeros(pred.shape[:2], bool)
        scores.append(score)
        labels.append(label)
        num_gt = num_gt + np.sum(vis, axis=0)
    scores = np.concatenate(scores) if scores else np.zeros((0, 0))
    labels = np.concatenate(labels) if labels else np.zeros((0, 0), bool)
    num_gt = np.broadcast_to(num_gt, scores.shape[1:])
    per_joint = np.array(
        [
            _voc_ap(scores[:, j], labels[:, j], num_gt[j]) if num_gt[j] > 0 else np.nan
            for j in range(scores.shape[1])
        ]
    )
    return {"per_joint": per_joint, "mean": _nanmean(per_joint)}


# COCO's OKS constants times 10, per joint name without its side (pycocotools' values).
_COCO_SIGMAS_X10 = {
    "nose": 0.26,
    "eye": 0.25,
    "ear": 0.35,
    "shoulder": 0.79,
    "elbow": 0.72,
    "wrist": 0.62,
    "hip": 1.07,
    "knee": 0.87,
    "ankle": 0.89,
}
COCO_SIGMAS = np.array([_COCO_SIGMAS_X10[n.split("_")[-1]] for n in skeleton.COCO17.joints]) / 10.0
"""COCO's per-keypoint OKS sigmas, in `skeleton.COCO17` order."""

_OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)
_AREA_RANGES = {"all": (0.0, 1e10), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}


def oks(pred, gt, gt_visible, gt_area, *, sigmas=COCO_SIGMAS, gt_boxes=None) -> np.ndarray:
    """Object keypoint similarity between every prediction and every person (COCO).

    OKS(p, g) = mean over g's labelled joints of exp(-d^2 / (2 * area * (2 sigma)^2)),
    d the pixel distance (pycocotools `computeOks`). For a person without labelled
    joints, d is the distance from each predicted joint to the box twice the size of
    g's box (pycocotools' rule for such annotations, which are ignored when scoring).

    Args:
      pred: (P, J, 2) predicted joints in pixels.
      gt: (G, J, 2) annotated joints in pixels.
      gt_visible: (G, J) bool labelled joints (COCO v > 0).
      gt_area: (G,) person areas in square pixels (COCO segment area).
      sigmas: (J,) per-joint constants (default: COCO's 17).
      gt_boxes: (G, 4) x1, y1, x2, y2 person boxes; needed for people without labelled
        joints (None: the box of the labelled joints, i.e. empty for them).

    Returns:
      (P, G) OKS in [0, 1].
    """
    pred, gt = _poses(pred, (2,), "pred"), _poses(gt, (2,), "gt")
    sigmas = np.asarray(sigmas, np.float64)
    if pred.ndim != 3 or gt.ndim != 3 or not pred.shape[1] == gt.shape[1] == sigmas.shape[0]:
        raise ValueError(
            f"pred {pred.shape}, gt {gt.shape} and sigmas {sigmas.shape} must be (P, J, 2), "
            "(G, J, 2) and (J,)"
        )
    vis = _mask(gt_visible, gt.shape[:2], "gt_visible")
    area = np.asarray(gt_area, np.float64).reshape(gt.shape[:1])
    if gt_boxes is None:
        gt_boxes = geometry.pose_box(gt, vis, margin=0.0)
    boxes = np.asarray(gt_boxes, np.float64).reshape(gt.shape[0], 4)
    size = boxes[:, 2:] - boxes[:, :2]
    lo, hi = boxes[:, :2] - size, boxes[:, :2] + size * 2  # (G, 2)
    d = pred[:, None] - gt[None]  # (P, G, J, 2)
    outside = np.maximum(lo[None, :, None] - pred[:, None], 0.0) + np.maximum(
        pred[:, None] - hi[None, :, None], 0.0
    )
    labelled = np.any(vis, axis=-1)  # (G,)
    d = np.where(labelled[None, :, None, None], d, outside)
    variances = (sigmas * 2) ** 2
    e = np.sum(d**2, axis=-1) / variances / (area[None, :, None] + np.spacing(1)) / 2
    counted = np.where(labelled[:, None], vis, True)[None]  # (1, G, J)
    return np.sum(np.where(counted, np.exp(-e), 0.0), -1) / np.sum(counted, -1)


def _coco_match(iou, gt_ignore, gt_crowd, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools `evaluateImg` greedy matching, detections in score order.

    Args:
      iou: (D, G) OKS, detections sorted by score, people sorted non-ignored first.
      gt_ignore, gt_crowd: (G,) bool.
      thresholds: (T,) OKS thresholds.

    Returns:
      (matched (T, D) bool, matched_ignored (T, D) bool).
    """
    num_t, (num_d, num_g) = len(thresholds), iou.shape
    taken = np.zeros((num_t, num_g), bool)
    matched = np.zeros((num_t, num_d), bool)
    on_ignored = np.zeros((num_t, num_d), bool)
    thr = np.minimum(thresholds, 1 - 1e-10)[:, None]
    last = num_g - 1 - np.arange(num_g)  # reversed argmax picks the last of ties
    for d in range(num_d):
        ok = (iou[d][None] >= thr) & (~taken | gt_crowd[None])  # (T, G)
        for group in (~gt_ignore, gt_ignore):
            cand = ok & group[None] & ~matched[:, d : d + 1]
            val = np.where(cand, iou[d][None], -np.inf)
            m = last[np.argmax(val[:, ::-1], axis=1)]
            found = np.any(cand, axis=1)
            taken[found, m[found]] = True
            matched[found, d] = True
            on_ignored[found, d] = gt_ignore[m[found]]
    return matched, on_ignored


def oks_ap(
    pred_poses2d: Sequence,
    pred_scores: Sequence,
    gt_poses2d: Sequence,
    gt_visible: Sequence,
    *,
    gt_areas: Sequence | None = None,
    gt_boxes: Sequence | None = None,
    gt_crowd: Sequence | None = None,
    pred_valid: Sequence | None = None,
    gt_valid: Sequence | None = None,
    sigmas=COCO_SIGMAS,
    max_dets: int = 20,
) -> dict:
    """COCO keypoint AP/AR with OKS (pycocotools `COCOeval(iouType="keypoints")`).

    Protocol, as pycocotools: per image the `max_dets` highest-scoring predictions
    (stable order) are matched greedily in score order to people, at each OKS threshold
    0.50:0.05:0.95, each to the unmatched person of highest OKS >= threshold (crowd
    people may take several; regular people are preferred to ignored ones). People that
    are crowd or have no labelled joint are ignored: matching them neither helps nor
    hurts. For the "medium" (32^2..96^2) and "large" (> 96^2) ranges, people outside the
    range are ignored too, and so are unmatched predictions whose area (extent of their
    joints) is outside it. Precision is interpolated at 101 recall points over all
    images ranked by score (ties: image order, then rank). AP averages over thresholds
    and recall points; AR is the final recall averaged over thresholds.

    Args:
      pred_poses2d: per image, (P, J, 2) predicted joints in pixels.
      pred_scores: per image, (P,) person scores.
      gt_poses2d: per image, (G, J, 2) annotated joints in pixels.
      gt_visible: per image, (G, J) bool labelled joints (COCO v > 0).
      gt_areas: per image, (G,) areas in square pixels (COCO: the segment area);
        None: the area of `gt_boxes`.
      gt_boxes: per image, (G, 4) x1, y1, x2, y2 boxes; None: the labelled joints' box.
        At least one of `gt_areas` and `gt_boxes` is required.
      gt_crowd: per image, (G,) bool crowd regions; None for none.
      pred_valid, gt_valid: per image, (P,) / (G,) bool real entries; None for all.
      sigmas: (J,) OKS constants (default: COCO's 17 keypoints).
      max_dets: predictions kept per image.

    Returns:
      dict with "AP", "AP50", "AP75", "AP_medium", "AP_large", "AR", "AR50", "AR75",
      "AR_medium", "AR_large" in [0, 1]; NaN where no person counts (pycocotools -1).
    """
    if gt_areas is None and gt_boxes is None:
        raise ValueError("oks_ap needs gt_areas or gt_boxes to know each person's area")
    frames = _frames(
        ("pred_poses2d", pred_poses2d),
        ("pred_scores", pred_scores),
        ("gt_poses2d", gt_poses2d),
        ("gt_visible", gt_visible),
    )
    gt_areas, gt_boxes, gt_crowd = (
        _per_frame(x, frames, n)
        for x, n in ((gt_areas, "gt_areas"), (gt_boxes, "gt_boxes"), (gt_crowd, "gt_crowd"))
    )
    pred_valid = _per_frame(pred_valid, frames, "pred_valid")
    gt_valid = _per_frame(gt_valid, frames, "gt_valid")
    num_t = len(_OKS_THRESHOLDS)
    acc = {a: {"scores": [], "tp": [], "ignore": [], "npos": 0} for a in _AREA_RANGES}
    for f in range(frames):
        pred = _poses(pred_poses2d[f], (2,), "pred_poses2d")
        gt = _poses(gt_poses2d[f], (2,), "gt_poses2d")
        score = np.asarray(pred_scores[f], np.float64).reshape(-1)
        keep_p = _mask(pred_valid[f], score.shape, "pred_valid")
        keep_g = _mask(gt_valid[f], gt.shape[:1], "gt_valid")
        vis = _mask(gt_visible[f], gt.shape[:2], "gt_visible")[keep_g]
        crowd = np.zeros(gt.shape[:1], bool)
        if gt_crowd[f] is not None:
            crowd = _mask(gt_crowd[f], gt.shape[:1], "gt_crowd")
        crowd = crowd[keep_g]
        pred, score, gt = pred[keep_p], score[keep_p], gt[keep_g]
        boxes = None if gt_boxes[f] is None else np.asarray(gt_boxes[f], np.float64)[keep_g]
        if gt_areas[f] is not None:
            area = np.asarray(gt_areas[f], np.float64).reshape(-1)[keep_g]
        else:
            area = np.asarray(geometry.box_area(boxes), np.float64)
        order = np.argsort(-score, kind="stable")[:max_dets]
        pred, score = pred[order], score[order]
        if len(gt) == 0 and len(pred) == 0:
            continue
        iou = oks(pred, gt, vis, area, sigmas=sigmas, gt_boxes=boxes)
        extent = pred.max(axis=1) - pred.min(axis=1) if len(pred) else np.zeros((0, 2))
        pred_area = extent[:, 0] * extent[:, 1]
        base_ignore = crowd | ~np.any(vis, axis=-1)
        for name, (lo, hi) in _AREA_RANGES.items():
            ignore = base_ignore | (area < lo) | (area > hi)
            gorder = np.argsort(ignore, kind="stable")
            matched, on_ignored = _coco_match(
                iou[:, gorder], ignore[gorder], crowd[gorder], _OKS_THRESHOLDS
            )
            out_of_range = (pred_area < lo) | (pred_area > hi)
            dt_ignore = on_ignored | (~matched & out_of_range[None])
            a = acc[name]
            a["scores"].append(score)
            a["tp"].append(matched)
            a["ignore"].append(dt_ignore)
            a["npos"] += int(np.sum(~ignore))
    ap, ar = {}, {}
    for name, a in acc.items():
        ap[name], ar[name] = np.full(num_t, np.nan), np.full(num_t, np.nan)
        if a["npos"] > 0:
            rank = np.argsort(-np.concatenate(a["scores"]), kind="stable")
            tp = np.concatenate(a["tp"], axis=1)[:, rank]
            ignore = np.concatenate(a["ignore"], axis=1)[:, rank]
            tp_sum = np.cumsum(tp & ~ignore, axis=1, dtype=np.float64)
            fp_sum = np.cumsum(~tp & ~ignore, axis=1, dtype=np.float64)
            for t in range(num_t):
                ap[name][t], ar[name][t] = _coco_precision_recall(tp_sum[t], fp_sum[t], a["npos"])
    t50, t75 = 0, 5  # indices of OKS 0.50 and 0.75 in _OKS_THRESHOLDS
    return {
        "AP": float(np.mean(ap["all"])),
        "AP50": float(ap["all"][t50]),
        "AP75": float(ap["all"][t75]),
        "AP_medium": float(np.mean(ap["medium"])),
        "AP_large": float(np.mean(ap["large"])),
        "AR": float(np.mean(ar["all"])),
        "AR50": float(ar["all"][t50]),
        "AR75": float(ar["all"][t75]),
        "AR_medium": float(np.mean(ar["medium"])),
        "AR_large": float(np.mean(ar["large"])),
    }


def _coco_precision_recall(tp: np.ndarray, fp: np.ndarray, npos: int) -> tuple[float, float]:
    """pycocotools `accumulate` for one threshold: (mean 101-point precision, recall)."""
    if len(tp) == 0:
        return 0.0, 0.0
    recall = tp / npos
    precision = tp / (fp + tp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, _RECALL_POINTS, side="left")
    q = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(np.mean(q)), float(recall[-1])
