r"""LCR-Net++ R50-C4 on synthetic_people/default (512 px, K = 10 + 10 upper-body), from
ImageNet weights (torchvision's ResNet-50 file):

python experiments/train.py --config=experiments/configs/synthetic.py --workdir=runs/synthetic \
    --config.model_init.imagenet=resnet50-0676ba61.pth
"""

from experiments.configs import base


def get_config():
    config = base.get_config()
    config.train.num_steps = 300_000
    config.optimizer.decay_steps = (200_000, 260_000)
    return config
