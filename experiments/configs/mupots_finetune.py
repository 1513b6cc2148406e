r"""Fine-tuning the in-the-wild model on MuCo-3DHP for MuPoTS-3D (Sec. 4.3).

Starts from a trained in-the-wild run: its anchors and its latest weights (pass
`--config.anchors.path=runs/wild/anchors.npz --config.model_init.workdir=runs/wild`);
evaluation reads the MuPoTS-3D test set.

python experiments/train.py --config=experiments/configs/mupots_finetune.py --workdir=runs/mupots
"""

from experiments.configs import inthewild_r50


def get_config():
    config = inthewild_r50.get_config()
    config.data.name = "mupots3d"
    config.data.train_split = "train"
    config.data.eval_split = "test"
    config.optimizer.learning_rate = 1e-4
    config.optimizer.decay_steps = (100_000,)
    config.train.num_steps = 150_000
    return config
