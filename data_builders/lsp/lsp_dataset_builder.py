"""Leeds Sports Pose (LSP) and LSP-extended as TFDS records (LCR-Net++ Sec. 4.2).

The paper trains its in-the-wild models on MPII plus "the annotated images from LSPE"
(LSP-extended). One record per image, one person, the 14 LSP joints (`lsp14`).

The two `joints.mat` files differ (both are handled, recognised by the array's shape):
  - LSP (`lsp_dataset/joints.mat`): 3 x 14 x 2000, rows x, y, occluded: the third value
    is 1 for an occluded joint, 0 for a visible one. Every joint has a position.
  - LSP-extended (`lspet_dataset/joints.mat`): 14 x 3 x 10000, columns x, y, visible:
    1 visible, 0 not; the position of a 0 joint is not reliable, so it counts as not
    annotated.
Coordinates are MATLAB's (pixel centres at 1, 2, ...); we subtract 0.5 to get the
pixel-corner convention of the README.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from lcrnet_jax import skeleton
from lcrnet_jax.data import features

JOINT_SET = "lsp14"
_NUM_JOINTS = skeleton.get_joint_set(JOINT_SET).num_joints
_URL = "http://sam.johnson.io/research/lsp.html and http://sam.johnson.io/research/lspet.html"


@dataclasses.dataclass(eq=False)
class LspConfig(tfds.core.BuilderConfig):
    """Which release to read.

    Attributes:
      folder: the release's folder inside the manual folder.
      image_digits: digits in the image names (im0001.jpg / im00001.jpg).
      num_train: the first `num_train` images form the train split, the rest the test
        split (LSP: 1000 / 1000; LSP-extended: every image is train).
    """

    folder: str = "lsp_dataset"
    image_digits: int = 4
    num_train: int | None = 1000


class Lsp(tfds.core.GeneratorBasedBuilder):
    """LSP (config `original`) and LSP-extended (config `extended`)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        LspConfig(name="original", description="LSP: 1000 train, 1000 test images."),
        LspConfig(
            name="extended",
            description="LSP-extended: 10000 train images.",
            folder="lspet_dataset",
            image_digits=5,
            num_train=None,
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        pathlib.Path(__file__).with_name("MANUAL_DOWNLOAD_INSTRUCTIONS").read_text()
    )

    def _info(self) -> tfds.core.DatasetInfo:
        annotated = features.person_tensor(_NUM_JOINTS, dtype=np.bool_)
        return self.dataset_info_from_configs(
            features=features.pose_features(_NUM_JOINTS, extra_people={"annotated": annotated}),
            metadata=tfds.core.MetadataDict(joint_set=JOINT_SET),
        )

    def _split_generators(self, dl_manager):
        folder = self.builder_config.folder
        root = features.manual_dir(
            dl_manager,
            dataset=self.name,
            expected=[f"{folder}/joints.mat", f"{folder}/images/*.jpg"],
            url=_URL,
        )
        joints, annotated, visible = read_joints(root / folder / "joints.mat")
        ids = np.arange(len(joints))
        n = self.builder_config.num_train
        splits = {"train": ids if n is None else ids[:n]}
        if n is not None:
            splits["test"] = ids[n:]
        return {
            split: self._generate_examples(split, root / folder, idx, joints, annotated, visible)
            for split, idx in splits.items()
        }

    def _generate_examples(self, split, folder, indices, joints, annotated, visible):
        skipped = features.SkipLog(self, split)
        for i in indices:
            name = f"images/im{i + 1:0{self.builder_config.image_digits}d}.jpg"
            loaded = skipped.read_image(folder / name)
            if loaded is None:
                continue
            image, height, width = loaded
            inside = features.inside_image(joints[i], height, width)
            yield (
                name,
                {
                    "image": image,
                    "image_id": name,
                    "intrinsics": np.zeros(4, np.float32),
                    "people": features.people(
                        joints[i][None],
                        (visible[i] & inside)[None],
                        annotated=annotated[i][None],
                    ),
                },
            )
        skipped.report()


def read_joints(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joints of an LSP or LSP-extended `joints.mat` (layouts: module docstring).

    Returns:
      (joints (N, 14, 2) float32 pixels, annotated (N, 14) bool, visible (N, 14) bool).
    """
    mat = features.load_mat(path)
    if "joints" not in mat:
        raise ValueError(f"{path} has no 'joints' array")
    array = np.asarray(mat["joints"], np.float32)
    if array.ndim == 3 and array.shape[:2] == (3, _NUM_JOINTS):  # LSP
        array = array.transpose(2, 1, 0)
        annotated = np.ones(array.shape[:2], bool)
        visible = array[..., 2] == 0
    elif array.ndim == 3 and array.shape[:2] == (_NUM_JOINTS, 3):  # LSP-extended
        array = array.transpose(2, 0, 1)
        annotated = visible = array[..., 2] == 1
    else:
        raise ValueError(
            f"{path}: 'joints' has shape {array.shape}, expected (3, 14, N) for LSP or "
            "(14, 3, N) for LSP-extended"
        )
    return array[..., :2] - 0.5, annotated, visible
