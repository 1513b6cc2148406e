"""The sharded training and evaluation steps (LCR-Net++ Sec. 3.5, Eq. 1).

One `jax.jit` step over a `jax.sharding.Mesh` with a "data" axis replaces pmap: the
batch is sharded over the devices (`NamedSharding(mesh, P("data"))`), parameters and
optimizer state are replicated (or split over an optional "model" axis), and XLA
inserts the gradient all-reduce itself. The same code runs on one CPU, on several
(simulated) devices, and on a multi-host TPU pod after `jax.distributed.initialize()`,
where each process feeds its local part of the global batch (`shard_batch`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lcrnet_jax import losses, ops, targets
from lcrnet_jax.model import lcrnet as lcrnet_lib


@flax.struct.dataclass
class TrainState:
    """Everything a training run updates.

    Attributes:
      step: () int32 number of steps taken (skipped ones included).
      params: the model's trainable collection.
      constants: the model's other collections (e.g. "anchor_poses"), never updated.
      opt_state: optax state.
      skipped: () int32 number of steps whose update was skipped (non-finite loss or
        update, or an update norm above the bound).
    """

    step: jnp.ndarray
    params: dict
    constants: dict
    opt_state: optax.OptState
    skipped: jnp.ndarray

    @property
    def variables(self) -> dict:
        return {"params": self.params, **self.constants}


_PAPER_LOSS = losses.LossConfig()


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    """Sampling and matching parameters of the training targets (paper defaults).

    `box_extent`: the joints a ground-truth box spans: "visible" (the joints seen in the
    image: our reading of the paper's "bounding box around all joints of the pose", Sec.
    3.1, for annotations whose hidden joints are guessed or absent) or "known"
    (every joint whose 2D position is known, outside the image too: a person cut by the
    border gets the box of the whole body; `targets.ground_truth_boxes`). With "known",
    the RPN needs `anchor_border` (anchors that straddle the border are trained,
    `targets.rpn_targets`) and the model a `proposal_border` to propose such boxes.
    `hidden_2d_weight`: the weight of the 2D targets of joints that are known but not
    visible (occluded or outside the image; 1: as the visible ones).
    `ignore_iof`: anchors and RoIs that would be background but lie in an ignored region
    by at least this fraction of their area are not sampled (Detectron's crowd filter;
    > 1: off). The regions: the batch's `ignore_boxes` (COCO crowds, people without
    keypoints) and the `boxes` of people too little visible for a ground-truth box.
    """

    rpn_samples: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_positive_iou: float = 0.7
    rpn_negative_iou: float = 0.3
    roi_samples: int = 512
    roi_foreground_fraction: float = 0.25
    foreground_iou: float = 0.5
    box_margin: float = 0.1
    box_extent: str = "visible"
    anchor_border: float = 0.0
    hidden_2d_weight: float = 1.0
    ignore_iof: float = 0.7

    def __post_init__(self):
        if self.box_extent not in ("visible", "known"):
            raise ValueError(f"box_extent must be 'visible' or 'known', got {self.box_extent!r}")
        if not self.anchor_border >= 0:
            raise ValueError(f"anchor_border must be >= 0, got {self.anchor_border!r}")
        if not self.hidden_2d_weight >= 0:
            raise ValueError(f"hidden_2d_weight must be >= 0, got {self.hidden_2d_weight!r}")
        if not self.ignore_iof > 0:
            raise ValueError(f"ignore_iof must be > 0, got {self.ignore_iof!r}")
        fractions = {
            "rpn_positive_fraction": self.rpn_positive_fraction,
            "roi_foreground_fraction": self.roi_foreground_fraction,
        }
        for name, value in fractions.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def make_learning_rate_schedule(
    base_learning_rate: float,
    *,
    warmup_steps: int = 0,
    decay_steps: Sequence[int] = (),
    decay_factor: float = 0.1,
) -> optax.Schedule:
    """Linear warm-up, base * (step + 1) / warmup_steps for the first `warmup_steps`
    steps, then the base rate times `decay_factor` at each decay step.

    The paper's ResNet-50 schedule is 1e-3, then 1e-4, then 1e-5 (Sec. 4.1).
    """
    if base_learning_rate < 0:  # NaN passes: a fault the training step must survive
        raise ValueError(f"the learning rate must be >= 0, got {base_learning_rate}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if any(s < 0 for s in decay_steps) or list(decay_steps) != sorted(set(decay_steps)):
        raise ValueError(f"decay_steps must be increasing steps >= 0, got {tuple(decay_steps)}")
    boundaries = {int(s): decay_factor for s in decay_steps}
    decay = optax.piecewise_constant_schedule(base_learning_rate, boundaries)
    if warmup_steps <= 0:
        return decay
    return lambda step: decay(step) * jnp.minimum(1.0, (step + 1) / warmup_steps)


def make_optimizer(
    schedule: optax.Schedule,
    *,
    trainable: dict | None = None,
    kind: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    clip_norm: float | None = 10.0,
    bias_lr_factor: float = 1.0,
    bias_weight_decay: bool = True,
) -> optax.GradientTransformation:
    """SGD with momentum and weight decay (the paper), or AdamW, with gradient clipping.

    Args:
      schedule: learning rate per step.
      trainable: pytree of bools like the params (the model's `trainable_mask`):
        False leaves (frozen BN, frozen stages) get no update at all.
      kind: "sgd" or "adamw" (useful when training from scratch without ImageNet
        weights, as the CPU demo does).
      momentum, weight_decay, clip_norm: the usual; clip_norm None disables clipping.
      bias_lr_factor, bias_weight_decay: the biases' (leaves named "bias") learning rate
        is `bias_lr_factor` times the others', with weight decay or not. Detectron, the
        authors' base, doubles their rate and does not decay them (`SOLVER.BIAS_DOUBLE_LR`,
        `SOLVER.BIAS_WEIGHT_DECAY`).
    """
    decay_mask = None if bias_weight_decay else _not_bias
    if kind == "sgd":
        update = [
            optax.add_decayed_weights(weight_decay, mask=decay_mask),
            optax.sgd(schedule, momentum=momentum),
        ]
    elif kind == "adamw":
        update = [optax.adamw(schedule, weight_decay=weight_decay, mask=decay_mask)]
    else:
        raise ValueError(f"optimizer kind must be 'sgd' or 'adamw', got {kind!r}")
    if bias_lr_factor != 1.0:
        update.append(optax.masked(optax.scale(bias_lr_factor), _is_bias))
    clip = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
    tx = optax.chain(*clip, *update)
    if trainable is None:
        return tx
    labels = jax.tree.map(lambda t: "train" if t else "freeze", trainable)
    return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)


def _is_bias(params):
    """Pytree of bools like `params`: True for the biases (leaves named "bias")."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "bias", params
    )


