"""`train_and_evaluate(config, workdir)`, `evaluate_checkpoint` and `evaluate_exported`:
LCR-Net++ training runs.

A run directory (workdir) holds everything a run makes: `anchors.npz` (the anchor poses
fitted on the training split, or copied from `config.anchor_poses.path`), `mean_pose.npz`
(the mean training pose, for the trivial baseline of the evaluation), `checkpoints/`
(orbax: training state and data-iterator position), `metrics.jsonl` (one JSON object per
logged step), `tensorboard/` (event files, written without TensorFlow) and `eval/`
(metrics JSON, table and COCO-style predictions per evaluated step, named by
`eval_file_stem`). A killed run
restarted with the same workdir resumes from its last checkpoint, data position
included; SIGTERM saves a checkpoint before exiting.

Only launchers call these functions; the config layout is that of
`experiments/configs/base.py`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util
from jax.experimental import multihost_utils
from tqdm import tqdm

from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import evaluation, losses, skeleton
from lcrnet_jax.data import atomic, pipeline, records
from lcrnet_jax.data import resize as resize_lib
from lcrnet_jax.data.progress import progress_bar
from lcrnet_jax.evaluation import diagnostics
from lcrnet_jax.model import lcr_head
from lcrnet_jax.model import lcrnet as lcrnet_lib
from lcrnet_jax.model import weights as weights_lib
from lcrnet_jax.postprocess import detect as detect_lib
from lcrnet_jax.postprocess import ppi
from lcrnet_jax.train import checkpoint as checkpoint_lib
from lcrnet_jax.train import step as step_lib

_TRAIN_KEYS = (
    "image",
    "image_size",
    "poses2d",
    "poses3d",
    "visible",
    "has_3d",
    "person_valid",
    "boxes",
    "ignore_boxes",
)
_PRESETS = {
    "small": lcrnet_lib.small_config,
    "resnet50_c4": lcrnet_lib.resnet50_c4_config,
    "vgg16": lcrnet_lib.vgg16_config,
    "released": lcrnet_lib.released_config,
}


def model_config(config: ml_collections.ConfigDict) -> lcrnet_lib.LCRNetConfig:
    """The network of a run: `config.model.preset` with the other `config.model` fields
    as overrides; classes and joints follow `config.anchor_poses` and `config.data`."""
    fields = dict(config.model)
    preset = fields.pop("preset")
    if preset not in _PRESETS:
        raise ValueError(f"config.model.preset must be one of {sorted(_PRESETS)}, got {preset!r}")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items() if v is not None}
    joint_set = skeleton.get_joint_set(config.data.joint_set)
    twins = config.anchor_poses.upper_body
    return _PRESETS[preset](
        **fields,
        num_classes=config.anchor_poses.num * (2 if twins else 1) + 1,
        num_joints=joint_set.num_joints,
        joint_set=joint_set.name,
        upper_body=twins,
    )


def ppi_config(config: ml_collections.ConfigDict) -> ppi.PPIConfig:
    """`config.ppi` (every `PPIConfig` field) as a `PPIConfig`, 1:1."""
    return detect_lib.ppi_config_from_mapping(config.ppi.to_dict())


def resize(config) -> resize_lib.Resize:
    """The input scale of training, evaluation and prediction (`config.data.short_side`,
    `config.data.max_long_side`)."""
    return resize_lib.Resize(config.data.short_side, config.data.max_long_side)


def canvas(config) -> tuple[int, int] | None:
    """`config.data.image_size` as (height, width), or None (empty) for the size buckets
    of `resize`."""
    size = tuple(config.data.image_size)
    return pipeline.canvas_size(size) if size else None


def _init_size(config) -> tuple[int, int]:
    return canvas(config) or (config.data.short_side,) * 2


def _eval_batch_size(config) -> int:
    """Images per call of the detector (`evaluation.evaluate` batches them by canvas)."""
    if config.eval.batch_size < 1:
        raise ValueError(f"eval.batch_size must be >= 1, got {config.eval.batch_size}")
    return config.eval.batch_size


def sources(config) -> list[pipeline.Source]:
    """The training sources of `config.data.sources` (label -> name, split, weight,
    pseudo_gt), checked (ValueError on a bad entry)."""
    out = []
    for label, entry in config.data.sources.items():
        unknown = set(entry) - {"name", "split", "weight", "pseudo_gt"}
        if unknown:
            raise ValueError(
                f"config.data.sources.{label} has unknown keys {sorted(unknown)}; expected "
                "name, split, weight, pseudo_gt"
            )
        out.append(
            pipeline.Source(
                name=entry.name,
                split=entry.get("split", "train"),
                weight=float(entry.get("weight", 1.0)),
                pseudo_gt=bool(entry.get("pseudo_gt", False)),
                label=label,
            )
        )
    pipeline.check_sources(out)
    return out


def _require_dataset(config, split: str, name: str | None = None):
    name = name or config.data.eval_name
    return records.open_split(name, split, data_dir=config.data.data_dir or None)


def _check_anchor_file(config, anchors: anchors_lib.AnchorPoses, path: str) -> None:
    expected = (
        config.data.joint_set,
        config.anchor_poses.num,
        bool(config.anchor_poses.upper_body),
    )
    found = (anchors.joint_set, anchors.num_full_body, anchors.twins)
    if found != expected:
        raise ValueError(
            f"anchor file {path} holds {found[1]} {found[0]} anchors (upper-body twins: "
            f"{found[2]}), the config asks for {expected[1]} {expected[0]} (twins: "
            f"{expected[2]}); refit it with experiments/fit_anchors.py --num={expected[1]}"
            f"{' --upper_body' if expected[2] else ''} --joint_set={expected[0]}"
        )


def _load_mean_pose(path: str) -> anchors_lib.AnchorPoses:
    """The one-pose file of the mean-pose baseline; refused if it holds other than one."""
    mean_pose = anchors_lib.load_anchor_poses(path)
    if mean_pose.num_anchors != 1 or mean_pose.twins:
        raise ValueError(
            f"{path} holds {mean_pose.num_anchors} poses, a mean-pose file holds one (an "
            "anchor file copied over it?)"
        )
    return mean_pose


def _load_anchor_file(config, path: str) -> anchors_lib.AnchorPoses:
    """The anchors of file `path`, refused if fitted with another `normalize` than the
    config's (a fit without it has a regression std of ones)."""
    anchors = anchors_lib.load_anchor_poses(path)
    normalized = not np.all(np.asarray(anchors.std) == 1.0)
    if normalized != bool(config.anchor_poses.normalize):
        raise ValueError(
            f"anchor file {path} was fitted with{'' if normalized else 'out'} a regression "
            f"std, the config asks anchor_poses.normalize={config.anchor_poses.normalize}; "
            f"refit it with experiments/fit_anchors.py --normalize={not normalized} or set "
            f"--config.anchor_poses.normalize={normalized}"
        )
    return anchors


