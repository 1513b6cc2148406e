"""The flags that name a model and its post-processing, shared by predict.py and export.py."""

from absl import flags
from ml_collections import config_flags

from lcrnet_jax.postprocess import detect
from lcrnet_jax.postprocess import ppi as ppi_lib

WEIGHTS = flags.DEFINE_string("weights", None, "An original LCR-Net++ model file (.pkl/.npz).")
CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A training workdir (orbax checkpoints).")
STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Training config of --checkpoint (its `model` entry; default: the run's config.json).",
    lock_config=True,
)
METHOD = flags.DEFINE_enum(
    "method", None, list(detect.METHODS), "PPI (the default) or the NMS baseline."
)
PPI = flags.DEFINE_enum(
    "ppi",
    None,
    sorted(ppi_lib.PRESETS),
    "PPI parameter set (default: the model's own: the --weights file's, or the run's config.ppi).",
)


def model_args() -> dict:
    """The `outputs.make_predictor` arguments of these flags."""
    return dict(
        weights=WEIGHTS.value,
        checkpoint=CHECKPOINT.value,
        config=CONFIG.value,
        step=STEP.value,
        ppi=PPI.value,
        method=METHOD.value,
    )
