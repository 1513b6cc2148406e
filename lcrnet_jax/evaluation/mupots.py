"""MuPoTS-3D: matching, bone rescaling, 3DPCK and its AUC as the official script, and
their evaluator (LCR-Net++ Sec. 4.3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lcrnet_jax import skeleton
from lcrnet_jax.evaluation.base import ProtocolEvaluator
from lcrnet_jax.metrics.common import (
    as_mask,
    as_poses,
    count_images,
    joint_errors,
    nanmean,
    per_image,
)
from lcrnet_jax.metrics.pose3d import PCK3D_AUC_THRESHOLDS

# The MuPoTS-3D evaluation code's joint subsets (names of `skeleton.MUPOTS17`).
MUPOTS_EVAL_JOINTS = tuple(
    n for n in skeleton.MUPOTS17.joints if n not in ("pelvis", "spine", "head")
)
"""The 14 joints scored by MuPoTS-3D's 3DPCK (pelvis, spine and head are not)."""


MUPOTS_MATCH_JOINTS = MUPOTS_EVAL_JOINTS[1:]
"""The 13 joints used to match predictions to people in 2D (no head top)."""


# Bone tree of the official `mpii_map_to_gt_bone_lengths`: joint -> parent, rooted at
# the pelvis (note: head top and head both hang from the thorax, MuPoTS's "neck").
_MUPOTS_PARENT = {
    "head_top": "thorax",
    "thorax": "spine",
    "right_shoulder": "thorax",
    "right_elbow": "right_shoulder",
    "right_wrist": "right_elbow",
    "left_shoulder": "thorax",
    "left_elbow": "left_shoulder",
    "left_wrist": "left_elbow",
    "right_hip": "pelvis",
    "right_knee": "right_hip",
    "right_ankle": "right_knee",
    "left_hip": "pelvis",
    "left_knee": "left_hip",
    "left_ankle": "left_knee",
    "spine": "pelvis",
    "head": "thorax",
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
    poses = as_poses(poses, (dim,), name)
    if poses.shape[-2] != skeleton.MUPOTS17.num_joints:
        raise ValueError(f"{name} must be MuPoTS-17 poses (..., 17, {dim}), got {poses.shape}")
    return poses


def mupots_rescale_bones(pred, gt) -> np.ndarray:
    """Gives the predicted skeleton the ground truth's bone lengths (MuPoTS-3D protocol).

    As the official `mpii_map_to_gt_bone_lengths`: from the pelvis outwards, every
    predicted bone keeps its direction and takes the length of the ground-truth bone;
    the pelvis stays where predicted. The tree hangs spine and hips from the pelvis,
    the thorax (MuPoTS's "neck") from the spine, shoulders, head and head top from the
    thorax.

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
    joint the person is missed. A predicted joint at exactly (0, 0), the official
    script's mark of a joint the method does not give, never counts.

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
    available = as_mask(pred_valid, pred.shape[:1], "pred_valid").copy()
    idx = list(skeleton.MUPOTS17.indices(MUPOTS_MATCH_JOINTS))
    close = np.all(np.abs(gt[:, None, idx] - pred[None, :, idx]) < threshold, axis=-1)
    close &= np.any(pred[None, :, idx] != 0, axis=-1)
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
    its 3D error is < `threshold` (see `pck3d`), over the 14 `MUPOTS_EVAL_JOINTS`. A
    sequence's 3DPCK is the fraction of correct joints over all its counted people
    (every annotated person of every frame weighs the same). "all" counts a missed
    person with all joints wrong; "matched" leaves missed people out. The headline is
    the mean over sequences (a sequence with no counted person is NaN and skipped). The
    AUC is the mean of the same 3DPCK over the thresholds 0, 5, ..., 150 mm
    (`pose3d.PCK3D_AUC_THRESHOLDS`), "all" and "matched" alike, per sequence then averaged.

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
      dict with "all", "matched", "auc_all", "auc_matched" (means over sequences),
      "num_annotated", "num_missed", and "per_sequence": {sequence id: {"all",
      "matched", "auc_all", "auc_matched", "num_annotated", "num_missed"}}.
    """
    frames = count_images(
        ("pred_poses2d", pred_poses2d),
        ("pred_poses3d", pred_poses3d),
        ("gt_poses2d", gt_poses2d),
        ("gt_poses3d", gt_poses3d),
    )
    sequence = np.asarray(sequence).reshape(-1)
    if sequence.shape[0] != frames:
        raise ValueError(f"sequence has {sequence.shape[0]} entries, expected {frames} frames")
    pred_valid = per_image(pred_valid, frames, "pred_valid")
    gt_valid = per_image(gt_valid, frames, "gt_valid")
    root = skeleton.MUPOTS17.index("pelvis")
    eval_idx = list(skeleton.MUPOTS17.indices(MUPOTS_EVAL_JOINTS))
    auc_thresholds = np.asarray(PCK3D_AUC_THRESHOLDS)
    # Per sequence: [correct joints of matched people, matched people, annotated, missed,
    # correct joints at each AUC threshold...].
    tally: dict = {}
    for f in range(frames):
        g2 = _mupots_check(gt_poses2d[f], 2, "gt_poses2d")
        g3 = _mupots_check(gt_poses3d[f], 3, "gt_poses3d")
        p3 = _mupots_check(pred_poses3d[f], 3, "pred_poses3d")
        p2 = _mupots_check(pred_poses2d[f], 2, "pred_poses2d")
        if len(g2) != len(g3) or len(p2) != len(p3):
            raise ValueError(
                f"frame {f}: the 2D and 3D poses must count the same people, got "
                f"{len(g2)} and {len(g3)} annotated, {len(p2)} and {len(p3)} predicted"
            )
        keep = as_mask(gt_valid[f], g2.shape[:1], "gt_valid")
        g2, g3 = g2[keep], g3[keep]
        match = mupots_match(g2, p2, pred_valid=pred_valid[f], threshold=match_threshold)
        hit = match >= 0
        gt_rel = g3[hit] - g3[hit][:, root : root + 1]
        pr = p3[match[hit]]
        pr = pr - pr[:, root : root + 1]
        if rescale_bones:
            pr = mupots_rescale_bones(pr, gt_rel)
        errors = joint_errors(pr[:, eval_idx], gt_rel[:, eval_idx])  # (M, 14)
        curve = np.sum(errors[..., None] < auc_thresholds, axis=(0, 1))
        t = tally.setdefault(sequence[f].item(), np.zeros(4 + len(curve), np.int64))
        t[:4] += (int(np.sum(errors < threshold)), int(np.sum(hit)), len(match), int(np.sum(~hit)))
        t[4:] += curve
    n = len(eval_idx)
    per_sequence = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for seq in sorted(tally):
            correct, matched, annotated, missed = tally[seq][:4]
            curve = tally[seq][4:]
            per_sequence[seq] = {
                "all": correct / (n * annotated),
                "matched": correct / (n * matched),
                "auc_all": float(np.mean(curve / (n * annotated))),
                "auc_matched": float(np.mean(curve / (n * matched))),
                "num_annotated": int(annotated),
                "num_missed": int(missed),
            }
    values = list(per_sequence.values())
    return {
        "all": nanmean([v["all"] for v in values]),
        "matched": nanmean([v["matched"] for v in values]),
        "auc_all": nanmean([v["auc_all"] for v in values]),
        "auc_matched": nanmean([v["auc_matched"] for v in values]),
        "num_annotated": sum(v["num_annotated"] for v in values),
        "num_missed": sum(v["num_missed"] for v in values),
        "per_sequence": per_sequence,
    }


def to_mupots17(poses: np.ndarray, joint_set: str) -> np.ndarray:
    """(..., J, D) poses of a model's joint set -> (..., 17, D) MuPoTS-17 poses.

    Joints of the same name are copied (MuPoTS's "neck" is `thorax`, `skeleton.MUPOTS17`);
    an LCR-13 or LCR-17 model's missing joints are made by `skeleton.complete` (head top,
    and for LCR-13 thorax, pelvis and spine); an LCR-MuPoTS model has them all.
    """
    return skeleton.complete(poses, joint_set, "mupots17")


class MuPoTSEvaluator(ProtocolEvaluator):
    """MuPoTS-3D: 3DPCK at 150 mm and its AUC, "all" and "matched", as the official
    `mpii_mupots_multiperson_eval` (`mupots_3dpck`: 2D matching, bone rescaling, per
    sequence then averaged); predictions completed to MuPoTS-17 by `to_mupots17`.
    Reported: "3dpck_all", "3dpck_matched", "auc_all", "auc_matched", "num_annotated",
    "missed" (annotated people without a matched prediction).

    Args:
      source: the split's records (native MuPoTS-3D annotations).
      joint_set: the model's joint set (`skeleton.MODEL_JOINT_SETS`).
    """

    name = "mupots3d"

    def annotation(self, record: Mapping) -> dict:
        people = record["people"]
        return {
            "joints2d": np.asarray(people["joints2d"], np.float64),
            "joints3d": np.asarray(people["joints3d_univ"], np.float64),
            "valid": np.asarray(people["is_valid"], bool),
            "sequence": int(record["sequence"]),
        }

    def metrics(self, annotations: Sequence[dict], predictions: Sequence[dict]) -> dict:
        result = mupots_3dpck(
            [to_mupots17(p["poses2d"], self.joint_set) for p in predictions],
            [to_mupots17(p["poses3d"], self.joint_set) for p in predictions],
            [a["joints2d"] for a in annotations],
            [a["joints3d"] for a in annotations],
            np.array([a["sequence"] for a in annotations]),
            gt_valid=[a["valid"] for a in annotations],
        )  # fmt: skip
        return {
            "3dpck_all": result["all"],
            "3dpck_matched": result["matched"],
            "auc_all": result["auc_all"],
            "auc_matched": result["auc_matched"],
            "num_annotated": result["num_annotated"],
            "missed": result["num_missed"],
        }