def _in_joint_set(config, anchors: anchors_lib.AnchorPoses) -> anchors_lib.AnchorPoses:
    """Anchors of another joint set completed to the config's when it can make its joints
    (`anchors_lib.completed`: e.g. LCR-13 anchors for the LCR-MuPoTS fine-tuning)."""
    if anchors.joint_set == config.data.joint_set:
        return anchors
    try:
        done = anchors_lib.completed(anchors, config.data.joint_set)
    except ValueError:
        return anchors  # refused by _check_anchor_file
    logging.info("%s anchor poses completed to %s", anchors.joint_set, done.joint_set)
    return done


def _anchor_source(config) -> tuple[str, str]:
    """(anchor file, mean-pose file) a new run starts from: `config.anchor_poses.path` and
    the mean pose beside it, else those of the run it fine-tunes (`config.model_init.
    workdir`) when it saved them; ("", "") for none."""
    if config.anchor_poses.path:
        return config.anchor_poses.path, anchors_lib.mean_pose_path(config.anchor_poses.path)
    run = config.model_init.workdir
    if run and os.path.exists(os.path.join(run, "anchors.npz")):
        return os.path.join(run, "anchors.npz"), os.path.join(run, "mean_pose.npz")
    return "", ""


def anchor_poses(config, workdir: str) -> tuple[anchors_lib.AnchorPoses, anchors_lib.AnchorPoses]:
    """(anchors, mean pose) of a run: read from the workdir (refused if of another joint
    set than the config's); else from `config.anchor_poses.path` (e.g. made by
    experiments/fit_anchors.py from MoCap) and the mean pose beside it
    (`anchors.mean_pose_path`; without it, the mean of the anchors' 3D), or those of the
    run that `config.model_init.workdir` fine-tunes, reading no dataset, completed to the
    config's joint set when they are of another that can make it (`_in_joint_set`); else
    fitted by K-means on the training split's 3D, and its mirror images when training
    flips images (`data.flip_probability` > 0: the network classifies those too). Saved
    in the workdir, once a fine-tuned run's checkpoint is known to fit them, so that a
    resumed run and its evaluation use the same ones."""
    path, mean_path = os.path.join(workdir, "anchors.npz"), os.path.join(workdir, "mean_pose.npz")
    if os.path.exists(path) and os.path.exists(mean_path):
        anchors = anchors_lib.load_anchor_poses(path)
        if anchors.joint_set != config.data.joint_set:  # LCR-17 and LCR-MuPoTS: 17 joints each
            raise ValueError(
                f"run {workdir} predicts {anchors.joint_set} joints, the config "
                f"{config.data.joint_set}: pass --config.data.joint_set={anchors.joint_set}"
            )
        found = (anchors.num_full_body, anchors.twins)
        if found != (config.anchor_poses.num, bool(config.anchor_poses.upper_body)):
            raise ValueError(
                f"run {workdir} has {found[0]} anchor poses (upper-body twins: {found[1]}), "
                f"the config {config.anchor_poses.num} (twins: "
                f"{bool(config.anchor_poses.upper_body)}): pass --config.anchor_poses.num="
                f"{found[0]} --config.anchor_poses.upper_body={found[1]}"
            )
        return anchors, _load_mean_pose(mean_path)
    source, beside = _anchor_source(config)
    if source:
        anchors = _in_joint_set(config, _load_anchor_file(config, source))
        _check_anchor_file(config, anchors, source)
        if os.path.exists(beside):
            mean_pose = _in_joint_set(config, _load_mean_pose(beside))
        else:
            centre = np.asarray(anchors.pose3d[: anchors.num_full_body]).mean(0, keepdims=True)
            mean_pose = anchors_lib.fit_anchor_poses(
                centre, 1, joint_set=config.data.joint_set, normalize=False, seed=config.seed
            )
    else:
        poses = np.concatenate([
            pipeline.training_poses3d(
                _require_dataset(config, spec.split, spec.name), joint_set=config.data.joint_set,
                max_records=config.anchor_poses.max_records, seed=config.seed,
            )
            for spec in sources(config)
        ])  # fmt: skip
        if config.data.flip_probability > 0:
            poses = np.concatenate([poses, skeleton.flip_poses(poses, config.data.joint_set)])
        if len(poses) < config.anchor_poses.num:
            raise ValueError(
                f"the training data has {len(poses)} 3D poses, fewer than "
                f"config.anchor_poses.num={config.anchor_poses.num}: fit anchors on MoCap with "
                "experiments/fit_anchors.py --corpus=cmu_mocap --random_views and set "
                "config.anchor_poses.path"
            )
        logging.info(
            "Fitting %d anchor poses on %d training poses", config.anchor_poses.num, len(poses)
        )
        anchors = anchors_lib.fit_anchor_poses(
            poses, config.anchor_poses.num, joint_set=config.data.joint_set,
            upper_body=config.anchor_poses.upper_body, normalize=config.anchor_poses.normalize,
            seed=config.seed,
        )  # fmt: skip
        mean_pose = anchors_lib.fit_anchor_poses(
            poses, 1, joint_set=config.data.joint_set, normalize=False, seed=config.seed
        )
    if config.model_init.workdir:  # a run trained with other anchors: refused unsaved
        fields = {k: getattr(anchors, k) for k in ("pose2d", "pose3d", "std")}
        _check_run_anchors(config.model_init.workdir, fields, model_config(config))
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        anchors_lib.save_anchor_poses(path, anchors)
        anchors_lib.save_anchor_poses(mean_path, mean_pose)
    return anchors, mean_pose


def init_model(config, anchors: anchors_lib.AnchorPoses) -> tuple[lcrnet_lib.LCRNet, dict]:
    """The network and its initial variables: random, with an ImageNet backbone, or the
    parameters of another run (`config.model_init`); the anchors are always `anchors`."""
    net_config = model_config(config)
    size = _init_size(config)
    variables = lcrnet_lib.init_variables(
        net_config, jax.random.key(config.seed), anchors=anchors, image_size=size
    )
    if config.model_init.imagenet:
        state_dict = weights_lib.load_state_dict(config.model_init.imagenet)
        if net_config.backbone == "vgg16":
            backbone = weights_lib.vgg16_params_from_torchvision(state_dict)
        else:
            backbone = weights_lib.resnet_params_from_torchvision(state_dict, net_config.depth)
        variables = weights_lib.with_imagenet_backbone(variables, backbone, net_config)
    if config.model_init.workdir:
        variables = _fine_tuned(variables, config.model_init.workdir, net_config)
    return lcrnet_lib.LCRNet(net_config), variables


