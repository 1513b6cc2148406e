r"""MPII with the ResNet-50 model of the paper (Table 4-5): K = 200 + 200 upper-body
classes, the in-the-wild mixture, iterative head, PPI with T3D 40 mm / IoU 0.02 on the
boxes of all joints (87.0 PCKh, 61.7 AP; the head and torso boxes of the released model
gave the paper 64.9 AP).

python experiments/train.py --config=experiments/configs/mpii_r50.py --workdir=runs/mpii_r50 \
    --config.model_init.imagenet=resnet50-0676ba61.pth

The commands from raw downloads are those of experiments/configs/inthewild_r50.py, with
200 anchors fitted on the MoCap corpus:

  python experiments/fit_anchors.py --corpus=cmu_mocap --data_dir=$TFDS --num=200 \
      --upper_body --random_views --output=anchors/cmu_k200.npz
  python experiments/train.py --config=experiments/configs/mpii_r50.py \
      --workdir=runs/mpii_r50 --config.data.data_dir=$TFDS \
      --config.anchor_poses.path=anchors/cmu_k200.npz \
      --config.model_init.imagenet=resnet50-0676ba61.pth
  python experiments/evaluate.py --config=experiments/configs/mpii_r50.py \
      --workdir=runs/mpii_r50 --config.data.data_dir=$TFDS \
      --config.anchor_poses.path=anchors/cmu_k200.npz
"""

from experiments.configs import base, inthewild_r50


def get_config():
    config = inthewild_r50.get_config()
    config.anchor_poses.num = 200  # the optimum of Fig. 11a
    config.anchor_poses.upper_body = True  # Table 5: -2.4 PCKh without upper-body classes
    config.model.iterative = True
    config.ppi.t3d = 0.04  # ResNet-50: T3D 40 mm, IoU 0.02 (Table 4)
    config.ppi.iou_threshold = 0.02
    # The paper's boxes and the authors' code's person threshold, not the released model's.
    config.ppi.box_joints = "all"
    config.ppi.person_threshold = base.get_config().ppi.person_threshold
    return config
