r"""In-the-wild ResNet-50 as the released model (Sec. 4.2-4.3): K = 10 + 10 upper-body
classes, 13 joints, trained on MPII train (minus the 1k validation images), LSPE, COCO
train, a 17k-image Human3.6M subset and synthetic images of CMU MoCap people.

python experiments/train.py --config=experiments/configs/inthewild_r50.py --workdir=runs/wild \
    --config.model_init.imagenet=resnet50-0676ba61.pth

Every command, from the raw downloads (README "Reproducing the in-the-wild model"), with
TFDS=~/tensorflow_datasets and each dataset's files in $TFDS/downloads/manual/<name>
(data_builders/<name>/MANUAL_DOWNLOAD_INSTRUCTIONS):

  python experiments/build_dataset.py --dataset=mpii_human_pose --data_dir=$TFDS
  python experiments/build_dataset.py --dataset=lsp/extended --data_dir=$TFDS
  python experiments/build_dataset.py --dataset=coco_keypoints --data_dir=$TFDS
  python experiments/build_dataset.py --dataset=human36m/wild --data_dir=$TFDS
  python experiments/build_dataset.py --dataset=cmu_mocap --data_dir=$TFDS
  python experiments/build_dataset.py --dataset=synthetic_people/cmu --data_dir=$TFDS \
      --corpus=cmu_mocap --reference_corpus=human36m/wild --background_dir=PERSON_FREE_PHOTOS
  python experiments/fit_anchors.py --corpus=cmu_mocap --data_dir=$TFDS --num=10 \
      --upper_body --random_views --output=anchors/cmu_k10.npz
  python experiments/add_pseudo_gt.py --dataset=mpii_human_pose --data_dir=$TFDS \
      --corpus=cmu_mocap --split=train
  python experiments/add_pseudo_gt.py --dataset=lsp/extended --data_dir=$TFDS \
      --corpus=cmu_mocap --split=train
  python experiments/add_pseudo_gt.py --dataset=coco_keypoints --data_dir=$TFDS \
      --corpus=cmu_mocap --split=train
  python experiments/train.py --config=experiments/configs/inthewild_r50.py \
      --workdir=runs/wild --config.data.data_dir=$TFDS \
      --config.anchor_poses.path=anchors/cmu_k10.npz \
      --config.model_init.imagenet=resnet50-0676ba61.pth
  python experiments/evaluate.py --config=experiments/configs/inthewild_r50.py \
      --workdir=runs/wild --config.data.data_dir=$TFDS \
      --config.anchor_poses.path=anchors/cmu_k10.npz

Weights: the real sources are drawn in proportion to their sizes (MPII ~16.4k, LSPE 10k,
COCO 56.6k images with keypoint-annotated people, Human3.6M 17k). The paper's mixture is
161k real images (mirrored: each image and its mirror) and 40k synthetic ones, so a fifth
of its images are synthetic; here every source is mirrored at random, and the synthetic
weight keeps that fifth (40 / 161 of the real weights: 24.7, not 40, which would give 29%).
"""

import ml_collections

from experiments.configs import base

# Thousands of images, and the paper's synthetic images per mirrored real image.
_REAL = {"mpii": 16.4, "lspe": 10.0, "coco": 56.0, "h36m": 17.0}
_SYNTHETIC_PER_REAL = 40.0 / 161.0


def get_config():
    config = base.get_config()
    config.data.sources = ml_collections.ConfigDict(
        {
            "mpii": base.source("mpii_human_pose", weight=_REAL["mpii"], pseudo_gt=True),
            "lspe": base.source("lsp/extended", weight=_REAL["lspe"], pseudo_gt=True),
            "coco": base.source("coco_keypoints", weight=_REAL["coco"], pseudo_gt=True),
            "h36m": base.source("human36m/wild", weight=_REAL["h36m"]),
            "synthetic": base.source(
                "synthetic_people/cmu", weight=round(_SYNTHETIC_PER_REAL * sum(_REAL.values()), 1)
            ),
        }
    )
    config.data.eval_name = "mpii_human_pose"
    config.data.eval_split = "validation"
    config.data.short_side = 800  # as the released models (Sec. 4.2)
    config.data.max_long_side = 1333
    config.data.image_size = ()  # size buckets, one image per step
    config.data.batch_size = 1
    # Images of one size bucket per evaluation call: 1 fits a CPU's memory; on hosts of N
    # devices a multiple of N (--config.eval.batch_size=8) spreads them over each host's.
    config.eval.batch_size = 1
    config.anchor_poses.num = 10
    config.anchor_poses.upper_body = True
    # The released in-the-wild ResNet-50 model's PPI parameters (ppi.IN_THE_WILD_R50).
    config.ppi.iou_threshold = 0.14
    config.ppi.t3d = 0.04
    config.ppi.box_joints = "torso_head"
    config.ppi.min_mode_score = 0.05
    config.ppi.person_threshold = 0.5
    return config
