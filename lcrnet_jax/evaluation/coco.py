"""COCO keypoints: OKS AP on the joints LCR shares with COCO (LCR-Net++ Sec. 4.2 data)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lcrnet_jax import skeleton
from lcrnet_jax.evaluation.base import ProtocolEvaluator
from lcrnet_jax.metrics import coco as coco_metrics

SHARED_JOINTS = tuple(n for n in skeleton.COCO17.joints if n in skeleton.LCR13.joints)
"""The 12 COCO keypoints an LCR pose has (shoulders to ankles); COCO's face keypoints have
no LCR counterpart."""


class COCOEvaluator(ProtocolEvaluator):
    """COCO keypoint AP/AR with OKS, as pycocotools' `COCOeval(iouType="keypoints")`.

    `metrics.coco.oks_ap` (its docstring states the pycocotools rules: 20 detections per
    image, crowd and keypoint-less people ignored, the medium/large ranges), with the
    annotations' areas and boxes, on `SHARED_JOINTS` only with COCO's sigmas of those
    joints (our choice: the paper reports no COCO number, and the official 17-keypoint
    AP needs face keypoints an LCR pose does not have). The numbers are therefore not
    comparable with a 17-keypoint COCO AP. Reported: "AP", "AP50", "AP75", "AP_medium",
    "AP_large", "AR", "num_people" (people that count: not crowd, with keypoints).

    Args:
      source: the split's records (native COCO annotations).
      joint_set: the model's joint set (`skeleton.MODEL_JOINT_SETS`).
    """

    name = "coco_keypoints"

    def annotation(self, record: Mapping) -> dict:
        people = record["people"]
        idx = list(skeleton.COCO17.indices(SHARED_JOINTS))
        return {
            "joints": np.asarray(people["joints2d"], np.float64)[:, idx],
            "labelled": np.asarray(people["annotated"], bool)[:, idx],
            "area": np.asarray(people["area"], np.float64).reshape(-1),
            "box": np.asarray(people["box"], np.float64).reshape(-1, 4),
            "crowd": np.asarray(people["is_crowd"], bool).reshape(-1),
        }

    def metrics(self, annotations: Sequence[dict], predictions: Sequence[dict]) -> dict:
        pred_idx = list(skeleton.get_joint_set(self.joint_set).indices(SHARED_JOINTS))
        sigmas = coco_metrics.COCO_SIGMAS[list(skeleton.COCO17.indices(SHARED_JOINTS))]
        ap = coco_metrics.oks_ap(
            [p["poses2d"][:, pred_idx] for p in predictions],
            [p["scores"] for p in predictions],
            [a["joints"] for a in annotations],
            [a["labelled"] for a in annotations],
            gt_areas=[a["area"] for a in annotations],
            gt_boxes=[a["box"] for a in annotations],
            gt_crowd=[a["crowd"] for a in annotations],
            sigmas=sigmas,
        )  # fmt: skip
        out = {k: ap[k] for k in ("AP", "AP50", "AP75", "AP_medium", "AP_large", "AR")}
        out["num_people"] = int(
            sum(np.sum(~a["crowd"] & a["labelled"].any(-1)) for a in annotations)
        )
        return out
