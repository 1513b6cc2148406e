"""Input pipeline: TFDS records -> augmented, padded numpy batches through grain (Sec. 4).

LCR-Net++ trains on whole images with their people (Sec. 3.4, 4): every record of a
`lcrnet_jax.data.features` dataset becomes one fixed-size example. `transform_record`
does the per-record work, `make_loader` wires it into a grain `DataLoader` over a
`tfds.data_source` (or any random-access source of such records): per-host sharding,
seeded shuffling and augmentation, worker processes and a checkpointable iterator
(`iterator.get_state()` / `set_state()`, or grain's orbax handlers). Its resize-and-pad step is
`resize.scale_into`, shared with prediction.

Geometry. An example is the original image scaled by `scale` and shifted by `offset`:
network = original * scale + offset, so original = (network - offset) / scale. The
image lies in the top-left corner of the output canvas and is zero elsewhere. The base
scale is that of `data.resize` (`resize=Resize(short_side, max_long_side)`: short side
800, long side at most 1333 in the paper, the scale of evaluation and prediction too),
or, without `resize`, the scale that fits the image into `image_size`.
  - Canvas: `image_size` (height, width); with `image_size=None` (and a `resize`), the
    smallest of `resize.buckets()` that holds the scaled image (static shapes per
    bucket: batches then need one bucket, e.g. batch size 1).
  - Evaluation (`rng=None`): the base scale, reduced if needed so that the whole image
    fits a fixed canvas; offset (0, 0).
  - Training: a horizontal flip with probability `flip_probability` (the image is
    mirrored first: then `scale`/`offset` refer to the mirrored original, x -> W - x),
    a scale of `base * exp(uniform(log(min), log(max)))` for `scale_range` (min, max),
    and a random crop wherever the scaled image is larger than the canvas.
Joints are converted from the dataset's joint set (metadata `joint_set`) with
`skeleton.convert`; joints outside the valid region become not visible; flips swap left
and right (`skeleton.flip_poses`) and mirror 3D (X -> -X) and the principal point.

Pseudo ground truth (Sec. 3.7). With `pseudo_gt` (the sidecar file written by
experiments/add_pseudo_gt.py, see `data.pseudo_gt_file.load_pseudo_gt`), every person
of a record without 3D whom the file gives a match takes the pseudo 3D pose, and the
file's completed 2D pose fills the joints the dataset does not show; both are converted
from the file's LCR joint set to the output joint set right after the record's own
conversion, so that flips, scaling and crops treat them like real annotations. The file
must pair with the split record by record (count and image ids are checked).

Batch (B examples, P = `max_people`, J joints of `joint_set`), numpy:
  image (B, H, W, 3) uint8 RGB, zero beyond the valid region
  image_size (B, 2) int32 height, width of the valid region
  scale (B,) float32 network pixels per original pixel; offset (B, 2) float32 x, y
  poses2d (B, P, J, 2) float32 network pixels of every known joint: all joints of people
    with 3D (occluded and truncated ones too, e.g. synthetic data; the completed ones of
    pseudo ground truth), the annotated ones otherwise; 0 for unknown joints
  poses3d (B, P, J, 3) float32 metres, camera axes, torso-centred (0 without 3D; has_3d
    also needs every output joint to be derivable from the source joints in 3D; pseudo
    ground truth counts as 3D)
  center3d (B, P, 3) float32 metres, camera coordinates of the torso centre of people with
    real 3D (0 otherwise, pseudo ground truth included): with `poses3d`, the camera-space
    pose, when the dataset's 3D is in camera coordinates and `intrinsics` are known
  visible (B, P, J) bool; has_3d (B, P) bool; person_valid (B, P) bool
  intrinsics (B, 4) float32 fx, fy, cx, cy in network pixels (0 when unknown)
  index (B,) int64 record index in the split
  source (B,) int32 index of the example's source in a mixture (0 for one dataset)
  pseudo_3d (B, P) bool the person's 3D is pseudo ground truth (then has_3d too)
  boxes (B, P, 4) float32 network pixels x1, y1, x2, y2: the people's record boxes
    (`people/box`), clipped to the valid region
  ignore_boxes (B, P, 4) float32 network pixels: regions that are neither people nor
    background (zero rows for none), see below
  people_beyond_slots (B,) int32 people with a visible joint left out because the
    `max_people` slots were full
People without a visible joint (after the crop) are dropped; the first `max_people`
others fill the leading slots, padding is all zeros/False. The record boxes
(`people/box`) of the people left out, clipped to the valid region, are the example's
ignored regions, the largest `max_people` of them: COCO crowds and people without
keypoints, or people beyond the slots. Training samples no background there, nor in the
`boxes` of people too little visible for a ground-truth box (`targets.without_boxes`,
`targets.in_ignored_region`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np
from absl import flags

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.data import corpus, features, records
from lcrnet_jax.data import resize as resize_lib
from lcrnet_jax.data.images import ImageDecodeError
from lcrnet_jax.data.pseudo_gt_file import PseudoGTFile, load_pseudo_gt, pseudo_gt_path
from lcrnet_jax.data.resize import image_shape, scale_into

BATCH_KEYS = (
    "image",
    "image_size",
    "scale",
    "offset",
    "poses2d",
    "poses3d",
    "center3d",
    "visible",
    "has_3d",
    "person_valid",
    "intrinsics",
    "index",
    "source",
    "pseudo_3d",
    "boxes",
    "ignore_boxes",
    "people_beyond_slots",
)


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training augmentation.

    Attributes:
      scale_range: (min, max) factor on the base scale (the `resize` short-side scale, or
        the one that fits the image into the canvas), log-uniform.
      flip_probability: probability of a horizontal flip.
    """

    scale_range: tuple[float, float] = (0.75, 1.25)
    flip_probability: float = 0.5

    def __post_init__(self):
        low, high = self.scale_range
        if not 0.0 < low <= high < math.inf:
            raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {low, high}")
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {self.flip_probability}")


