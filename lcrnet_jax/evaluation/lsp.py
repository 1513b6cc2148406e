"""Leeds Sports Pose: single-person PCK@0.2 on its 14 joints (LCR-Net++ Sec. 4.2 data)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lcrnet_jax import skeleton
from lcrnet_jax.evaluation.base import ProtocolEvaluator
from lcrnet_jax.metrics import pose2d


class LSPEvaluator(ProtocolEvaluator):
    """LSP PCK@0.2 with the torso size.

    LSP's own script scores PCP; the PCK@0.2 of later work is used here: a joint is
    correct within `threshold` times the torso size, the distance from the annotated
    left shoulder to the right hip (`pose2d.pckh` with that size), pooled over the
    annotated joints of the test images.

    Choices where the paper is silent (it trains on LSP and reports no LSP number): one
    person per image (LSP crops are centred on it) takes the method's top-scoring person,
    an image without one has every joint wrong; the joints are LSP's 14 (`skeleton.MPII14`
    in LCR order, the neck being MPII's upper neck), a model's neck and head top made by
    `skeleton.complete`. People whose shoulder or hip is not annotated are not counted.
    Reported: "pck", "num_people", "missed".

    Args:
      source: the split's records (native LSP annotations).
      joint_set: the model's joint set (`skeleton.MODEL_JOINT_SETS`).
      threshold: the fraction of the torso size.
    """

    name = "lsp"

    def __init__(self, source, *, joint_set: str, threshold: float = 0.2):
        self.threshold = threshold
        super().__init__(source, joint_set=joint_set)

    def annotation(self, record: Mapping) -> dict:
        people = record["people"]
        joints, known = skeleton.convert(people["joints2d"], people["annotated"], "lsp14", "mpii14")
        shoulder, hip = skeleton.MPII14.indices(("left_shoulder", "right_hip"))
        torso = np.linalg.norm(joints[:, shoulder] - joints[:, hip], axis=-1)
        counted = known[:, shoulder] & known[:, hip] & (torso > 0)
        first = np.flatnonzero(counted)[:1]  # LSP: one person per image
        return {"joints": joints[first], "known": known[first], "torso": torso[first]}

    def metrics(self, annotations: Sequence[dict], predictions: Sequence[dict]) -> dict:
        pred, missed = [], 0
        for a, found in zip(annotations, predictions, strict=True):
            chosen = np.full(a["joints"].shape, np.inf)  # missed: every joint wrong
            if len(found["scores"]):
                top = found["poses2d"][np.argmax(found["scores"])]
                chosen[:] = skeleton.complete(top, self.joint_set, "mpii14")
            else:
                missed += len(chosen)
            pred.append(chosen)
        num = int(sum(len(a["torso"]) for a in annotations))
        out = {"pck": np.nan, "num_people": num, "missed": missed}
        if num:
            out["pck"] = pose2d.pckh(
                np.concatenate(pred), np.concatenate([a["joints"] for a in annotations]),
                np.concatenate([a["known"] for a in annotations]),
                np.concatenate([a["torso"] for a in annotations]), threshold=self.threshold,
            )[1]  # fmt: skip
        return out
