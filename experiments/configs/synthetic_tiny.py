r"""The CPU demo: a small LCR-Net trained from scratch on synthetic_people/tiny (10-11 min
of training on 2 CPU cores).

python experiments/train.py --config=experiments/configs/synthetic_tiny.py --workdir=runs/tiny
"""

import ml_collections

from experiments.configs import base


def get_config():
    config = base.get_config()
    config.data.sources = ml_collections.ConfigDict(
        {"synthetic": base.source("synthetic_people/tiny")}
    )
    config.data.eval_name = "synthetic_people/tiny"
    config.data.short_side = config.data.max_long_side = 256
    config.data.image_size = (256, 256)
    config.data.max_people = 6
    config.data.batch_size = 8
    config.data.num_workers = 0  # decoding 256 px images costs little next to the step
    config.anchor_poses.num = 4  # 4 + 4 upper-body: more examples per class-specific regressor
    config.anchor_poses.upper_body = True
    config.model.preset = "small"
    config.model.rpn_anchor_sizes = (32, 64, 128, 256)
    config.targets.rpn_samples = 128
    config.targets.roi_samples = 128
    config.targets.roi_foreground_fraction = 0.5
    # From scratch (no ImageNet weights here): AdamW trains much faster than SGD.
    config.optimizer.kind = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 50
    config.optimizer.decay_steps = (1400, 1900)
    config.train.num_steps = 2200
    config.train.log_every = 50
    config.train.checkpoint_every = 500
    config.train.eval_every = 0
    config.eval.batch_size = 8
    config.eval.ppi = "demo"
    return config