def canvas_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """(height, width) of an int, a (size,) tuple (`--config.data.image_size=64` on the
    command line) or a (height, width) one."""
    size = (image_size,) if geometry.is_whole(image_size) else tuple(image_size)
    size = size * 2 if len(size) == 1 else size
    if len(size) != 2 or min(size) < 1:
        raise ValueError(
            f"image_size must be an int, (size,) or (height, width) >= 1, got {image_size}"
        )
    return int(size[0]), int(size[1])


def transform_record(
    record: dict,
    *,
    index: int,
    image_size: int | Sequence[int] | None,
    src_joint_set: str,
    joint_set: str = "lcr13",
    max_people: int = 16,
    rng: np.random.Generator | None = None,
    augment: Augment = Augment(),
    pseudo_gt: Mapping[str, Any] | None = None,
    source: int = 0,
    resize: resize_lib.Resize | None = None,
) -> dict[str, np.ndarray]:
    """One record of the `features.pose_features` schema -> one example (see module doc).

    Args:
      record: decoded record (image as an (h, w, 3) uint8 array or encoded bytes).
      index: the record's index in its split.
      image_size: output canvas, int or (height, width); None: the size bucket of
        `resize` (module doc).
      src_joint_set: the record's joint set (dataset metadata `joint_set`).
      joint_set: the output joint set.
      max_people: P, people slots.
      rng: augmentation generator; None for evaluation (no augmentation).
      augment: training augmentation parameters.
      pseudo_gt: the record's pseudo ground truth, `PseudoGTFile.record(index)` (P'
        people, J' joints) and the file's "joint_set": joints3d (P', J', 3) metres,
        torso-centred; joints2d (P', J', 2) completed 2D pose in original pixels; valid
        (P',) bool. People without 3D whose `valid` is True take it (see module doc).
      source: the record's source index in a mixture (output "source").
      resize: the base scale (`data.resize`); None fits the image into `image_size`.

    Returns:
      dict with the `BATCH_KEYS` without the batch axis.
    """
    if image_size is None and resize is None:
        raise ValueError("image_size=None (size buckets) needs a resize")
    dst = skeleton.get_joint_set(joint_set)
    people = record["people"]
    joints2d = np.asarray(people["joints2d"], np.float32)
    if joints2d.ndim != 3 or joints2d.shape[-1] != 2:
        raise ValueError(f"people/joints2d must be (P, J, 2), got {joints2d.shape}")
    annotated_3d = np.asarray(people["has_3d"], bool)
    visible_2d, visible = skeleton.convert(joints2d, people["visible"], src_joint_set, dst)
    # With 3D, every 2D position is known (occluded ones too): keep them all.
    all_2d, _ = skeleton.convert(joints2d, None, src_joint_set, dst)
    poses2d = np.where(annotated_3d[:, None, None], all_2d, visible_2d)
    known = visible | annotated_3d[:, None]
    poses3d, known3d = skeleton.convert(
        np.asarray(people["joints3d"], np.float32), None, src_joint_set, dst
    )
    has_3d = annotated_3d & known3d.all(-1)
    pseudo = np.zeros_like(has_3d)
    if pseudo_gt is not None:
        valid = np.asarray(pseudo_gt["valid"], bool)
        if valid.shape != annotated_3d.shape:
            raise ValueError(
                f"pseudo ground truth of record {index} has {len(valid)} people, the record "
                f"{len(annotated_3d)}; rebuild it with experiments/add_pseudo_gt.py"
            )
        src = pseudo_gt["joint_set"]
        pseudo3d, derivable = skeleton.convert(pseudo_gt["joints3d"], None, src, dst)
        pseudo2d, _ = skeleton.convert(pseudo_gt["joints2d"], None, src, dst)
        pseudo = valid & ~annotated_3d & derivable.all(-1)
        # The dataset's own visible joints stay as converted above; the file fills the rest.
        poses2d = np.where(pseudo[:, None, None] & ~visible[..., None], pseudo2d, poses2d)
        poses3d = np.where(pseudo[:, None, None], pseudo3d.astype(np.float32), poses3d)
        known = known | pseudo[:, None]
        has_3d = has_3d | pseudo
    intrinsics = np.asarray(record["intrinsics"], np.float32).copy()
    height, width = image_shape(record["image"])

    if resize is None:
        out_h, out_w = canvas_size(image_size)
        scale = min(out_h / height, out_w / width)
    else:
        scale = resize.scale(height, width)
        if image_size is not None and rng is None:
            out_h, out_w = canvas_size(image_size)
            scale = min(scale, out_h / height, out_w / width)
    crop, flip = (0.0, 0.0), False
    if rng is not None:
        flip = bool(rng.random() < augment.flip_probability)
        lo, hi = np.log(augment.scale_range)
        scale = scale * float(np.exp(rng.uniform(lo, hi)))
    if image_size is None:
        size = resize_lib.resized_size(height, width, scale)
        out_h, out_w = resize_lib.pick_bucket(size, resize.buckets(), clip=rng is not None)
    else:
        out_h, out_w = canvas_size(image_size)
    if rng is not None:
        crop = tuple(
            float(rng.uniform(0.0, max(0.0, size * scale - out))) if size * scale > out else 0.0
            for size, out in ((width, out_w), (height, out_h))
        )
    if flip:
        poses2d = skeleton.flip_poses(poses2d, dst, image_width=width)
        visible = visible[:, list(dst.flip_permutation)]
        known = known[:, list(dst.flip_permutation)]
        poses3d = skeleton.flip_poses(poses3d, dst)
        if intrinsics.any():
            intrinsics[2] = width - intrinsics[2]
    offset = np.array([-crop[0], -crop[1]], np.float32)
    image, (valid_h, valid_w) = scale_into(
        record["image"], scale=scale, out_size=(out_h, out_w), crop=crop, flip=flip
    )

    poses2d = np.where(known[..., None], poses2d * scale + offset, 0.0)
    visible = visible & features.inside_image(poses2d, valid_h, valid_w)
    if intrinsics.any():
        intrinsics = np.concatenate([intrinsics[:2] * scale, intrinsics[2:] * scale + offset])
    real_3d = (has_3d & ~pseudo)[:, None]
    center3d = np.where(real_3d, geometry.torso_center(poses3d, dst), 0.0)
    poses3d = np.where(has_3d[:, None, None], geometry.center_on_torso(poses3d, dst), 0.0)

    seen = np.flatnonzero(visible.any(-1))
    keep = seen[:max_people]
    num = len(keep)
    boxes = _network_boxes(
        people["box"], width=width, scale=scale, offset=offset, flip=flip,
        valid_size=(valid_h, valid_w),
    )  # fmt: skip
    left_out = np.isin(np.arange(len(boxes)), keep, invert=True)
    ignore_boxes = _largest(boxes[left_out], max_people)

    def pad(x, dtype):
        padded = np.zeros((max_people, *x.shape[1:]), dtype)
        padded[:num] = x[keep]
        return padded

    return {
        "image": image,
        "image_size": np.array([valid_h, valid_w], np.int32),
        "scale": np.float32(scale),
        "offset": offset,
        "poses2d": pad(poses2d, np.float32),
        "poses3d": pad(poses3d, np.float32),
        "center3d": pad(center3d, np.float32),
        "visible": pad(visible, bool),
        "has_3d": pad(has_3d, bool),
        "person_valid": np.arange(max_people) < num,
        "intrinsics": intrinsics.astype(np.float32),
        "index": np.int64(index),
        "source": np.int32(source),
        "pseudo_3d": pad(pseudo, bool),
        "boxes": pad(boxes, np.float32),
        "ignore_boxes": ignore_boxes,
        "people_beyond_slots": np.int32(len(seen) - num),
    }


