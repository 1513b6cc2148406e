"""Human3.6M as TFDS records for the protocols P1, P2 and P3 (LCR-Net++ Sec. 4.1).

One record per sampled video frame and camera: the image, the subject's 17 joints
(`h36m17`, the usual subset of the 32 recorded ones) in 2D pixels and in 3D camera
coordinates (metres), the camera's intrinsics and extrinsics, and the frame's identity
(`subject`, `action`, `trial`, `camera`, `frame`), which the Human3.6M metrics use.

Accepted layouts of the manual folder, per subject (the first that is there wins):
  1. official `S<n>/MyPoseFeatures/D3_Positions_mono/<sequence>.<camera id>.cdf` (3D in
     camera coordinates, mm), with `S<n>/MyPoseFeatures/D2_Positions/...cdf` for 2D
     when present;
  2. official `S<n>/MyPoseFeatures/D3_Positions/<sequence>.cdf` (world, mm) with
     `camera-parameters.json` (the widely used per-subject calibration file: intrinsics
     `calibration_matrix` per camera id, extrinsics `R`, `t` (mm) per subject and
     camera, camera = R world + t);
  3. `data_3d_h36m.npz` (VideoPose3D's `positions_3d[subject][sequence]`, world,
     metres) with `camera-parameters.json`, and `data_2d_h36m_gt.npz`
     (`positions_2d[subject][sequence][camera]`, 17 joints) for 2D when present.
Without 2D files the 2D joints are the pinhole projection of the 3D ones (no lens
distortion). Intrinsics come from `camera-parameters.json` when present, else from the
built-in table of the four cameras; extrinsics are zeros without that file.

Frames: `S<n>/Images/<sequence>.<camera id>/frame_%06d.jpg` (numbered from 1 as ffmpeg
writes them, or from 0 when `frame_000000.jpg` exists), else
`S<n>/Videos/<sequence>.<camera id>.mp4` decoded with PyAV (`pip install av`).

Metadata conventions: `subject` in {1, 5, 6, 7, 8, 9, 11}; `action` the canonical name
of the 15 actions (S1's "TakingPhoto"/"WalkingDog" become "Photo"/"WalkDog"); `trial`
1 or 2, the sub-action of Human3.6M's own `metadata.xml` (its "mapping" table of sequence
names per subject, action and sub-action), which P3's "trial 1" selects. The file names
follow it by a rule (numbered names by number, then the unnumbered one: "Directions 1"
-> 1, "Directions" -> 2) except for the pairs in `_TRIAL_EXCEPTIONS`;
`camera` 1-4 in the order 54138969, 55011271, 58860488, 60457274; `frame` the 0-based
index in the 50 fps video. A frame is sampled when frame % step == 0. The "_ALL"
sequences (`metadata.xml`'s action 1, not one of the 15 actions) are left out.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import re

import numpy as np
import tensorflow_datasets as tfds

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.data import features

JOINT_SET = "h36m17"
_NUM_JOINTS = skeleton.get_joint_set(JOINT_SET).num_joints
_URL = "http://vision.imar.ro/human3.6m/"
CAMERAS = ("54138969", "55011271", "58860488", "60457274")
# fx, fy, cx, cy of the four cameras (the same for every subject).
_INTRINSICS = {
    "54138969": (1145.0494, 1143.7811, 512.5415, 515.4515),
    "55011271": (1149.6757, 1147.5916, 508.8486, 508.0649),
    "58860488": (1149.1407, 1148.7990, 519.8158, 501.4027),
    "60457274": (1145.5113, 1144.7739, 514.9682, 501.8820),
}
# The 17 joints (h36m17 order) among the 32 of the recordings.
_FROM_32 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
_ACTION_ALIASES = {
    "TakingPhoto": "Photo",
    "WalkingDog": "WalkDog",
    "WalkingTogether": "WalkTogether",
}
# The sequences of S1, S5-S9, S11 whose sub-action in Human3.6M's `metadata.xml` is not
# the naming rule's (module docstring): the unnumbered sequence comes first in these
# pairs, and S11's "Phoning 3" before "Phoning 2". Read off two public copies of the
# table, which agree; canonical names.
_TRIAL_EXCEPTIONS = {
    (5, "SittingDown"): 1,
    (5, "SittingDown 1"): 2,
    (5, "Photo"): 1,
    (5, "Photo 2"): 2,
    (6, "Photo"): 1,
    (6, "Photo 1"): 2,
    (7, "SittingDown"): 1,
    (7, "SittingDown 1"): 2,
    (7, "Photo"): 1,
    (7, "Photo 1"): 2,
    (8, "SittingDown"): 1,
    (8, "SittingDown 1"): 2,
    (9, "SittingDown"): 1,
    (9, "SittingDown 1"): 2,
    (11, "SittingDown"): 1,
    (11, "SittingDown 1"): 2,
    (11, "Phoning 3"): 1,
    (11, "Phoning 2"): 2,
}
_CAMERA_FILE = "camera-parameters.json"
_NPZ_3D, _NPZ_2D = "data_3d_h36m.npz", "data_2d_h36m_gt.npz"


@dataclasses.dataclass(eq=False)
class Human36mConfig(tfds.core.BuilderConfig):
    """A protocol: which subjects, cameras, trials and frames form each split.

    Attributes:
      train_subjects, test_subjects: subject numbers.
      test_cameras, test_trials: 1-based cameras / trials of the test split; None = all.
      train_frame_step, test_frame_step: keep frames with frame % step == 0.
    """

    train_subjects: tuple[int, ...] = (1, 5, 6, 7, 8, 9)
    test_subjects: tuple[int, ...] = (11,)
    test_cameras: tuple[int, ...] | None = (2,)
    test_trials: tuple[int, ...] | None = None
    train_frame_step: int = 5
    test_frame_step: int = 64


P1 = Human36mConfig(
    name="p1", description="P1: train S1, S5-S9; test S11 camera 2, every 64th frame."
)
P2 = Human36mConfig(
    name="p2",
    description="P2: train S1, S5-S8; test S9, S11, all cameras, every 5th frame.",
    train_subjects=(1, 5, 6, 7, 8),
    test_subjects=(9, 11),
    test_cameras=None,
    test_frame_step=5,
)
P3 = Human36mConfig(
    name="p3",
    description="P3: as P2, test on Bogo et al.'s camera 3 (60457274), trial 1 only.",
    train_subjects=(1, 5, 6, 7, 8),
    test_subjects=(9, 11),
    test_cameras=(4,),
    test_trials=(1,),
    test_frame_step=5,
)

WILD = Human36mConfig(
    name="wild",
    description=(
        "The in-the-wild mixture's Human3.6M subset (Sec. 4.2): S1, S5-S9, every camera, "
        "every 90th frame (about 17k images); test as P1."
    ),
    train_frame_step=90,
)


@dataclasses.dataclass
class Sequence:
    """The poses of one sequence seen by one camera."""

    subject: int
    name: str  # as in the file names, e.g. "Directions 1"
    camera: int  # 1-4
    joints3d: np.ndarray  # (F, 17, 3) metres, camera coordinates
    joints2d: np.ndarray | None  # (F, 17, 2) pixels, None: project joints3d
    intrinsics: np.ndarray  # (4,)
    rotation: np.ndarray  # (3, 3) world -> camera, zeros if unknown
    translation: np.ndarray  # (3,) metres, zeros if unknown


def split_sequence_name(name: str) -> tuple[str, int | None]:
    """("Directions 1" -> ("Directions", 1)); aliases map to the canonical action."""
    match = re.fullmatch(r"(.*?)(?: (\d+))?", name.strip())
    action, number = match.group(1), match.group(2)
    return _ACTION_ALIASES.get(action, action), None if number is None else int(number)


def canonical_name(name: str) -> str:
    action, number = split_sequence_name(name)
    return action if number is None else f"{action} {number}"


def trials(subject: int, names: list[str]) -> dict[str, int]:
    """Trial (sub-action, 1-based) of each sequence name of one subject (module docstring)."""
    by_action: dict[str, list[tuple[float, str]]] = {}
    for name in set(names):
        action, number = split_sequence_name(name)
        by_action.setdefault(action, []).append((np.inf if number is None else number, name))
    return {
        name: _TRIAL_EXCEPTIONS.get((subject, canonical_name(name)), rank + 1)
        for group in by_action.values()
        for rank, (_, name) in enumerate(sorted(group))
    }


def read_cameras(path: pathlib.Path) -> tuple[dict, dict]:
    """Reads `camera-parameters.json`.

    Returns:
      ({camera id: (4,) fx, fy, cx, cy}, {(subject, camera id): (R (3, 3), t (3,) metres)}).
    """
    try:
        data = json.loads(path.read_text())
        intrinsics = {}
        for cam, params in data["intrinsics"].items():
            k = np.asarray(params["calibration_matrix"], np.float32)
            intrinsics[cam] = np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]], np.float32)
        extrinsics = {}
        for subject, cams in data["extrinsics"].items():
            for cam, params in cams.items():
                rotation = np.asarray(params["R"], np.float32).reshape(3, 3)
                translation = np.asarray(params["t"], np.float32).reshape(3) / 1000.0
                extrinsics[(int(subject.lstrip("S")), cam)] = (rotation, translation)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"corrupt camera file {path}: {error!r}") from None
    return intrinsics, extrinsics


def _read_cdf(path: pathlib.Path, values_per_joint: int) -> np.ndarray:
    """(F, 17, values_per_joint) from an official Human3.6M pose CDF ('Pose', 32 joints)."""
    import cdflib

    try:
        pose = np.asarray(cdflib.CDF(str(path)).varget("Pose"), np.float32)
        return _joints17(pose.reshape(-1, 32, values_per_joint))
    except Exception as error:  # cdflib raises whatever a damaged file makes its parser meet
        raise ValueError(f"corrupt Human3.6M CDF {path}: {error!r}") from None


def _joints17(poses) -> np.ndarray:
    """(F, 17, D) float32 from (F, 32, D) recordings or already selected (F, 17, D) joints."""
    poses = np.asarray(poses, np.float32)
    if poses.ndim != 3 or poses.shape[1] not in (17, 32):
        raise ValueError(f"expected (frames, 32 or 17, D) poses, got {poses.shape}")
    return poses[:, _FROM_32] if poses.shape[1] == 32 else poses


def _npz_dict(path: pathlib.Path, key: str) -> dict:
    try:
        return np.load(path, allow_pickle=True)[key].item()
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise ValueError(f"corrupt {path} (expected a dict {key!r}): {error}") from None


class _PoseFiles:
    """Finds and reads a subject's poses in whichever accepted layout is there."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        camera_file = root / _CAMERA_FILE
        self.intrinsics, self.extrinsics = (
            read_cameras(camera_file) if camera_file.is_file() else ({}, {})
        )
        self._npz3d = self._npz2d = None

    def _folder(self, subject: int, kind: str) -> pathlib.Path:
        return self.root / f"S{subject}" / "MyPoseFeatures" / kind

    def layout(self, subject: int) -> str | None:
        """The pose layout of `subject`: mono, world or npz (module docstring); None if none."""
        if any(self._folder(subject, "D3_Positions_mono").glob("*.cdf")):
            return "mono"
        calibrated = all((subject, camera_id) in self.extrinsics for camera_id in CAMERAS)
        if calibrated and any(self._folder(subject, "D3_Positions").glob("*.cdf")):
            return "world"
        if calibrated and (self.root / _NPZ_3D).is_file():
            return "npz"
        return None

    def _camera(self, subject: int, camera_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        intrinsics = self.intrinsics.get(camera_id, np.array(_INTRINSICS[camera_id], np.float32))
        rotation, translation = self.extrinsics.get(
            (subject, camera_id), (np.zeros((3, 3)), np.zeros(3))
        )
        return intrinsics, np.asarray(rotation, np.float32), np.asarray(translation, np.float32)

    def _npz(self, subject: int) -> tuple[dict, dict]:
        """The npz layout's ({sequence: world poses}, {sequence: 2D views}) of `subject`."""
        if self._npz3d is None:
            self._npz3d = _npz_dict(self.root / _NPZ_3D, "positions_3d")
            npz2d = self.root / _NPZ_2D
            self._npz2d = _npz_dict(npz2d, "positions_2d") if npz2d.is_file() else {}
        if f"S{subject}" not in self._npz3d:
            raise FileNotFoundError(f"{self.root / _NPZ_3D} has no subject S{subject}")
        return self._npz3d[f"S{subject}"], self._npz2d.get(f"S{subject}", {})

    def names(self, subject: int) -> list[str]:
        """The names of `subject`'s sequences, readable or not, but the "_ALL" ones."""
        layout = self.layout(subject)
        if layout == "mono":
            paths = self._folder(subject, "D3_Positions_mono").glob("*.cdf")
            names = {path.stem.rpartition(".")[0] for path in paths}
        elif layout == "world":
            names = {path.stem for path in self._folder(subject, "D3_Positions").glob("*.cdf")}
        else:
            names = set(self._npz(subject)[0])
        return sorted(name for name in names if not name.startswith("_ALL"))

    def _world_sequences(self, subject: int, skipped: features.SkipLog):
        """(name, (F, 17, 3) world metres, {camera index: (F, 17, 2)} 2D) per sequence."""
        names = set(self.names(subject))
        if self.layout(subject) == "world":
            for path in sorted(self._folder(subject, "D3_Positions").glob("*.cdf")):
                if path.stem not in names:
                    continue
                try:
                    yield path.stem, _read_cdf(path, 3) / 1000.0, {}
                except ValueError as error:
                    skipped.add(path, error)
            return
        poses, views = self._npz(subject)
        for name in sorted(names):
            views2d = {c: _joints17(v) for c, v in enumerate(views.get(name, []))}
            yield name, _joints17(poses[name]), views2d

    def sequences(self, subject: int, skipped: features.SkipLog) -> list[Sequence]:
        """Every (sequence, camera) of `subject` (`names`); unreadable files go to `skipped`."""
        out = []
        if self.layout(subject) == "mono":
            names = set(self.names(subject))
            for path in sorted(self._folder(subject, "D3_Positions_mono").glob("*.cdf")):
                name, _, camera_id = path.stem.rpartition(".")
                if name not in names:
                    continue
                if camera_id not in CAMERAS:
                    skipped.add(path, f"unknown camera {camera_id!r}")
                    continue
                d2 = self._folder(subject, "D2_Positions") / path.name
                try:
                    joints3d = _read_cdf(path, 3) / 1000.0
                    joints2d = _read_cdf(d2, 2) if d2.is_file() else None
                    if joints2d is not None and len(joints2d) != len(joints3d):
                        raise ValueError(f"{d2} has {len(joints2d)} frames, 3D {len(joints3d)}")
                except ValueError as error:
                    skipped.add(path, error)
                    continue
                out.append(
                    Sequence(
                        subject,
                        name,
                        CAMERAS.index(camera_id) + 1,
                        joints3d,
                        joints2d,
                        *self._camera(subject, camera_id),
                    )
                )
            return out
        for name, world, views in self._world_sequences(subject, skipped):
            for index, camera_id in enumerate(CAMERAS):
                intrinsics, rotation, translation = self._camera(subject, camera_id)
                joints3d = world @ rotation.T + translation
                out.append(
                    Sequence(
                        subject,
                        name,
                        index + 1,
                        joints3d,
                        views.get(index),
                        intrinsics,
                        rotation,
                        translation,
                    )
                )
        return out


class _Frames:
    """The images of one sequence and camera: a frames folder or a video."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.offset = 0 if (path / "frame_000000.jpg").is_file() else 1

    def read(self, frames: list[int], skipped: features.SkipLog):
        """Yields (frame, encoded image, height, width) for the readable `frames`."""
        if self.path.suffix != ".mp4":
            for f in frames:
                path = self.path / f"frame_{f + self.offset:06d}.jpg"
                loaded = skipped.read_image(path)
                if loaded is not None:
                    yield (f, *loaded)
            return
        wanted, found = set(frames), set()
        try:
            import av

            with av.open(str(self.path)) as container:
                for f, frame in enumerate(container.decode(video=0)):
                    if f in wanted:
                        found.add(f)
                        rgb = frame.to_ndarray(format="rgb24")
                        yield f, features.encode_image(rgb), rgb.shape[0], rgb.shape[1]
                    if f >= max(frames):
                        break
        except (OSError, ValueError) as error:
            skipped.add(self.path, error)
            return
        for f in sorted(wanted - found):
            skipped.add(f"{self.path}#frame{f}", "the video has no such frame")


def frame_sources(root: pathlib.Path, subject: int) -> dict[tuple[str, int], _Frames]:
    """{(canonical sequence name, camera 1-4): frames} of a subject's folders and videos."""
    sources = {}
    for kind, pattern in (("Videos", "*.mp4"), ("Images", "*")):  # folders win over videos
        for path in sorted((root / f"S{subject}" / kind).glob(pattern)):
            stem = path.stem if kind == "Videos" else path.name
            name, _, camera_id = stem.rpartition(".")
            if camera_id in CAMERAS:
                sources[(canonical_name(name), CAMERAS.index(camera_id) + 1)] = _Frames(path)
    return sources


class Human36m(tfds.core.GeneratorBasedBuilder):
    """Human3.6M with the protocols P1, P2, P3 as configs."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "1.1.0": (
            "trial: Human3.6M's sub-action where the file names mislead; p3 tests on camera "
            "60457274, Bogo et al.'s camera 3; the _ALL sequences are left out."
        ),
    }
    BUILDER_CONFIGS = [P1, P2, P3, WILD]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        pathlib.Path(__file__).with_name("MANUAL_DOWNLOAD_INSTRUCTIONS").read_text()
    )

    def _info(self) -> tfds.core.DatasetInfo:
        def scalar(dtype=np.int32):
            return tfds.features.Scalar(dtype=dtype)

        extra = {
            "subject": scalar(),
            "action": tfds.features.Text(),
            "trial": scalar(),
            "camera": scalar(),
            "frame": scalar(),
            "camera_rotation": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
            "camera_translation": tfds.features.Tensor(shape=(3,), dtype=np.float32),
        }
        return self.dataset_info_from_configs(
            features=features.pose_features(_NUM_JOINTS, extra=extra),
            metadata=tfds.core.MetadataDict(joint_set=JOINT_SET),
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        subjects = sorted(set(config.train_subjects) | set(config.test_subjects))
        root = features.manual_dir(
            dl_manager, dataset=self.name, expected=[f"S{s}" for s in subjects], url=_URL
        )
        poses = _PoseFiles(root)
        missing = [f"S{s}" for s in subjects if poses.layout(s) is None]
        if missing:
            raise FileNotFoundError(
                f"{self.name}: no poses for {', '.join(missing)} in {root}: expected "
                "S<n>/MyPoseFeatures/D3_Positions_mono/*.cdf, or S<n>/MyPoseFeatures/"
                f"D3_Positions/*.cdf or {_NPZ_3D} with {_CAMERA_FILE} (see "
                f"data_builders/{self.name}/README.md; data from {_URL})"
            )
        sources = {s: frame_sources(root, s) for s in subjects}
        no_frames = [f"S{s}" for s in subjects if not sources[s]]
        if no_frames:
            raise FileNotFoundError(
                f"{self.name}: no frames for {', '.join(no_frames)} in {root}: expected "
                "S<n>/Images/<sequence>.<camera id>/frame_%06d.jpg or S<n>/Videos/*.mp4"
            )
        videos = any(f.path.suffix == ".mp4" for s in sources.values() for f in s.values())
        if videos and importlib.util.find_spec("av") is None:
            raise FileNotFoundError(
                f"{self.name}: {root} has videos but no frames folders, and PyAV is not "
                "installed: `pip install av`, or extract frames to "
                "S<n>/Images/<sequence>.<camera id>/frame_%06d.jpg"
            )
        return {
            "train": self._generate_examples(
                "train", poses, sources, config.train_subjects, None, None, config.train_frame_step
            ),
            "test": self._generate_examples(
                "test",
                poses,
                sources,
                config.test_subjects,
                config.test_cameras,
                config.test_trials,
                config.test_frame_step,
            ),
        }

    def _generate_examples(self, split, poses, sources, subjects, cameras, trial_filter, step):
        skipped = features.SkipLog(self, split)
        for subject in subjects:
            sequences = poses.sequences(subject, skipped)
            trial = trials(subject, poses.names(subject))  # an unreadable file keeps its rank
            for seq in sequences:
                if (cameras and seq.camera not in cameras) or (
                    trial_filter and trial[seq.name] not in trial_filter
                ):
                    continue
                camera_id = CAMERAS[seq.camera - 1]
                source = sources[subject].get((canonical_name(seq.name), seq.camera))
                if source is None:
                    skipped.add(f"S{subject}/{seq.name}.{camera_id}", "no frames folder or video")
                    continue
                frames = list(range(0, len(seq.joints3d), step))
                for f, image, height, width in source.read(frames, skipped):
                    joints3d = seq.joints3d[f]
                    joints2d = (
                        seq.joints2d[f]
                        if seq.joints2d is not None
                        else np.asarray(geometry.project(joints3d, seq.intrinsics))
                    )
                    name = f"S{subject}/{seq.name}.{camera_id}/{f:06d}"
                    yield (
                        name,
                        {
                            "image": image,
                            "image_id": name,
                            "intrinsics": seq.intrinsics,
                            "subject": subject,
                            "action": split_sequence_name(seq.name)[0],
                            "trial": trial[seq.name],
                            "camera": seq.camera,
                            "frame": f,
                            "camera_rotation": seq.rotation,
                            "camera_translation": seq.translation,
                            "people": features.people(
                                joints2d[None],
                                features.inside_image(joints2d, height, width)[None],
                                joints3d=joints3d[None],
                            ),
                        },
                    )
        skipped.report()
