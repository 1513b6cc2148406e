r"""MPII (with pseudo ground-truth 3D) and the iterative ResNet-50 model (K = 200, Sec. 4.2).

python experiments/train.py --config=experiments/configs/mpii_r50.py --workdir=runs/mpii
"""

from experiments.configs import base


def get_config():
    config = base.get_config()
    config.data.name = "mpii_human_pose"
    config.data.eval_split = "validation"
    config.data.image_size = (800, 800)
    config.data.batch_size = 1
    config.anchors.num = 200
    config.anchors.upper_body = False
    config.model.iterative = True
    config.eval.ppi_t3d = 0.04  # ResNet-50: T3D 40 mm, IoU 0.02 (Sec. 4.2)
    config.eval.ppi_iou_threshold = 0.02
    return config
