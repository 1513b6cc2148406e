r"""The CPU demo: a small LCR-Net trained from scratch on synthetic_people/tiny.

python experiments/train.py --config=experiments/configs/synthetic_tiny.py --workdir=runs/tiny
"""

from experiments.configs import base


def get_config():
    config = base.get_config()
    config.data.name = "synthetic_people/tiny"
    config.data.image_size = (256, 256)
    config.data.max_people = 6
    config.data.batch_size = 8
    config.data.num_workers = 1
    config.anchors.num = 10
    config.anchors.upper_body = True
    config.model.preset = "small"
    config.model.anchor_sizes = (32, 64, 128, 256)
    config.targets.rpn_samples = 128
    config.targets.roi_samples = 64
    config.optimizer.kind = "adamw"
    config.optimizer.learning_rate = 2e-3
    config.optimizer.warmup_steps = 50
    config.optimizer.decay_steps = (500,)
    config.optimizer.weight_decay = 1e-4
    config.train.num_steps = 600
    config.train.log_every = 20
    config.train.checkpoint_every = 200
    config.train.eval_every = 0
    config.eval.batch_size = 8
    config.eval.ppi = "demo"
    return config
