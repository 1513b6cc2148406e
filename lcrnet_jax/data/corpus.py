"""3D pose corpora: the MoCap poses behind anchor poses and pseudo ground truth (Sec. 3.7, 4.2).

LCR-Net++ takes its anchor poses as K-means centres of a MoCap corpus and finds the
pseudo ground truth of 2D-only people by nearest-neighbour search in the same corpus.
`load_pose_corpus` reads one from a spec, a comma-separated list of entries:

  - `PATH.npz`: `poses3d` (N, J, 3) metres and its LCR `joint_set` ("lcr13"/"lcr17");
  - `NAME[/CONFIG][:SPLIT]`: a built TFDS dataset (split "train" by default): a pose
    corpus such as `cmu_mocap` (records with a top-level `joints3d`) gives every
    record, a `features.pose_features` dataset (Human3.6M, MuCo-3DHP, synthetic) the
    people that have 3D.

Poses come out in one LCR joint set, torso-centred, metres, camera axes (Y down).
"""

from __future__ import annotations

import os

import numpy as np

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.data import npz
from lcrnet_jax.data.records import open_split, read_record

LCR_SETS = ("lcr17", "lcr13")  # the richest first


def _entries(spec: str) -> list[str]:
    entries = [e.strip() for e in str(spec).split(",") if e.strip()]
    if not entries:
        raise ValueError("empty corpus: pass an .npz path or a TFDS name like cmu_mocap")
    return entries


def _open_dataset(entry: str, data_dir: str | None):
    """A `tfds.data_source` of "NAME[/CONFIG][:SPLIT]" (images left encoded) and its
    native joint set."""
    if os.path.isfile(entry):
        raise ValueError(
            f"corpus {entry!r} is a file but not an .npz (expected poses3d and joint_set)"
        )
    name, _, split = entry.partition(":")
    source = open_split(name, split or "train", data_dir=data_dir, what=f"corpus {entry!r}: ")
    joint_set = (source.dataset_info.metadata or {}).get("joint_set")
    if joint_set is None:
        raise ValueError(f"corpus {entry!r}: the dataset has no 'joint_set' metadata")
    return source, joint_set


def entry_joint_set(entry: str, *, data_dir: str | None = None) -> str:
    """The native joint set of one corpus entry."""
    if entry.endswith(".npz"):
        return _read_npz(entry)[1]
    return _open_dataset(entry, data_dir)[1]


def check_files(spec: str) -> None:
    """FileNotFoundError for the first `PATH.npz` entry of a corpus spec that is not a file."""
    for entry in _entries(spec):
        if entry.endswith(".npz"):
            _check_npz_file(entry)


def _check_npz_file(path: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"corpus file not found: {path} (expected an .npz with poses3d and joint_set)"
        )


def _read_npz(path: str) -> tuple[np.ndarray, str]:
    _check_npz_file(path)
    data = npz.read_npz(path, "corpus file")
    missing = {"poses3d", "joint_set"} - set(data)
    if missing:
        raise ValueError(f"{path}: missing {sorted(missing)}; expected poses3d and joint_set")
    poses3d, joint_set = data["poses3d"].astype(np.float32), str(data["joint_set"])
    if joint_set not in LCR_SETS:
        raise ValueError(f"{path}: joint_set {joint_set!r}, expected 'lcr13' or 'lcr17'")
    if poses3d.ndim != 3 or poses3d.shape[1:] != (
        skeleton.get_joint_set(joint_set).num_joints,
        3,
    ):
        raise ValueError(f"{path}: poses3d has shape {poses3d.shape}, not (N, J, 3) {joint_set}")
    return poses3d, joint_set


def _check_derivable(entry: str, src: str, dst: str) -> None:
    num = skeleton.get_joint_set(src).num_joints
    _, derivable = skeleton.convert(np.zeros((num, 3), np.float32), None, src, dst)
    if not derivable.all():
        names = skeleton.get_joint_set(dst).joints
        missing = [n for n, ok in zip(names, derivable, strict=True) if not ok]
        raise ValueError(
            f"corpus {entry!r} has {src} poses, which lack {missing} of {dst}: use a corpus "
            f"with these joints or joint_set={LCR_SETS[-1]!r}"
        )