def _fine_tuned(variables: dict, workdir: str, net_config: lcrnet_lib.LCRNetConfig) -> dict:
    """`variables` with the parameters of run `workdir`'s latest checkpoint. Head
    parameters that the run lacks (a part the config adds, e.g. the iterative head) keep
    their initial values, named in one warning line. A run of another joint set whose
    anchors complete to `variables`' (`anchors_lib.completed`) gets its head mapped by
    `lcr_head.params_for_joints`: its first estimate starts as the run's, completed. A run
    that lacks backbone or RPN arrays, holds arrays of other shapes, or was trained with
    other anchor poses than `variables`' is refused."""
    run_anchors = _check_run_anchors(workdir, variables["anchor_poses"], net_config)
    other_joints = run_anchors is not None and run_anchors.joint_set != net_config.joint_set
    if other_joints:  # restored with the run's own shapes
        js = skeleton.get_joint_set(run_anchors.joint_set)
        run_net = dataclasses.replace(net_config, joint_set=js.name, num_joints=js.num_joints)
        abstract = lcrnet_lib.variable_shapes(run_net)
    else:
        abstract = jax.eval_shape(lambda: variables)
    _, restored = checkpoint_lib.restore_run_variables(workdir, abstract, missing_ok=True)
    params = traverse_util.flatten_dict(variables["params"], sep=".")
    found = traverse_util.flatten_dict(restored["params"], sep=".")
    if other_joints:
        found = _head_for_joints(found, params, run_anchors, variables["anchor_poses"], net_config)
    new = sorted(set(params) - set(found))
    trunk = [name for name in new if not name.startswith("lcr_head.")]
    if trunk:
        raise checkpoint_lib.ModelMismatchError(
            f"fine-tuning from {workdir}: its run lacks {len(trunk)} of the config's backbone "
            f"and RPN arrays, the first {trunk[0]}: the run of another network"
        )
    if new:
        logging.warning(
            "fine-tuning from %s: %d of %d parameter arrays are not in it and start from their "
            "initial values: %s", workdir, len(new), len(params), ", ".join(new),
        )  # fmt: skip
    params.update({name: jnp.asarray(value) for name, value in found.items()})
    return {**variables, "params": traverse_util.unflatten_dict(params, sep=".")}


def _head_for_joints(
    found: dict,
    params: dict,
    run_anchors: anchors_lib.AnchorPoses,
    anchor_poses: dict,
    net_config: lcrnet_lib.LCRNetConfig,
) -> dict:
    """The run's flat parameters `found` with its head mapped onto the config's joints
    (`lcr_head.params_for_joints`, shapes of `params`); head arrays the run lacks stay out.
    Warns naming the joints made by `skeleton.complete`."""
    head = "lcr_head."
    mapped = lcr_head.params_for_joints(
        {k[len(head) :]: v for k, v in found.items() if k.startswith(head)},
        {k[len(head) :]: v for k, v in params.items() if k.startswith(head)},
        skeleton.completion_matrix(run_anchors.joint_set, net_config.joint_set),
        run_anchors.std,
        anchor_poses["std"],
    )
    had = skeleton.get_joint_set(run_anchors.joint_set).joints
    made = [j for j in skeleton.get_joint_set(net_config.joint_set).joints if j not in had]
    if made:
        logging.warning(
            "fine-tuning from a %s run onto %s: the joints it lacks (%s) start as "
            "skeleton.complete makes them", run_anchors.joint_set, net_config.joint_set,
            ", ".join(made),
        )  # fmt: skip
    mapped = {head + k: v for k, v in mapped.items() if head + k in found}
    return {k: v for k, v in found.items() if not k.startswith(head)} | mapped


def _check_run_anchors(
    workdir: str, anchor_poses: dict, net_config: lcrnet_lib.LCRNetConfig
) -> anchors_lib.AnchorPoses | None:
    """The anchors of run `workdir` (None if it saved none). ValueError if it was trained
    with other anchor poses than `anchor_poses` (completed to the config's joint set when
    they are of another): its classes and regression would mean other poses."""
    path = os.path.join(workdir, "anchors.npz")
    if not os.path.exists(path):
        return None
    saved = anchors_lib.load_anchor_poses(path)
    run = saved
    if saved.joint_set != net_config.joint_set:
        try:
            run = anchors_lib.completed(saved, net_config.joint_set)
        except ValueError as error:
            raise ValueError(f"fine-tuning from {workdir}: {error}") from None
    same = all(
        np.shape(getattr(run, k)) == np.shape(anchor_poses[k])
        and np.allclose(getattr(run, k), anchor_poses[k], atol=1e-6)
        for k in ("pose2d", "pose3d", "std")
    )
    if not same:
        raise ValueError(
            f"fine-tuning from {workdir}: its run was trained with other anchor poses; pass "
            f"them with --config.anchor_poses.path={path}"
        )
    return saved


class _Logger:
    """Metrics to the console, metrics.jsonl and TensorBoard (process 0 only)."""

    def __init__(self, workdir: str, *, after_step: int = 0, final_eval: bool = False):
        """Rows of metrics.jsonl after `after_step` (left by a run killed after its last
        checkpoint) are dropped, and with `final_eval` the evaluation rows at
        `after_step`: a resumed or rerun run writes each row once. TensorBoard hides its
        events after `after_step` the same way (`purge_step`)."""
        self.active = jax.process_index() == 0
        if not self.active:
            return
        from tensorboardX import SummaryWriter

        path = os.path.join(workdir, "metrics.jsonl")
        _truncate_jsonl(path, after_step, final_eval=final_eval)
        self.jsonl = open(path, "a")  # noqa: SIM115
        self.tensorboard = SummaryWriter(
            os.path.join(workdir, "tensorboard"), purge_step=after_step + 1 if after_step else None
        )

    def write(self, step: int, values: dict) -> None:
        if not self.active:
            return
        values = {k: float(v) for k, v in values.items() if np.isfinite(v)}
        try:
            self.jsonl.write(json.dumps({"step": step, **values}) + "\n")
            self.jsonl.flush()
        except OSError as error:  # a full disk's error names no file
            raise OSError(error.errno, error.strerror, self.jsonl.name) from None
        for name, value in values.items():
            self.tensorboard.add_scalar(name, value, step)
        self.tensorboard.flush()

    def close(self) -> None:
        if self.active and not self.jsonl.closed:
            self.jsonl.close()
            self.tensorboard.close()

    def __enter__(self) -> _Logger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _truncate_jsonl(path: str, after_step: int, *, final_eval: bool) -> None:
    """Keeps the rows of a metrics.jsonl with "step" <= `after_step`, except (with
    `final_eval`) evaluation rows at `after_step`; drops a torn last line. A row that
    is not a metrics row (hand-edited, damaged) is refused naming its line."""
    if not os.path.exists(path):
        return
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error.reason}): fix or remove it") from None
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # torn by a killed run
                continue
            row = None
        if not (isinstance(row, dict) and type(row.get("step", 0)) is int):
            raise ValueError(
                f"{path} line {number} is not a metrics row with an integer step "
                f"({line.strip()[:60]!r}): fix or remove it"
            )
        step = row.get("step", 0)
        evaluation_row = not any(k.startswith("train/") for k in row)
        if step < after_step or (step == after_step and not (final_eval and evaluation_row)):
            kept.append(line if line.endswith("\n") else line + "\n")
    atomic.write_text(path, "".join(kept))


