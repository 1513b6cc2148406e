r"""Exports a model with `jax.export`: network, candidates and PPI as serialized StableHLO.

python experiments/export.py --checkpoint=runs/tiny \
    --config=experiments/configs/synthetic_tiny.py --output_dir=exported
python experiments/export.py --weights=DEMO_R50.pkl --bucket=800x800 --bucket=800x1088 \
    --platforms=cpu,cuda --output_dir=exported

Writes one model_<H>x<W>.jaxexport per size bucket (`--bucket`, default all buckets of
the model's input scale), weights.npz and metadata.json (input scale, buckets, pixel
mean/std, PPI settings, joint names, anchor poses) into `--output_dir`; see
`lcrnet_jax.predict.export`. Load and run it with `lcrnet_jax.predict.exported`:
`ExportedModel(DIR).predict(rgb)`, which needs jax and numpy but not flax.
"""

from absl import flags, logging
from ml_collections import config_flags

from experiments import launch
from lcrnet_jax.postprocess import detect
from lcrnet_jax.postprocess import ppi as ppi_lib
from lcrnet_jax.predict import export

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for the exported model.")
_WEIGHTS = flags.DEFINE_string("weights", None, "An original LCR-Net++ model file (.pkl/.npz).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A training workdir (orbax checkpoints).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config of --checkpoint.", lock_config=True
)
_BUCKET = flags.DEFINE_multi_string(
    "bucket", None, "Canvas size HEIGHTxWIDTH to export (repeatable; default: all)."
)
_PLATFORMS = flags.DEFINE_list("platforms", None, "e.g. cpu,cuda (default: this machine's).")
_METHOD = flags.DEFINE_enum("method", "ppi", list(detect.METHODS), "PPI or the NMS baseline.")
_PPI = flags.DEFINE_enum(
    "ppi", None, sorted(ppi_lib.PRESETS), "PPI parameter set (default: the model's own)."
)
flags.mark_flags_as_required(["output_dir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    path = export.export_model(
        _OUTPUT_DIR.value,
        buckets=_BUCKET.value,
        platforms=_PLATFORMS.value,
        weights=_WEIGHTS.value,
        checkpoint=_CHECKPOINT.value,
        config=_CONFIG.value,
        step=_STEP.value,
        ppi=_PPI.value,
        method=_METHOD.value,
    )
    print(f"export: {path.parent}")


if __name__ == "__main__":
    launch.run(main)
