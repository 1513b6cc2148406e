"""Evaluation of multi-person 2D-3D pose detection on a dataset split (LCR-Net++ Sec. 4).

Per image, the network's pose proposals become candidates (every (RoI, class) pair
above `ppi.candidate_threshold` / K), then people in four ways, side by side as in the
paper's tables:
  - "ppi": pose proposal integration (Sec. 3.6, Eq. 6-8);
  - "nms": the NMS baseline, the top-scoring proposal of each region;
  - "anchor": the NMS baseline on the anchor poses themselves placed in their RoIs,
    i.e. classification without regression (a trivial baseline);
  - "mean_pose": the mean training pose placed in each box the NMS baseline found
    (a trivial baseline: localisation only).
Each method's people are matched to the ground truth greedily by score: a person is
found when the box of its joints overlaps the box of a ground-truth person's known
joints with IoU >= 0.5 (as detection benchmarks count a detection). Then:
  - recall: fraction of ground-truth people found; "AP": COCO-style OKS AP (with the
    sigmas of `oks_sigmas`), which also judges the 2D poses;
  - "mpjpe_mm" / "pa_mpjpe_mm": 3D error of matched people (torso-centred, and after
    similarity alignment);
  - "pck3d": matched people's joints within 150 mm; "pck3d_all": the same with every
    joint of a missed person counted wrong (MuPoTS-3D's "all" protocol);
  - "pckh": matched people's visible 2D joints within half a head size, the head size
    being the distance from the head to the shoulders' midpoint (LCR joints have no head
    top, so MPII's head box is replaced by this);
  - "root_error_mm" / "pck3d_abs": matched people with camera-space ground truth (real
    3D and the dataset's intrinsics, e.g. synthetic people) placed in camera space by
    `postprocess.camera.fit_translation` with those intrinsics: torso-centre error over
    the people placed, and MuPoTS-style absolute 3DPCK (15 cm, people not placed count
    wrong), `metrics.pose3d.absolute_errors`.
All 2D metrics are scale-invariant, so they are computed in network-input pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import geometry, skeleton
from lcrnet_jax.evaluation import benchmarks
from lcrnet_jax.metrics import coco as coco_metrics
from lcrnet_jax.metrics import pose2d, pose3d
from lcrnet_jax.metrics.common import nanmean
from lcrnet_jax.model import lcrnet as lcrnet_lib
from lcrnet_jax.postprocess import camera, nms_baseline, ppi
from lcrnet_jax.postprocess import candidates as candidates_lib

METHODS = ("ppi", "nms", "anchor", "mean_pose")
PROTOCOL_METHODS = ("ppi", "nms")
"""The methods scored by the datasets' own protocols (`evaluation.benchmarks`)."""
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


def make_detector(
    model: lcrnet_lib.LCRNet,
    *,
    ppi_config: ppi.PPIConfig,
    mean_pose: anchors_lib.AnchorPoses | None = None,
    mesh: Mesh | None = None,
) -> Callable:
    """`detect(variables, images, image_size) -> {method: PPIResult (B, P, ...)}`.

    The network and the post-processing (candidates, PPI, NMS and the baselines,
    vmapped over the batch) run in one jit; with a `mesh`, sharded like the training
    step: the batch (a multiple of the "data" axis size) over "data", the variables
    replicated, the results keeping the batch sharding.

    Args:
      model: the network.
      ppi_config: every PPI/NMS and candidate setting (rescoring included).
      mean_pose: a single "anchor" holding the mean training pose (`fit_anchor_poses`
        with K = 1); None leaves out the "mean_pose" baseline.
      mesh: a ("data", ...) device mesh (`train.step.make_mesh`); None: default device.
    """
    # Under vmap the PPI's buffer compaction only costs (`ppi.PPIConfig.min_buffer`).
    ppi_config = dataclasses.replace(ppi_config, min_buffer=2**30)

    def post_process(variables, out, image_size):
        anchors = lcrnet_lib.anchor_poses(variables, model.config)
        cands = candidates_lib.candidates_from_outputs(
            out.boxes,
            out.probs,
            out.poses2d,
            out.poses3d,
            upper_body_classes=anchors.upper_body_classes,
            valid=out.valid,
            rescore_sigma=ppi_config.rescore_sigma or None,
            min_candidates=ppi_config.min_candidates,
            candidate_threshold=ppi_config.candidate_threshold,
        )
        inputs = dict(cands.ppi_inputs(), image_size=image_size, config=ppi_config)
        results = {"ppi": ppi.ppi(**inputs), "nms": nms_baseline.nms_poses(**inputs)}
        anchor_index = cands.class_index - 1
        anchor_inputs = dict(
            inputs,
            poses2d=anchors_lib.denormalize_in_box(anchors.pose2d[anchor_index], cands.rois),
            poses3d=anchors.pose3d[anchor_index],
        )
        results["anchor"] = nms_baseline.nms_poses(**anchor_inputs)
        if mean_pose is not None:
            nms = results["nms"]
            boxes = geometry.pose_box(nms.poses2d, margin=mean_pose.margin)
            people = nms.valid.shape[0]
            results["mean_pose"] = nms.replace(
                poses2d=anchors_lib.denormalize_in_box(mean_pose.pose2d[0], boxes),
                poses3d=jnp.broadcast_to(
                    mean_pose.pose3d[0], (people, *mean_pose.pose3d.shape[1:])
                ),
            )
        return results

    def detect(variables, images, image_size):
        out = model.apply(variables, images, image_size)
        return jax.vmap(post_process, in_axes=(None, 0, 0))(variables, out, image_size)

    if mesh is None:
        return jax.jit(detect)
    replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(detect, in_shardings=(replicated, data, data), out_shardings=data)