def optimizer(config, variables: dict, model: lcrnet_lib.LCRNet):
    """(learning-rate schedule, optax optimizer) of `config.optimizer`; the frozen
    parameters of `model` (`lcrnet.trainable_mask`) are not updated."""
    opt = config.optimizer
    schedule = _schedule(config)
    tx = step_lib.make_optimizer(
        schedule, trainable=lcrnet_lib.trainable_mask(variables["params"], model.config),
        kind=opt.kind, momentum=opt.momentum, weight_decay=opt.weight_decay,
        clip_norm=opt.clip_norm or None, bias_lr_factor=opt.bias_lr_factor,
        bias_weight_decay=opt.bias_weight_decay,
    )  # fmt: skip
    return schedule, tx


def _schedule(config):
    """The learning-rate schedule of `config.optimizer`, whose numbers must be finite and
    >= 0 (the training step survives a NaN rate or update by skipping every step)."""
    opt = config.optimizer
    for name in ("learning_rate", "decay_factor", "momentum", "weight_decay", "bias_lr_factor"):
        if not (math.isfinite(opt[name]) and opt[name] >= 0):
            raise ValueError(f"optimizer.{name} must be a finite number >= 0, got {opt[name]}")
    if not opt.clip_norm >= 0:
        raise ValueError(f"optimizer.clip_norm must be >= 0 (0: no clipping), got {opt.clip_norm}")
    return step_lib.make_learning_rate_schedule(
        opt.learning_rate, warmup_steps=opt.warmup_steps, decay_steps=tuple(opt.decay_steps),
        decay_factor=opt.decay_factor,
    )  # fmt: skip


def eval_file_stem(
    step: int | str, *, split: str, default_split: str, num_images: int, split_size: int
) -> str:
    """`<step>[_<split>][_first<N>]`: the name part of an evaluation's files (`step` is
    "exported" for an exported model).

    The split appears unless it is the config's evaluation split, `_first<N>` when only the
    first N of the split's images were evaluated: a partial evaluation never overwrites the
    full one (`metrics_<stem>.json`, `table_<stem>.md`, `predictions_<stem>.json`).
    """
    stem = str(step) if split == default_split else f"{step}_{split}"
    return stem if num_images >= split_size else f"{stem}_first{num_images}"


def _eval_loader(config, split: str, max_images: int | None, *, hosts: bool = False):
    """(evaluation loader, the evaluators of `config.eval.evaluators`, images, the split's
    size, what its builder skipped: `records.skipped_at_build`). With `hosts`, the loader
    reads this host's `pipeline.evaluation_share` of the images (none: no batches)."""
    if max_images is not None and max_images < 0:
        raise ValueError(f"max_images must be >= 0 (0: the whole split), got {max_images}")
    source = _require_dataset(config, split)
    skipped = records.skipped_at_build(source, split)
    joint_set = pipeline.source_joint_set(source)
    split_size = len(source)
    if max_images:
        source = records.Head(source, max_images)
    host, count = (jax.process_index(), jax.process_count()) if hosts else (0, 1)
    start, stop = pipeline.evaluation_share(len(source), host, count)
    loader = [] if start == stop else pipeline.make_loader(
        source,
        batch_size=_eval_batch_size(config) if canvas(config) else 1,  # size buckets: 1, regrouped
        image_size=canvas(config),
        resize=resize(config), joint_set=config.data.joint_set,
        max_people=config.eval.max_people, train=False, src_joint_set=joint_set,
        num_workers=config.data.num_workers,  # images decoded while the model runs
        shard_index=host, shard_count=count,
    )  # fmt: skip
    evaluators = evaluation.make_evaluators(
        config.eval.evaluators, dataset=config.data.eval_name, source=source,
        joint_set=config.data.joint_set,
    )  # fmt: skip
    return loader, evaluators, len(source), split_size, skipped


def _detector(config, model, mean_pose):
    """`evaluation.make_detector` of the model, sharded over this host's devices where
    they divide `eval.batch_size` (else on one device): each host evaluates its own share
    of the images (`run_evaluation`)."""
    mesh = step_lib.make_mesh(jax.local_devices(), model_parallel=config.mesh.model_parallel)
    if _eval_batch_size(config) % mesh.shape["data"]:
        mesh = None
    return evaluation.make_detector(
        model, ppi_config=ppi_config(config), mean_pose=mean_pose, mesh=mesh
    )  # fmt: skip