def _network_boxes(boxes, *, width, scale, offset, flip, valid_size) -> np.ndarray:
    """(P, 4) record boxes in original pixels -> network pixels, clipped to the valid
    region of `valid_size` (height, width); `width` is the original width (flips mirror
    about it), `scale`, `offset` and `flip` the example's geometry."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if flip:
        boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], -1)
    boxes = boxes * scale + np.tile(offset, 2)
    height, width = valid_size
    return np.clip(boxes, 0.0, [width, height, width, height]).astype(np.float32)


def _largest(boxes: np.ndarray, count: int) -> np.ndarray:
    """(count, 4): the `count` largest of the non-empty `boxes`, zero rows after them."""
    area = geometry.box_area(boxes)
    order = np.argsort(-area, kind="stable")[: np.sum(area > 0)][:count]
    out = np.zeros((count, 4), np.float32)
    out[: len(order)] = boxes[order]
    return out


class _Indexed:
    """A random-access source whose item i is (start + i, source[start + i]): the records
    [start, stop) of `source` (all by default), each with its index in `source`."""

    def __init__(self, source, start: int = 0, stop: int | None = None):
        self._source = source
        self._start, self._stop = start, len(source) if stop is None else stop

    def __len__(self) -> int:
        return self._stop - self._start

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} is not in [0, {len(self)})")
        index = self._start + int(index)
        return index, records.read_record(self._source, index)

    def __repr__(self) -> str:
        # Grain checks the source's repr when restoring an iterator state: keep it stable.
        source = self._source
        if isinstance(source, list | tuple) or type(source).__repr__ is object.__repr__:
            text = f"Indexed({type(source).__name__} of {len(source)} records"
        else:
            text = f"Indexed({source!r}"
        whole = (self._start, self._stop) == (0, len(source))
        return text + ("" if whole else f", records {self._start}-{self._stop - 1}") + ")"


def evaluation_share(num_records: int, shard_index: int, shard_count: int) -> tuple[int, int]:
    """[start, stop): the consecutive records that host `shard_index` of `shard_count`
    evaluates, every record once (the first num_records % shard_count hosts take one
    more)."""
    size, extra = divmod(num_records, shard_count)
    start = shard_index * size + min(shard_index, extra)
    return start, start + size + (shard_index < extra)


class _PseudoGT:
    """A split's pseudo ground truth by record index, checked against each record.

    It pickles as the path of its file when it has one, so that grain's worker processes
    read the file themselves instead of receiving its arrays.
    """

    def __init__(self, table: PseudoGTFile, path: str | None):
        self._table, self._path, self._split = table, path, table.split

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_table": None if self._path else self._table}

    @property
    def table(self) -> PseudoGTFile:
        if self._table is None:
            self._table = load_pseudo_gt(self._path, self._split)
        return self._table

    def lookup(self, index: int, record: Mapping) -> dict[str, Any]:
        """`transform_record`'s `pseudo_gt` of record `index` (ValueError on a mismatch)."""
        table = self.table
        image_id, expected = record.get("image_id"), str(table.image_id[index])
        image_id = image_id.decode() if isinstance(image_id, bytes) else image_id
        if image_id is not None and str(image_id) != expected:
            raise ValueError(
                f"record {index} has image_id {image_id!r} but the pseudo ground truth of "
                f"split {table.split!r} has {expected!r}: it was made for another "
                "dataset or split; rebuild it with experiments/add_pseudo_gt.py"
            )
        return {**table.record(index), "joint_set": table.joint_set}