def _match(pred2d, scores, valid, gt2d, gt_known) -> np.ndarray:
    """(G,) index of the prediction matched to each ground-truth person, or -1."""
    match = np.full(len(gt2d), -1)
    if not len(gt2d) or not np.any(valid):
        return match
    pred_boxes = np.asarray(geometry.pose_box(pred2d, margin=0.0))
    gt_boxes = np.asarray(geometry.pose_box(gt2d, gt_known, margin=0.0))
    overlap = np.asarray(geometry.iou_matrix(pred_boxes, gt_boxes))  # (P, G)
    for p in np.argsort(-np.where(valid, scores, -np.inf), kind="stable"):
        if not valid[p]:
            break
        candidates = np.where(match < 0, overlap[p], -1.0)
        g = int(np.argmax(candidates))
        if candidates[g] >= MATCH_IOU:
            match[g] = p
    return match


def _head_size(gt2d, joint_set) -> np.ndarray:
    js = skeleton.get_joint_set(joint_set)
    r, l, h = js.indices(("right_shoulder", "left_shoulder", "head"))  # noqa: E741
    neck = 0.5 * (gt2d[..., r, :] + gt2d[..., l, :])
    return np.maximum(np.linalg.norm(gt2d[..., h, :] - neck, axis=-1), 1.0)


class Accumulator:
    """Collects matched pairs and AP inputs of one method over a split."""

    def __init__(self, joint_set: str):
        self.joint_set = joint_set
        self.sigmas = oks_sigmas(joint_set)
        self.pred, self.gt, self.gt_visible, self.gt_areas = [], [], [], []
        self.scores, self.pairs, self.absolute = [], [], []

    def add(self, result: dict, gt: dict) -> None:
        """One image: result {poses2d, poses3d, scores, valid}, gt {poses2d, poses3d,
        visible, known, valid} and optionally {center3d, camera_space, intrinsics} (numpy,
        one image; `known`: joints whose 2D position is known, e.g. the occluded ones of
        synthetic people; `camera_space`: people whose `center3d` is their camera-space
        torso centre)."""
        gt2d = gt["poses2d"][gt["valid"]]
        gt3d = gt["poses3d"][gt["valid"]]
        visible = gt["visible"][gt["valid"]]
        boxes = np.asarray(geometry.pose_box(gt2d, visible, margin=0.0))
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        valid = result["valid"]
        known = gt["known"][gt["valid"]]
        match = _match(result["poses2d"], result["scores"], valid, gt2d, known)
        intrinsics = gt.get("intrinsics", np.zeros(4, np.float32))
        translation, _ = camera.fit_translation(
            result["poses3d"], result["poses2d"], intrinsics
        )  # (P, 3), NaN where not placed
        center = gt.get("center3d", np.zeros((len(gt["valid"]), 3)))[gt["valid"]]
        camera_space = gt.get("camera_space", np.zeros_like(gt["valid"]))[gt["valid"]]
        camera_space = camera_space & intrinsics.any()
        for g, p in enumerate(match):
            if p < 0:
                continue
            if camera_space[g]:
                pred_cam = result["poses3d"][p] + translation[p]
                self.absolute.append((pred_cam, gt3d[g] + center[g]))
            self.pairs.append(
                (result["poses2d"][p], gt2d[g], visible[g], result["poses3d"][p], gt3d[g])
            )
        self.pred.append(result["poses2d"][valid])
        self.scores.append(result["scores"][valid])
        self.gt.append(gt2d)
        self.gt_visible.append(visible)
        self.gt_areas.append(areas)

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
            gt_areas=self.gt_areas, sigmas=self.sigmas,
        )  # fmt: skip
        out["AP"], out["AP50"] = ap["AP"], ap["AP50"]
        if not self.pairs:
            nan = float("nan")
            return out | dict(
                mpjpe_mm=nan, pa_mpjpe_mm=nan, pck3d=nan, pck3d_all=0.0, pckh=nan,
                root_error_mm=nan, pck3d_abs=nan,
            )  # fmt: skip
        p2, g2, vis, p3, g3 = (np.stack(x) for x in zip(*self.pairs, strict=True))
        out["mpjpe_mm"] = 1000 * float(np.mean(pose3d.mpjpe(p3, g3)))
        out["pa_mpjpe_mm"] = 1000 * float(np.mean(pose3d.pa_mpjpe(p3, g3)))
        pck = pose3d.pck3d(p3, g3)
        out["pck3d"] = pck
        out["pck3d_all"] = pck * len(self.pairs) / num_gt
        out["pckh"] = pose2d.pckh(p2, g2, vis, _head_size(g2, self.joint_set))[1]
        out["root_error_mm"], out["pck3d_abs"] = float("nan"), float("nan")
        if self.absolute:
            pred_cam, gt_cam = (np.stack(x) for x in zip(*self.absolute, strict=True))
            root, out["pck3d_abs"] = pose3d.absolute_errors(
                pred_cam, gt_cam, joint_set=self.joint_set
            )
            out["root_error_mm"] = 1000 * nanmean(root)
        return out


