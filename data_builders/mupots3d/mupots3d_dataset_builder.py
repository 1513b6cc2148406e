"""MuPoTS-3D (test) and MuCo-3DHP (train) as TFDS records (LCR-Net++ Sec. 4.3).

The paper evaluates multi-person 3D pose on MuPoTS-3D (20 sequences TS1-TS20, 3DPCK)
after fine-tuning on MuCo-3DHP. Joints: the 17-joint MPI-INF-3DHP / MuPoTS skeleton
(`mupots17`).

MuPoTS-3D (`test` split), per sequence `MultiPersonTestSet/TS<n>/`:
  - `annot.mat`: cell `annotations{frame, person}` of structs with `annot2` (2 x 17
    pixels), `annot3` (3 x 17 camera coordinates, mm), `univ_annot3` (3 x 17, mm, the
    height-normalised "universal" skeleton) and `isValidFrame`;
  - `occlusion.mat`: cell `occlusion_labels{frame, person}` (1 x 17, 1 = occluded);
  - `img_%06d.jpg`, 0-based frame numbers.
The release has no calibration file: each sequence's fx, cx (fy, cy) are the least-
squares fit of x = fx X / Z + cx (y = fy Y / Z + cy) over its valid annotations (exact
when annot2 is the projection of annot3). Coordinates are kept as released.

MuCo-3DHP (`train` split, only when `MuCo/MuCo-3DHP.json` exists): the widely used
COCO-style json of the composited training images (images with `file_name`, `f`, `c`;
annotations with 21-joint `keypoints_img`, `keypoints_cam` in mm and `bbox`), images
relative to `MuCo/`. Its first 17 joints are the MuPoTS joints.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from lcrnet_jax import skeleton
from lcrnet_jax.data import features

JOINT_SET = "mupots17"
_NUM_JOINTS = skeleton.get_joint_set(JOINT_SET).num_joints
_URL = "https://vcai.mpi-inf.mpg.de/projects/SingleShotMultiPerson/"
_MUCO_JSON = "MuCo/MuCo-3DHP.json"


@dataclasses.dataclass(eq=False)
class MupotsConfig(tfds.core.BuilderConfig):
    """`sequences`: the MuPoTS-3D test sequences (TS numbers) to read."""

    sequences: tuple[int, ...] = tuple(range(1, 21))


@dataclasses.dataclass
class Sequence:
    """One MuPoTS-3D sequence; person arrays are (F, P, 17, ...)."""

    joints2d: np.ndarray  # (F, P, 17, 2) pixels
    joints3d: np.ndarray  # (F, P, 17, 3) metres
    joints3d_univ: np.ndarray  # (F, P, 17, 3) metres
    valid: np.ndarray  # (F, P) bool
    occluded: np.ndarray  # (F, P, 17) bool

    @property
    def intrinsics(self) -> np.ndarray:
        """(4,) fx, fy, cx, cy fitted to the valid annotations (module docstring)."""
        xy = self.joints2d[self.valid].reshape(-1, 2)
        xyz = self.joints3d[self.valid].reshape(-1, 3)
        keep = xyz[:, 2] > 1e-3
        xy, xyz = xy[keep], xyz[keep]
        if len(xy) < 2:
            return np.zeros(4, np.float32)
        fit = []
        for axis in (0, 1):
            a = np.stack([xyz[:, axis] / xyz[:, 2], np.ones(len(xy))], -1)
            fit.append(np.linalg.lstsq(a, xy[:, axis], rcond=None)[0])
        (fx, cx), (fy, cy) = fit
        return np.array([fx, fy, cx, cy], np.float32)


class Mupots3d(tfds.core.GeneratorBasedBuilder):
    """MuPoTS-3D test sequences, and MuCo-3DHP training images when present."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [MupotsConfig(name="default", description="TS1-TS20 (+ MuCo-3DHP).")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        pathlib.Path(__file__).with_name("MANUAL_DOWNLOAD_INSTRUCTIONS").read_text()
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=features.pose_features(
                _NUM_JOINTS,
                extra={
                    "sequence": tfds.features.Scalar(dtype=np.int32),
                    "frame": tfds.features.Scalar(dtype=np.int32),
                },
                extra_people={
                    "joints3d_univ": features.person_tensor(_NUM_JOINTS, 3),
                    "occluded": features.person_tensor(_NUM_JOINTS, dtype=np.bool_),
                    "is_valid": features.person_tensor(dtype=np.bool_),
                },
            ),
            metadata=tfds.core.MetadataDict(joint_set=JOINT_SET),
        )

    def _split_generators(self, dl_manager):
        folders = [f"MultiPersonTestSet/TS{n}" for n in self.builder_config.sequences]
        expected = [f"{f}/{name}" for f in folders for name in ("annot.mat", "occlusion.mat")]
        root = features.manual_dir(dl_manager, dataset=self.name, expected=expected, url=_URL)
        splits = {"test": self._generate_examples(root)}
        if (root / _MUCO_JSON).is_file():
            splits["train"] = self._generate_muco(root)
        return splits

    def _generate_examples(self, root):
        skipped = features.SkipLog(self, "test")
        for n in self.builder_config.sequences:
            folder = root / "MultiPersonTestSet" / f"TS{n}"
            try:
                seq = read_sequence(folder)
            except ValueError as error:
                skipped.add(folder, error)
                continue
            intrinsics = seq.intrinsics
            for f in range(seq.valid.shape[0]):
                name = f"TS{n}/img_{f:06d}.jpg"
                loaded = skipped.read_image(folder / f"img_{f:06d}.jpg")
                if loaded is None:
                    continue
                image, height, width = loaded
                inside = features.inside_image(seq.joints2d[f], height, width)
                valid = seq.valid[f]
                people = features.people(
                    seq.joints2d[f],
                    valid[:, None] & ~seq.occluded[f] & inside,
                    joints3d=seq.joints3d[f],
                    joints3d_univ=seq.joints3d_univ[f].astype(np.float32),
                    occluded=seq.occluded[f],
                    is_valid=valid,
                )
                people["has_3d"] = valid
                yield (
                    name,
                    {
                        "image": image,
                        "image_id": name,
                        "intrinsics": intrinsics,
                        "sequence": n,
                        "frame": f,
                        "people": people,
                    },
                )
        skipped.report()

    def _generate_muco(self, root):
        images, people = read_muco(root / _MUCO_JSON)
        skipped = features.SkipLog(self, "train")
        for image in images:
            anns = people.get(image["id"], [])
            if not anns:  # a training image without people, as COCO's train split
                continue
            name = f"MuCo/{image['file_name']}"
            loaded = skipped.read_image(root / name)
            if loaded is None:
                continue
            data, height, width = loaded
            num = len(anns)
            joints2d = np.array([a["keypoints_img"] for a in anns], np.float32).reshape(num, -1, 2)
            joints3d = np.array([a["keypoints_cam"] for a in anns], np.float32).reshape(num, -1, 3)
            joints2d, joints3d = joints2d[:, :_NUM_JOINTS], joints3d[:, :_NUM_JOINTS] / 1000.0
            x, y, w, h = np.array([a["bbox"] for a in anns], np.float32).reshape(num, 4).T
            yield (
                name,
                {
                    "image": data,
                    "image_id": name,
                    "intrinsics": np.array([*image["f"], *image["c"]], np.float32),
                    "sequence": 0,
                    "frame": image["id"],
                    "people": features.people(
                        joints2d,
                        features.inside_image(joints2d, height, width),
                        joints3d=joints3d,
                        box=np.stack([x, y, x + w, y + h], -1),
                        joints3d_univ=np.zeros_like(joints3d),
                        occluded=np.zeros((num, _NUM_JOINTS), bool),
                        is_valid=np.ones(num, bool),
                    ),
                },
            )
        skipped.report()