def _open_pseudo_gt(
    pseudo_gt: str | os.PathLike | PseudoGTFile, source, *, split: str | None, joint_set: str
) -> _PseudoGT:
    """`make_loader`'s `pseudo_gt` argument, read and checked against the source."""
    if isinstance(pseudo_gt, PseudoGTFile):
        table, path = pseudo_gt, None
    else:
        path = os.fspath(pseudo_gt)
        if not path.endswith(".npz"):
            if split is None:
                raise ValueError(
                    f"pseudo_gt {path!r} is a dataset directory: pass split= or the path of "
                    "its pseudo_gt_<split>.npz"
                )
            path = pseudo_gt_path(path, split)
        table = load_pseudo_gt(path, split)
    where = path or f"PseudoGTFile of split {table.split!r}"
    if split is not None and table.split != split:
        raise ValueError(f"pseudo_gt {where} is for split {table.split!r}, expected {split!r}")
    if len(table) != len(source):
        raise ValueError(
            f"pseudo_gt {where} has {len(table)} records, the source {len(source)}; make it "
            "for this dataset and split with experiments/add_pseudo_gt.py"
        )
    num_joints = skeleton.get_joint_set(table.joint_set).num_joints
    _, derivable = skeleton.convert(np.zeros((num_joints, 3)), None, table.joint_set, joint_set)
    if not derivable.all():
        names = skeleton.get_joint_set(joint_set).joints
        missing = [name for name, ok in zip(names, derivable, strict=True) if not ok]
        raise ValueError(
            f"pseudo_gt {where} has {table.joint_set} poses, which lack {missing} of "
            f"joint_set {joint_set!r}"
        )
    lookup = _PseudoGT(table, path)
    for index in sorted({0, len(source) - 1} if len(source) else ()):
        lookup.lookup(index, records.read_record(source, index))  # another dataset's file?
    return lookup


