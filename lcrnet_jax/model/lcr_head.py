"""Classification and regression heads on RoIs (LCR-Net++ Sec. 3.2-3.5, Figures 2 and 4).

RoIAlign pools each RoI from the trunk features, then
  - "res5" (ResNet C4): 14x14 RoIs -> res5 (stride 2) -> global average pooling; or
  - "fc" (VGG16): 7x7 RoIs -> flatten -> two fully-connected layers (4096 in the paper),
giving shared features that feed the classification over C = K + 1 classes (background
first) and the class-specific regression of 5 x J values per class, laid out per class as
[x(J), y(J), X(J), Y(J), Z(J)] like the original model.

The iterative variant (Sec. 3.4, Fig. 4): the first estimate's class probabilities and
regression are concatenated and mapped by a fully-connected layer to a fixed 2048-d
vector, concatenated with the pooled RoI features, and fed to two fully-connected layers
and new classification/regression layers: the refined estimate.

Joint refinement (beyond the paper; `joint_stages`): each stage decodes every class's 2D
pose (with `joint_classes`, only the most probable classes'), reads the trunk features
around each joint (a `joint_grid` x `joint_grid` grid of bilinear samples one feature
cell apart, centred on the joint: `ops.roi_align` of a small box), and a small per-joint
perceptron turns them into that joint's 2D and 3D offsets (with `joint_heatmap`, plus the
soft-argmax of a heatmap over the samples); the classification is kept.
At inference a stage can run again on the poses it moved (`joint_repeats`).
The fc regression sees a whole RoI at a few cells and places the limbs' ends coarsely;
the features around a joint see its neighbourhood at the trunk's stride
(docs/demo_recipe.md: PCKh 0.47 -> 0.55 on the demo).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import ops

POOLERS = ("res5", "fc")


@flax.struct.dataclass
class HeadOutput:
    """One estimate of the head for every RoI.

    Attributes:
      logits: (B, R, C) classification logits, class 0 = background.
      regression: (B, R, C, 5, J) class-specific regression, rows [x, y, X, Y, Z], in
        units of the anchors' `std` (see `lcrnet_jax.anchors.decode_poses`).
      classifies: False for a joint refinement's estimate, whose logits are the previous
        estimate's, frozen: they have no loss of their own.
    """

    logits: jax.Array
    regression: jax.Array
    classifies: bool = flax.struct.field(pytree_node=False, default=True)


class PoseRegressor(nn.Module):
    """Classification and pose-regression layers on shared RoI features.

    Params: "cls" (D -> C), "reg" (D -> C * 5 * J), initialised as Detectron's
    (normal with std 0.01 and 0.001, zero biases).
    """

    num_classes: int
    num_joints: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x (N, D) -> (logits (N, C) float32, regression (N, C, 5, J) float32)."""
        c, j = self.num_classes, self.num_joints
        logits = nn.Dense(
            c, kernel_init=nn.initializers.normal(0.01), dtype=self.dtype, name="cls"
        )(x)
        reg = nn.Dense(
            c * 5 * j, kernel_init=nn.initializers.normal(0.001), dtype=self.dtype, name="reg"
        )(x)
        return logits.astype(jnp.float32), reg.reshape(-1, c, 5, j).astype(jnp.float32)