def _on_this_host(variables):
    """`variables` as this host's own arrays: a global array of a multi-host run (the
    training state) assembled from its shards on this host's devices, which hold all of
    it (a "model" group never spans hosts: `check_mesh`). Other leaves pass unchanged."""

    def local(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return x
        out = np.empty(x.shape, x.dtype)
        for shard in x.addressable_shards:
            out[shard.index] = shard.data
        return out

    return jax.tree.map(local, variables)


def _check_eval_dir(out_dir: str) -> None:
    """NotADirectoryError where an evaluation's output folder is a file: said before the
    evaluation, not when its files are written."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"{out_dir} is a file, not a folder for the evaluation outputs")


def evaluation_settings(config: ml_collections.ConfigDict) -> dict:
    """What an evaluation of given weights and images depends on, as JSON: the input
    scale, `config.model` (test-time views, proposals) and `config.ppi`."""
    data = config.data
    return json.loads(json.dumps({
        "input": [data.short_side, data.max_long_side, data.image_size],
        "model": config.model.to_dict(),
        "ppi": config.ppi.to_dict(),
    }))  # fmt: skip


def changed_run_keys(config: ml_collections.ConfigDict, workdir: str, section: str) -> list[str]:
    """The dotted keys of `config.<section>` that differ from the run's `config.json`
    (none when the run has no readable one)."""
    before = (_saved_config(workdir) or {}).get(section)
    if before is None:
        return []
    now = json.loads(config.to_json_best_effort())[section]
    if not (isinstance(before, dict) and isinstance(now, dict)):
        return [] if before == now else [section]
    return [f"{section}.{key}" for key in _changed_keys(before, now)]


def saved_config(workdir: str) -> ml_collections.ConfigDict | None:
    """The config a run last started or resumed with (its config.json), None without a
    readable one: what a prediction from its checkpoint reads when given no config."""
    saved = _saved_config(workdir)
    return None if saved is None else ml_collections.ConfigDict(saved)


def _saved_config(workdir: str) -> dict | None:
    """The run's `config.json`, or None (a new run, or a file that is not a config's)."""
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def _changed_keys(old: dict, new: dict) -> list[str]:
    """The dotted names of the leaves that differ between two nested dicts."""
    old, new = (traverse_util.flatten_dict(d, sep=".") for d in (old, new))
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _check_eval_files(
    metrics_path: str, dataset: str, split: str, settings: dict | None = None
) -> None:
    """FileExistsError where `metrics_path` holds the evaluation of another dataset or
    split, or one made with other `evaluation_settings` (None: not compared) or by a
    version that did not record them, which this evaluation's files would overwrite:
    said before the evaluation."""
    try:
        with open(metrics_path) as f:
            report = json.load(f)
        other = (report["dataset"], report["split"])
    except (OSError, ValueError, TypeError, KeyError):  # none, or not an evaluation's
        return
    where = "evaluate into another folder (evaluate.py --eval_dir)"
    if other != (dataset, split):
        raise FileExistsError(
            f"{metrics_path} holds the evaluation of {other[0]} {other[1]}; evaluating "
            f"{dataset} {split} would overwrite it: {where}"
        )
    theirs = report.get("settings")
    if settings is not None and not isinstance(theirs, dict):
        raise FileExistsError(
            f"{metrics_path} holds an evaluation by an older lcrnet-jax, which did not "
            f"record its settings (its numbers may differ from this version's); this one "
            f"would overwrite it: remove it or {where}"
        )
    # A key one side lacks is unset (None) there: a config key added since.
    changed = [] if settings is None else _changed_keys(theirs, settings)
    if changed:
        raise FileExistsError(
            f"{metrics_path} holds an evaluation made with other settings "
            f"({', '.join(changed)}); this one would overwrite it: {where}"
        )


def run_evaluation(
    config, detect, variables, *, split, max_images, out_dir, step, settings: dict | None
):
    """Evaluates `detect(variables, images, image_size)` (`evaluation.evaluate`) on a split
    and writes metrics, table and predictions.

    The files are named by `eval_file_stem` (`step`, split, image count); the table opens
    with the images and ground-truth people counted. The metrics record `settings`
    (`evaluation_settings`; None where they cannot change, an export's), and an earlier
    evaluation of the same name with other settings is not overwritten.

    Returns:
      (results {method: metrics}, table, seconds, metrics file path).

    Raises (before anything is evaluated, and again before writing: another evaluation
    may have written there meanwhile):
      NotADirectoryError: `out_dir` is a file.
      FileExistsError: `out_dir` holds files of the same name from another dataset,
        split or settings.
    """
    _check_eval_dir(out_dir)
    loader, evaluators, num_images, split_size, (skipped, first_skipped) = _eval_loader(
        config, split, max_images, hosts=True
    )
    stem = eval_file_stem(
        step, split=split, default_split=config.data.eval_split, num_images=num_images,
        split_size=split_size,
    )  # fmt: skip
    metrics_path = os.path.join(out_dir, f"metrics_{stem}.json")
    _check_eval_files(metrics_path, config.data.eval_name, split, settings)
    start = time.perf_counter()

    share = range(*pipeline.evaluation_share(num_images, jax.process_index(), jax.process_count()))

    def progress(batches):  # this host's share
        with progress_bar(desc=f"evaluate {split}", total=len(share), unit="image",
                          leave=False) as bar:  # fmt: skip
            for batch in batches:
                yield batch
                bar.update(len(batch["index"]))

    outputs, coco = evaluation.evaluate(
        detect, _on_this_host(variables), loader, evaluators,
        batch_size=_eval_batch_size(config), progress=progress,
        over_hosts=jax.process_count() > 1,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    results = outputs.pop("generic", {})  # {} when config.eval.evaluators leaves it out
    people = next(iter(results.values()), {}).get("num_gt")
    counted = f"{config.data.eval_name} {split}: {num_images} of {split_size} images" + (
        f", {people} ground-truth people" if people is not None else ""
    )
    if skipped:  # the split is not the benchmark's whole split
        counted += (
            f"; WARNING: its build skipped {skipped} unreadable file(s), frame(s) or "
            f"sequence(s), first {first_skipped[0]}, which are not counted"
        )
        logging.warning("%s", counted)
    tables = [evaluation.format_table(results)] if results else []
    tables += [evaluation.format_benchmark_table(s, name) for name, s in outputs.items()]
    table = "\n\n".join([counted, *tables])
    report = {"step": step, "split": split, "dataset": config.data.eval_name, "seconds": seconds,
              "num_images": num_images, "split_size": split_size, "num_people": people,
              "skipped_at_build": {"count": skipped, "first": first_skipped},
              "settings": settings, "methods": results, "protocols": outputs}  # fmt: skip
    if jax.process_index() == 0:
        atomic.make_folder(out_dir)
        with atomic.exclusive(out_dir, busy=None):  # one evaluation writes at a time
            # Again: another evaluation may have written there since.
            _check_eval_files(metrics_path, config.data.eval_name, split, settings)
            atomic.write_json(metrics_path, report)
            atomic.write_json(os.path.join(out_dir, f"predictions_{stem}.json"), coco)
            atomic.write_text(os.path.join(out_dir, f"table_{stem}.md"), table + "\n")
    return results, table, seconds, metrics_path


def _stopping(stop: dict, read: _StepMetrics) -> bool:
    """Whether to stop before the next step: this host was signalled (`stop["signal"]`)
    or, with several hosts, the last step read says that a host was (`_over_hosts`):
    every host then stops after the same step, since saving a checkpoint needs them all.
    A host stopped by a peer records SIGTERM."""
    if jax.process_count() == 1:
        return stop["signal"] is not None
    if read.hosts_stopping and stop["signal"] is None:
        stop["signal"] = signal.SIGTERM
    return read.hosts_stopping


def _on_any_host(flag: bool) -> bool:
    """Whether `flag` holds on this host or, in a multi-host run, on any host (a
    collective: every host calls it at the same point)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


# The counts' names and the values that `_over_hosts` shares between the hosts.
_Shared = tuple[list[str], np.ndarray | jax.Array]


def _over_hosts(stop: dict, counts: dict[str, float], mesh) -> _Shared:
    """(the counts' names, (1 + n,) values): how many hosts were signalled to stop, then
    the people `counts` of this host's part of the batch summed over the hosts (the
    global batch's). With several hosts the values are summed on the devices
    (`step.sum_over_hosts`) and `_StepMetrics` reads them one step late with the step's
    metrics: reading a collective at once would wait for the step in flight."""
    values = np.array([stop["signal"] is not None, *counts.values()], np.float32)
    if jax.process_count() > 1:
        values = step_lib.sum_over_hosts(values, mesh)
    return list(counts), values


def _finite_mean(values: list[float]) -> float:
    """Mean of the finite values; NaN when there is none (a run of skipped steps)."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


class _StepMetrics:
    """The training steps' metrics, read one step late: the host dispatches step s + 1
    before it reads step s's metrics, so the device runs step s while the host loads,
    counts and shards the next batch (reading them waits for the device).

    `add` keeps a dispatched step's metrics and reads the step before it; `flush` reads
    the step still pending, and the loop calls it before anything uses the metrics or the
    state: a log row, a checkpoint, an evaluation, the end of the training (by its last
    step or a signal). Reading a step counts it in the window's `history`, the timing and
    the progress bar, and guards the run: `max_skipped` steps skipped in a row (a
    non-finite loss or an update norm over `max_update_norm`: the step kept the state)
    raise FloatingPointError naming the step and the last checkpoint. The error comes one
    step later in time when the step is not flushed, but always before the next
    checkpoint, so its message and the saved steps are those of a step-by-step loop.

    The values shared by the hosts (`_over_hosts`) are read with the metrics: the
    people counts join the window's history, and `hosts_stopping` turns true once a
    step read says that a host was signalled to stop.

    The timing (`seconds`, `images`) counts each step's host work after its batch came
    (counting, sharding, dispatch) and the wait for its metrics, from the second step on
    (the first compiles). The wait for the input data is not counted, and neither is device
    work that ran while the host loaded the next batch.
    """

    def __init__(
        self,
        ckpt: checkpoint_lib.Checkpointer,
        bar: tqdm,
        *,
        first_step: int,
        batch_size: int,
        max_skipped: int,
        max_update_norm: float,
    ):
        """`first_step`: the step that compiles the training step, not timed."""
        self._ckpt, self._bar = ckpt, bar
        self._first_step, self._batch_size = first_step, batch_size
        self._max_skipped, self._max_update_norm = max_skipped, max_update_norm
        self._pending = None  # (step, metrics on the device, shared values, host seconds)
        self._skipped = 0  # steps skipped in a row, up to the last read
        self.history: dict[str, list[float]] = {}  # the steps read since the last log
        self.seconds, self.images = 0.0, 0
        self.hosts_stopping = False

    def add(self, step: int, metrics: dict, shared: _Shared, seconds: float) -> None:
        """Keeps `step`'s metrics (device arrays, not waited for) and reads the step before
        it; `shared` is its `_over_hosts`, `seconds` the host's time on it so far."""
        previous, self._pending = self._pending, (step, metrics, shared, seconds)
        if previous is not None:
            self._read(*previous)

    def flush(self) -> None:
        """Reads the pending step, if any."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._read(*pending)

    def _read(self, step: int, metrics: dict, shared: _Shared, seconds: float) -> None:
        tick = time.perf_counter()
        names, values = shared
        metrics, values = jax.device_get((metrics, values))
        self.hosts_stopping |= bool(values[0])
        counts = dict(zip(names, values[1:], strict=True))
        if step > self._first_step:
            self.seconds += seconds + time.perf_counter() - tick
            self.images += self._batch_size
        self._skipped = self._skipped + 1 if metrics["skipped"] else 0
        if self._skipped >= self._max_skipped:
            raise FloatingPointError(
                f"{self._skipped} steps in a row were skipped (non-finite loss or update norm "
                f"{float(metrics['update_norm']):.3g} > train.max_update_norm="
                f"{self._max_update_norm:g}) at step {step}; last checkpoint: "
                f"{self._ckpt.latest_step()}; lower optimizer.learning_rate or check the data"
            )
        for name, value in {**metrics, **counts}.items():
            self.history.setdefault(name, []).append(float(value))
        self._bar.update(1)

    def window_means(self) -> dict[str, float]:
        """The means of the steps read since the last call (the number of skipped steps
        for "skipped"), with "images_per_s" of the run so far once a step was timed; starts
        a new window."""
        means = {k: _finite_mean(v) for k, v in self.history.items()}
        means["skipped"] = float(np.sum(self.history["skipped"]))
        if self.seconds:
            means["images_per_s"] = self.images / self.seconds
        self.history = {}
        return means


def _save(ckpt: checkpoint_lib.Checkpointer, step: int, state, data_iter) -> None:
    """Saves a checkpoint, only of finite parameters (the step's guard keeps them so;
    this is the last line of defence: a poisoned state never replaces a good one)."""
    if not checkpoint_lib.all_finite(state.params):
        raise FloatingPointError(
            f"the parameters are not finite at step {step}; not saved, last checkpoint: "
            f"{ckpt.latest_step()}"
        )
    ckpt.save(step, state, data_iter)


def train_loader(config: ml_collections.ConfigDict):
    """This host's training batches as `train_and_evaluate` reads them: the mixture of
    `config.data.sources`, augmented, in batches of `config.data.batch_size` / hosts."""
    global_batch = config.data.batch_size
    if global_batch % jax.process_count():
        raise ValueError(
            f"batch_size {global_batch} is not divisible by {jax.process_count()} hosts"
        )
    return pipeline.make_mixture(
        sources(config), data_dir=config.data.data_dir or None,
        joint_set=config.data.joint_set, batch_size=global_batch // jax.process_count(),
        image_size=canvas(config), resize=resize(config), max_people=config.data.max_people,
        seed=config.seed, num_workers=config.data.num_workers,
        shard_index=jax.process_index(), shard_count=jax.process_count(),
        augment=pipeline.Augment(tuple(config.data.scale_range), config.data.flip_probability),
        corpus=config.data.corpus,
    )  # fmt: skip


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains LCR-Net++ as configured, resuming from `workdir` if it holds a run.

    Returns:
      {"step", "train_images_per_s", "eval": {method: metrics}, "table", "metrics_path"}
      of the run.
    """
    join_hosts(config)
    _check_settings(config)
    workdir = os.path.abspath(workdir)
    _check_eval_dir(os.path.join(workdir, "eval"))  # not after the training
    # The data first: a bad source (missing dataset or pseudo ground truth) fails here,
    # before anything is written.
    data_iter = iter(train_loader(config))
    os.makedirs(workdir, exist_ok=True)
    with _only_run_in(workdir):
        return _train_and_evaluate(config, workdir, data_iter)


def join_hosts(config: ml_collections.ConfigDict) -> None:
    """`jax.distributed.initialize()` where `config.distributed` and not done yet: every
    host of a multi-host run calls it first, before anything starts a backend."""
    if config.distributed and not jax.distributed.is_initialized():
        jax.distributed.initialize()


def _check_settings(config: ml_collections.ConfigDict) -> None:
    """Settings that would fail only during or after the training (intervals, the
    learning rate, the model, losses, targets, PPI, evaluation), checked before anything
    is written."""
    train = config.train
    minimum = {"num_steps": 0, "eval_every": 0, "log_every": 1, "checkpoint_every": 1,
               "keep_checkpoints": 1, "max_consecutive_skipped": 1, "eval_images": 0}  # fmt: skip
    for name, least in minimum.items():
        if train[name] is not None and train[name] < least:  # keep_checkpoints None: all
            raise ValueError(f"train.{name} must be >= {least}, got {train[name]}")
    _eval_batch_size(config)
    if canvas(config) is None and config.data.batch_size > jax.process_count():
        raise ValueError(
            f"data.batch_size={config.data.batch_size} with size buckets (data.image_size=()): "
            "a batch holds images of one shape, so one image per host; set data.image_size "
            "to a canvas, e.g. (800, 1344), to batch several"
        )
    _schedule(config)
    check_mesh(config, devices=jax.device_count(), local_devices=jax.local_device_count())
    _check_initialisation(config, model_config(config))
    losses.loss_config(config.loss)
    step_lib.TargetConfig(**config.targets)
    ppi_config(config)
    evaluation.evaluator_names(config.eval.evaluators, dataset=config.data.eval_name)


def _check_initialisation(config, net_config: lcrnet_lib.LCRNetConfig) -> None:
    """A backbone with frozen parts starts from weights (`config.model_init`): frozen at
    their random initial values, its stem, first stages or BN statistics would never learn."""
    frozen = []
    if net_config.norm == "frozen" and net_config.backbone != "vgg16":  # VGG16 has no norm
        frozen.append("BatchNorm's statistics and scales (norm 'frozen')")
    if net_config.freeze_at:
        frozen.append(f"its first {net_config.freeze_at} stage(s) (freeze_at)")
    if frozen and not (config.model_init.imagenet or config.model_init.workdir):
        raise ValueError(
            f"the {config.model.preset} backbone keeps {' and '.join(frozen)} as initialised, "
            "but they would be random: set config.model_init.imagenet (the ImageNet weights, "
            "Sec. 3.5) or config.model_init.workdir, or train them all "
            "(config.model.norm='group', config.model.freeze_at=0)"
        )


def check_mesh(config: ml_collections.ConfigDict, *, devices: int, local_devices: int) -> None:
    """The training batch and `config.mesh` fit the devices (`devices` in all, per host
    `local_devices`): the mesh's "data" axis divides `config.data.batch_size`, and each
    host's devices hold whole "model" groups (hosts load different data, while a model
    group's devices must hold the same rows)."""
    model = config.mesh.model_parallel
    if model < 1 or local_devices % model:
        raise ValueError(
            f"mesh.model_parallel={model} must be >= 1 and divide each host's {local_devices} "
            "devices (a model group cannot span hosts, which load different data)"
        )
    data = devices // model
    if config.data.batch_size % data:
        raise ValueError(
            f"data.batch_size={config.data.batch_size} must be a multiple of the mesh's data "
            f"axis, {data} ({devices} devices / mesh.model_parallel {model})"
        )


@contextlib.contextmanager
def _only_run_in(workdir: str):
    """Holds a lock on `workdir` (host 0): a second training of the same run directory
    fails at once instead of interleaving its checkpoints and logs with this one's; with
    several hosts, on every host."""
    busy = (
        f"{workdir} is in use by another training process; wait for it to end or train "
        "in another --workdir"
    )
    with contextlib.ExitStack() as lock:
        error = None
        if jax.process_index() == 0:
            try:
                lock.enter_context(atomic.exclusive(workdir, busy))
            except OSError as refused:
                error = refused
        failed = _on_any_host(error is not None)
        if error is not None:
            raise error
        if failed:
            raise OSError(f"host 0 could not hold {workdir} (its error says why)")
        yield


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes `config` to `workdir`/config.json (process 0): the config a run was started,
    or last resumed, with. A resumed run whose config differs says which keys in one
    warning."""
    path = os.path.join(workdir, "config.json")
    now = json.loads(config.to_json_best_effort())
    before = _saved_config(workdir)
    if jax.process_index() == 0:
        atomic.write_json(path, now)
    if before is not None and before != now:
        logging.warning(
            "%s: the run resumes with another config than the last (%s); the file now holds "
            "this one", path, ", ".join(_changed_keys(before, now)),
        )  # fmt: skip


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, data_iter) -> dict:
    """`train_and_evaluate` once the data is open and `workdir` is this run's."""
    labels = list(config.data.sources)  # the sources' labels, in the mixture's order
    anchors, mean_pose = anchor_poses(config, workdir)
    model, variables = init_model(config, anchors)
    mesh = step_lib.make_mesh(model_parallel=config.mesh.model_parallel)

    schedule, tx = optimizer(config, variables, model)
    state = step_lib.create_train_state(variables, tx)
    shardings = step_lib.state_shardings(state, mesh)
    state = jax.device_put(state, shardings)
    targets = step_lib.TargetConfig(**config.targets)
    train_step = step_lib.make_train_step(
        model, tx, mesh, schedule=schedule, config=targets,
        loss_config=losses.loss_config(config.loss), state_sharding=shardings,
        max_update_norm=config.train.max_update_norm,
    )  # fmt: skip
    detect = _detector(config, model, mean_pose)

    ckpt = checkpoint_lib.Checkpointer(
        os.path.join(workdir, "checkpoints"), max_to_keep=config.train.keep_checkpoints
    )
    if ckpt.latest_step() is not None:
        abstract = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
        )
        start_step, state = ckpt.restore(abstract, data_iterator=data_iter)
        logging.info("Resumed from step %d in %s", start_step, workdir)
    start_step = int(state.step)
    save_config(config, workdir)  # once the anchors and the checkpoint fit it

    # SIGTERM and Ctrl-C (SIGINT) end the step in progress, save and return.
    stop = {"signal": None}
    on_signal = lambda signum, frame: stop.update(signal=signum)  # noqa: E731
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    logger = _Logger(workdir, after_step=start_step)
    key = jax.random.key(config.seed)
    num_steps = config.train.num_steps
    bar = progress_bar(total=num_steps, initial=start_step, desc="train", unit="step",
                    disable=jax.process_index() != 0)  # fmt: skip
    read = _StepMetrics(
        ckpt, bar, first_step=start_step + 1, batch_size=config.data.batch_size,
        max_skipped=config.train.max_consecutive_skipped,
        max_update_norm=config.train.max_update_norm,
    )  # fmt: skip
    step = start_step
    try:
        while step < num_steps and not _stopping(stop, read):
            batch = next(data_iter)
            tick = time.perf_counter()
            shared = _over_hosts(stop, pipeline.people_counts(batch, labels), mesh)
            batch = step_lib.shard_batch({k: batch[k] for k in _TRAIN_KEYS}, mesh)
            state, metrics = train_step(state, batch, key)
            step += 1
            read.add(step, metrics, shared, time.perf_counter() - tick)  # reads step - 1's
            log = step % config.train.log_every == 0 or step == num_steps
            save = step % config.train.checkpoint_every == 0
            evaluate = (
                config.train.eval_every and step % config.train.eval_every == 0 and step < num_steps
            )
            if log or save or evaluate:
                read.flush()  # this step's metrics: the guard runs before it is saved
            if log:
                means = read.window_means()
                logger.write(step, {f"train/{k}": v for k, v in means.items()})
                bar.set_postfix(loss=f"{means['loss']:.3f}", acc=f"{means['cls_accuracy']:.2f}")
            if save:
                _save(ckpt, step, state, data_iter)
            if evaluate:
                results, *_ = run_evaluation(
                    config, detect, state.variables, split=config.data.eval_split,
                    max_images=config.train.eval_images, out_dir=os.path.join(workdir, "eval"),
                    step=step, settings=evaluation_settings(config),
                )  # fmt: skip
                logger.write(step, {f"eval/{m}/{k}": v for m, r in results.items()
                                    for k, v in r.items()})  # fmt: skip
        read.flush()  # a stop by a signal leaves the last step unread
        if ckpt.latest_step() != step:
            _save(ckpt, step, state, data_iter)
    finally:
        bar.close()
        try:
            ckpt.wait()  # raises if an asynchronous save failed (e.g. a full disk)
        finally:
            ckpt.close()
            logger.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if stop["signal"] is not None:
        logging.warning("Stopped by signal %d at step %d; checkpoint saved", stop["signal"], step)
        return {"step": step, "stopped": True, "signal": stop["signal"]}
    speed = read.images / read.seconds if read.seconds else None  # None: no step was timed
    results, table, _, metrics_path = run_evaluation(
        config, detect, state.variables, split=config.data.eval_split,
        max_images=config.eval.max_images, out_dir=os.path.join(workdir, "eval"), step=step,
        settings=evaluation_settings(config),
    )  # fmt: skip
    with _Logger(workdir, after_step=step, final_eval=True) as final:
        final.write(step, {f"eval/{m}/{k}": v for m, r in results.items() for k, v in r.items()})
    return {
        "step": step, "train_images_per_s": speed, "eval": results, "table": table,
        "metrics_path": metrics_path,
    }  # fmt: skip