@dataclasses.dataclass(frozen=True)
class _Transform:
    kwargs: dict
    origin: records.Origin
    pseudo_gt: _PseudoGT | None = None

    def __call__(self, element, rng=None) -> dict:
        index, record = element
        pseudo = None if self.pseudo_gt is None else self.pseudo_gt.lookup(index, record)
        try:
            return transform_record(record, index=index, rng=rng, pseudo_gt=pseudo, **self.kwargs)
        except ImageDecodeError as error:
            raise records.damaged_record(self.origin, index, error) from error


class _TrainMap(grain.transforms.RandomMap):
    def __init__(self, transform: _Transform):
        self._transform = transform

    def random_map(self, element, rng: np.random.Generator) -> dict:
        return self._transform(element, rng)


class _EvalMap(grain.transforms.Map):
    def __init__(self, transform: _Transform):
        self._transform = transform

    def map(self, element) -> dict:
        return self._transform(element)


def source_joint_set(source) -> str:
    """The `joint_set` metadata of a `tfds.data_source` (ValueError if it has none)."""
    info = getattr(source, "dataset_info", None)
    metadata = getattr(info, "metadata", None) or {}
    if "joint_set" not in metadata:
        raise ValueError(
            "the source has no dataset_info.metadata['joint_set']; pass src_joint_set= "
            f"(one of {sorted(skeleton.JOINT_SETS)})"
        )
    return metadata["joint_set"]


def open_source(source, *, split: str | None = None, data_dir: str | None = None):
    """A dataset name "NAME[/CONFIG]" -> its split's records (`records.open_split`:
    images left encoded); any other source is returned as it is."""
    if not isinstance(source, str):
        return source
    if split is None:
        raise ValueError(f"split is required to read dataset {source!r}")
    return records.open_split(source, split, data_dir=data_dir)


def training_poses3d(
    source,
    *,
    joint_set: str = "lcr13",
    max_records: int | None = None,
    seed: int = 0,
    split: str | None = None,
    data_dir: str | None = None,
    src_joint_set: str | None = None,
) -> np.ndarray:
    """The 3D poses of a split's people, for anchor poses (K-means) and statistics.

    Args:
      source: as `make_loader`'s.
      joint_set: output joint set.
      max_records: read at most this many records (a random subset, by `seed`).

    Returns:
      (N, J, 3) torso-centred poses in metres, camera axes, of every person with 3D.
    """
    source = open_source(source, split=split, data_dir=data_dir)
    src_joint_set = src_joint_set or source_joint_set(source)
    indices = np.arange(len(source))
    if max_records is not None and len(indices) > max_records:
        indices = np.sort(np.random.default_rng(seed).permutation(indices)[:max_records])
    return corpus.people_poses3d(source, indices, src_joint_set=src_joint_set, joint_set=joint_set)


