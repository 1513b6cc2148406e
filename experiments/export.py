r"""Exports a model with `jax.export`: network, candidates and PPI as serialized StableHLO.

python experiments/export.py --checkpoint=runs/tiny \
    --config=experiments/configs/synthetic_tiny.py --output_dir=exported
python experiments/export.py --weights=DEMO_R50.pkl --bucket=800x800 --bucket=800x1088 \
    --platforms=cpu,cuda --output_dir=exported

Writes one model_<H>x<W>.jaxexport per size bucket (`--bucket`, default all buckets of
the model's input scale), weights.npz and metadata.json (input scale, buckets, pixel
mean/std, PPI settings, joint names, anchor poses) into `--output_dir`; see
`lcrnet_jax.predict.export`. Load and run it with `lcrnet_jax.predict.exported`:
`ExportedModel(DIR).predict("photo.jpg")`, which needs jax, numpy and PIL but not flax.
"""

from absl import flags

from experiments import launch, model_flags
from lcrnet_jax.predict import export

flags.adopt_module_key_flags(model_flags)  # --help lists the flags that choose the model

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for the exported model.")
_BUCKET = flags.DEFINE_multi_string(
    "bucket", None, "Canvas size HEIGHTxWIDTH to export (repeatable; default: all)."
)
_PLATFORMS = flags.DEFINE_list(
    "platforms", None, "Some of cpu,cuda,rocm,tpu (default: this machine's)."
)
flags.mark_flags_as_required(["output_dir"])


def main(argv):
    del argv
    path = export.export_model(
        _OUTPUT_DIR.value,
        buckets=_BUCKET.value,
        platforms=_PLATFORMS.value,
        **model_flags.model_args(),
    )
    print(f"export: {path.parent}")


if __name__ == "__main__":
    launch.run(main)
