"""CMU MoCap 3D poses as TFDS records (LCR-Net++ Sec. 3.7 and 4.1 pose source).

The paper draws 3D poses from the CMU motion capture database for its pseudo ground
truth (Sec. 3.7) and its synthetic images (Sec. 4.1). Records hold poses only, one per
kept frame: LCR-17 joints (`lcr17`) in metres, Y down, centred on the torso (mean of the
hips and shoulders), with the torso's world position kept apart. Files are read by
`lcrnet_jax.data.mocap` (joint mapping and axes in its docstring): every `*.amc` with
its skeleton `<subject>.asf` in the same folder (CMU's layout), and every `*.bvh` (CMU's
BVH conversions, units `mocap.CMU_SCALE`), at any depth of the manual folder.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.data import features, mocap

JOINT_SET = "lcr17"
_NUM_JOINTS = skeleton.get_joint_set(JOINT_SET).num_joints
_URL = "http://mocap.cs.cmu.edu/ (ASF/AMC) or its BVH conversions"


@dataclasses.dataclass(eq=False)
class CmuMocapConfig(tfds.core.BuilderConfig):
    """`frame_step`: keep every `frame_step`-th frame of the 120 fps recordings."""

    frame_step: int = 10


def _asf_for(amc: pathlib.Path) -> pathlib.Path | None:
    """The skeleton of an AMC motion: `<subject>.asf` ("01_02.amc" -> "01.asf"), else the
    folder's only .asf."""
    named = amc.with_name(amc.stem.split("_")[0] + ".asf")
    if named.is_file():
        return named
    candidates = sorted(amc.parent.glob("*.asf"))
    return candidates[0] if len(candidates) == 1 else None


class CmuMocap(tfds.core.GeneratorBasedBuilder):
    """CMU MoCap poses (no images), one record per kept frame."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [CmuMocapConfig(name="default", description="Every 10th frame (12 fps).")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        pathlib.Path(__file__).with_name("MANUAL_DOWNLOAD_INSTRUCTIONS").read_text()
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "joints3d": tfds.features.Tensor(shape=(_NUM_JOINTS, 3), dtype=np.float32),
                    "torso": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                    "sequence_id": tfds.features.Text(),
                    "subject": tfds.features.Scalar(dtype=np.int32),
                    "frame": tfds.features.Scalar(dtype=np.int32),
                }
            ),
            metadata=tfds.core.MetadataDict(joint_set=JOINT_SET),
        )

    def _split_generators(self, dl_manager):
        root = features.manual_dir(
            dl_manager, dataset=self.name, expected=["**/*.amc | **/*.bvh"], url=_URL
        )
        return {"train": self._generate_examples(root)}

    def _generate_examples(self, root):
        step = self.builder_config.frame_step
        skipped = features.SkipLog(self, "train")
        amc = sorted(root.glob("**/*.amc"))
        # A take downloaded in both formats ("and/or" in the instructions) is read once.
        takes = {path.stem for path in amc}
        bvh = sorted(root.glob("**/*.bvh"))
        twins = [path for path in bvh if path.stem in takes]
        if twins:
            logging.warning(
                "%s: %d take(s) given both as AMC and BVH are read from the AMC only, e.g. %s",
                self.name, len(twins), twins[0].relative_to(root),
            )  # fmt: skip
        for path in sorted([*amc, *(path for path in bvh if path.stem not in takes)]):
            try:
                if path.suffix == ".bvh":
                    poses = mocap.read_bvh(path, frame_step=step)
                else:
                    asf = _asf_for(path)
                    if asf is None:
                        raise FileNotFoundError(f"no {path.stem.split('_')[0]}.asf beside it")
                    poses = mocap.read_asf_amc(asf, path, frame_step=step)
            except (FileNotFoundError, ValueError, UnicodeDecodeError) as error:
                skipped.add(path, error)
                continue
            torso = np.asarray(geometry.torso_center(poses, JOINT_SET), np.float32)
            centred = np.asarray(geometry.center_on_torso(poses, JOINT_SET), np.float32)
            prefix = path.stem.split("_")[0]
            relative = path.relative_to(root).as_posix()
            for i in range(len(poses)):
                yield (
                    f"{relative}/{i * step}",
                    {
                        "joints3d": centred[i],
                        "torso": torso[i],
                        "sequence_id": path.stem,
                        "subject": int(prefix) if prefix.isdigit() else -1,
                        "frame": i * step,
                    },
                )
        skipped.report()