def _max_images(config, max_images: int | None) -> int | None:
    """The images evaluated: `max_images`, else `config.eval.max_images`."""
    return max_images if max_images is not None else config.eval.max_images


def _restore_checkpoint(config, workdir: str, step: int | None):
    """(step, model, variables, mean pose) of a run's checkpoint (the latest by default),
    without its training state. FileNotFoundError if the run lacks its anchor files:
    others fitted now would not be the poses its classes mean, and it is read only."""
    workdir = os.path.abspath(workdir)
    checkpoint_lib.run_checkpoints(workdir)  # fails before the anchors are looked for
    missing = [
        name for name in ("anchors.npz", "mean_pose.npz")
        if not os.path.exists(os.path.join(workdir, name))
    ]  # fmt: skip
    if missing:
        raise FileNotFoundError(
            f"run {workdir} has no {' or '.join(missing)} beside its checkpoints/: copy them "
            "from the folder the run was trained in"
        )
    anchors, mean_pose = anchor_poses(config, workdir)
    net_config = model_config(config)
    abstract = jax.eval_shape(
        lambda: lcrnet_lib.init_variables(
            net_config, jax.random.key(0), anchors=anchors, image_size=_init_size(config)
        )
    )
    step, variables = checkpoint_lib.restore_run_variables(workdir, abstract, step=step)
    variables = jax.tree.map(jnp.asarray, variables)
    return step, lcrnet_lib.LCRNet(net_config), variables, mean_pose


