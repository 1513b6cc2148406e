r"""Human3.6M protocol 1 with the VGG16 model of the paper (K = 100, Sec. 4.1).

13 joints by default; `--config.data.joint_set=lcr17` gives the 17-joint model. The
backbone starts from ImageNet weights (Sec. 3.5), torchvision's VGG16 file:

python experiments/train.py --config=experiments/configs/h36m_p1_vgg16.py --workdir=runs/h36m_p1 \
    --config.model_init.imagenet=vgg16-397923af.pth
"""

import ml_collections

from experiments.configs import base


def get_config():
    config = base.get_config()
    config.data.sources = ml_collections.ConfigDict({"h36m": base.source("human36m/p1")})
    config.data.eval_name = "human36m/p1"
    config.data.joint_set = "lcr13"
    config.data.short_side = config.data.max_long_side = 800  # square 1000 px frames
    config.data.image_size = (800, 800)
    config.data.max_people = 1
    config.data.batch_size = 8  # 8 images x 32 RoIs = 256 RoIs (Sec. 3.5)
    config.anchor_poses.num = 100
    config.anchor_poses.upper_body = False
    config.anchor_poses.max_records = 190_000  # K-means on 190k training frames (Sec. 4.1)
    config.model.preset = "vgg16"
    config.model.iterative = True  # LCR-Net+ and ++ (Sec. 3.4, Table 1)
    config.targets.roi_samples = 32
    config.optimizer.decay_steps = (300_000,)  # 1e-3 for 300k, 1e-4 for 200k
    config.train.num_steps = 500_000
    config.ppi.t3d = 0.125  # T3D = 125 mm (Sec. 4.1)
    return config
