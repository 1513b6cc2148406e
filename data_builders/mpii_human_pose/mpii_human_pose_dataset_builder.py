"""MPII Human Pose as TFDS records (LCR-Net++ Sec. 4.2: single- and multi-person 2D).

Reads the release's MATLAB struct `RELEASE` (scipy.io.loadmat): for image i,
`annolist(i).image.name`, `annolist(i).annorect(j)` per person with the head box
`x1, y1, x2, y2`, `scale`, `objpos.x/y` and `annopoints.point(k)` with `id` (0-15, the
`mpii16` order), `x`, `y`, `is_visible`; `img_train(i)` (1 train, 0 test),
`single_person{i}` (the people of the single-person benchmark), `act(i).act_id` and
`annolist(i).vididx` (the YouTube video). The optional `groups_v12.mat` of the
evaluation toolkit gives the multi-person groups (`groups{i}{g}` = person indices; a
person may be in several groups of an image, as 23 images have).

Splits:
  - train / validation: the images with `img_train` = 1 and at least one person. The
    paper's validation set (~1k images, "images from the same video all belong to the
    same set") was not released; ours is deterministic: the videos (an image without a
    video is a group of its own) are shuffled by `numpy.random.default_rng(seed)` and
    whole videos go to validation until it holds at least `val_images` images.
  - test: the images with `img_train` = 0; their people have `scale` and `objpos` but
    no joints and no head box (zeros, `annotated` all False).

Conventions: MATLAB coordinates (pixel centres at 1, 2, ...) get -0.5 (joints, head
boxes, objpos) for the README's pixel-corner convention. `annotated` = the point is in
the annotation; `visible` = annotated, `is_visible` not 0 (an empty `is_visible` counts
as visible) and inside the image. `groups` = a person's groups as bits: bit g is set
when the person is in the image's g-th group (g < `MAX_GROUPS`); 0 for none.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from lcrnet_jax import skeleton
from lcrnet_jax.data import features

JOINT_SET = "mpii16"
_NUM_JOINTS = skeleton.get_joint_set(JOINT_SET).num_joints
MAX_GROUPS = 63  # groups of an image that a person's int64 `groups` bits hold
_URL = "http://human-pose.mpi-inf.mpg.de/#download"
_ANNOTATIONS = "**/mpii_human_pose_v1_u12_*.mat"


@dataclasses.dataclass(eq=False)
class MpiiConfig(tfds.core.BuilderConfig):
    """Validation split: whole videos until `val_images` images, shuffled with `seed`."""

    val_images: int = 1000
    seed: int = 0


@dataclasses.dataclass
class _Person:
    joints: np.ndarray  # (16, 2)
    annotated: np.ndarray  # (16,)
    flagged_visible: np.ndarray  # (16,)
    head_box: np.ndarray  # (4,)
    scale: float
    objpos: np.ndarray  # (2,)


@dataclasses.dataclass
class _Image:
    index: int
    name: str
    is_train: bool
    people: list[_Person]
    single_person: set[int]
    video: int
    activity: int
    groups: list[list[int]]


class MpiiHumanPose(tfds.core.GeneratorBasedBuilder):
    """MPII Human Pose v1: train, validation (by video) and test."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "1.1.0": "people's `groups` bits replace `group`: a person may be in several groups.",
    }
    BUILDER_CONFIGS = [MpiiConfig(name="default", description="~1000 validation images.")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        pathlib.Path(__file__).with_name("MANUAL_DOWNLOAD_INSTRUCTIONS").read_text()
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=features.pose_features(
                _NUM_JOINTS,
                extra={
                    "video_index": tfds.features.Scalar(dtype=np.int32),
                    "activity_id": tfds.features.Scalar(dtype=np.int32),
                },
                extra_people={
                    "annotated": features.person_tensor(_NUM_JOINTS, dtype=np.bool_),
                    "head_box": features.person_tensor(4),
                    "scale": features.person_tensor(),
                    "objpos": features.person_tensor(2),
                    "single_person": features.person_tensor(dtype=np.bool_),
                    "groups": features.person_tensor(dtype=np.int64),
                },
            ),
            metadata=tfds.core.MetadataDict(joint_set=JOINT_SET),
        )

    def _split_generators(self, dl_manager):
        root = features.manual_dir(
            dl_manager, dataset=self.name, expected=[_ANNOTATIONS, "images/*.jpg"], url=_URL
        )
        annotations = sorted(root.glob(_ANNOTATIONS))[-1]
        groups = next(iter(sorted(root.glob("**/groups_v12.mat"))), None)
        images = read_release(annotations, groups)
        train = [im for im in images if im.is_train and im.people]
        val_ids = validation_images(train, self.builder_config.val_images, self.builder_config.seed)
        return {
            "train": self._generate_examples(
                "train", root, [im for im in train if im.index not in val_ids]
            ),
            "validation": self._generate_examples(
                "validation", root, [im for im in train if im.index in val_ids]
            ),
            "test": self._generate_examples(
                "test", root, [im for im in images if not im.is_train and im.people]
            ),
        }

    def _generate_examples(self, split, root, images):
        skipped = features.SkipLog(self, split)
        for im in images:
            path = root / "images" / im.name
            loaded = skipped.read_image(path)
            if loaded is None:
                continue
            data, height, width = loaded
            num = len(im.people)
            joints = np.stack([p.joints for p in im.people]).reshape(num, _NUM_JOINTS, 2)
            annotated = np.stack([p.annotated for p in im.people]).reshape(num, _NUM_JOINTS)
            flagged = np.stack([p.flagged_visible for p in im.people]).reshape(num, _NUM_JOINTS)
            groups = np.zeros(num, np.int64)
            for g, members in enumerate(im.groups[:MAX_GROUPS]):
                groups[[m for m in members if m < num]] |= np.int64(1) << g
            if len(im.groups) > MAX_GROUPS:
                skipped.add(f"{im.name}#groups", f"only its first {MAX_GROUPS} groups are kept")
            yield (
                im.name,
                {
                    "image": data,
                    "image_id": im.name,
                    "intrinsics": np.zeros(4, np.float32),
                    "video_index": im.video,
                    "activity_id": im.activity,
                    "people": features.people(
                        joints,
                        annotated & flagged & features.inside_image(joints, height, width),
                        annotated=annotated,
                        head_box=np.array([p.head_box for p in im.people], np.float32).reshape(
                            -1, 4
                        ),
                        scale=np.array([p.scale for p in im.people], np.float32),
                        objpos=np.array([p.objpos for p in im.people], np.float32).reshape(-1, 2),
                        single_person=np.isin(np.arange(num), list(im.single_person)),
                        groups=groups,
                    ),
                },
            )
        skipped.report()


