"""COCO 2017 person keypoints as TFDS records (LCR-Net++ Sec. 4.2 training data).

The paper adds "the training set of the MS Coco dataset" to its in-the-wild training
data. One record per image with every person annotation, the 17 COCO keypoints
(`coco17`). The train split keeps the images with a keypoint-annotated person (56.6k of
the 64.1k with a person annotation), as Detectron's keypoint training filters them; the
validation split keeps every image (the OKS evaluation counts false positives on all).

Keypoints: COCO stores integer pixel indices; as detectron2 does, we add 0.5 to get
continuous coordinates in the README's pixel-corner convention (subtract it again before
writing results for pycocotools). v = 0 is not annotated; v = 1 annotated but occluded
(`annotated` True, `visible` False); v = 2 annotated and visible (`visible` True when
inside the image). Boxes are COCO's `bbox` turned to x1, y1, x2, y2.

Crowd regions stay as people with `is_crowd` True (their box is the region's bbox, no
keypoints); `ignore` marks what COCO's OKS evaluation ignores (crowd, or no keypoint).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from lcrnet_jax import skeleton
from lcrnet_jax.data import features

JOINT_SET = "coco17"
_NUM_JOINTS = skeleton.get_joint_set(JOINT_SET).num_joints
_URL = "https://cocodataset.org/#download"
_PERSON = 1
# split -> (annotation file, image folder, keep images without a keypoint-annotated person)
_SPLITS = {
    "train": ("annotations/person_keypoints_train2017.json", "train2017", False),
    "validation": ("annotations/person_keypoints_val2017.json", "val2017", True),
}


class CocoKeypoints(tfds.core.GeneratorBasedBuilder):
    """COCO 2017 person keypoints: train (images with a keypoint-annotated person) and
    validation (all)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "1.1.0": "train: only images with a keypoint-annotated person (not a crowd or "
        "people without keypoints alone).",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        pathlib.Path(__file__).with_name("MANUAL_DOWNLOAD_INSTRUCTIONS").read_text()
    )

    def _info(self) -> tfds.core.DatasetInfo:
        per_person = {
            "annotated": features.person_tensor(_NUM_JOINTS, dtype=np.bool_),
            "is_crowd": features.person_tensor(dtype=np.bool_),
            "ignore": features.person_tensor(dtype=np.bool_),
            "area": features.person_tensor(dtype=np.float32),
            "annotation_id": features.person_tensor(dtype=np.int64),
        }
        return self.dataset_info_from_configs(
            features=features.pose_features(
                _NUM_JOINTS,
                extra={"coco_image_id": tfds.features.Scalar(dtype=np.int64)},
                extra_people=per_person,
            ),
            metadata=tfds.core.MetadataDict(joint_set=JOINT_SET),
        )

    def _split_generators(self, dl_manager):
        expected = [
            p
            for annotations, folder, _ in _SPLITS.values()
            for p in (annotations, f"{folder}/*.jpg")
        ]
        root = features.manual_dir(dl_manager, dataset=self.name, expected=expected, url=_URL)
        return {
            split: self._generate_examples(split, root, annotations, folder, keep_all)
            for split, (annotations, folder, keep_all) in _SPLITS.items()
        }

    def _generate_examples(self, split, root, annotations, folder, keep_all):
        images, people = read_annotations(root / annotations)
        skipped = features.SkipLog(self, split)
        for image in images:
            anns = people.get(image["id"], [])
            keypoints = np.array([a["keypoints"] for a in anns], np.float32).reshape(
                -1, _NUM_JOINTS, 3
            )
            annotated = keypoints[..., 2] > 0
            if not (keep_all or annotated.any()):
                continue
            name = f"{folder}/{image['file_name']}"
            loaded = skipped.read_image(root / name)
            if loaded is None:
                continue
            data, height, width = loaded
            joints2d = np.where(annotated[..., None], keypoints[..., :2] + 0.5, 0.0)
            visible = (keypoints[..., 2] == 2) & features.inside_image(joints2d, height, width)
            x, y, w, h = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4).T
            is_crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
            yield (
                name,
                {
                    "image": data,
                    "image_id": name,
                    "coco_image_id": image["id"],
                    "intrinsics": np.zeros(4, np.float32),
                    "people": features.people(
                        joints2d,
                        visible,
                        box=np.stack([x, y, x + w, y + h], -1),
                        annotated=annotated,
                        is_crowd=is_crowd,
                        ignore=is_crowd | (annotated.sum(-1) == 0),
                        area=np.array([a["area"] for a in anns], np.float32),
                        annotation_id=np.array([a["id"] for a in anns], np.int64),
                    ),
                },
            )
        skipped.report()


def read_annotations(path: pathlib.Path) -> tuple[list[dict], dict[int, list[dict]]]:
    """Images and person annotations by image id of a COCO keypoints json.

    Raises:
      ValueError: naming the file when it is not json, lacks the COCO keys or holds a
        person annotation without 17 (x, y, v) keypoints and a bbox.
    """
    try:
        data = json.loads(pathlib.Path(path).read_text())
        images = list(data["images"])
        people: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            if ann["category_id"] != _PERSON:
                continue
            if len(ann["keypoints"]) != 3 * _NUM_JOINTS or len(ann["bbox"]) != 4:
                raise ValueError(f"annotation {ann['id']} needs 51 keypoint values and a bbox")
            people.setdefault(ann["image_id"], []).append(ann)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"corrupt COCO annotation file {path}: {error!r}") from None
    return images, people