def make_loader(
    source,
    *,
    batch_size: int,
    image_size: int | Sequence[int] | None,
    split: str | None = None,
    data_dir: str | None = None,
    joint_set: str = "lcr13",
    max_people: int = 16,
    train: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
    num_epochs: int | None = None,
    src_joint_set: str | None = None,
    augment: Augment = Augment(),
    pseudo_gt: str | os.PathLike | PseudoGTFile | None = None,
    resize: resize_lib.Resize | None = None,
) -> grain.DataLoader:
    """A grain DataLoader of batches (see the module docstring for their keys).

    Args:
      source: a dataset name "NAME[/CONFIG]" (read with `records.open_split(source,
        split, data_dir=data_dir)`, images decoded here) or any random-access source of
        records (e.g. a `tfds.data_source` split, or a list of dicts).
      batch_size: examples per batch (per shard).
      image_size: output canvas, int or (height, width); None: size buckets of `resize`.
      split: the split to read when `source` is a name.
      data_dir: TFDS data dir when `source` is a name.
      joint_set: output joint set, e.g. "lcr13" or "lcr17".
      max_people: people slots P per example.
      train: shuffle, augment and drop the last partial batch; else one ordered pass
        without augmentation that keeps the last partial batch.
      seed: shuffling and augmentation seed (the same seed gives the same batches).
      num_workers: grain worker processes (0: in this process).
      shard_index, shard_count: this host's shard (e.g. jax.process_index() and
        jax.process_count()); shards are disjoint. In training they are equally long
        (grain's sharding: the last len(source) % shard_count records left out); in
        evaluation each host reads its `evaluation_share`, so every record is read once.
      num_epochs: passes over the data; None repeats forever in training, one pass
        in evaluation.
      src_joint_set: the records' joint set; None reads the source's metadata.
      augment: training augmentation.
      pseudo_gt: pseudo ground truth of the split (Sec. 3.7): the path of a
        `pseudo_gt_<split>.npz` written by experiments/add_pseudo_gt.py, the dataset
        directory holding it (with `split`), or a `data.pseudo_gt_file.PseudoGTFile`;
        None for none. People without 3D get its 3D pose and completed 2D joints.
      resize: the base scale (`data.resize.Resize`); None fits images into `image_size`.

    Returns:
      A `grain.DataLoader`; `iter(loader)` gives an iterator with `get_state()` and
      `set_state(state)` to resume.
    """
    source = open_source(source, split=split, data_dir=data_dir)
    if src_joint_set is None:
        src_joint_set = source_joint_set(source)
    skeleton.get_joint_set(src_joint_set)
    skeleton.get_joint_set(joint_set)
    if batch_size < 1 or max_people < 1:
        raise ValueError(f"batch_size and max_people must be >= 1, got {batch_size}, {max_people}")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index must be in [0, {shard_count}), got {shard_index}")
    transform = _Transform(
        {
            "image_size": None if image_size is None else canvas_size(image_size),
            "src_joint_set": src_joint_set,
            "joint_set": joint_set,
            "max_people": max_people,
            "augment": augment,
            "resize": resize,
        },
        records.origin(source),
        None
        if pseudo_gt is None
        else _open_pseudo_gt(pseudo_gt, source, split=split, joint_set=joint_set),
    )
    if num_workers > 0 and not flags.FLAGS.is_parsed():
        # Grain's workers read one of its absl flags, which fails in programs that do not
        # parse flags (google/grain#1355): take the defaults.
        flags.FLAGS.mark_as_parsed()
    if train:
        indexed = _Indexed(source)
        shard = grain.sharding.ShardOptions(shard_index, shard_count, drop_remainder=True)
    else:  # grain's shards are equally long: they would leave records out
        indexed = _Indexed(source, *evaluation_share(len(source), shard_index, shard_count))
        shard = grain.sharding.NoSharding()
    sampler = grain.samplers.IndexSampler(
        num_records=len(indexed),
        shard_options=shard,
        shuffle=train,
        num_epochs=num_epochs if num_epochs is not None or train else 1,
        seed=seed,
    )
    operations = [
        _TrainMap(transform) if train else _EvalMap(transform),
        grain.transforms.Batch(batch_size, drop_remainder=train),
    ]
    # Grain's default (16 reader threads, 500 records ahead) starves the transforms of
    # the GIL on small machines; records are cheap to read, so 2 threads suffice.
    read_options = grain.ReadOptions(num_threads=2, prefetch_buffer_size=max(16, 2 * batch_size))
    return grain.DataLoader(
        data_source=indexed,
        sampler=sampler,
        operations=operations,
        worker_count=num_workers,
        read_options=read_options,
    )


