"""The generic evaluator: any dataset split with 2D and/or 3D people (LCR-Net++ Sec. 4).

Used for synthetic data and beside every benchmark's own protocol. The methods of
`base.METHODS` ("ppi", "nms" and the trivial baselines "anchor" and "mean_pose", see
`evaluation.inference.make_detector`) are scored side by side as in the paper's tables.
Each method's people are matched to the ground truth greedily by score: a person is
found when the box of its joints overlaps the box of a ground-truth person's known
joints with IoU >= 0.5 (as detection benchmarks count a detection); a person whose known
joints span no area (one joint, or joints on a line) could never be found so, and is left
out of every metric (training leaves out people with fewer than 3 joints). Then:
  - recall: fraction of ground-truth people found; "AP": COCO-style OKS AP (with the
    sigmas of `oks_sigmas`), which also judges the 2D poses;
  - "mpjpe_mm" / "pa_mpjpe_mm": 3D error of matched people (torso-centred, and after
    similarity alignment);
  - "pck3d": matched people's joints within 150 mm; "pck3d_all": the same with every
    joint of a missed person counted wrong (MuPoTS-3D's "all" protocol);
    these 3D metrics count only the people with real 3D ground truth (not the 2D-only
    people of MPII, COCO or LSP, nor pseudo ground truth): NaN where there are none;
  - "pckh": matched people's visible 2D joints within half a head size, the head size
    being the distance from the head to the shoulders' midpoint (LCR joints have no head
    top, so MPII's head box is replaced by this); people whose head or a shoulder is not
    known (a 2D-only person without them) have no head size and are left out;
  - "root_error_mm" / "pck3d_abs": matched people with camera-space ground truth (real
    3D and the dataset's intrinsics, e.g. synthetic people) placed in camera space by
    `postprocess.camera.fit_translation` with those intrinsics: torso-centre error over
    the people placed, and MuPoTS-style absolute 3DPCK (15 cm, people not placed count
    wrong), `metrics.pose3d.absolute_errors`.
All 2D metrics are scale-invariant, so they are computed in network-input pixels. No
official script: these are the project's own numbers, not a benchmark's.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.evaluation.base import METHODS, Evaluator
from lcrnet_jax.metrics import coco as coco_metrics
from lcrnet_jax.metrics import pose2d, pose3d
from lcrnet_jax.metrics.common import nanmean
from lcrnet_jax.postprocess import camera

MATCH_IOU = 0.5

# COCO's per-keypoint OKS constants by joint type; the LCR head centre takes the ears'
# value, the spine joints those of the nearest COCO joint.
_SIGMAS = {
    "ankle": 0.089, "knee": 0.087, "hip": 0.107, "wrist": 0.062, "elbow": 0.072,
    "shoulder": 0.079, "head": 0.035, "head_top": 0.035, "pelvis": 0.107, "spine": 0.107,
    "thorax": 0.079, "neck": 0.079, "upper_neck": 0.079, "nose": 0.026, "eye": 0.025,
    "ear": 0.035,
}  # fmt: skip


def oks_sigmas(joint_set: str | skeleton.JointSet) -> np.ndarray:
    """(J,) OKS constants of a joint set (COCO's, by joint type)."""
    js = skeleton.get_joint_set(joint_set)
    return np.array([_SIGMAS[n.removeprefix("left_").removeprefix("right_")] for n in js.joints])


def match_overlaps(pred2d, gt2d, gt_known) -> np.ndarray:
    """(..., P, G) IoU of the predictions' joint boxes with the ground truth's known-joint
    boxes (`greedy_match`'s criterion), vectorised over leading axes (e.g. a whole batch).

    Args:
      pred2d: (..., P, J, 2) pixels; gt2d: (..., G, J, 2) pixels; gt_known: (..., G, J) bool.
    """
    pred_boxes = geometry.pose_box(pred2d, margin=0.0)
    gt_boxes = geometry.pose_box(gt2d, gt_known, margin=0.0)
    return np.asarray(geometry.iou_matrix(pred_boxes, gt_boxes))


def greedy_match(scores, valid, overlap, gt_valid) -> np.ndarray:
    """(..., G) index of the prediction matched to each ground-truth person, or -1: valid
    predictions in descending score order (stable) each take the unmatched valid person
    they overlap most, if by IoU >= `MATCH_IOU`. Vectorised over leading axes (a batch).

    Args:
      scores, valid: (..., P) predictions; overlap: (..., P, G) from `match_overlaps`;
      gt_valid: (..., G) bool real ground-truth people.
    """
    lead, (num_p, num_g) = overlap.shape[:-2], overlap.shape[-2:]
    if num_p == 0 or num_g == 0:
        return np.full((*lead, num_g), -1)
    overlap = np.where(gt_valid[..., None, :], overlap, -1.0).reshape(-1, num_p, num_g)
    scores, valid = scores.reshape(-1, num_p), valid.reshape(-1, num_p)
    match = np.full((len(overlap), num_g), -1)
    order = np.argsort(-np.where(valid, scores, -np.inf), axis=-1, kind="stable")
    rows = np.arange(len(overlap))
    for p in order.T[: int(valid.sum(-1).max(initial=0))]:  # (N,) each image's next
        candidates = np.where(match < 0, overlap[rows, p], -1.0)  # (N, G)
        g = np.argmax(candidates, axis=-1)
        take = valid[rows, p] & (candidates[rows, g] >= MATCH_IOU)
        match[rows[take], g[take]] = p[take]
    return match.reshape(*lead, num_g)


def gt_areas(gt2d, visible) -> np.ndarray:
    """(..., G) areas (square pixels) of the boxes of the people's visible joints, the
    OKS scale; gt2d (..., G, J, 2) pixels, visible (..., G, J) bool."""
    boxes = np.asarray(geometry.pose_box(gt2d, visible, margin=0.0))
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def head_sizes(gt2d, known, joint_set) -> np.ndarray:
    """(...) PCKh head sizes in pixels of (..., J, 2) poses: the distance from the head to
    the shoulders' midpoint, at least 1; NaN where the head or a shoulder is not known
    ((..., J) bool `known`: unknown joints hold zeros, not positions)."""
    js = skeleton.get_joint_set(joint_set)
    r, l, h = js.indices(("right_shoulder", "left_shoulder", "head"))  # noqa: E741
    neck = 0.5 * (gt2d[..., r, :] + gt2d[..., l, :])
    size = np.maximum(np.linalg.norm(gt2d[..., h, :] - neck, axis=-1), 1.0)
    measurable = known[..., r] & known[..., l] & known[..., h]
    return np.where(measurable, size, np.nan)


class Accumulator:
    """Collects matched pairs and AP inputs of one method over a split."""

    def __init__(self, joint_set: str):
        self.joint_set = joint_set
        self.sigmas = oks_sigmas(joint_set)
        self.pred, self.gt, self.gt_visible, self.gt_areas = [], [], [], []
        self.scores, self.pairs, self.absolute = [], [], []
        self.num_gt_3d = 0

    def add(self, result: dict, gt: dict) -> None:
        """One image: result {poses2d, poses3d, scores, valid} and optionally {translation}
        (`camera.fit_translation` of the poses with the gt intrinsics) and {match}
        (`greedy_match` over every gt row), both computed here when absent; gt {poses2d,
        poses3d, visible, known, valid} and optionally {areas} (`gt_areas`, computed here
        when absent), {real_3d} (default: every person), {center3d, camera_space,
        intrinsics} (numpy, one image; `known`: joints whose 2D position is known, e.g.
        the occluded ones of synthetic people; `real_3d`: people whose `poses3d` is real
        ground truth; `camera_space`: people whose `center3d` is their camera-space torso
        centre)."""
        box = geometry.pose_box(gt["poses2d"], gt["known"], margin=0.0)
        matchable = (box[..., 2] > box[..., 0]) & (box[..., 3] > box[..., 1])
        gt = {**gt, "valid": np.asarray(gt["valid"], bool) & np.asarray(matchable)}
        gt2d = gt["poses2d"][gt["valid"]]
        gt3d = gt["poses3d"][gt["valid"]]
        visible = gt["visible"][gt["valid"]]
        heads = head_sizes(gt2d, gt["known"][gt["valid"]], self.joint_set)
        real_3d = np.asarray(gt.get("real_3d", gt["valid"]), bool)[gt["valid"]]
        self.num_gt_3d += int(real_3d.sum())
        areas = gt["areas"] if "areas" in gt else gt_areas(gt["poses2d"], gt["visible"])
        valid = result["valid"]
        match = result.get("match")  # (G,) over every ground-truth row
        if match is None:
            overlap = match_overlaps(result["poses2d"], gt["poses2d"], gt["known"])
            match = greedy_match(result["scores"], valid, overlap, gt["valid"])
        match = match[gt["valid"]]
        intrinsics = gt.get("intrinsics", np.zeros(4, np.float32))
        center = gt.get("center3d", np.zeros((len(gt["valid"]), 3)))[gt["valid"]]
        camera_space = gt.get("camera_space", np.zeros_like(gt["valid"]))[gt["valid"]]
        camera_space = camera_space & intrinsics.any()
        translation = result.get("translation")  # (P, 3), NaN where not placed
        if translation is None and camera_space.any():
            translation, _ = camera.fit_translation(
                result["poses3d"], result["poses2d"], intrinsics
            )
        for g, p in enumerate(match):
            if p < 0:
                continue
            if camera_space[g]:
                pred_cam = result["poses3d"][p] + translation[p]
                self.absolute.append((pred_cam, gt3d[g] + center[g]))
            self.pairs.append(
                (result["poses2d"][p], gt2d[g], visible[g], heads[g], result["poses3d"][p],
                 gt3d[g], real_3d[g])
            )  # fmt: skip
        self.pred.append(result["poses2d"][valid])
        self.scores.append(result["scores"][valid])
        self.gt.append(gt2d)
        self.gt_visible.append(visible)
        self.gt_areas.append(areas[gt["valid"]])

    def _errors_3d(self, pred3d, gt3d) -> dict:
        """mpjpe_mm, pa_mpjpe_mm, pck3d and pck3d_all of the matched people with real 3D."""
        nan = float("nan")
        if not len(pred3d):
            pck_all = 0.0 if self.num_gt_3d else nan  # people with 3D, none found
            return dict(mpjpe_mm=nan, pa_mpjpe_mm=nan, pck3d=nan, pck3d_all=pck_all)
        pck = pose3d.pck3d(pred3d, gt3d)
        return {
            "mpjpe_mm": 1000 * float(np.mean(pose3d.mpjpe(pred3d, gt3d))),
            "pa_mpjpe_mm": 1000 * float(np.mean(pose3d.pa_mpjpe(pred3d, gt3d))),
            "pck3d": pck,
            "pck3d_all": pck * len(pred3d) / self.num_gt_3d,
        }

    def summary(self) -> dict:
        """The metrics of the module docstring (NaN where nothing was matched)."""
        num_gt = sum(len(g) for g in self.gt)
        out = {
            "num_images": len(self.gt),
            "num_gt": num_gt,
            "num_pred": sum(len(p) for p in self.pred),
        }
        out["recall"] = len(self.pairs) / num_gt if num_gt else float("nan")
        ap = coco_metrics.oks_ap(
            self.pred, self.scores, self.gt, self.gt_visible,
            gt_areas=self.gt_areas, sigmas=self.sigmas, area_ranges=("all",),
        )  # fmt: skip
        out["AP"], out["AP50"] = ap["AP"], ap["AP50"]
        if not self.pairs:
            nan = float("nan")
            return (
                out
                | self._errors_3d(np.zeros((0,)), np.zeros((0,)))
                | dict(pckh=nan, root_error_mm=nan, pck3d_abs=nan)
            )
        p2, g2, vis, heads, p3, g3, real_3d = (np.stack(x) for x in zip(*self.pairs, strict=True))
        out |= self._errors_3d(p3[real_3d], g3[real_3d])
        sized = np.isfinite(heads)
        out["pckh"] = float("nan")
        if sized.any():
            out["pckh"] = pose2d.pckh(p2[sized], g2[sized], vis[sized], heads[sized])[1]
        out["root_error_mm"], out["pck3d_abs"] = float("nan"), float("nan")
        if self.absolute:
            pred_cam, gt_cam = (np.stack(x) for x in zip(*self.absolute, strict=True))
            root, out["pck3d_abs"] = pose3d.absolute_errors(
                pred_cam, gt_cam, joint_set=self.joint_set
            )
            out["root_error_mm"] = 1000 * nanmean(root)
        return out


_RESULT_FIELDS = ("poses2d", "poses3d", "scores", "valid")


class GenericEvaluator(Evaluator):
    """The metrics of the module docstring, one `Accumulator` per method of `METHODS`.

    Args:
      joint_set: the batches' joint set.
    """

    name = "generic"

    def __init__(self, *, joint_set: str):
        self.joint_set = joint_set
        self.reset()

    def reset(self) -> None:
        self._accumulators: dict[str, Accumulator] = {}

    def process(self, batch: Mapping, people: Mapping) -> None:
        # Boxes, areas, overlaps and camera placements of the whole batch at once; only
        # the greedy matching and the bookkeeping stay per image.
        known = batch["visible"] | batch["has_3d"][..., None]  # (B, G, J)
        areas = gt_areas(batch["poses2d"], batch["visible"])  # (B, G)
        real_3d = batch["has_3d"] & ~batch.get("pseudo_3d", np.zeros_like(batch["has_3d"]))
        gts = []
        for b in range(len(batch["index"])):
            gt = {
                "poses2d": batch["poses2d"][b],
                "poses3d": batch["poses3d"][b],
                "visible": batch["visible"][b],
                "known": known[b],
                "valid": batch["person_valid"][b],
                "areas": areas[b],
                "real_3d": real_3d[b],
            }
            if "center3d" in batch:  # camera-space ground truth (pipeline batches)
                gt |= {
                    "center3d": batch["center3d"][b],
                    "camera_space": batch["has_3d"][b] & ~batch["pseudo_3d"][b],
                    "intrinsics": batch["intrinsics"][b],
                }
            gts.append(gt)
        for method in (m for m in METHODS if m in people):
            acc = self._accumulators.setdefault(method, Accumulator(self.joint_set))
            res = {k: np.asarray(getattr(people[method], k)) for k in _RESULT_FIELDS}
            overlap = match_overlaps(res["poses2d"], batch["poses2d"], known)  # (B, P, G)
            res["match"] = greedy_match(res["scores"], res["valid"], overlap, batch["person_valid"])
            if "center3d" in batch:
                res["translation"], _ = camera.fit_translation(
                    res["poses3d"], res["poses2d"], batch["intrinsics"][:, None]
                )  # (B, P, 3)
            for b, gt in enumerate(gts):
                acc.add({k: v[b] for k, v in res.items()}, gt)

    def evaluate(self) -> dict[str, dict]:
        return {m: acc.summary() for m, acc in self._accumulators.items()}


_COLUMNS = (
    ("recall", "recall", "{:.3f}"),
    ("AP", "AP (OKS)", "{:.3f}"),
    ("mpjpe_mm", "MPJPE mm", "{:.1f}"),
    ("pa_mpjpe_mm", "PA-MPJPE mm", "{:.1f}"),
    ("pck3d", "3DPCK", "{:.3f}"),
    ("pck3d_all", "3DPCK all", "{:.3f}"),
    ("pckh", "PCKh@0.5", "{:.3f}"),
    ("root_error_mm", "root error mm (camera)", "{:.1f}"),
    ("pck3d_abs", "3DPCK abs (camera)", "{:.3f}"),
)


def format_table(results: dict) -> str:
    """A Markdown table: one row per metric, one column per method."""
    methods = [m for m in METHODS if m in results]
    lines = ["| metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for key, name, fmt in _COLUMNS:
        cells = [fmt.format(results[m][key]) for m in methods]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = " | ".join(str(results[m]["num_pred"]) for m in methods)
    lines.append(f"| people predicted | {counts} |")  # "found": matched, as in recall
    lines.append(f"| ground truth | {' | '.join(str(results[m]['num_gt']) for m in methods)} |")
    return "\n".join(lines)