def validation_images(images: list[_Image], val_images: int, seed: int) -> set[int]:
    """Indices of the validation images: whole videos, shuffled by `seed` (module doc)."""
    videos: dict[tuple[int, int], list[int]] = {}
    for im in images:
        key = (im.video, -1) if im.video >= 0 else (-1, im.index)
        videos.setdefault(key, []).append(im.index)
    keys = sorted(videos)
    chosen: set[int] = set()
    for k in np.random.default_rng(seed).permutation(len(keys)):
        if len(chosen) >= val_images:
            break
        chosen.update(videos[keys[k]])
    return chosen


def _items(value) -> list:
    """Elements of a MATLAB struct or cell array loaded without squeezing."""
    return list(np.asarray(value).ravel())


def _number(value, default: float) -> float:
    """A MATLAB scalar (number, numeric string or empty) as a float."""
    items = _items(value)
    return float(items[0]) if items else default


def _field(struct, name: str, default=None):
    return getattr(struct, name) if name in struct._fieldnames else default


def _person(rect) -> _Person:
    joints = np.zeros((_NUM_JOINTS, 2), np.float32)
    annotated = np.zeros(_NUM_JOINTS, bool)
    flagged = np.zeros(_NUM_JOINTS, bool)
    annopoints = _items(_field(rect, "annopoints", []))
    for point in _items(_field(annopoints[0], "point", [])) if annopoints else []:
        k = int(_number(point.id, -1))
        if not 0 <= k < _NUM_JOINTS:
            raise ValueError(f"joint id {k} outside 0-{_NUM_JOINTS - 1}")
        joints[k] = (_number(point.x, np.nan) - 0.5, _number(point.y, np.nan) - 0.5)
        annotated[k] = True
        flagged[k] = _number(_field(point, "is_visible", []), 1.0) != 0
    corners = [_number(_field(rect, c, []), np.nan) for c in ("x1", "y1", "x2", "y2")]
    head_box = np.array(corners, np.float32) - 0.5
    objpos = _items(_field(rect, "objpos", []))
    center = (
        np.array([_number(objpos[0].x, np.nan), _number(objpos[0].y, np.nan)]) - 0.5
        if objpos
        else np.zeros(2)
    )
    return _Person(
        joints=np.nan_to_num(joints),
        annotated=annotated & ~np.isnan(joints).any(-1),
        flagged_visible=flagged,
        head_box=np.nan_to_num(head_box),
        scale=_number(_field(rect, "scale", []), 0.0),
        objpos=np.nan_to_num(center),
    )


def read_release(path: pathlib.Path, groups_path: pathlib.Path | None = None) -> list[_Image]:
    """Every image of the MPII annotation file (structure: module docstring).

    Raises:
      ValueError: naming the file when it is not the MPII `RELEASE` struct.
    """
    release = features.load_mat(path, struct_as_record=False, squeeze_me=False).get("RELEASE")
    groups = None
    if groups_path is not None:
        groups = _items(features.load_mat(groups_path, squeeze_me=False)["groups"])
    try:
        release = _items(release)[0]
        annolist = _items(release.annolist)
        is_train = [_number(v, 0) == 1 for v in _items(release.img_train)]
        single = _items(release.single_person)
        acts = _items(release.act)
        images = []
        for i, entry in enumerate(annolist):
            image_groups = []
            if groups is not None and i < len(groups):
                image_groups = [[int(m) - 1 for m in _items(g)] for g in _items(groups[i])]
            images.append(
                _Image(
                    index=i,
                    name=str(_items(_items(entry.image)[0].name)[0]),
                    is_train=is_train[i],
                    people=[_person(r) for r in _items(_field(entry, "annorect", []))],
                    single_person={int(s) - 1 for s in _items(single[i])}
                    if i < len(single)
                    else set(),
                    video=int(_number(_field(entry, "vididx", []), -1)),
                    activity=int(_number(_field(acts[i], "act_id", []), -1))
                    if i < len(acts)
                    else -1,
                    groups=image_groups,
                )
            )
    except (AttributeError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"{path} is not a readable MPII RELEASE struct: {error!r}") from None
    return images
