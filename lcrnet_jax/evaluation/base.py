"""The evaluator interface, as detectron2's `DatasetEvaluator` (LCR-Net++ Sec. 4).

An evaluator is `reset()`, then `process(batch, people)` for every evaluation batch, then
`evaluate() -> {method: {metric: value}}`. `batch` is a batch of
`lcrnet_jax.data.pipeline.make_loader(train=False)` holding only real images (B); `people`
maps each method ("ppi", "nms", the baselines of `METHODS` and `FALLBACK`; an exported
model gives its one method only) to a `PPIResult` of numpy arrays with the same leading B
axis, 2D in network pixels.

`ProtocolEvaluator` is the base of the benchmarks' protocols: it keeps, per image, the
annotations the protocol needs (read from the split's records by the batch's "index")
and the people of `PROTOCOL_METHODS` in original-image pixels, and computes the metrics
at `evaluate()`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import numpy as np

from lcrnet_jax import skeleton
from lcrnet_jax.data.records import read_record

METHODS = ("ppi", "nms", "anchor", "mean_pose")
"""The detection methods of the generic table (`evaluation.inference.make_detector`)."""
PROTOCOL_METHODS = ("ppi", "nms")
"""The methods scored by the benchmarks' own protocols."""
FALLBACK = "best_candidate"
"""`people` key of the highest-scoring candidate of each image, (B, 1) rows, valid when the
image has any candidate: the pose a protocol that scores every frame uses where a method
found no person above its threshold."""


class Evaluator(abc.ABC):
    """reset / process / evaluate over one evaluation split."""

    name: str

    @abc.abstractmethod
    def reset(self) -> None:
        """Forgets every processed image."""

    @abc.abstractmethod
    def process(self, batch: Mapping[str, np.ndarray], people: Mapping) -> None:
        """Takes one batch's ground truth and people (see the module docstring)."""

    @abc.abstractmethod
    def evaluate(self) -> dict[str, dict]:
        """{method: {metric: float or int}} over the images processed since `reset`."""


def image_people(batch: Mapping, result, b: int) -> dict[str, np.ndarray]:
    """The real people of batch image `b` in `result` (a `PPIResult` of numpy arrays):
    {"poses2d" (P, J, 2) original-image pixels, "poses3d" (P, J, 3) metres, "scores" (P,)}."""
    valid = np.asarray(result.valid[b], bool)
    return {
        "poses2d": original_pixels(np.asarray(result.poses2d[b])[valid], batch, b),
        "poses3d": np.asarray(result.poses3d[b], np.float64)[valid],
        "scores": np.asarray(result.scores[b], np.float64)[valid],
    }


def original_pixels(poses2d, batch: Mapping, b: int) -> np.ndarray:
    """(..., J, 2) network pixels of batch example `b` -> its original image's pixels."""
    offset, scale = np.asarray(batch["offset"][b]), float(batch["scale"][b])
    return (np.asarray(poses2d, np.float64) - offset) / scale


class ProtocolEvaluator(Evaluator):
    """A benchmark protocol on the split's records.

    Subclasses define `annotation(record)` (what the protocol keeps of a record) and
    `metrics(annotations, predictions)` (one method's metrics over the images).

    `records_since` = (builder version, what changed) refuses records that an older
    builder wrote (a TFDS source knows its version; TFDS opens whatever version is built).

    Args:
      source: the split's records, indexed like the batches' "index".
      joint_set: the model's joint set (`skeleton.MODEL_JOINT_SETS`).
    """

    records_since: tuple[str, str] | None = None

    def __init__(self, source, *, joint_set: str):
        if joint_set not in skeleton.MODEL_JOINT_SETS:
            raise ValueError(
                f"joint_set must be one of {skeleton.MODEL_JOINT_SETS}, got {joint_set!r}"
            )
        self._check_version(source)
        self.source, self.joint_set = source, joint_set
        self.reset()

    def _check_version(self, source) -> None:
        info = getattr(source, "dataset_info", None)
        if info is None or self.records_since is None:
            return
        needed, change = self.records_since
        if _version(info.version) < _version(needed):
            dataset = info.full_name.rsplit("/", 1)[0]
            raise ValueError(
                f"{dataset} was built by version {info.version} of its builder; the {self.name} "
                f"evaluation needs {needed} or later ({change}): rebuild it with python "
                f"experiments/build_dataset.py --dataset={dataset} --overwrite"
            )

    def reset(self) -> None:
        self._annotations: list = []
        self._predictions: dict[str, list[dict]] = {}

    def process(self, batch: Mapping, people: Mapping) -> None:
        methods = [m for m in PROTOCOL_METHODS if m in people]  # an exported model has one
        for b in range(len(batch["index"])):
            record = read_record(self.source, int(batch["index"][b]))
            self._annotations.append(self.annotation(record))
            for method in methods:
                found = image_people(batch, people[method], b)
                if FALLBACK in people:
                    found["fallback"] = image_people(batch, people[FALLBACK], b)
                self._predictions.setdefault(method, []).append(found)

    def evaluate(self) -> dict[str, dict]:
        return {
            method: {k: _plain(v) for k, v in self.metrics(self._annotations, preds).items()}
            for method, preds in self._predictions.items()
        }

    @abc.abstractmethod
    def annotation(self, record: Mapping):
        """The part of a record the protocol needs (small numpy arrays)."""

    @abc.abstractmethod
    def metrics(self, annotations: Sequence, predictions: Sequence[dict]) -> dict:
        """One method's metrics; predictions per image as `image_people` (+ "fallback")."""


def _version(version) -> tuple[int, ...]:
    return tuple(int(part) for part in str(version).split("."))


def _plain(value):
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def format_table(summary: Mapping[str, Mapping], name: str) -> str:
    """A Markdown table of `evaluate()`: one row per metric, one column per method."""
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