class JointOffsets(nn.Module):
    """Per-joint two-layer perceptron: the features at each joint -> that joint's offsets.

    With `heatmap`, each joint's 2D offset also gets the soft-argmax of a local heatmap
    over its `grid` x `grid` samples (integral regression): one logit per sample, a
    per-joint linear function of that sample's features alone, a softmax over the grid,
    and the expected sample position. The perceptron adds its own 2D offset to it.

    Params: "kernel1" (J, D, H), "bias1" (J, H), "kernel2" (J, H, 5); with `heatmap` also
    "heat" (J, D / grid^2). "kernel2" and "heat" start at zero, so a new stage starts by
    keeping the poses it refines (a uniform heatmap expects the grid's centre).
    """

    hidden: int
    grid: int = 2
    heatmap: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x (N, J, D) -> (N, J, 5) float32 offsets: x, y in feature cells, then X, Y, Z
        in units of the anchors' `std` (the regression's). With `heatmap`, D holds the
        grid's samples row by row (y, then x), one feature cell apart, centred on the
        joint."""
        joints, dim = x.shape[1:]
        # float32 whatever JAX's default (64-bit mode would make them float64).
        param = functools.partial(self.param, dtype=jnp.float32)
        kernel1 = param(
            "kernel1", nn.initializers.lecun_normal(batch_axis=(0,)), (joints, dim, self.hidden)
        )
        bias1 = param("bias1", nn.initializers.zeros, (joints, self.hidden))
        kernel2 = param("kernel2", nn.initializers.zeros, (joints, self.hidden, 5))
        kernel = kernel1
        if self.heatmap:
            cells = self.grid * self.grid
            if self.grid < 2 or dim % cells:
                raise ValueError(
                    f"a heatmap needs a grid of at least 2 x 2 and D a multiple of its "
                    f"{cells} samples, got grid {self.grid} and D {dim}"
                )
            heat = param("heat", nn.initializers.zeros, (joints, dim // cells))
            # Block-diagonal (J, D, grid^2): sample k's logit reads sample k's features
            # only. Appended to kernel1, the logits come out of the same product (a
            # separate einsum ran several times slower on XLA:CPU).
            blocks = jnp.einsum("jc,kl->jkcl", heat, jnp.eye(cells, dtype=heat.dtype))
            kernel = jnp.concatenate([kernel1, blocks.reshape(joints, dim, cells)], axis=-1)
        # Joint-major once, behind a barrier: without it XLA:CPU recomputes the sampling
        # that produced x for each of the two products reading it in training.
        x = jax.lax.optimization_barrier(jnp.swapaxes(x.astype(self.dtype), 0, 1))
        z = jnp.einsum("jnd,jde->jne", x, kernel.astype(self.dtype))
        h = nn.relu(z[..., : self.hidden] + bias1[:, None].astype(self.dtype))
        out = jnp.einsum("jnh,jhe->nje", h, kernel2.astype(self.dtype)).astype(jnp.float32)
        if not self.heatmap:
            return out
        steps = jnp.arange(self.grid, dtype=jnp.float32) - 0.5 * (self.grid - 1)
        positions = jnp.stack(jnp.meshgrid(steps, steps, indexing="xy"), -1).reshape(-1, 2)
        weights = jax.nn.softmax(z[..., self.hidden :].astype(jnp.float32), axis=-1)
        expected = jnp.einsum("jnk,kd->njd", weights, positions, precision="highest")
        return out.at[..., :2].add(expected)


class LCRHead(nn.Module):
    """RoIAlign -> shared RoI features -> one estimate, then the refined ones if any.

    Over a mesh that splits the batch, each device reads its own images' RoIs and joints
    from its own part of the feature map (`ops.per_image`).

    Attributes:
      num_classes: C = K + 1 (background first).
      num_joints: J.
      pooler: "res5" (C4: res5 + average pooling) or "fc" (flatten + two FC layers).
      roi_size: RoIAlign output size S (14 for "res5", 7 for "fc").
      spatial_scale: feature cells per image pixel (1 / the feature stride).
      sampling_ratio, aligned, roi_pooling, roi_method: `ops.roi_align` options
        (`roi_pooling` "avg" as Detectron or "max" as the paper's Sec. 3.5).
      fc_dim: width of the "fc" pooler's layers and of the refinement's two layers.
      refine_dim: width of the fixed representation of the first estimate (2048).
      iterative: add the refinement stage of Sec. 3.4.
      joint_stages: joint refinement stages after the last estimate (0: none).
      joint_dim: hidden width of each joint's perceptron.
      joint_grid: the samples read around each joint, per side (1: the joint only).
      joint_heatmap: each joint's 2D offset adds the soft-argmax of a local heatmap over
        the grid's samples (`JointOffsets`; joint_grid >= 2).
      joint_classes: at inference, refine only the poses of the k most probable
        foreground classes of each RoI (the others keep theirs); 0 refines every class.
      joint_repeats: at inference, each stage runs this many times, each time reading
        the features at the joints it moved (1 in training).
      res5: the unbound res5 `ResStage` (with stride 2) of the backbone, for "res5".
      dtype: compute dtype.

    Params: "res5" (pooler "res5") or "fc6", "fc7" (pooler "fc"); "predict"; with
    `iterative` also "refine", "refine_fc1", "refine_fc2", "predict_refined"; with
    `joint_stages` also "joints0", "joints1", ... (`JointOffsets`).
    """

    num_classes: int
    num_joints: int
    pooler: str = "res5"
    roi_size: int = 14
    spatial_scale: float = 1.0 / 16.0
    sampling_ratio: int = 2
    aligned: bool = True
    roi_pooling: str = "avg"
    roi_method: str = "gather"
    fc_dim: int = 4096
    refine_dim: int = 2048
    iterative: bool = False
    joint_stages: int = 0
    joint_dim: int = 64
    joint_grid: int = 2
    joint_heatmap: bool = False
    joint_classes: int = 0
    joint_repeats: int = 1
    res5: nn.Module | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        features: jax.Array,
        rois: jax.Array,
        *,
        train: bool = False,
        anchors: anchors_lib.AnchorPoses | None = None,
        classes: jax.Array | None = None,
        foreground_rois: int | None = None,
    ) -> list[HeadOutput]:
        """Estimates for every RoI.

        Args:
          features: (B, Hf, Wf, C) trunk features.
          rois: (B, R, 4) boxes x1, y1, x2, y2 in input-image pixels (padded rows may be
            zeros; they give finite outputs to be masked by the caller). No gradient
            flows into the boxes (approximate joint training, Sec. 3.5).
          train: True returns every estimate (first, then refined) and updates
            BatchNorm statistics if any; False returns the last estimate only.
          anchors: the anchor poses, to decode the poses that joint refinement reads
            the features at (needed with `joint_stages` only).
          classes: (B, R) int target class of each RoI, or None. In training the loss
            reads only the target class's regression, so joint refinement moves only
            that class's pose; None refines the classes inference needs (every class,
            or the `joint_classes` most probable).
          foreground_rois: with `classes`, only the first this many RoIs of each image
            can be foreground (the sampler's, `ops.max_positives`): joint refinement
            skips the others, whose regression has no loss. None: every RoI.

        Returns:
          A list of `HeadOutput`, one per estimate returned.
        """
        if self.pooler not in POOLERS:
            raise ValueError(f"pooler must be one of {POOLERS}, got {self.pooler!r}")
        if (self.pooler == "res5") != (self.res5 is not None):
            raise ValueError("the 'res5' pooler needs a res5 stage, the 'fc' pooler none")
        if features.ndim != 4 or rois.ndim != 3 or rois.shape[-1] != 4:
            raise ValueError(
                f"features must be (B, Hf, Wf, C) and rois (B, R, 4), got {features.shape} "
                f"and {rois.shape}"
            )
        if self.joint_stages and anchors is None:
            raise ValueError("joint refinement (joint_stages > 0) needs the anchor poses")
        if rois.shape[0] != features.shape[0]:
            raise ValueError(
                f"rois batch {rois.shape[0]} does not match features batch {features.shape[0]}"
            )
        b, r = rois.shape[:2]
        rois = jax.lax.stop_gradient(rois.astype(jnp.float32))
        pool = functools.partial(
            ops.roi_align,
            output_size=self.roi_size,
            spatial_scale=self.spatial_scale,
            sampling_ratio=self.sampling_ratio,
            aligned=self.aligned,
            pooling=self.roi_pooling,
            method=self.roi_method,
        )
        x = ops.per_image(pool, features, rois)  # (B, R, S, S, C)
        x = x.reshape(b * r, *x.shape[2:])
        dense = lambda d, name: nn.Dense(d, dtype=self.dtype, name=name)  # noqa: E731
        if self.pooler == "res5":
            x = self.res5(x, train)
            pooled = shared = jnp.mean(x, axis=(1, 2))  # (B*R, D)
        else:
            pooled = x.reshape(b * r, -1).astype(self.dtype)
            shared = nn.relu(dense(self.fc_dim, "fc6")(pooled))
            shared = nn.relu(dense(self.fc_dim, "fc7")(shared))
        predictor = lambda name: PoseRegressor(  # noqa: E731
            self.num_classes, self.num_joints, dtype=self.dtype, name=name
        )
        logits, reg = predictor("predict")(shared)
        estimates = [(logits, reg)]
        if self.iterative:
            first = jnp.concatenate([jax.nn.softmax(logits), reg.reshape(b * r, -1)], axis=-1)
            z = nn.relu(dense(self.refine_dim, "refine")(first))
            z = jnp.concatenate([z, pooled.astype(z.dtype)], axis=-1)
            z = nn.relu(dense(self.fc_dim, "refine_fc1")(z))
            z = nn.relu(dense(self.fc_dim, "refine_fc2")(z))
            estimates.append(predictor("predict_refined")(z))
        classifying = len(estimates)  # the joint refinement's keep the last one's logits
        refined_classes = None if classes is None else classes[..., None]
        if classes is None and self.joint_classes:
            last_logits = estimates[-1][0]  # joint refinement keeps them
            foreground = jax.lax.stop_gradient(last_logits.reshape(b, r, -1)[..., 1:])
            refined_classes = jax.lax.top_k(foreground, self.joint_classes)[1] + 1
        for stage in range(self.joint_stages):
            offsets = self._joint_offsets(name=f"joints{stage}")
            for _ in range(1 if train else self.joint_repeats):
                estimates.append(
                    self._refine_at_joints(
                        features,
                        rois,
                        *estimates[-1],
                        anchors,
                        refined_classes,
                        offsets,
                        rows=None if classes is None else foreground_rois,
                    )
                )
        outputs = [
            HeadOutput(
                logits=lg.reshape(b, r, self.num_classes),
                regression=rg.reshape(b, r, *rg.shape[1:]),
                classifies=i < classifying,
            )
            for i, (lg, rg) in enumerate(estimates)
        ]
        return outputs if train else outputs[-1:]

    def joint_moves(self, features: jax.Array, poses2d: jax.Array) -> jax.Array:
        """(B, P, J, 2) pixel moves of (B, P, J, 2) poses (pixels) by the last joint
        refinement stage, its features read around their joints (`LCRNet.polish`)."""
        if not self.joint_stages:
            raise ValueError("joint moves need a joint refinement stage (joint_stages >= 1)")
        b, p, j = poses2d.shape[:3]
        stage = self._joint_offsets(parent=None)  # unbound: the trained stage's parameters
        params = self.variables["params"][f"joints{self.joint_stages - 1}"]
        sampled = self._sample_at_joints(features, poses2d)
        cells = stage.apply({"params": params}, sampled.reshape(b * p, j, -1))
        return cells[..., :2].reshape(b, p, j, 2) / self.spatial_scale

    def _joint_offsets(self, **kwargs) -> JointOffsets:
        """A joint refinement stage's `JointOffsets` (`kwargs`: its name or parent)."""
        return JointOffsets(
            self.joint_dim, self.joint_grid, self.joint_heatmap, dtype=self.dtype, **kwargs
        )

    def _sample_at_joints(self, features: jax.Array, poses2d: jax.Array) -> jax.Array:
        """(B, P, J, grid * grid * C) features read around the joints of (B, P, J, 2) poses
        (pixels): a `joint_grid` x `joint_grid` grid of bilinear samples one feature cell
        apart, centred on each joint, row by row (y, then x)."""
        b, p, j = poses2d.shape[:3]
        points = poses2d.reshape(b, p * j, 2)
        sample = functools.partial(
            ops.sample_grids, grid=self.joint_grid, spatial_scale=self.spatial_scale
        )
        sampled = ops.per_image(sample, features, points)  # (B, P * J, grid, grid, C)
        return sampled.reshape(b, p, j, -1)

    def _refine_at_joints(self, features, rois, logits, reg, anchors, classes, offsets, rows):
        """One joint refinement stage of (B * R, C) logits and (B * R, C, 5, J) regression.

        `classes`: (B, R, N) int, the classes whose poses move, or None for all;
        `offsets`: the stage's `JointOffsets`; `rows`: only the first this many RoIs of
        each image move (None: all).
        Returns the stage's (logits, regression): the same logits without gradient (the
        classification is not refined), the regression moved by each joint's offsets.
        """
        b = rois.shape[0]
        c, j = self.num_classes, self.num_joints
        reg = reg.reshape(b, -1, c, 5, j)
        r = reg.shape[1] if rows is None else min(rows, reg.shape[1])
        rois = rois[:, :r]
        classes = None if classes is None else classes[:, :r]
        poses2d, _ = anchors_lib.decode_poses(jax.lax.stop_gradient(reg[:, :r]), rois, anchors)
        if classes is not None:
            poses2d = jnp.take_along_axis(poses2d, classes[..., None, None], axis=2)
        n = poses2d.shape[2]  # C, or N with `classes`
        sampled = self._sample_at_joints(features, poses2d.reshape(b, r * n, j, 2))
        cells = offsets(sampled.reshape(b * r * n, j, -1)).reshape(b, r, n, j, 5)
        size = jnp.maximum(rois[..., 2:] - rois[..., :2], 1e-6)[:, :, None, None, :]
        xy_units = self.spatial_scale * size * anchors.std[:2].T
        cells_to_units = jnp.concatenate(  # x, y: feature cells -> pixels -> box units / std
            [xy_units, jnp.ones((b, r, 1, j, 3), jnp.float32)], -1
        )
        moves = jnp.swapaxes(cells / cells_to_units, -1, -2)  # (B, R, N, 5, J)
        if classes is not None:  # to the rows of the classes, zero for the others
            which = jax.nn.one_hot(classes, c, dtype=moves.dtype)  # (B, R, N, C)
            moves = jnp.einsum("brnc,brnej->brcej", which, moves, precision="highest")
        refined = reg.at[:, :r].add(moves)
        return jax.lax.stop_gradient(logits), refined.reshape(-1, c, 5, j)


def params_for_joints(params: Mapping, initial: Mapping, matrix, std_from, std_to) -> dict:
    """A trained head's parameters for the same head on another joint set, whose first
    estimate's poses are `matrix` times the trained head's (`skeleton.completion_matrix`),
    class by class and RoI by RoI.

    - The regression layers ("reg"): a joint's outputs are the weighted sum of the outputs
      of the joints it is made of, rescaled from `std_from` to `std_to` (exact).
    - The iterative head's first layer ("refine"): the inputs of a copied joint keep their
      weights, those of a made joint get zero. Its output is unchanged when every joint
      of the trained head is copied (LCR-13 to LCR-MuPoTS), not when one is dropped
      (LCR-17's neck, to LCR-MuPoTS).
    - Joint refinement ("joints*", one slice per joint): a copied joint keeps its slices,
      a made joint takes `initial`'s. Its offsets start at zero, so after a refinement
      stage a made joint is made from its joints' unrefined poses: only the poses without
      joint refinement start exactly as the trained head's completed.

    Args:
      params: flat {"predict.reg.kernel": array, ...} of the trained head (J_from joints).
      initial: the same for the head on the new joint set (J_to joints), freshly
        initialised; its arrays that `params` lacks are returned as they are.
      matrix: (J_to, J_from) weights of each new joint.
      std_from, std_to: (5, J_from) and (5, J_to) regression std of the two anchor sets.

    Returns:
      flat parameters with `initial`'s names and shapes.
    """
    matrix = np.asarray(matrix, np.float64)
    std_from, std_to = np.asarray(std_from, np.float64), np.asarray(std_to, np.float64)
    j_to, j_from = matrix.shape
    # (5, J_to, J_from): output (row r, joint t) in std units from input (r, joint j).
    weights = matrix[None] * std_from[:, None, :] / std_to[:, :, None]
    copied = (matrix != 0).sum(1) == 1  # a one-hot row: a joint of the same name
    source = np.argmax(np.abs(matrix), axis=1)
    out = {}
    for name, fresh in initial.items():
        value = params.get(name)
        part = name.split(".")
        if value is None:
            out[name] = fresh
            continue
        value = np.asarray(value, np.float64)
        if part[-2] == "reg":  # (..., C * 5 * J)
            grouped = value.reshape(*value.shape[:-1], -1, 5, j_from)
            mapped = np.einsum("rtj,...crj->...crt", weights, grouped)
            out[name] = mapped.reshape(np.shape(fresh))
        elif part[0] == "refine" and part[-1] == "kernel":  # rows: C probabilities, C*5*J
            classes = value.shape[0] // (1 + 5 * j_from)
            rows = value[classes:].reshape(classes, 5, j_from, -1)
            mapped = np.where(copied[:, None], rows[:, :, source], 0.0)
            out[name] = np.concatenate([value[:classes], mapped.reshape(-1, value.shape[-1])])
        elif part[0].startswith("joints"):  # (J, ...)
            mask = copied.reshape(-1, *[1] * (value.ndim - 1))
            out[name] = np.where(mask, value[source], np.asarray(fresh, np.float64))
        else:  # no joint axis
            out[name] = value
        out[name] = np.asarray(out[name], np.asarray(fresh).dtype)
    return out
