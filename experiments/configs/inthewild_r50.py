r"""In-the-wild ResNet-50 like the released model: K = 10 + 10 upper-body, 13 joints.

python experiments/train.py --config=experiments/configs/inthewild_r50.py --workdir=runs/wild
"""

from experiments.configs import base


def get_config():
    config = base.get_config()
    config.data.name = "coco_keypoints"
    config.data.eval_split = "validation"
    config.data.image_size = (800, 800)
    config.data.batch_size = 1
    config.anchors.num = 10
    config.anchors.upper_body = True
    config.eval.ppi = "inthewild"
    return config