def _not_bias(params):
    return jax.tree.map(lambda bias: not bias, _is_bias(params))


def create_train_state(variables: dict, optimizer: optax.GradientTransformation) -> TrainState:
    """A fresh TrainState from the model's variables."""
    params = variables["params"]
    constants = {k: v for k, v in variables.items() if k != "params"}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        constants=constants,
        opt_state=optimizer.init(params),
        skipped=jnp.zeros((), jnp.int32),
    )


def state_shardings(state, mesh: Mesh, *, min_model_shard_size: int = 2**20):
    """Shardings of a TrainState (or any pytree): replicated, except that with a
    "model" mesh axis the large tensors (>= `min_model_shard_size` elements) are split
    over it along their last axis when it divides evenly."""
    model_size = dict(zip(mesh.axis_names, mesh.devices.shape, strict=True)).get("model", 1)

    def sharding(x):
        shape = np.shape(x)
        if (
            model_size > 1
            and np.prod(shape) >= min_model_shard_size
            and shape[-1] % model_size == 0
        ):
            return NamedSharding(mesh, P(*([None] * (len(shape) - 1)), "model"))
        return NamedSharding(mesh, P())

    return jax.tree.map(sharding, state)


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Places a host's local batch as a global array sharded over "data".

    With several processes, each passes its own part of the global batch.
    """
    sharding = NamedSharding(mesh, P("data"))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def sum_over_hosts(values: np.ndarray, mesh: Mesh) -> jax.Array:
    """Each host's (n,) `values` summed over the hosts: a (n,) float32 array replicated on
    the devices, dispatched and not waited for. The devices sum after the work queued
    before it (a training step), so a host that reads it after dispatching its next step
    waits for nothing that step needs. A collective: every host calls it at the same
    point."""
    rows = np.zeros((mesh.local_mesh.shape["data"], len(values)), np.float32)
    rows[0] = values  # one row per local "data" slot; the others add nothing
    return _row_sum(mesh)(shard_batch(rows, mesh))


@functools.cache
def _row_sum(mesh: Mesh) -> Callable[[jax.Array], jax.Array]:
    return jax.jit(lambda rows: rows.sum(0), out_shardings=NamedSharding(mesh, P()))


def compute_losses(
    model,
    variables: dict,
    batch: dict,
    key,
    config: TargetConfig,
    loss_config: losses.LossConfig = _PAPER_LOSS,
):
    """L = L_RPN + L_classif + L_reg on one batch (Eq. 1); returns (loss, metrics)."""
    anchor_poses = lcrnet_lib.anchor_poses(variables, model.config)
    rpn_key, roi_key = jax.random.split(key)
    features = model.apply(variables, batch["image"], batch["image_size"], method="features")
    objectness, deltas = model.apply(variables, features, method="rpn")
    feature_size = features.shape[1:3]
    known2d = batch["visible"] | batch["has_3d"][..., None]
    gt = targets.ground_truth_boxes(
        batch["poses2d"],
        batch["visible"],
        batch["person_valid"],
        joint_set=anchor_poses.joint_set,
        upper_body=anchor_poses.twins,
        margin=config.box_margin,
        extent=known2d if config.box_extent == "known" else None,
    )
    unboxed = targets.without_boxes(gt, batch["person_valid"])[..., None]
    ignored = jnp.concatenate(
        [batch["ignore_boxes"], jnp.where(unboxed, batch["boxes"], 0.0)], axis=1
    )  # (B, 2P, 4)
    rpn_t = targets.rpn_targets(
        lcrnet_lib.anchor_boxes(model.config, feature_size),
        gt,
        batch["image_size"],
        rpn_key,
        positive_iou=config.rpn_positive_iou,
        negative_iou=config.rpn_negative_iou,
        num_samples=config.rpn_samples,
        positive_fraction=config.rpn_positive_fraction,
        border=config.anchor_border,
        ignore_boxes=ignored,
        ignore_iof=config.ignore_iof,
    )
    rpn_loss, metrics = losses.rpn_loss(objectness, deltas, rpn_t, loss_config)
    proposals = model.apply(
        variables,
        objectness,
        deltas,
        batch["image_size"],
        feature_size=feature_size,
        train=True,
        method="proposals",
    )
    lcr_t = targets.lcr_targets(
        proposals.boxes,
        proposals.valid,
        gt,
        batch["poses2d"],
        batch["poses3d"],
        anchor_poses,
        roi_key,
        has_3d=batch["has_3d"],
        known2d=known2d,
        weights2d=jnp.where(batch["visible"], 1.0, config.hidden_2d_weight),
        foreground_iou=config.foreground_iou,
        num_samples=config.roi_samples,
        foreground_fraction=config.roi_foreground_fraction,
        ignore_boxes=ignored,
        ignore_iof=config.ignore_iof,
    )
    heads = model.apply(
        variables, features, lcr_t.rois, train=True, classes=lcr_t.classes, method="head",
        foreground_rois=ops.max_positives(config.roi_samples, config.roi_foreground_fraction),
    )  # fmt: skip
    lcr_loss, lcr_metrics = losses.lcr_loss(heads, lcr_t, loss_config)
    loss = rpn_loss + lcr_loss
    return loss, {"loss": loss, **metrics, **lcr_metrics}


def make_train_step(
    model,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    schedule: optax.Schedule | None = None,
    config: TargetConfig = TargetConfig(),
    loss_config: losses.LossConfig = _PAPER_LOSS,
    state_sharding=None,
    max_update_norm: float = float("inf"),
) -> Callable:
    """A jit-compiled `step(state, batch, key) -> (state, metrics)` over `mesh`.

    The batch (dict of arrays with a leading global batch axis, see
    `lcrnet_jax.data.pipeline`) is sharded over "data", each device pooling its own
    images' RoIs and running their proposals' NMS (`ops.per_image`); the state is
    donated. The key is folded with the step number, so a resumed run draws the same
    samples (the sampling stays outside `ops.per_image`: its draws do not depend on the
    mesh). A step whose loss, gradients or update are not finite, or whose update has a
    global norm above `max_update_norm`, leaves params and optimizer state as they were
    (only `step`, `skipped` and the schedules' step counts count it, so that the learning
    rate stays `schedule(step)`): a diverging run never applies its bad update.

    Metrics: every loss, "cls_accuracy", "foreground_fraction", "grad_norm",
    "update_norm", "learning_rate" and "skipped" (0/1 for this step).
    """
    if model.config.norm == "batch":
        raise ValueError(
            "the training step does not update BatchNorm statistics: use norm='frozen' "
            "(pretrained backbones) or norm='group' (from scratch)"
        )
    replicated = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("data"))
    state_sharding = replicated if state_sharding is None else state_sharding

    def step(state: TrainState, batch: dict, key):
        key = jax.random.fold_in(key, state.step)

        def loss_fn(params):
            return compute_losses(
                model, {"params": params, **state.constants}, batch, key, config, loss_config
            )

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        update_norm = optax.tree.norm(updates)
        params = optax.apply_updates(state.params, updates)
        ok = (
            jnp.isfinite(loss)
            & jnp.isfinite(grad_norm)
            & jnp.isfinite(update_norm)
            & (update_norm <= max_update_norm)
        )
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)  # noqa: E731
        new_state = state.replace(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, _schedules_advanced(state.opt_state)),
            skipped=state.skipped + (~ok).astype(jnp.int32),
        )
        skipped = (~ok).astype(jnp.float32)
        metrics = dict(metrics, grad_norm=grad_norm, update_norm=update_norm, skipped=skipped)
        if schedule is not None:
            metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
        return new_state, metrics

    return jax.jit(
        ops.under_mesh(step, mesh),
        in_shardings=(state_sharding, data, replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=(0,),
    )


def _schedules_advanced(opt_state):
    """`opt_state` with the step counts of its learning-rate schedules one step on."""
    is_schedule = lambda x: isinstance(x, optax.ScaleByScheduleState)  # noqa: E731
    return jax.tree.map(
        lambda x: x._replace(count=optax.safe_int32_increment(x.count)) if is_schedule(x) else x,
        opt_state,
        is_leaf=is_schedule,
    )


def make_mesh(devices=None, *, model_parallel: int = 1) -> Mesh:
    """A ("data", "model") mesh over `devices` (all by default)."""
    devices = np.asarray(jax.devices() if devices is None else devices)
    if devices.size % model_parallel:
        raise ValueError(
            f"{devices.size} devices cannot be split into model_parallel={model_parallel}"
        )
    return Mesh(devices.reshape(-1, model_parallel), ("data", "model"))
