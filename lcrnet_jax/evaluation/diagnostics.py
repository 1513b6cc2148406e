"""Where the chain loses people and 2D accuracy, read on the network's raw pose proposals
(LCR-Net++ Sec. 3.1-3.5), before any integration.

For every ground-truth person, matched as the generic evaluator matches (IoU >= 0.5 with
the box of the person's known joints, `generic.match_overlaps`):
  - "proposal": some RoI box matches (the RPN's recall);
  - "candidate": the joint box of some (RoI, class) pose matches (the best any
    integration of the proposals could find);
  - "confident": the joint box of some RoI's most probable class's pose matches, among
    the RoIs of foreground probability >= 0.5;
  - "pckh_top_class" / "pckh_best_class": PCKh@0.5 (`generic.head_sizes`) at the most
    confident RoI whose box matches: its most probable class's pose, and the pose of the
    class that is best for this person (an oracle: the regression's own accuracy).
Fractions over all people, the people whose known joints all lie inside the image, and
those cut by its border. Read the evaluation's recall (PPI, NMS) next to them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lcrnet_jax import geometry
from lcrnet_jax.evaluation.generic import MATCH_IOU, head_sizes, match_overlaps

STAGES = ("proposal", "candidate", "confident", "pckh_top_class", "pckh_best_class")
PEOPLE = ("all", "inside", "truncated")
CONFIDENT = 0.5


def _pckh_counts(pred2d, gt2d, visible, head):
    """(correct, counted) visible joints within half a head size: pred2d (..., J, 2),
    gt2d (..., J, 2), visible (..., J), head (...) (NaN: nothing counted)."""
    close = np.linalg.norm(pred2d - gt2d, axis=-1) <= 0.5 * head[..., None]
    counted = np.broadcast_to(visible & np.isfinite(head)[..., None], close.shape)
    return np.sum(close & counted, axis=-1), np.sum(counted, axis=-1)


def batch_diagnostics(proposals: Mapping, batch: Mapping, *, joint_set: str) -> dict:
    """Per ground-truth person of a batch: the stages of the module docstring.

    Args:
      proposals: the network's `PoseProposals` fields as numpy: boxes (B, R, 4), probs
        (B, R, C) (class 0 background), poses2d (B, R, C, J, 2), valid (B, R).
      batch: the pipeline batch: poses2d (B, G, J, 2), visible (B, G, J), has_3d (B, G),
        person_valid (B, G), image_size (B, 2) height, width; network pixels.
      joint_set: the batch's joint set.

    Returns:
      {"truncated": (N,) bool, "proposal", "candidate", "confident": (N,) bool,
      "pckh_top_class", "pckh_best_class": (N, 2) int (correct, counted) joints, 0 where
      no RoI matches}, N the batch's real people.
    """
    poses2d, valid = np.asarray(proposals["poses2d"]), np.asarray(proposals["valid"])
    probs = np.asarray(proposals["probs"])
    gt2d, visible = np.asarray(batch["poses2d"]), np.asarray(batch["visible"])
    known = visible | np.asarray(batch["has_3d"])[..., None]
    people = np.asarray(batch["person_valid"])
    gt_box = np.asarray(geometry.pose_box(gt2d, known, margin=0.0))  # (B, G, 4)
    size = np.asarray(batch["image_size"], np.float32)[:, None, None, ::-1]  # (B, 1, 1, 2) w, h
    outside = np.any((gt2d < 0) | (gt2d >= size), axis=-1)  # (B, G, J)

    box_iou = np.asarray(geometry.iou_matrix(np.asarray(proposals["boxes"]), gt_box))
    box_iou = np.where(valid[..., None], box_iou, -1.0)  # (B, R, G)
    b, r, c, j = poses2d.shape[:4]
    pose_iou = match_overlaps(poses2d[:, :, 1:].reshape(b, r * (c - 1), j, 2), gt2d, known)
    pose_iou = np.where(valid[..., None, None], pose_iou.reshape(b, r, c - 1, -1), -1.0)
    top = np.argmax(probs[..., 1:], axis=-1)  # (B, R) anchor index of the top class
    top_iou = np.take_along_axis(pose_iou, top[..., None, None], axis=2)[:, :, 0]  # (B, R, G)
    confident = (1.0 - probs[..., 0] >= CONFIDENT)[..., None]

    # The most confident RoI whose box matches each person.
    foreground = np.where(box_iou >= MATCH_IOU, (1.0 - probs[..., 0])[..., None], -1.0)
    best = np.argmax(foreground, axis=1)  # (B, G)
    matched = np.max(box_iou, axis=1) >= MATCH_IOU
    rows = np.arange(b)[:, None]
    poses = poses2d[rows, best, 1:]  # (B, G, K, J, 2)
    head = head_sizes(gt2d, known, joint_set)  # (B, G), NaN without a head or a shoulder
    correct, counted = _pckh_counts(poses, gt2d[:, :, None], visible[:, :, None], head[..., None])
    best_class = np.argmax(correct, axis=-1)  # (B, G)
    top_class = top[rows, best]

    def at(counts, index):
        return np.where(matched, np.take_along_axis(counts, index[..., None], -1)[..., 0], 0)

    stats = {
        "truncated": np.any(outside & known, axis=-1),
        "proposal": matched,
        "candidate": np.max(pose_iou, axis=(1, 2)) >= MATCH_IOU,
        "confident": np.max(np.where(confident, top_iou, -1.0), axis=1) >= MATCH_IOU,
        "pckh_top_class": np.stack([at(correct, top_class), at(counted, top_class)], -1),
        "pckh_best_class": np.stack([at(correct, best_class), at(counted, best_class)], -1),
    }
    return {name: value[people] for name, value in stats.items()}


class Diagnostics:
    """Collects `batch_diagnostics` over a split; `summary()` gives the fractions."""

    def __init__(self, joint_set: str):
        self.joint_set = joint_set
        self._parts: list[dict] = []

    def add(self, proposals: Mapping, batch: Mapping) -> None:
        self._parts.append(batch_diagnostics(proposals, batch, joint_set=self.joint_set))

    def summary(self) -> dict[str, dict[str, float]]:
        """{people group: {"people": count, stage: fraction}} (NaN where nobody counts)."""
        if not self._parts:
            raise ValueError("no batch was added")
        stats = {k: np.concatenate([p[k] for p in self._parts]) for k in self._parts[0]}
        groups = {"all": np.ones_like(stats["truncated"]), "inside": ~stats["truncated"]}
        groups["truncated"] = stats["truncated"]
        out = {}
        for name, mask in groups.items():
            row = {"people": int(mask.sum())}
            for stage in STAGES:
                value = stats[stage][mask]
                if stage.startswith("pckh"):
                    counted = value[:, 1].sum()
                    row[stage] = value[:, 0].sum() / counted if counted else float("nan")
                else:
                    row[stage] = float(value.mean()) if len(value) else float("nan")
            out[name] = row
        return out


def format_table(summary: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table of `Diagnostics.summary()`: one column per people group."""
    lines = [
        "| stage | " + " | ".join(PEOPLE) + " |",
        "|---" * (len(PEOPLE) + 1) + "|",
        "| people | " + " | ".join(str(summary[g]["people"]) for g in PEOPLE) + " |",
    ]
    for stage in STAGES:
        lines.append(
            f"| {stage} | " + " | ".join(f"{summary[g][stage]:.3f}" for g in PEOPLE) + " |"
        )
    return "\n".join(lines)
