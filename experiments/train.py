r"""Trains LCR-Net++: `python experiments/train.py --config=CONFIG.py --workdir=DIR`.

Config values can be overridden on the command line, e.g. `--config.train.num_steps=100`.
Restarting with the same workdir resumes the run where it stopped.
"""

import json

from absl import flags
from ml_collections import config_flags

from experiments import launch
from lcrnet_jax.train import loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, eval).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    result = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    launch.exit_if_stopped(result)
    print(result["table"])
    summary = {"step": result["step"]}
    if result["train_images_per_s"] is not None:  # None: no step ran (a finished run)
        summary["train_images_per_s"] = round(result["train_images_per_s"], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    launch.run(main, log_dir_flag="workdir")
