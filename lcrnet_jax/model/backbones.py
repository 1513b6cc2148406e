"""Convolutional backbones: ResNet (C4 split), VGG16 and a small ResNet (LCR-Net++ Sec. 3.5).

The paper uses VGG16 (conv5_3 at stride 16) and ResNet-50 in the Faster/Mask R-CNN C4
layout: stem + res2-res4 form the shared trunk at stride 16, res5 runs on each RoI in
the head. All modules are NHWC and return a dict of named stages.

Normalisation layers (`norm`):
  - "frozen": frozen BatchNorm, the detection default: an affine transform from stored
    statistics, never updated. Its four tensors live in "params" (so imported weights
    and checkpoints carry them) and `lcrnet.trainable_mask` excludes them from training.
    At apply time the transform is folded into the preceding convolution's kernel and
    bias, so the forward pass is one convolution per layer.
  - "batch": trainable BatchNorm with running statistics in "batch_stats".
  - "group": GroupNorm, stateless, for training small models from scratch.
  - "none": no normalisation, the convolution has a bias (VGG16).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

NORMS = ("frozen", "batch", "group", "none")
BN_EPSILON = 1e-5

# depth -> (block type, blocks per stage res2..res5)
RESNET_LAYOUTS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

# torchvision's init: kaiming normal, fan_out, gain sqrt(2).
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class FrozenBatchNorm(nn.Module):
    """BatchNorm with fixed statistics: y = (x - mean) / sqrt(var + eps) * scale + bias.

    The tensors are parameters (frozen by the optimizer mask, not by this module) with
    the torchvision names' meaning: scale = weight, bias, mean = running_mean,
    var = running_var.
    """

    epsilon: float = BN_EPSILON

    @nn.compact
    def affine(self, channels: int) -> tuple[jax.Array, jax.Array]:
        """Returns the per-channel (multiplier, offset), each (channels,) float32."""
        scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        mean = self.param("mean", nn.initializers.zeros, (channels,), jnp.float32)
        var = self.param("var", nn.initializers.ones, (channels,), jnp.float32)
        mult = scale * jax.lax.rsqrt(var + self.epsilon)
        return mult, bias - mean * mult

    def __call__(self, x: jax.Array) -> jax.Array:
        mult, offset = self.affine(x.shape[-1])
        return x * mult.astype(x.dtype) + offset.astype(x.dtype)


class ConvNorm(nn.Module):
    """k x k convolution (torch-style symmetric padding (k - 1) / 2) + norm + optional ReLU.

    Params: "kernel" (k, k, C_in, C_out) and, by `norm`, "bn" (frozen or batch), "gn"
    (group) or "bias" (none).
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    norm: str = "frozen"
    relu: bool = True
    kernel_init: Callable = _conv_init
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        k = self.kernel_size
        kernel = self.param(
            "kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32
        )
        bias = None
        if self.norm == "frozen":
            mult, bias = FrozenBatchNorm(name="bn").affine(self.features)
            kernel = kernel * mult
        elif self.norm == "none":
            bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        # XLA:CPU runs a 1x1 convolution 1.1-2.6x faster as a matrix product (ResNet-50's
        # forward: 1.1-1.25x faster; benchmarks/model_bench.py, 2-core CPU, 2026-12-04).
        if k == 1:
            s = self.strides
            y = jnp.einsum("bhwc,cd->bhwd", x[:, ::s, ::s], kernel[0, 0])
        else:
            if x.shape[-1] == 3:
                # XLA:CPU (YNNPACK) runs a convolution on 3 channels 3-10x slower at some
                # output widths: ResNet's 7x7 stem at 20-32 and 80 (width 24, batch 8 at
                # 128 px: 36 ms, against 4 ms with a zero fourth channel). The fourth
                # channel costs 1.1-1.35x at the fast widths (16, 48, 64), about 1% of
                # ResNet-50's forward; VGG16's conv1_1 ran 1.1-1.35x faster with it.
                x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, 1)))
                kernel = jnp.pad(kernel, ((0, 0), (0, 0), (0, 1), (0, 0)))
            pad = (k - 1) // 2
            y = jax.lax.conv_general_dilated(
                x,
                kernel,
                window_strides=(self.strides, self.strides),
                padding=((pad, pad), (pad, pad)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
        if bias is not None:
            y = y + bias.astype(self.dtype)
        elif self.norm == "batch":
            y = nn.BatchNorm(
                use_running_average=not train,
                momentum=0.9,
                epsilon=BN_EPSILON,
                dtype=self.dtype,
                name="bn",
            )(y)
        else:
            y = nn.GroupNorm(num_groups=_num_groups(self.features), dtype=self.dtype, name="gn")(y)
        return nn.relu(y) if self.relu else y


def _num_groups(channels: int) -> int:
    """GroupNorm groups: 32 when possible, at least 4 channels a group."""
    groups = min(32, max(1, channels // 4))
    while channels % groups:
        groups -= 1
    return groups


class ResBlock(nn.Module):
    """Residual block with a projection shortcut when the shape changes.

    Bottleneck (ResNet-50+): 1x1 -> 3x3 -> 1x1 (x4 channels), the stride on the 3x3
    convolution (torchvision) or on the first 1x1 with `stride_in_1x1` (the MSRA/Caffe2
    models used by Detectron). Basic (ResNet-18/34, small models): two 3x3 convolutions.
    Params: "conv1", "conv2" ("conv3"), "shortcut" (`ConvNorm`s).
    """

    features: int
    strides: int = 1
    bottleneck: bool = True
    stride_in_1x1: bool = False
    norm: str = "frozen"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = lambda f, k, s, relu, name: ConvNorm(  # noqa: E731
            f, k, s, norm=self.norm, relu=relu, dtype=self.dtype, name=name
        )
        f = self.features
        if self.bottleneck:
            s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
            out = 4 * f
            y = conv(f, 1, s1, True, "conv1")(x, train)
            y = conv(f, 3, s3, True, "conv2")(y, train)
            y = conv(out, 1, 1, False, "conv3")(y, train)
        else:
            out = f
            y = conv(f, 3, self.strides, True, "conv1")(x, train)
            y = conv(f, 3, 1, False, "conv2")(y, train)
        if self.strides != 1 or x.shape[-1] != out:
            x = conv(out, 1, self.strides, False, "shortcut")(x, train)
        return nn.relu(y + x.astype(y.dtype))


class ResStage(nn.Module):
    """One ResNet stage: `num_blocks` blocks, the first one with `strides`.

    Params: "block0", "block1", ... each a `ResBlock`.
    """

    block: str
    num_blocks: int
    features: int
    strides: int = 2
    stride_in_1x1: bool = False
    norm: str = "frozen"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {self.block!r}")
        for i in range(self.num_blocks):
            x = ResBlock(
                self.features,
                self.strides if i == 0 else 1,
                bottleneck=self.block == "bottleneck",
                stride_in_1x1=self.stride_in_1x1,
                norm=self.norm,
                dtype=self.dtype,
                name=f"block{i}",
            )(x, train)
        return x


def resnet_layout(depth: int, stage_sizes: Sequence[int] | None = None) -> tuple[str, tuple]:
    """(block type, blocks per stage res2..res5) of a ResNet depth, blocks overridable."""
    if depth not in RESNET_LAYOUTS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_LAYOUTS)}, got {depth}")
    block, sizes = RESNET_LAYOUTS[depth]
    if stage_sizes is not None:
        if len(stage_sizes) != 4 or min(stage_sizes) < 1:
            raise ValueError(f"stage_sizes must be 4 positive block counts, got {stage_sizes}")
        sizes = tuple(stage_sizes)
    return block, sizes


def resnet_stage(
    stage: int,
    *,
    depth: int = 50,
    width: int = 64,
    stage_sizes: Sequence[int] | None = None,
    strides: int | None = None,
    stride_in_1x1: bool = False,
    norm: str = "frozen",
    dtype: Any = jnp.float32,
    **module_kwargs,
) -> ResStage:
    """The `ResStage` res{stage} (2..5) of a ResNet, e.g. res5 for the C4 RoI head.

    Args:
      stage: 2, 3, 4 or 5.
      depth, width, stage_sizes: the ResNet (see `ResNet`).
      strides: stride of its first block (default 1 for res2, else 2).
      stride_in_1x1, norm, dtype: as in `ResNet`.
      **module_kwargs: Flax module arguments (name, parent).
    """
    if stage not in (2, 3, 4, 5):
        raise ValueError(f"ResNet stage must be 2, 3, 4 or 5, got {stage}")
    block, sizes = resnet_layout(depth, stage_sizes)
    return ResStage(
        block=block,
        num_blocks=sizes[stage - 2],
        features=width * 2 ** (stage - 2),
        strides=(1 if stage == 2 else 2) if strides is None else strides,
        stride_in_1x1=stride_in_1x1,
        norm=norm,
        dtype=dtype,
        **module_kwargs,
    )


def resnet_out_channels(stage: int, *, depth: int = 50, width: int = 64) -> int:
    """Channels of the output of res{stage} (1 = stem)."""
    block, _ = resnet_layout(depth)
    if stage == 1:
        return width
    return width * 2 ** (stage - 2) * (4 if block == "bottleneck" else 1)


class ResNet(nn.Module):
    """ResNet backbone, torchvision layout (Detectron's with `stride_in_1x1`).

    Attributes:
      depth: 18, 34 (basic blocks), 50, 101, 152 (bottlenecks).
      width: stem channels and res2 base width (64 for the standard models); stage s
        has base width `width * 2**(s - 2)`.
      stage_sizes: blocks per stage res2..res5, overriding the depth's (small models).
      last_stage: the last stage computed (4 for the C4 trunk, 5 for the full network).
      res4_stride: stride of res4's first block: 2 (standard), or 1 for a stride-8 res4
        (a finer trunk for small inputs).
      stride_in_1x1: stride on the first 1x1 convolution of bottlenecks (Caffe2 models).
      norm: "frozen", "batch", "group" (see the module docstring).
      frozen_stages: the stem (1) and stages up to res{frozen_stages} are not trained:
        no gradient flows back through them, so their backward pass is not computed.
      dtype: compute dtype; parameters are float32.

    Returns from `__call__`: {"stem": stride 4, "res2": 4, "res3": 8, "res4": 16,
    "res5": 32} (res4 8 and res5 16 with `res4_stride` 1) up to `last_stage`, each
    (B, H', W', C') NHWC.
    """

    depth: int = 50
    width: int = 64
    stage_sizes: tuple[int, ...] | None = None
    last_stage: int = 5
    res4_stride: int = 2
    stride_in_1x1: bool = False
    norm: str = "frozen"
    frozen_stages: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        if self.last_stage not in (2, 3, 4, 5):
            raise ValueError(f"last_stage must be 2..5, got {self.last_stage}")
        y = ConvNorm(self.width, 7, 2, norm=self.norm, dtype=self.dtype, name="stem")(x, train)
        y = nn.max_pool(y, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        y = _frozen(y, 1, self.frozen_stages)
        out = {"stem": y}
        for stage in range(2, self.last_stage + 1):
            name = f"res{stage}"
            y = resnet_stage(
                stage,
                depth=self.depth,
                width=self.width,
                stage_sizes=self.stage_sizes,
                strides=self.res4_stride if stage == 4 else None,
                stride_in_1x1=self.stride_in_1x1,
                norm=self.norm,
                dtype=self.dtype,
                name=name,
            )(y, train)
            y = out[name] = _frozen(y, stage, self.frozen_stages)
        return out


def _frozen(y: jax.Array, stage: int, frozen_stages: int) -> jax.Array:
    """`y`, the output of stage `stage`, without gradient if the stage is frozen."""
    return jax.lax.stop_gradient(y) if stage <= frozen_stages else y


VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Module):
    """VGG16 convolutions up to conv5_3 (stride 16: no pooling after conv5_3).

    Params: "conv1_1" ... "conv5_3", each a 3x3 kernel and bias.
    Returns from `__call__`: {"conv1_2": stride 1, "conv2_2": 2, "conv3_3": 4,
    "conv4_3": 8, "conv5_3": 16}. A 2x2 max-pool (floor) precedes stages 2-5. Stages up
    to `frozen_stages` (conv{s}_x) pass no gradient back (see `ResNet`).
    """

    frozen_stages: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        out = {}
        for s, widths in enumerate(VGG16_STAGES, start=1):
            if s > 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            for i, w in enumerate(widths, start=1):
                x = ConvNorm(w, 3, 1, norm="none", dtype=self.dtype, name=f"conv{s}_{i}")(x)
            x = out[f"conv{s}_{len(widths)}"] = _frozen(x, s, self.frozen_stages)
        return out