# ----------------------------------------------------------------------------------------
# Training mixtures of several sources (Sec. 4.2-4.3).
# ----------------------------------------------------------------------------------------

# Records looked at to tell a 2D-only source (no person with 3D) from one with 3D.
_PROBE_RECORDS = 16


@dataclasses.dataclass(frozen=True)
class Source:
    """One training source of a mixture.

    Attributes:
      name: TFDS "NAME[/CONFIG]" of a built dataset.
      split: its split, e.g. "train" (TFDS slicing such as "train[1000:]" works).
      weight: share of the examples drawn from it, relative to the other sources (> 0).
      pseudo_gt: read the pseudo ground truth that experiments/add_pseudo_gt.py wrote
        next to the dataset (`pseudo_gt_<split>.npz`); required for 2D-only sources.
      label: short name in logs (default: the name).
    """

    name: str
    split: str = "train"
    weight: float = 1.0
    pseudo_gt: bool = False
    label: str = ""


def _pseudo_gt_command(spec: Source, data_dir: str | None, corpus: str) -> str:
    split = spec.split.split("[")[0]
    return (
        f"python experiments/add_pseudo_gt.py --dataset={spec.name} "
        f"--data_dir={data_dir or '~/tensorflow_datasets'} --corpus={corpus} --split={split}"
    )


def _mixture_pseudo_gt(spec: Source, source, *, data_dir, corpus, joint_set) -> _PseudoGT | None:
    """The pseudo ground truth of a source; fails at once, with the command that makes
    it, for a 2D-only source without it."""
    label = spec.label or spec.name
    split = spec.split.split("[")[0]
    path = pseudo_gt_path(source.dataset_info.data_dir, split)
    if not spec.pseudo_gt:
        probe = range(min(_PROBE_RECORDS, len(source)))
        if any(np.any(records.read_record(source, i)["people"]["has_3d"]) for i in probe):
            return None
        raise ValueError(
            f"source {label!r} ({spec.name}) is 2D-only: set its pseudo_gt=True and make the "
            f"pseudo ground truth with: {_pseudo_gt_command(spec, data_dir, corpus)}"
        )
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"source {label!r} has no pseudo ground truth ({path}); make it with: "
            f"{_pseudo_gt_command(spec, data_dir, corpus)}"
        )
    if spec.split != split:  # a slice: the file pairs with the whole split
        raise ValueError(
            f"source {label!r}: pseudo ground truth needs a whole split, got {spec.split!r}"
        )
    return _open_pseudo_gt(path, source, split=split, joint_set=joint_set)


def check_sources(sources: Sequence[Source]) -> None:
    """Checks a mixture's specification before anything is read (ValueError)."""
    if not sources:
        raise ValueError("no training source: give config.data.sources at least one entry")
    labels = [s.label or s.name for s in sources]
    for spec, label in zip(sources, labels, strict=True):
        if not spec.name:
            raise ValueError(f"source {label!r} has no dataset name")
        if not (spec.weight > 0 and math.isfinite(spec.weight)):
            raise ValueError(
                f"source {label!r} has weight {spec.weight}: weights must be > 0 (drop the "
                "source to leave it out)"
            )
    if len(set(labels)) != len(labels):
        raise ValueError(f"source labels must be distinct, got {labels}")


