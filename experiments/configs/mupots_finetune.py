r"""Fine-tuning the in-the-wild model on MuCo-3DHP for MuPoTS-3D (Sec. 4.3).

python experiments/train.py --config=experiments/configs/mupots_finetune.py --workdir=runs/mupots \
    --config.model_init.workdir=runs/wild

Starts from a trained experiments/configs/inthewild_r50.py run (its docstring lists the
commands that make it) with its anchors and latest weights, and adds the iterative head
of "our LCR-Net++ architecture" (Sec. 4.3; the in-the-wild run, like the released model,
has none: its parameters start from their initial values, as training says in a
warning). "To better fit the 14-joint skeleton model measured by their MoCap system",
the model predicts MuPoTS-3D's joints (`skeleton.LCR_MUPOTS`: the 13 LCR joints plus
head top, thorax, pelvis and spine, every MuCo-3DHP joint): the run's LCR-13 anchors are
completed to it (`anchors.completed`) and its head mapped so that the first estimate
starts as the run's poses completed (`lcr_head.params_for_joints`; the new iterative head
refines it from there), where evaluating the in-the-wild model itself makes these four
joints up (`skeleton.complete`). Evaluation reads the MuPoTS-3D test set:

  python experiments/build_dataset.py --dataset=mupots3d --data_dir=$TFDS
  python experiments/train.py --config=experiments/configs/mupots_finetune.py \
      --workdir=runs/mupots --config.data.data_dir=$TFDS \
      --config.anchor_poses.path=anchors/cmu_k10.npz --config.model_init.workdir=runs/wild
  python experiments/evaluate.py --config=experiments/configs/mupots_finetune.py \
      --workdir=runs/mupots --config.data.data_dir=$TFDS \
      --config.anchor_poses.path=anchors/cmu_k10.npz

The in-the-wild run itself on MuPoTS-3D, before fine-tuning (its four extra joints made
up), into a folder of its own:

  python experiments/evaluate.py --config=experiments/configs/mupots_finetune.py \
      --workdir=runs/wild --config.data.data_dir=$TFDS --config.data.joint_set=lcr13 \
      --config.model.iterative=False --eval_dir=runs/wild/eval_mupots3d
"""

import ml_collections

from experiments.configs import base, inthewild_r50


def get_config():
    config = inthewild_r50.get_config()
    config.data.sources = ml_collections.ConfigDict({"muco": base.source("mupots3d")})
    config.data.eval_name = "mupots3d"
    config.data.eval_split = "test"
    config.data.joint_set = "lcr_mupots"
    config.model.iterative = True
    config.optimizer.learning_rate = 1e-4
    config.optimizer.decay_steps = (100_000,)
    config.train.num_steps = 150_000
    return config
