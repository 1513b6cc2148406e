r"""Anchor poses from a MoCap corpus: K-means centres (+ the mean pose) (Sec. 4.2).

python experiments/fit_anchors.py --corpus=cmu_mocap --data_dir=~/tensorflow_datasets \
    --num=10 --upper_body --random_views --output=anchors/cmu_k10.npz

`--corpus` is a comma-separated list of LCR .npz files and built TFDS datasets
`NAME[/CONFIG][:SPLIT]` (`cmu_mocap`, or the 3D people of e.g. `human36m/p1:train`); the
same corpus feeds experiments/add_pseudo_gt.py. `--random_views` turns each MoCap pose to a
random heading and camera elevation first, as add_pseudo_gt.py's views do (MoCap poses
keep the capture room's heading; a dataset's 3D people are already seen by cameras).
Writes `--output` and
`<output stem>_mean_pose.npz`; give the first to a run as `--config.anchor_poses.path`.
"""

from __future__ import annotations

from absl import flags

from experiments import launch
from lcrnet_jax import anchors

_CORPUS = flags.DEFINE_string("corpus", None, "Pose corpus: .npz paths and TFDS names.")
_NUM = flags.DEFINE_integer("num", None, "K, full-body anchor poses.")
_UPPER_BODY = flags.DEFINE_bool("upper_body", False, "Also the K upper-body twins.")
_OUTPUT = flags.DEFINE_string("output", None, "Anchor .npz to write.")
_JOINT_SET = flags.DEFINE_string("joint_set", "lcr13", "Joint set of the anchors.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default: TFDS's).")
_MAX_POSES = flags.DEFINE_integer("max_poses", None, "Records read per dataset entry.")
_NORMALIZE = flags.DEFINE_bool("normalize", True, "Regression std from the corpus.")
_SEED = flags.DEFINE_integer("seed", 0, "Subset, K-means and view seed.")
_RANDOM_VIEWS = flags.DEFINE_bool(
    "random_views", False, "Turn each pose to a random heading and elevation first (MoCap)."
)
_MAX_ELEVATION = flags.DEFINE_float("max_elevation", 0.5, "--random_views' elevation, radians.")
flags.mark_flags_as_required(["corpus", "num", "output"])


def main(argv):
    del argv
    result = anchors.fit_anchor_file(
        _CORPUS.value, _OUTPUT.value, num_anchors=_NUM.value, upper_body=_UPPER_BODY.value,
        joint_set=_JOINT_SET.value, data_dir=_DATA_DIR.value or None, max_poses=_MAX_POSES.value,
        normalize=_NORMALIZE.value, seed=_SEED.value, random_views=_RANDOM_VIEWS.value,
        max_elevation=_MAX_ELEVATION.value,
    )  # fmt: skip
    print(
        f"{result['anchors']} {result['joint_set']} anchor poses from {result['poses']} "
        f"poses: wrote {result['path']} and {result['mean_path']}"
    )


if __name__ == "__main__":
    launch.run(main)