def evaluate(
    detect: Callable,
    variables: dict,
    batches: Iterable[dict],
    *,
    joint_set: str,
    batch_size: int,
    progress: Callable[[Iterable], Iterable] | None = None,
    protocol: benchmarks.DatasetProtocol | None = None,
) -> tuple[dict, list]:
    """Runs `detect` over evaluation batches and computes every method's metrics.

    Args:
      detect: from `make_detector`.
      variables: the model's variables.
      batches: evaluation batches of `lcrnet_jax.data.pipeline.make_loader(train=False)`;
        a last, smaller batch is padded to `batch_size` (one compile).
      joint_set: the batches' joint set.
      batch_size: the batches' size.
      progress: optional wrapper of the batch iterable (e.g. tqdm).
      protocol: the dataset's protocol, given the people of "ppi" and "nms" of every
        image (call its `summary()` afterwards); None for none.

    Returns:
      (metrics {method: {name: value}}, COCO-style keypoint results of "ppi" in
      original-image pixels: dicts with image_id (the record index), category_id 1,
      keypoints [x, y, v] * J, score).
    """
    accumulators: dict[str, Accumulator] = {}
    coco = []
    for batch in progress(batches) if progress else batches:
        real = len(batch["image"])
        padded = {k: _pad(v, batch_size) for k, v in batch.items()}
        # One device-to-host copy per batch; the per-image loops below index numpy.
        results = jax.tree.map(np.asarray, detect(variables, padded["image"], padded["image_size"]))
        for method, res in results.items():
            acc = accumulators.setdefault(method, Accumulator(joint_set))
            for b in range(real):
                acc.add(
                    {k: getattr(res, k)[b] for k in ("poses2d", "poses3d", "scores", "valid")},
                    {
                        "poses2d": batch["poses2d"][b],
                        "poses3d": batch["poses3d"][b],
                        "visible": batch["visible"][b],
                        "known": batch["visible"][b] | batch["has_3d"][b][:, None],
                        "valid": batch["person_valid"][b],
                        "center3d": batch["center3d"][b],
                        "camera_space": batch["has_3d"][b] & ~batch["pseudo_3d"][b],
                        "intrinsics": batch["intrinsics"][b],
                    },
                )
        coco += _coco_results(results["ppi"], batch, real)
        if protocol is not None:
            for method in PROTOCOL_METHODS:
                _add_to_protocol(protocol, method, results[method], batch, real)
    return {m: acc.summary() for m, acc in accumulators.items()}, coco


def _pad(x: np.ndarray, size: int) -> np.ndarray:
    x = np.asarray(x)
    if len(x) >= size:
        return x
    return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)])


def _original_pixels(poses2d, batch: dict, b: int) -> np.ndarray:
    """(..., J, 2) network pixels of batch example `b` -> its original image's pixels."""
    return (np.asarray(poses2d) - np.asarray(batch["offset"][b])) / float(batch["scale"][b])


def _add_to_protocol(protocol, method: str, result: ppi.PPIResult, batch: dict, real: int):
    """Gives `protocol` the valid people of `result` (numpy) for the batch's real images."""
    for b in range(real):
        valid = result.valid[b]
        protocol.add(
            method, int(batch["index"][b]), _original_pixels(result.poses2d[b][valid], batch, b),
            result.poses3d[b][valid], result.scores[b][valid],
        )  # fmt: skip


def _coco_results(result: ppi.PPIResult, batch: dict, real: int) -> list:
    out = []
    for b in range(real):
        for p in np.flatnonzero(np.asarray(result.valid[b])):
            xy = _original_pixels(result.poses2d[b, p], batch, b)
            keypoints = np.concatenate([xy, np.full((len(xy), 1), 2.0)], axis=1)
            out.append(
                {
                    "image_id": int(batch["index"][b]),
                    "category_id": 1,
                    "keypoints": [round(float(v), 2) for v in keypoints.reshape(-1)],
                    "score": float(result.scores[b, p]),
                }
            )
    return out


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
    lines.append(f"| people found | {counts} |")
    lines.append(f"| ground truth | {' | '.join(str(results[m]['num_gt']) for m in methods)} |")
    return "\n".join(lines)