def make_mixture(
    sources: Sequence[Source],
    *,
    batch_size: int,
    image_size: int | Sequence[int] | None,
    data_dir: str | None = None,
    joint_set: str = "lcr13",
    max_people: int = 16,
    seed: int = 0,
    num_workers: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
    augment: Augment = Augment(),
    corpus: str = "cmu_mocap",
    resize: resize_lib.Resize | None = None,
) -> grain.IterDataset:
    """Training batches drawn from several sources by weight (Sec. 4.2-4.3).

    Each source is shuffled anew at every epoch and repeated forever, its records become
    examples with `transform_record` (its own joint set mapped to `joint_set`, per-joint
    availability, its pseudo ground truth, flips and scale jitter), grain's
    `MapDataset.mix` interleaves the sources deterministically by weight, the hosts take
    turns in that stream (`shard_index`::`shard_count`) and batch their examples.
    Everything depends only on `seed`, and `iter(...)` gives a grain `DatasetIterator`
    whose `get_state()`/`set_state()` (or grain's orbax handler) resume it exactly.
    Batches carry "source", the index of each example's source in `sources`.

    Args:
      sources: the `Source`s.
      batch_size, image_size, joint_set, max_people, augment, resize: as `make_loader`.
      data_dir: TFDS data directory.
      seed: shuffling, mixing and augmentation seed.
      num_workers: grain worker processes (0: in this process).
      shard_index, shard_count: this host's shard.
      corpus: the MoCap corpus named in the error message of a source that lacks its
        pseudo ground truth.

    Returns:
      A `grain.IterDataset` of batches (see the module docstring).
    """
    check_sources(sources)
    skeleton.get_joint_set(joint_set)
    if batch_size < 1 or max_people < 1:
        raise ValueError(f"batch_size and max_people must be >= 1, got {batch_size}, {max_people}")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index must be in [0, {shard_count}), got {shard_index}")
    datasets = []
    for i, spec in enumerate(sources):
        source = records.open_split(
            spec.name, spec.split, data_dir=data_dir, what=f"source {spec.label or spec.name!r}: "
        )
        lookup = _mixture_pseudo_gt(
            spec, source, data_dir=data_dir, corpus=corpus, joint_set=joint_set
        )
        transform = _Transform(
            {
                "image_size": None if image_size is None else canvas_size(image_size),
                "src_joint_set": source_joint_set(source),
                "joint_set": joint_set,
                "max_people": max_people,
                "augment": augment,
                "source": i,
                "resize": resize,
            },
            records.origin(source),
            lookup,
        )
        if not len(source):
            raise ValueError(f"source {spec.label or spec.name!r} has no record")
        seeds = np.random.SeedSequence([seed, i]).generate_state(2)
        dataset = grain.MapDataset.source(_Indexed(source)).shuffle(seed=int(seeds[0]))
        datasets.append(dataset.repeat(None).random_map(_TrainMap(transform), seed=int(seeds[1])))
    mixed = grain.MapDataset.mix(datasets, [float(s.weight) for s in sources])
    # Sharded last: the hosts take turns in the one mixed, shuffled and augmented stream,
    # so their records, sources and augmentations differ (one host: the same stream).
    batches = mixed[shard_index::shard_count].batch(batch_size, drop_remainder=True)
    read_options = grain.ReadOptions(num_threads=2, prefetch_buffer_size=max(16, 2 * batch_size))
    out = batches.to_iter_dataset(read_options)
    if num_workers > 0:
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()  # google/grain#1355, as in make_loader
        out = out.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return out


def people_counts(batch: Mapping[str, np.ndarray], labels: Sequence[str]) -> dict[str, float]:
    """People of a batch per source: with annotated 3D, with pseudo ground truth, and
    without 3D (2D-only: trained in 2D only, `lcrnet_jax.targets.lcr_targets`).

    Returns:
      {"people/<label>/3d" | "/pseudo_3d" | "/2d_only": count} for every source.
    """
    valid = np.asarray(batch["person_valid"], bool)
    has_3d, pseudo = np.asarray(batch["has_3d"], bool), np.asarray(batch["pseudo_3d"], bool)
    source = np.asarray(batch["source"])[:, None]
    counts = {}
    for i, label in enumerate(labels):
        mine = valid & (source == i)
        counts[f"people/{label}/3d"] = float(np.sum(mine & has_3d & ~pseudo))
        counts[f"people/{label}/pseudo_3d"] = float(np.sum(mine & pseudo))
        counts[f"people/{label}/2d_only"] = float(np.sum(mine & ~has_3d))
    return counts
