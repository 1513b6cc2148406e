r"""MPII with the VGG16 model of the paper (Fig. 11, Table 4): `mpii_r50` (K = 200 + 200
upper-body classes, the in-the-wild mixture, iterative head, boxes of all joints) with
VGG16, 8 images x 32 RoIs per step, 500k iterations (300k at 1e-3, 200k at 1e-4), PPI
with T3D 130 mm / IoU 0.12, the paper's setting for PCKh (82.16). Its best multi-person
AP (54.31) used T3D 30 mm / IoU 0.54: evaluate with `--config.ppi.t3d=0.03
--config.ppi.iou_threshold=0.54 --eval_dir=runs/mpii_vgg16/eval_ap` for that column (the
run's eval/ folder keeps the other settings' files).

python experiments/train.py --config=experiments/configs/mpii_vgg16.py --workdir=runs/mpii_vgg16 \
    --config.model_init.imagenet=vgg16-397923af.pth

The commands from raw downloads are those of experiments/configs/inthewild_r50.py, with
200 anchors fitted on the MoCap corpus and VGG16 ImageNet weights:

  python experiments/fit_anchors.py --corpus=cmu_mocap --data_dir=$TFDS --num=200 \
      --upper_body --random_views --output=anchors/cmu_k200.npz
  python experiments/train.py --config=experiments/configs/mpii_vgg16.py \
      --workdir=runs/mpii_vgg16 --config.data.data_dir=$TFDS \
      --config.anchor_poses.path=anchors/cmu_k200.npz \
      --config.model_init.imagenet=vgg16-397923af.pth
  python experiments/evaluate.py --config=experiments/configs/mpii_vgg16.py \
      --workdir=runs/mpii_vgg16 --config.data.data_dir=$TFDS \
      --config.anchor_poses.path=anchors/cmu_k200.npz
"""

from experiments.configs import mpii_r50


def get_config():
    config = mpii_r50.get_config()
    config.data.batch_size = 8  # 8 images x 32 RoIs = 256 RoIs (Sec. 3.5)
    # One canvas for the 8 images: the landscape bucket (portrait images are cropped in
    # training and scaled down to fit in evaluation).
    config.data.image_size = (800, 1344)
    config.model.preset = "vgg16"
    config.targets.roi_samples = 32
    config.optimizer.decay_steps = (300_000,)
    config.train.num_steps = 500_000
    config.ppi.t3d = 0.13  # VGG16: T3D 130 mm, IoU 0.12 (Sec. 4.2)
    config.ppi.iou_threshold = 0.12
    return config