def people_poses3d(source, indices, *, src_joint_set: str, joint_set: str) -> np.ndarray:
    """The 3D poses of the people with 3D in some records of a pose dataset.

    Args:
      source: random-access records of `features.pose_features`.
      indices: record indices to read.
      src_joint_set, joint_set: the records' and the output joint sets.

    Returns:
      (N, J, 3) float32 torso-centred poses, metres, camera axes.
    """
    poses = []
    for i in indices:
        people = read_record(source, int(i))["people"]
        pose3d, known = skeleton.convert(
            np.asarray(people["joints3d"], np.float32), None, src_joint_set, joint_set
        )
        keep = np.asarray(people["has_3d"], bool) & known.all(-1)
        poses.append(np.asarray(geometry.center_on_torso(pose3d[keep], joint_set), np.float32))
    num_joints = skeleton.get_joint_set(joint_set).num_joints
    return np.concatenate(poses) if poses else np.zeros((0, num_joints, 3), np.float32)


def _dataset_poses(entry, source, src, dst, max_poses, rng) -> np.ndarray:
    indices = np.arange(len(source))
    if max_poses is not None and len(indices) > max_poses:
        indices = np.sort(rng.permutation(indices)[:max_poses])
    first = read_record(source, 0) if len(source) else {}
    if "joints3d" in first:  # a MoCap corpus: one pose per record
        poses = [read_record(source, int(i))["joints3d"] for i in indices]
        poses = np.stack(poses).astype(np.float32)
        poses, _ = skeleton.convert(poses, None, src, dst)
        return np.asarray(geometry.center_on_torso(poses, dst), np.float32)
    if "people" not in first:
        raise ValueError(f"corpus {entry!r}: records have neither joints3d nor people")
    return people_poses3d(source, indices, src_joint_set=src, joint_set=dst)


def load_pose_corpus(
    spec: str,
    *,
    joint_set: str | None = None,
    data_dir: str | None = None,
    max_poses: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """The 3D poses of a corpus spec (module docstring).

    Args:
      spec: comma-separated entries, `PATH.npz` or `NAME[/CONFIG][:SPLIT]`.
      joint_set: output LCR joint set; None: the richest one every entry provides.
      data_dir: TFDS data directory of the dataset entries (None: TFDS's default).
      max_poses: read at most this many records (>= 1) per dataset entry (random, by
        `seed`); None: every record.
      seed: subset seed.

    Returns:
      (poses3d (N, J, 3) float32 torso-centred metres, camera axes; joint set name).

    Raises:
      FileNotFoundError: an entry does not exist (the message says how to make it).
      ValueError: an entry cannot give `joint_set`, or holds no 3D pose; max_poses < 1.
    """
    if max_poses is not None and max_poses < 1:
        raise ValueError(f"max_poses must be >= 1 (None: every record), got {max_poses}")
    entries = _entries(spec)
    opened = []
    for entry in entries:
        if entry.endswith(".npz"):
            poses, src = _read_npz(entry)
            opened.append((entry, poses, src))
        else:
            source, src = _open_dataset(entry, data_dir)
            opened.append((entry, source, src))
    if joint_set is None:
        for candidate in LCR_SETS:
            try:
                for entry, _, src in opened:
                    _check_derivable(entry, src, candidate)
            except ValueError:
                continue
            joint_set = candidate
            break
        else:
            raise ValueError(f"corpus {spec!r} gives neither LCR-17 nor LCR-13 poses")
    skeleton.get_joint_set(joint_set)
    for entry, _, src in opened:
        _check_derivable(entry, src, joint_set)
    rng = np.random.default_rng(seed)
    parts = []
    for entry, data, src in opened:
        if isinstance(data, np.ndarray):
            poses, _ = skeleton.convert(data, None, src, joint_set)
            poses = np.asarray(geometry.center_on_torso(poses, joint_set), np.float32)
        else:
            poses = _dataset_poses(entry, data, src, joint_set, max_poses, rng)
        if not len(poses):
            raise ValueError(f"corpus {entry!r} holds no 3D pose")
        parts.append(poses)
    poses = np.concatenate(parts)
    if not np.isfinite(poses).all():
        raise ValueError(f"corpus {spec!r} has NaN or infinite coordinates")
    return poses, joint_set
