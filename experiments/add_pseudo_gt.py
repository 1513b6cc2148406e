r"""Pseudo ground-truth 3D poses for a built TFDS pose dataset (LCR-Net++ Sec. 3.7).

python experiments/add_pseudo_gt.py --dataset=mpii_human_pose --data_dir=~/tensorflow_datasets \
    --corpus=cmu_mocap --num_views=32 --split=train

`--corpus` is the same pose corpus as the anchor poses' (experiments/fit_anchors.py):
comma-separated LCR .npz files and built TFDS datasets `NAME[/CONFIG][:SPLIT]` such as
`cmu_mocap`, read from `--data_dir`.

Writes <data_dir>/<name>[/<config>]/<version>/pseudo_gt_<split>.npz, read back with
`lcrnet_jax.data.pseudo_gt_file.load_pseudo_gt`.
"""

from __future__ import annotations

from absl import flags

from experiments import launch
from lcrnet_jax import pseudo_gt

_DATASET = flags.DEFINE_string("dataset", None, "TFDS dataset, NAME or NAME/CONFIG.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory (default: TFDS's).")
_CORPUS = flags.DEFINE_string(
    "corpus", None, "Pose corpus: .npz files (poses3d, joint_set) and TFDS names, e.g. cmu_mocap."
)
_CORPUS_JOINT_SET = flags.DEFINE_string(
    "corpus_joint_set", None, "LCR joint set of the search (default: the richest available)."
)
_SPLIT = flags.DEFINE_string("split", "train", "Split to annotate.")
_NUM_VIEWS = flags.DEFINE_integer("num_views", 32, "Random orthographic views per MoCap pose.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random views.")
_MAX_ELEVATION = flags.DEFINE_float("max_elevation", 0.5, "Camera elevation range, radians.")
_MAX_ROLL = flags.DEFINE_float("max_roll", 0.0, "Camera roll range, radians.")
_METHOD = flags.DEFINE_enum("method", "jnp", list(pseudo_gt.METHODS), "Search method.")
_CHUNK_SIZE = flags.DEFINE_integer(
    "chunk_size", pseudo_gt.CHUNK_SIZE, "Corpus entries per search step."
)
_QUERY_BLOCK = flags.DEFINE_integer(
    "query_block", pseudo_gt.QUERY_BLOCK, "Queries per compiled search call."
)
_MIN_JOINTS = flags.DEFINE_integer(
    "min_joints", 2, "People with fewer annotated joints get no pseudo 3D (few say little of it)."
)
flags.mark_flags_as_required(["dataset", "corpus"])


def main(argv):
    del argv
    summary = pseudo_gt.add_pseudo_gt(
        _DATASET.value,
        data_dir=_DATA_DIR.value,
        corpus_path=_CORPUS.value,
        split=_SPLIT.value,
        corpus_joint_set=_CORPUS_JOINT_SET.value,
        num_views=_NUM_VIEWS.value,
        seed=_SEED.value,
        max_elevation=_MAX_ELEVATION.value,
        max_roll=_MAX_ROLL.value,
        method=_METHOD.value,
        chunk_size=_CHUNK_SIZE.value,
        query_block=_QUERY_BLOCK.value,
        min_joints=_MIN_JOINTS.value,
    )
    print(
        f"{summary['people']} people without 3D in {summary['records']} records: "
        f"{summary['people_matched']} matched, {summary['people_skipped']} skipped "
        f"(fewer than {_MIN_JOINTS.value} distinct annotated joints); mean match distance "
        f"{summary['mean_distance']:.4f}; wrote {summary['path']}"
    )


if __name__ == "__main__":
    launch.run(main)
