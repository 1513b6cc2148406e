"""The pseudo ground-truth sidecar file of a dataset split (LCR-Net++ Sec. 3.7).

`experiments/add_pseudo_gt.py` (`lcrnet_jax.pseudo_gt.add_pseudo_gt`) writes
`pseudo_gt_<split>.npz` next to a TFDS dataset; the data pipeline reads it here.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from lcrnet_jax import skeleton
from lcrnet_jax.data import npz
from lcrnet_jax.data.corpus import LCR_SETS

FORMAT_VERSION = 1
"""Version of the sidecar file format."""

# D2D compares unit-norm poses, so it is at most 2; the slack covers float32 rounding.
_MAX_DISTANCE = 2.0 + 1e-3


# ----------------------------------------------------------------------------------------
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def pseudo_gt_path(dataset_dir: str | os.PathLike, split: str) -> str:
    """`<dataset_dir>/pseudo_gt_<split>.npz`, dataset_dir the dataset's version directory."""
    if not _SPLIT_NAME.match(split):
        raise ValueError(f"split must be a plain split name like 'train', got {split!r}")
    return os.path.join(os.fspath(dataset_dir), f"pseudo_gt_{split}.npz")


@dataclasses.dataclass(frozen=True)
class PseudoGTFile:
    """Pseudo ground truth of every person of a dataset split, read by `load_pseudo_gt`.

    People are stored record after record in the order of the split's records
    (`tfds.data_source(...)[split][i]`), record i owning rows offsets[i]:offsets[i + 1].

    Attributes:
      offsets: (R + 1,) int64 row offsets.
      image_id: (R,) str image_id of each record (to check the pairing).
      joints3d: (P, J, 3) float32 torso-centred pseudo 3D poses, metres, camera axes.
      joints2d: (P, J, 2) float32 completed 2D poses, pixels.
      annotated: (P, J) bool joints used as annotated (the dataset's `people/annotated`
        where it has one, else `people/visible`), after conversion to `joint_set`.
      valid: (P,) bool the person has pseudo ground truth (False for people with real
        3D and for people with too few annotated joints).
      distance: (P,) float32 D2D of the match in [0, 2]; NaN where not valid.
      joint_set: LCR joint set of the poses ("lcr13" or "lcr17").
      corpus: file name of the MoCap corpus.
      split: the dataset split.
    """

    offsets: np.ndarray
    image_id: np.ndarray
    joints3d: np.ndarray
    joints2d: np.ndarray
    annotated: np.ndarray
    valid: np.ndarray
    distance: np.ndarray
    joint_set: str
    corpus: str
    split: str

    def __len__(self) -> int:
        return len(self.image_id)

    def record(self, index: int) -> dict[str, np.ndarray]:
        """Per-person arrays of record `index`: joints3d (P, J, 3), joints2d (P, J, 2),
        annotated (P, J), valid (P,), distance (P,)."""
        if not 0 <= index < len(self):
            raise ValueError(f"record index {index} out of range [0, {len(self)})")
        rows = slice(int(self.offsets[index]), int(self.offsets[index + 1]))
        names = ("joints3d", "joints2d", "annotated", "valid", "distance")
        return {name: getattr(self, name)[rows] for name in names}


def load_pseudo_gt(data_dir_or_path: str | os.PathLike, split: str | None) -> PseudoGTFile:
    """Reads the pseudo ground truth written by experiments/add_pseudo_gt.py.

    Args:
      data_dir_or_path: the dataset's version directory
        (`<data_dir>/<name>/<config>/<version>`, i.e. `dataset_info.data_dir`) holding
        `pseudo_gt_<split>.npz`, or the path of that file.
      split: the split name, e.g. "train", that the file must be for; None (with the
        path of a file only) takes the file's split.

    Returns:
      The `PseudoGTFile`.

    Raises:
      FileNotFoundError: no such file.
      ValueError: a damaged file (missing keys, shapes that disagree, non-finite poses of
        valid people, a joint set other than lcr13/lcr17, distances outside [0, 2]) or
        one for another split, named in one line with the command that rebuilds it.
    """
    path = os.fspath(data_dir_or_path)
    if not path.endswith(".npz"):
        if split is None:
            raise ValueError(f"{path} is a dataset directory: pass a split or a .npz path")
        path = pseudo_gt_path(path, split)
    command = f"experiments/add_pseudo_gt.py --split={split or '<split>'}"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no pseudo ground truth at {path}; make it with {command}")
    data = npz.read_npz(path, "pseudo ground-truth file")
    rebuild = f"; rebuild it with {command}"
    names = [f.name for f in dataclasses.fields(PseudoGTFile)]
    missing = [name for name in ["format_version", *names] if name not in data]
    if missing:
        raise ValueError(f"{path} is not a pseudo ground-truth file: it lacks {missing}{rebuild}")
    version = int(data["format_version"])
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version}, expected {FORMAT_VERSION}{rebuild}")
    fields = {name: data[name] for name in names}
    for name in ("joint_set", "corpus", "split"):
        fields[name] = str(fields[name])
    problem = _damage(fields)
    if problem:
        raise ValueError(f"{path}: {problem}{rebuild}")
    if split is not None and fields["split"] != split:
        raise ValueError(f"{path}: made for split {fields['split']!r}, not {split!r}{rebuild}")
    return PseudoGTFile(**fields)


def _damage(fields: dict) -> str | None:
    """What is wrong with a file's `PseudoGTFile` fields (a joint set other than the LCR
    sets, shapes that disagree with the offsets, non-finite poses or distances outside
    [0, 2] of valid people), or None."""
    if fields["joint_set"] not in LCR_SETS:
        return f"joint set {fields['joint_set']!r}, expected one of {LCR_SETS}"
    j = skeleton.JOINT_SETS[fields["joint_set"]].num_joints
    image_id, offsets = fields["image_id"], fields["offsets"]
    if image_id.ndim != 1:
        return f"image_id has shape {image_id.shape}, expected (R,)"
    r = len(image_id)
    if offsets.shape != (r + 1,) or offsets.dtype.kind not in "iu":
        return (
            f"offsets has shape {offsets.shape} and dtype {offsets.dtype}, expected "
            f"({r + 1},) integers for {r} records"
        )
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        return "offsets must start at 0 and never decrease"
    p = int(offsets[-1])
    expected = {
        "joints3d": (p, j, 3),
        "joints2d": (p, j, 2),
        "annotated": (p, j),
        "valid": (p,),
        "distance": (p,),
    }
    for name, shape in expected.items():
        if fields[name].shape != shape:
            return f"{name} has shape {fields[name].shape}, expected {shape} ({p} people)"
    for name in ("annotated", "valid"):
        if fields[name].dtype != bool:
            return f"{name} has dtype {fields[name].dtype}, expected bool"
    for name in ("joints3d", "joints2d"):
        if fields[name].dtype.kind != "f" or not np.isfinite(fields[name][fields["valid"]]).all():
            return f"{name} holds NaN, inf or non-numbers for people marked valid"
    distance = fields["distance"]
    if distance.dtype.kind != "f":
        return f"distance has dtype {distance.dtype}, expected floats"
    matched = distance[fields["valid"]]
    if not np.all((matched >= 0) & (matched <= _MAX_DISTANCE)):
        return "distance holds NaN or values outside [0, 2] for people marked valid"
    return None
