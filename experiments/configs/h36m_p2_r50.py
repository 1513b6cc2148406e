r"""Human3.6M protocol 2 with the ResNet-50 C4 model (K = 100, Sec. 4.1), from ImageNet
weights (Sec. 3.5, torchvision's ResNet-50 file):

python experiments/train.py --config=experiments/configs/h36m_p2_r50.py --workdir=runs/h36m_p2 \
    --config.model_init.imagenet=resnet50-0676ba61.pth
"""

import ml_collections

from experiments.configs import base


def get_config():
    config = base.get_config()
    config.data.sources = ml_collections.ConfigDict({"h36m": base.source("human36m/p2")})
    config.data.eval_name = "human36m/p2"
    config.data.short_side = config.data.max_long_side = 800  # square 1000 px frames
    config.data.image_size = (800, 800)
    config.data.max_people = 1
    config.data.batch_size = 1  # 1 image x 512 RoIs (Sec. 3.5)
    config.anchor_poses.num = 100
    config.anchor_poses.upper_body = False
    config.anchor_poses.max_records = 190_000  # K-means on 190k training frames (Sec. 4.1)
    config.model.iterative = True  # LCR-Net++ (Sec. 3.4, Table 1)
    config.optimizer.decay_steps = (1_800_000, 2_400_000)
    config.train.num_steps = 2_700_000
    config.ppi.t3d = 0.125
    return config
