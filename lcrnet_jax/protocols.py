"""The benchmarks' own protocols on a model's evaluation predictions (Sec. 4).

`DatasetProtocol` collects, for each evaluation image, the people a method predicted
(2D in original-image pixels, 3D in metres, torso-centred, in the model's joint set) by
record index; `summary()` then reads the records' native annotations and computes:

  - Human3.6M (configs p1, p2, p3): Abs. and Align. MPJPE in mm (`metrics.h36m_errors`)
    of the top-scoring person of each test frame, in the model's joint set (13 or 17
    joints, both poses centred on the torso); frames where nothing was detected are
    counted in "missed" and left out of the errors.
  - MPII: single-person PCKh@0.5 and multi-person mAP (`metrics.mpii_multi_person_ap`)
    on LCR-14 joints (the 13 LCR joints and a head top, `skeleton.extrapolate_head_top`),
    head sizes from the annotated head boxes. For PCKh each annotated person, in order,
    takes the prediction not yet taken with the highest PCKh; a person without one
    has every joint wrong.
  - MuPoTS-3D: 3DPCK at 150 mm, "all" and "matched" (`metrics.mupots_3dpck`, official
    matching and bone rescaling), predictions completed to MuPoTS-17 by `to_mupots17`.

Other datasets have no protocol beyond the generic metrics of `lcrnet_jax.evaluation`:
`for_dataset` returns None for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lcrnet_jax import metrics, skeleton

DATASETS = ("human36m", "mpii_human_pose", "mupots3d")


def to_mupots17(poses: np.ndarray, joint_set: str) -> np.ndarray:
    """(..., J, D) LCR-13/17 poses -> (..., 17, D) MuPoTS-17 poses.

    Joints of the same name are copied. The others (rules of ours, the paper gives
    none): head top from `skeleton.extrapolate_head_top`; pelvis = midpoint of the
    hips; neck = midpoint of the shoulders; spine = midpoint of pelvis and neck (LCR-17
    has pelvis, spine and neck, so only its head top is made up).
    """
    poses = np.asarray(poses, np.float64)
    out, _ = skeleton.convert(poses, None, joint_set, "mupots17")
    num_joints = skeleton.get_joint_set(joint_set).num_joints
    _, known = skeleton.convert(np.zeros((num_joints, 1)), None, joint_set, "mupots17")
    lcr13, _ = skeleton.convert(poses, None, joint_set, "lcr13")
    joint = skeleton.MUPOTS17.index

    def missing(name: str, value: np.ndarray) -> None:
        if not known[joint(name)]:
            out[..., joint(name), :] = value

    missing("head_top", skeleton.extrapolate_head_top(lcr13)[..., 13, :])
    missing("pelvis", lcr13[..., 4:6, :].mean(-2))  # LCR-13 hips: 4 right, 5 left
    missing("neck", lcr13[..., 10:12, :].mean(-2))  # LCR-13 shoulders: 10 right, 11 left
    missing("spine", (out[..., joint("pelvis"), :] + out[..., joint("neck"), :]) / 2)
    return out


class DatasetProtocol:
    """Collects predictions by record index and computes a dataset's protocol metrics.

    Args:
      dataset: "human36m", "mpii_human_pose" or "mupots3d".
      source: the evaluation split's records (a `tfds.data_source`, images may stay
        encoded), indexed like the evaluation batches' "index".
      joint_set: the model's joint set, "lcr13" or "lcr17".
      h36m_protocol: "p1", "p2" or "p3" (Human3.6M only).
    """

    def __init__(self, dataset: str, source, *, joint_set: str, h36m_protocol: str = "p1"):
        if dataset not in DATASETS:
            raise ValueError(f"no protocol for dataset {dataset!r}; protocols: {DATASETS}")
        if joint_set not in ("lcr13", "lcr17"):
            raise ValueError(f"joint_set must be 'lcr13' or 'lcr17', got {joint_set!r}")
        self.dataset, self.source, self.joint_set = dataset, source, joint_set
        self.h36m_protocol = metrics.h36m_protocol(h36m_protocol)
        self._predictions: dict[str, dict[int, dict[str, np.ndarray]]] = {}

    @property
    def name(self) -> str:
        if self.dataset == "human36m":
            return f"human36m/{self.h36m_protocol.name}"
        return self.dataset

    def add(self, method: str, index: int, poses2d, poses3d, scores) -> None:
        """One image's people for `method`: poses2d (P, J, 2) original-image pixels,
        poses3d (P, J, 3) metres torso-centred, scores (P,); only real people."""
        self._predictions.setdefault(method, {})[int(index)] = {
            "poses2d": np.asarray(poses2d, np.float64),
            "poses3d": np.asarray(poses3d, np.float64),
            "scores": np.asarray(scores, np.float64),
        }

    def summary(self) -> dict[str, dict]:
        """{method: {metric: float or int}} over the images added; reads the records'
        annotations."""
        indices = sorted({i for p in self._predictions.values() for i in p})
        records = [self.source[i] for i in indices]
        compute = {
            "human36m": self._human36m,
            "mpii_human_pose": self._mpii,
            "mupots3d": self._mupots,
        }[self.dataset]
        num_joints = skeleton.get_joint_set(self.joint_set).num_joints
        empty = {
            "poses2d": np.zeros((0, num_joints, 2)),
            "poses3d": np.zeros((0, num_joints, 3)),
            "scores": np.zeros((0,)),
        }
        summary = {}
        for method, by_index in self._predictions.items():
            values = compute(records, [by_index.get(i, empty) for i in indices])
            summary[method] = {
                key: int(value) if isinstance(value, (int, np.integer)) else float(value)
                for key, value in values.items()
            }
        return summary

    def _human36m(self, records: Sequence[Mapping], predictions: Sequence[dict]) -> dict:
        found = [(r, p) for r, p in zip(records, predictions, strict=True) if len(p["scores"])]
        missed = len(records) - len(found)
        if not found:
            return {"abs_mm": np.nan, "align_mm": np.nan, "num_poses": 0, "missed": missed}
        pred = np.stack([p["poses3d"][np.argmax(p["scores"])] for _, p in found])
        native = np.stack([np.asarray(r["people"]["joints3d"])[0] for r, _ in found])
        gt, known = skeleton.convert(native, None, "h36m17", self.joint_set)
        metadata = {
            key: np.array([int(r[key]) for r, _ in found])
            for key in ("subject", "camera", "trial", "frame")
        }
        metadata["action"] = np.array([_text(r["action"]) for r, _ in found])
        errors = metrics.h36m_errors(
            pred, gt, self.h36m_protocol, metadata=metadata, visible=known,
            joint_set=self.joint_set,
        )  # fmt: skip
        return {
            "abs_mm": errors["abs_mm"],
            "align_mm": errors["align_mm"],
            "num_poses": errors["num_poses"],
            "missed": missed,
        }

    def _mpii(self, records: Sequence[Mapping], predictions: Sequence[dict]) -> dict:
        gt2d, gt_known, head, pred2d, scores = [], [], [], [], []
        for record, prediction in zip(records, predictions, strict=True):
            people = record["people"]
            joints, known = skeleton.convert(
                people["joints2d"], people["annotated"], "mpii16", "lcr14"
            )
            gt2d.append(joints)
            gt_known.append(known)
            head.append(metrics.mpii_head_size(people["head_box"]))
            pred2d.append(skeleton.extrapolate_head_top(prediction["poses2d"]))  # LCR-14
            scores.append(prediction["scores"])
        ap = metrics.mpii_multi_person_ap(pred2d, scores, gt2d, gt_known, head)
        correct, counted = 0, 0
        for g2d, known, size, p2d in zip(gt2d, gt_known, head, pred2d, strict=True):
            taken = np.zeros(len(p2d), bool)
            for g in range(len(g2d)):
                if not known[g].any():
                    continue
                hits = np.linalg.norm(p2d - g2d[g], axis=-1) <= 0.5 * size[g]  # (P, J)
                per_pred = np.where(taken, -1, (hits & known[g]).sum(-1))
                best = int(np.argmax(per_pred)) if len(p2d) else -1
                if best >= 0 and per_pred[best] > 0:
                    taken[best] = True
                    correct += int(per_pred[best])
                counted += int(known[g].sum())
        return {
            "pckh": correct / counted if counted else np.nan,
            "map": ap["mean"],
            "num_people": int(sum(k.any(-1).sum() for k in gt_known)),
        }

    def _mupots(self, records: Sequence[Mapping], predictions: Sequence[dict]) -> dict:
        result = metrics.mupots_3dpck(
            [to_mupots17(p["poses2d"], self.joint_set) for p in predictions],
            [to_mupots17(p["poses3d"], self.joint_set) for p in predictions],
            [np.asarray(r["people"]["joints2d"]) for r in records],
            [np.asarray(r["people"]["joints3d_univ"]) for r in records],
            np.array([int(r["sequence"]) for r in records]),
            gt_valid=[np.asarray(r["people"]["is_valid"]) for r in records],
        )  # fmt: skip
        return {
            "3dpck_all": result["all"],
            "3dpck_matched": result["matched"],
            "num_annotated": result["num_annotated"],
            "missed": result["num_missed"],
        }


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def for_dataset(name: str, source, *, joint_set: str) -> DatasetProtocol | None:
    """The protocol of a dataset "NAME[/CONFIG]" (e.g. "human36m/p2"), None if it has none."""
    dataset, _, config = name.partition("/")
    if dataset not in DATASETS:
        return None
    if dataset == "human36m":
        return DatasetProtocol(dataset, source, joint_set=joint_set, h36m_protocol=config or "p1")
    return DatasetProtocol(dataset, source, joint_set=joint_set)


def format_table(summary: Mapping[str, Mapping], name: str) -> str:
    """A Markdown table of `summary()`: one row per metric, one column per method."""
    methods = list(summary)
    keys = list(next(iter(summary.values()), {}))
    lines = [f"| {name} | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for key in keys:
        cells = [_cell(summary[m][key], key) for m in methods]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value, key: str) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}" if key.endswith("_mm") else f"{value:.3f}"
