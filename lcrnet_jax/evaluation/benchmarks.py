"""The benchmarks' own protocols on a model's evaluation predictions (Sec. 4).

`DatasetProtocol` collects, for each evaluation image, the people a method predicted
(2D in original-image pixels, 3D in metres, torso-centred, in the model's joint set) by
record index; `summary()` then reads the records' native annotations and computes:

  - Human3.6M (configs p1, p2, p3, `evaluation.h36m`): Abs. and Align. MPJPE in mm
    of the top-scoring person of each test frame, in the model's joint set (13 or 17
    joints, both poses centred on the torso); frames where nothing was detected are
    counted in "missed" and left out of the errors.
  - MPII: single-person PCKh@0.5 and multi-person mAP (`evaluation.mpii`)
    on LCR-14 joints (the 13 LCR joints and a head top, `skeleton.extrapolate_head_top`),
    head sizes from the annotated head boxes. For PCKh each annotated person, in order,
    takes the prediction not yet taken with the highest PCKh; a person without one
    has every joint wrong.
  - MuPoTS-3D: 3DPCK at 150 mm, "all" and "matched" (`evaluation.mupots`, official
    matching and bone rescaling), predictions completed to MuPoTS-17 by `mupots.to_mupots17`.

Other datasets have no protocol beyond the generic metrics of `lcrnet_jax.evaluation.generic`:
`for_dataset` returns None for them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np

from lcrnet_jax import skeleton
from lcrnet_jax.evaluation import h36m, mpii, mupots

DATASETS = ("human36m", "mpii_human_pose", "mupots3d")


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
        self.h36m_protocol = h36m.h36m_protocol(h36m_protocol)
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
            "human36m": functools.partial(
                h36m.protocol_metrics, joint_set=self.joint_set, protocol=self.h36m_protocol
            ),
            "mpii_human_pose": mpii.protocol_metrics,
            "mupots3d": functools.partial(mupots.protocol_metrics, joint_set=self.joint_set),
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