def _cell_rows(mat: dict, key: str, path: pathlib.Path) -> np.ndarray:
    if key not in mat or mat[key].dtype != object or mat[key].ndim != 2:
        raise ValueError(f"{path} has no 2D cell array {key!r}")
    return mat[key]


def read_sequence(folder: pathlib.Path) -> Sequence:
    """Reads `annot.mat` and `occlusion.mat` of a MuPoTS-3D sequence folder.

    Raises:
      ValueError: naming the file when either is corrupt or not in the release's form.
    """
    annot_path, occlusion_path = folder / "annot.mat", folder / "occlusion.mat"
    annotations = _cell_rows(
        features.load_mat(annot_path, struct_as_record=False), "annotations", annot_path
    )
    occlusion = _cell_rows(features.load_mat(occlusion_path), "occlusion_labels", occlusion_path)
    if occlusion.shape != annotations.shape:
        raise ValueError(
            f"{occlusion_path} has {occlusion.shape} labels for {annotations.shape} annotations"
        )
    try:
        structs = [[cell.ravel()[0] for cell in row] for row in annotations]

        def stacked(field):
            return np.array(
                [[np.asarray(getattr(s, field), float).T for s in row] for row in structs]
            )

        seq = Sequence(
            joints2d=stacked("annot2").astype(np.float32),
            joints3d=(stacked("annot3") / 1000.0).astype(np.float32),
            joints3d_univ=(stacked("univ_annot3") / 1000.0).astype(np.float32),
            valid=np.array(
                [[bool(np.asarray(s.isValidFrame).ravel()[0]) for s in row] for row in structs]
            ),
            occluded=np.array(
                [[np.asarray(c, float).ravel() != 0 for c in row] for row in occlusion]
            ),
        )
    except (AttributeError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"{annot_path} is not a MuPoTS-3D annotation: {error!r}") from None
    frames, num = annotations.shape
    if seq.joints2d.shape != (frames, num, _NUM_JOINTS, 2) or seq.occluded.shape != (
        frames,
        num,
        _NUM_JOINTS,
    ):
        raise ValueError(
            f"{annot_path}: expected 2 x 17 / 3 x 17 annotations and 1 x 17 occlusion labels"
        )
    return seq


def read_muco(path: pathlib.Path) -> tuple[list[dict], dict[int, list[dict]]]:
    """Images and annotations by image id of `MuCo-3DHP.json`; ValueError naming it if bad."""
    try:
        data = json.loads(pathlib.Path(path).read_text())
        people: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            if len(ann["keypoints_img"]) < _NUM_JOINTS or len(ann["keypoints_cam"]) < _NUM_JOINTS:
                raise ValueError(f"annotation {ann['id']} has fewer than 17 joints")
            people.setdefault(ann["image_id"], []).append(ann)
        images = [im for im in data["images"] if len(im["f"]) == 2 and len(im["c"]) == 2]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"corrupt MuCo-3DHP annotation file {path}: {error!r}") from None
    return images, people
