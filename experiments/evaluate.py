r"""Evaluates a training run's checkpoint, or an exported model.

python experiments/evaluate.py --config=CONFIG.py --workdir=DIR [--step=N] [--split=test]
    [--eval_dir=FOLDER] [--diagnose]
python experiments/evaluate.py --config=CONFIG.py --exported=EXPORTED_DIR [--split=test]

Prints the metrics tables (the evaluators of --config.eval.evaluators; "auto": PPI and
NMS beside the trivial baselines, then the dataset's own protocol) and writes
DIR/eval/metrics_<stem>.json, table_<stem>.md and predictions_<stem>.json (PPI's people
laid out as COCO keypoint results, in original-image pixels, but with the record index as
image_id and the model's LCR joints: not a file for pycocotools), <stem> =
<step>[_<split>][_first<N>] (the split unless it is the config's, N when
--config.eval.max_images cuts it), so a partial evaluation never overwrites the full one.
--eval_dir writes them elsewhere: a run evaluated on another config's dataset (e.g. the
in-the-wild run on MuPoTS-3D), or with other settings (input scale, `config.model`,
`config.ppi`, recorded in the metrics), is refused where its files would overwrite those
of another evaluation.

--exported evaluates a folder of experiments/export.py on the config's dataset: at the
export's input scale, with its method and PPI settings (one column), writing
EXPORTED_DIR/eval/metrics_exported[_<split>][_first<N>].json and the rest
(`loop.evaluate_exported`).

On several hosts, run it on every host with --config.distributed=True: each host
evaluates its share of the images on its own devices, and every host scores the whole
split (host 0 writes the files).

--diagnose prints instead where the network loses people and 2D accuracy before PPI
(`lcrnet_jax.evaluation.diagnostics`: RPN recall, the best candidates' recall, PCKh at
the best RoI with its top class and with an oracle class) and writes nothing.
"""

from absl import flags
from ml_collections import config_flags

from experiments import launch
from lcrnet_jax.predict import exported
from lcrnet_jax.train import loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of the training run.")
_EXPORTED = flags.DEFINE_string(
    "exported", None, "Instead of --workdir: a model folder of experiments/export.py."
)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_SPLIT = flags.DEFINE_string("split", None, "Split to evaluate (default: config.data.eval_split).")
_MAX_IMAGES = flags.DEFINE_integer(
    "max_images", None, "Evaluate at most this many images (0: the whole split)."
)
_EVAL_DIR = flags.DEFINE_string(
    "eval_dir", None, "Folder of the evaluation's files (default: the run's or export's eval/)."
)
_DIAGNOSE = flags.DEFINE_bool(
    "diagnose", False, "Instead: where the network loses people and 2D accuracy, before PPI."
)
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    if bool(_WORKDIR.value) == bool(_EXPORTED.value):
        raise ValueError("give exactly one of --workdir and --exported")
    loop.join_hosts(_CONFIG.value)  # --config.distributed: before loading anything
    if _EXPORTED.value:
        if _STEP.value is not None or _DIAGNOSE.value:
            raise ValueError("--step and --diagnose need a checkpoint (--workdir)")
        result = loop.evaluate_exported(
            _CONFIG.value, exported.ExportedModel(_EXPORTED.value),
            split=_SPLIT.value, max_images=_MAX_IMAGES.value, eval_dir=_EVAL_DIR.value,
        )  # fmt: skip
        print(f"{result['model']}, exported, evaluated in {result['seconds']:.1f} s")
        print(result["table"])
        return
    if _DIAGNOSE.value:
        if _EVAL_DIR.value:
            raise ValueError("--diagnose writes no file: --eval_dir is not for it")
        result = loop.diagnose_checkpoint(
            _CONFIG.value, _WORKDIR.value, step=_STEP.value, split=_SPLIT.value,
            max_images=_MAX_IMAGES.value,
        )  # fmt: skip
        print(f"step {result['step']}: people found along the chain (evaluation.diagnostics)")
    else:
        result = loop.evaluate_checkpoint(
            _CONFIG.value, _WORKDIR.value, step=_STEP.value, split=_SPLIT.value,
            max_images=_MAX_IMAGES.value, eval_dir=_EVAL_DIR.value,
        )  # fmt: skip
        print(f"step {result['step']}, evaluated in {result['seconds']:.1f} s")
    print(result["table"])


if __name__ == "__main__":
    launch.run(main, log_dir_flag="workdir")