def evaluate_checkpoint(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    step: int | None = None,
    split: str | None = None,
    max_images: int | None = None,
    eval_dir: str | None = None,
) -> dict:
    """Evaluates a run's checkpoint (the latest by default) without its training state,
    writing its files to `eval_dir` (default `workdir`/eval).

    With `config.distributed`, every host of a multi-host run calls it: each evaluates its
    share of the images (`run_evaluation`).

    Returns:
      {"step", "eval": {method: metrics}, "table", "seconds", "metrics_path"}.
    """
    join_hosts(config)
    out_dir = os.path.abspath(eval_dir or os.path.join(workdir, "eval"))
    _check_eval_dir(out_dir)  # before the anchors are fitted and the checkpoint read
    step, model, variables, mean_pose = _restore_checkpoint(config, workdir, step)
    results, table, seconds, metrics_path = run_evaluation(
        config, _detector(config, model, mean_pose), variables,
        split=split or config.data.eval_split,
        max_images=_max_images(config, max_images), out_dir=out_dir, step=step,
        settings=evaluation_settings(config),
    )  # fmt: skip
    return {
        "step": step, "eval": results, "table": table, "seconds": seconds,
        "metrics_path": metrics_path,
    }  # fmt: skip


def evaluate_exported(
    config: ml_collections.ConfigDict,
    exported,
    *,
    split: str | None = None,
    max_images: int | None = None,
    eval_dir: str | None = None,
) -> dict:
    """Evaluates an exported model as `evaluate_checkpoint` does a checkpoint.

    The images are scaled as the export's metadata says, and the people are its method's
    (PPI or NMS, with its settings): the generic table and the dataset's protocol have that
    one column. The exported function gives no best candidate, so the Human3.6M protocol
    counts a frame without a person as missed (a checkpoint's evaluation takes the frame's
    best candidate there). The files go to `eval_dir` (default `<export folder>/eval/`),
    named by `eval_file_stem` with the step "exported".

    Args:
      config: the dataset, evaluators and evaluation batch size (`config.data`,
        `config.eval`); its input scale and PPI settings are not used.
      exported: a `lcrnet_jax.predict.exported.ExportedModel` (its `run`, `metadata`,
        `buckets` and `directory`).

    Returns:
      {"model" (the export's provenance), "eval": {method: metrics}, "table", "seconds",
       "metrics_path"}.

    With `config.distributed`, every host of a multi-host run calls it, each evaluating
    its share of the images (`run_evaluation`), once `join_hosts` has joined them, before
    `exported` was loaded.

    Raises:
      ValueError: the export's joints differ from the config's, or the config's canvas is
        not one of the exported buckets.
    """
    config = copy.deepcopy(config)
    scale = exported.metadata["input"]
    config.data.short_side, config.data.max_long_side = scale["short_side"], scale["max_long_side"]
    if exported.joint_set != config.data.joint_set:
        raise ValueError(
            f"{exported.directory} predicts {exported.joint_set} joints, the config evaluates "
            f"{config.data.joint_set}"
        )
    bucket = canvas(config)
    if bucket is not None and bucket not in exported.buckets:
        raise ValueError(
            f"the config's canvas {bucket[0]}x{bucket[1]} (config.data.image_size) is not an "
            f"exported bucket of {exported.directory}: "
            f"{', '.join(f'{h}x{w}' for h, w in exported.buckets)}"
        )
    method = exported.metadata["method"]

    def detect(_, images, image_size):
        return {method: ppi.PPIResult(**exported.run(images, image_size))}

    results, table, seconds, metrics_path = run_evaluation(
        config, detect, None, split=split or config.data.eval_split,
        max_images=_max_images(config, max_images),
        out_dir=os.path.abspath(eval_dir or os.path.join(exported.directory, "eval")),
        step="exported", settings=None,
    )  # fmt: skip
    return {
        "model": exported.metadata["model"], "eval": results, "table": table,
        "seconds": seconds, "metrics_path": metrics_path,
    }  # fmt: skip


def diagnose_checkpoint(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    step: int | None = None,
    split: str | None = None,
    max_images: int | None = None,
) -> dict:
    """Where a run's checkpoint loses people and 2D accuracy (`evaluation.diagnostics`),
    on the network's pose proposals of a split; writes nothing.

    Returns:
      {"step", "summary": {people group: {stage: fraction}}, "table"}.
    """
    step, model, variables, _ = _restore_checkpoint(config, workdir, step)
    split = split or config.data.eval_split
    loader, *_ = _eval_loader(config, split, _max_images(config, max_images))
    forward = jax.jit(lambda variables, images, size: model.apply(variables, images, size))
    found = diagnostics.Diagnostics(config.data.joint_set)
    for batch in progress_bar(loader, desc=f"diagnose {split}", unit="batch", leave=False):
        out = jax.device_get(forward(variables, batch["image"], batch["image_size"]))
        found.add({k: getattr(out, k) for k in ("boxes", "probs", "poses2d", "valid")}, batch)
    summary = found.summary()
    return {"step": step, "summary": summary, "table": diagnostics.format_table(summary)}
