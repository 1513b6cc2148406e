"""LCR-Net: Localization-Classification-Regression network (LCR-Net++ Sec. 3, Figure 2).

Image -> trunk features (stride 16, or 8) -> RPN proposals -> RoI head -> for every proposal,
class probabilities over K anchor poses + background and a class-specific 2D-3D pose
regression, decoded into K pose proposals per box.

`LCRNet` exposes its stages as methods for `apply(..., method=...)` so the training step
owns ground truth and losses: `features`, `rpn`, `proposals`, `head`; `__call__` is the
inference path. The anchor poses live in the non-trainable "anchor_poses" collection
({"pose2d" (K, J, 2), "pose3d" (K, J, 3), "std" (5, J)}), so checkpoints and imported
models carry them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import geometry, ops, skeleton
from lcrnet_jax.model import backbones
from lcrnet_jax.model.lcr_head import HeadOutput, LCRHead
from lcrnet_jax.model.rpn import Proposals, RPNHead, generate_proposals

IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)
CAFFE_MEAN_BGR = (102.9801, 115.9465, 122.7717)
BACKBONES = ("resnet", "vgg16")


@dataclasses.dataclass(frozen=True)
class LCRNetConfig:
    """Everything that fixes the network's architecture and input normalisation.

    Attributes:
      backbone: "resnet" (C4: stem..res4 trunk, res5 in the head) or "vgg16".
      depth: ResNet depth (18, 34, 50, 101, 152).
      width: ResNet stem/base width (64 standard; e.g. 16 for the small model).
      stage_sizes: ResNet blocks per stage res2..res5, overriding the depth's.
      stride_in_1x1: bottleneck stride on the first 1x1 (Caffe2/Detectron weights).
      feature_stride: image pixels per trunk feature cell: 16 (the paper), or 8 for a
        ResNet whose res4 keeps res3's resolution (small inputs: more cells per person).
      norm: "frozen" (detection default), "batch" or "group"; see `backbones`.
      freeze_at: stages not trained: 0 none, 1 stem (conv1_x for VGG), 2 also res2
        (conv2_x), ... as Detectron's FREEZE_AT; no gradient flows back through them.
      num_classes: C = K + 1 (background first).
      num_joints: J.
      joint_set: joint-set name of the anchor poses (see `skeleton`).
      upper_body: the second half of the K anchors are upper-body twins (Sec. 4.2).
      anchor_margin: pose-box margin of the anchors' 2D normalisation.
      iterative: add the refinement stage (Sec. 3.4).
      joint_refinement: stages of joint refinement after the last estimate (beyond the
        paper: each joint moved in 2D and 3D by the trunk features read around it; see
        `lcr_head`); 0 for none.
      joint_grid: samples per side of the grid read around each joint (1: the joint).
      joint_heatmap: each joint's 2D offset also gets the soft-argmax of a local heatmap
        over the grid's samples (integral regression; `lcr_head.JointOffsets`); needs
        joint_grid >= 2.
      joint_classes: at inference, joint refinement moves the poses of the k most
        probable foreground classes of each RoI only (cheaper; the other classes keep
        their pose); 0 for every class. Training always refines the target class.
      joint_repeats: at inference, each joint refinement stage runs this many times,
        each time on the poses it moved (its features read again at the new joints);
        training runs it once.
      joint_polish: after PPI, each person's 2D joints move this many more times by the
        last joint refinement stage (`LCRNet.polish`): its features read at the
        integrated pose in every inference view (`flip_test`, `test_scales`), the moves
        averaged over the views; 0 for none. Needs joint_refinement >= 1.
      flip_test: at inference, also run the network on the mirrored images and append
        their proposals, mirrored back, to the image's (R doubles: the second half was
        seen mirrored; see `LCRNet.__call__`). Training is unchanged.
      test_scales: at inference, also run the network (with `flip_test`, both views) on
        the images resized by each of these factors (bilinear) and append their
        proposals, mapped back to the images' pixels: R grows (1 + len) times. PPI then
        integrates every view. Training is unchanged.
      roi_head: "res5" (ResNet C4: res5 per RoI, then average pooling) or "fc" (flatten
        the RoI features, two fully-connected layers of `fc_dim`); None: "res5" for
        ResNet, "fc" for VGG16. A small network trained from scratch learns much faster
        with "fc", which keeps the RoI's spatial layout.
      pixel_mean, pixel_std: per-channel normalisation in the network's channel order,
        applied to 0-255 pixels.
      bgr: the network takes BGR (the released Caffe2-trained models) instead of RGB.
      rpn_anchor_sizes, rpn_anchor_ratios: RPN anchors (A = sizes x ratios per cell).
      rpn_anchor_whole_pixels: anchors rounded to whole pixels as Detectron's
        `generate_anchors` rounds them (`ops.generate_rpn_anchors`): the released models'.
      rpn_channels: width of the RPN's 3x3 conv; None keeps the trunk's.
      rpn_pre_nms_train, rpn_post_nms_train, rpn_pre_nms_test, rpn_post_nms_test:
        proposals kept before / after NMS.
      rpn_nms_threshold: NMS IoU threshold of the proposals.
      rpn_min_size: minimum proposal width and height, pixels.
      proposal_border: proposals are clipped to the image enlarged by this fraction of
        its size on each side (0: to the image). A person cut by the border can then
        get a RoI of the whole body, beyond the image (`targets.ground_truth_boxes`'s
        `extent`); RoIAlign reads the features of the padding there (whose pixels are
        the mean colour, see `features`), and zeros beyond the canvas.
      roi_size: RoIAlign output size (14 for ResNet C4, 7 for VGG16).
      roi_sampling_ratio, roi_aligned, roi_pooling, roi_method: `ops.roi_align` options.
      roi_chunk: at inference, the head reads at most this many RoIs of each image at a
        time, in a loop over chunks of equal size: the same outputs (to float rounding)
        in far less memory (R50-C4 on two 800 x 1344 images, 1,000 RoIs each: 28 GB at
        once, 2.2 GB in chunks of 250 on a CPU; docs/speed.md); 0: every RoI at once.
        Training reads them at once.
      fc_dim: VGG16 fc6/fc7 width and the refinement's two layers' width.
      refine_dim: the refinement's fixed representation of the first estimate.
      dtype: compute dtype, "float32" or "bfloat16" (parameters stay float32).
    """

    backbone: str = "resnet"
    depth: int = 50
    width: int = 64
    stage_sizes: tuple[int, ...] | None = None
    stride_in_1x1: bool = False
    feature_stride: int = 16
    norm: str = "frozen"
    freeze_at: int = 2
    num_classes: int = 21
    num_joints: int = 13
    joint_set: str = "lcr13"
    upper_body: bool = True
    anchor_margin: float = 0.1
    iterative: bool = False
    joint_refinement: int = 0
    joint_grid: int = 2
    joint_heatmap: bool = False
    joint_classes: int = 0
    joint_repeats: int = 1
    joint_polish: int = 0
    flip_test: bool = False
    test_scales: tuple[float, ...] = ()
    roi_head: str | None = None
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN_RGB
    pixel_std: tuple[float, float, float] = IMAGENET_STD_RGB
    bgr: bool = False
    rpn_anchor_sizes: tuple[float, ...] = (32, 64, 128, 256, 512)
    rpn_anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_anchor_whole_pixels: bool = False
    rpn_channels: int | None = None
    rpn_pre_nms_train: int = 12000
    rpn_post_nms_train: int = 2000
    rpn_pre_nms_test: int = 6000
    rpn_post_nms_test: int = 1000
    rpn_nms_threshold: float = 0.7
    rpn_min_size: float = 0.0
    proposal_border: float = 0.0
    roi_size: int = 14
    roi_sampling_ratio: int = 2
    roi_aligned: bool = True
    roi_pooling: str = "avg"
    roi_method: str = "gather"
    roi_chunk: int = 250
    fc_dim: int = 2048
    refine_dim: int = 2048
    dtype: str = "float32"

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.backbone == "resnet":
            backbones.resnet_layout(self.depth, self.stage_sizes)
            if not (geometry.is_whole(self.width) and self.width >= 1):
                raise ValueError(f"width must be an int >= 1, got {self.width!r}")
        if self.feature_stride not in ((16, 8) if self.backbone == "resnet" else (16,)):
            raise ValueError(
                f"feature_stride must be 16, or 8 with a ResNet, got {self.feature_stride} "
                f"({self.backbone})"
            )
        if self.roi_head not in (None, "res5", "fc") or (
            self.backbone == "vgg16" and self.roi_head == "res5"
        ):
            raise ValueError(
                f"roi_head must be None, 'res5' (ResNet only) or 'fc', got {self.roi_head!r}"
            )
        if self.norm not in ("frozen", "batch", "group"):
            raise ValueError(f"norm must be 'frozen', 'batch' or 'group', got {self.norm!r}")
        if self.num_classes < 2 or (self.upper_body and (self.num_classes - 1) % 2):
            raise ValueError(
                f"num_classes must be K + 1 with K >= 1 (K even with upper_body), "
                f"got {self.num_classes}"
            )
        js = skeleton.get_joint_set(self.joint_set)
        if js.num_joints != self.num_joints:
            raise ValueError(
                f"num_joints {self.num_joints} does not match joint_set {self.joint_set!r} "
                f"({js.num_joints} joints)"
            )
        if not all(math.isfinite(s) and s > 0 for s in self.test_scales):
            raise ValueError(f"test_scales must be positive factors, got {self.test_scales!r}")
        if not (geometry.is_whole(self.joint_refinement) and self.joint_refinement >= 0):
            raise ValueError(f"joint_refinement must be an int >= 0, got {self.joint_refinement!r}")
        if not (geometry.is_whole(self.joint_grid) and self.joint_grid >= 1):
            raise ValueError(f"joint_grid must be an int >= 1, got {self.joint_grid!r}")
        if self.joint_heatmap and self.joint_grid < 2:
            raise ValueError(f"joint_heatmap needs joint_grid >= 2, got {self.joint_grid}")
        classes = self.joint_classes
        if not (geometry.is_whole(classes) and 0 <= classes < self.num_classes):
            raise ValueError(
                f"joint_classes must be an int in [0, {self.num_classes - 1}] (the foreground "
                f"classes), got {self.joint_classes!r}"
            )
        if not (geometry.is_whole(self.joint_repeats) and self.joint_repeats >= 1):
            raise ValueError(f"joint_repeats must be an int >= 1, got {self.joint_repeats!r}")
        if not (geometry.is_whole(self.joint_polish) and self.joint_polish >= 0):
            raise ValueError(f"joint_polish must be an int >= 0, got {self.joint_polish!r}")
        if self.joint_polish and not self.joint_refinement:
            raise ValueError("joint_polish needs a joint refinement stage (joint_refinement >= 1)")
        if not (geometry.is_whole(self.roi_chunk) and self.roi_chunk >= 0):
            raise ValueError(f"roi_chunk must be an int >= 0, got {self.roi_chunk!r}")
        if not (math.isfinite(self.proposal_border) and self.proposal_border >= 0):
            raise ValueError(f"proposal_border must be >= 0, got {self.proposal_border!r}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        if self.roi_pooling not in ("avg", "max"):
            raise ValueError(f"roi_pooling must be 'avg' or 'max', got {self.roi_pooling!r}")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3 or min(self.pixel_std) <= 0:
            raise ValueError(
                f"pixel_mean and pixel_std must be 3 values (std > 0), got {self.pixel_mean} "
                f"and {self.pixel_std}"
            )

    @property
    def num_anchor_poses(self) -> int:
        """K."""
        return self.num_classes - 1

    @property
    def num_rpn_anchors(self) -> int:
        """A, RPN anchors per feature cell."""
        return len(self.rpn_anchor_sizes) * len(self.rpn_anchor_ratios)

    @property
    def compute_dtype(self) -> Any:
        return jnp.dtype(self.dtype)


def resnet50_c4_config(**overrides) -> LCRNetConfig:
    """ResNet-50 C4 with torchvision ImageNet weights (RGB, ImageNet mean/std)."""
    return LCRNetConfig(**overrides)


def released_config(**overrides) -> LCRNetConfig:
    """The released LCR-Net++ models: R50-C4 Detectron, K = 10 + 10, J = 13, BGR caffe
    means without std, stride on the 1x1 convs, RoIAlign without the half-pixel offset,
    RPN anchors in whole pixels."""
    base = dict(
        num_classes=21,
        num_joints=13,
        upper_body=True,
        stride_in_1x1=True,
        pixel_mean=CAFFE_MEAN_BGR,
        pixel_std=(1.0, 1.0, 1.0),
        bgr=True,
        roi_aligned=False,
        rpn_anchor_whole_pixels=True,
    )
    return LCRNetConfig(**{**base, **overrides})


def vgg16_config(**overrides) -> LCRNetConfig:
    """The paper's VGG16 model: conv5_3 trunk, 7x7 RoIs, fc6/fc7 of 4096, K = 100, and
    "the same parameters as [9] for RPN" (Sec. 3.5), Faster R-CNN's: 9 anchors of 128,
    256 and 512 px, 300 proposals at test time, none smaller than 16 px; RoIAlign's 2 x 2
    samples of each cell max-pooled (Sec. 3.5)."""
    base = dict(
        backbone="vgg16",
        num_classes=101,
        upper_body=False,
        roi_size=7,
        roi_pooling="max",
        fc_dim=4096,
        rpn_anchor_sizes=(128, 256, 512),
        rpn_post_nms_test=300,
        rpn_min_size=16.0,
    )
    return LCRNetConfig(**{**base, **overrides})


def small_config(**overrides) -> LCRNetConfig:
    """A small ResNet (basic blocks, width 16, one block per stage, GroupNorm) for fast
    CPU training from scratch: the demo model."""
    base = dict(
        depth=18,
        width=16,
        stage_sizes=(1, 1, 1, 1),
        norm="group",
        freeze_at=0,
        rpn_pre_nms_train=1000,
        rpn_post_nms_train=300,
        rpn_pre_nms_test=500,
        rpn_post_nms_test=100,
        roi_size=8,
        roi_head="fc",
        roi_method="einsum",  # its backward is 3x faster than gather's on CPU here
        fc_dim=256,
        refine_dim=256,
    )
    return LCRNetConfig(**{**base, **overrides})


def anchor_boxes(config: LCRNetConfig, feature_size: tuple[int, int]) -> jax.Array:
    """(Hf * Wf * A, 4) RPN anchor boxes in pixels for a feature map, in the order of the
    outputs of `LCRNet.rpn` (a pure function of static values)."""
    return ops.generate_rpn_anchors(
        (int(feature_size[0]), int(feature_size[1])),
        stride=config.feature_stride,
        sizes=tuple(config.rpn_anchor_sizes),
        aspect_ratios=tuple(config.rpn_anchor_ratios),
        whole_pixels=config.rpn_anchor_whole_pixels,
    )


@flax.struct.dataclass
class PoseProposals:
    """The network's outputs on every proposal (padded rows: valid False).

    Attributes:
      boxes: (B, R, 4) proposal boxes x1, y1, x2, y2, pixels of the network input.
      objectness: (B, R) RPN objectness probabilities.
      probs: (B, R, C) class probabilities, class 0 = background.
      poses2d: (B, R, C, J, 2) pixels, one pose per class (row 0 meaningless).
      poses3d: (B, R, C, J, 3) metres, torso-centred, camera axes.
      valid: (B, R) bool.
      mirrored: (B, R) bool, the rows seen in the mirrored image (`config.flip_test`):
        their class k is anchor k mirrored.
    """

    boxes: jax.Array
    objectness: jax.Array
    probs: jax.Array
    poses2d: jax.Array
    poses3d: jax.Array
    valid: jax.Array
    mirrored: jax.Array


class LCRNet(nn.Module):
    """The LCR-Net++ network; see the module docstring for the methods."""

    config: LCRNetConfig

    def setup(self):
        c = self.config
        dtype = c.compute_dtype
        res5 = None
        if c.backbone == "vgg16":
            self.backbone = backbones.VGG16(frozen_stages=c.freeze_at, dtype=dtype)
        else:
            resnet = dict(
                depth=c.depth,
                width=c.width,
                stage_sizes=c.stage_sizes,
                stride_in_1x1=c.stride_in_1x1,
                norm=c.norm,
                dtype=dtype,
            )
            self.backbone = backbones.ResNet(
                last_stage=4,
                res4_stride=c.feature_stride // 8,
                frozen_stages=c.freeze_at,
                **resnet,
            )
            if c.roi_head != "fc":
                res5 = backbones.resnet_stage(5, parent=None, **resnet)
        self.rpn_head = RPNHead(
            num_rpn_anchors=c.num_rpn_anchors, channels=c.rpn_channels, dtype=dtype
        )
        self.lcr_head = LCRHead(
            num_classes=c.num_classes,
            num_joints=c.num_joints,
            pooler="res5" if res5 is not None else "fc",
            roi_size=c.roi_size,
            spatial_scale=1.0 / c.feature_stride,
            sampling_ratio=c.roi_sampling_ratio,
            aligned=c.roi_aligned,
            roi_pooling=c.roi_pooling,
            roi_method=c.roi_method,
            fc_dim=c.fc_dim,
            refine_dim=c.refine_dim,
            iterative=c.iterative,
            joint_stages=c.joint_refinement,
            joint_grid=c.joint_grid,
            joint_heatmap=c.joint_heatmap,
            joint_classes=c.joint_classes,
            joint_repeats=c.joint_repeats,
            res5=res5,
            dtype=dtype,
        )
        k, j = c.num_anchor_poses, c.num_joints
        self.anchor_pose2d = self.variable(
            "anchor_poses", "pose2d", jnp.zeros, (k, j, 2), jnp.float32
        )
        self.anchor_pose3d = self.variable(
            "anchor_poses", "pose3d", jnp.zeros, (k, j, 3), jnp.float32
        )
        self.anchor_std = self.variable("anchor_poses", "std", jnp.ones, (5, j), jnp.float32)

    def features(
        self, images: jax.Array, image_size: jax.Array | None = None, *, train: bool = False
    ) -> jax.Array:
        """Normalises images and computes the trunk features.

        Args:
          images: (B, H, W, 3) uint8 or float RGB in 0-255 (padding included).
          image_size: (B, 2) int (height, width) of each image's valid region: the
            padding beyond it is 0 once normalised (the mean colour), as Detectron and
            torchvision pad a batch, whatever its pixels; None: no padding.
          train: BatchNorm mode (only with `norm="batch"`).

        Returns:
          (B, Hf, Wf, C) features at stride s = `feature_stride` (Hf = ceil(H / s) for
          ResNet, floor(H / 16) for VGG16), compute dtype.
        """
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (B, H, W, 3) RGB, got shape {images.shape}")
        c = self.config
        x = images.astype(jnp.float32)
        if c.bgr:
            x = x[..., ::-1]
        x = (x - jnp.asarray(c.pixel_mean, jnp.float32)) / jnp.asarray(c.pixel_std, jnp.float32)
        if image_size is not None:
            size = jnp.asarray(image_size)[:, None, None, :]  # (B, 1, 1, 2)
            rows = jnp.arange(x.shape[1])[None, :, None] < size[..., 0]
            columns = jnp.arange(x.shape[2])[None, None, :] < size[..., 1]
            x = jnp.where((rows & columns)[..., None], x, 0.0)
        stages = self.backbone(x.astype(c.compute_dtype), train)
        return stages["conv5_3" if c.backbone == "vgg16" else "res4"]

    def rpn(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(objectness logits (B, N), box deltas (B, N, 4)), N = Hf * Wf * A ordered as
        `anchor_boxes(config, (Hf, Wf))`."""
        return self.rpn_head(features)

    def proposals(
        self,
        objectness: jax.Array,
        deltas: jax.Array,
        image_size: jax.Array,
        *,
        feature_size: tuple[int, int],
        train: bool,
    ) -> Proposals:
        """Proposals from RPN outputs (no parameters, no gradient).

        Args:
          objectness: (B, N) logits from `rpn`.
          deltas: (B, N, 4) from `rpn`.
          image_size: (B, 2) int (height, width) of each image's valid region.
          feature_size: (Hf, Wf) of the features given to `rpn` (static; N alone does
            not determine the anchor grid).
          train: use the training (True) or test top-k counts.

        Returns:
          Proposals with R = post-NMS count rows per image.
        """
        c = self.config
        return generate_proposals(
            objectness,
            deltas,
            anchor_boxes(c, feature_size),
            jnp.asarray(image_size),
            pre_nms_top_n=c.rpn_pre_nms_train if train else c.rpn_pre_nms_test,
            post_nms_top_n=c.rpn_post_nms_train if train else c.rpn_post_nms_test,
            nms_threshold=c.rpn_nms_threshold,
            min_size=c.rpn_min_size,
            border=c.proposal_border,
        )

    def head(
        self,
        features: jax.Array,
        rois: jax.Array,
        *,
        train: bool = False,
        classes: jax.Array | None = None,
        foreground_rois: int | None = None,
    ) -> list[HeadOutput]:
        """Head estimates on RoIs (B, R, 4): a list of `HeadOutput`, every estimate when
        `train` (first, then refined), else the last one only. `classes` (B, R): the
        RoIs' target classes in training, for joint refinement, and `foreground_rois`
        how many of the first RoIs can be foreground (see `LCRHead`)."""
        anchors = self._anchor_poses() if self.config.joint_refinement else None
        return self.lcr_head(
            features, rois, train=train, anchors=anchors, classes=classes,
            foreground_rois=foreground_rois,
        )  # fmt: skip

    def _head_in_chunks(self, features: jax.Array, rois: jax.Array) -> HeadOutput:
        """The head's last estimate at inference on RoIs (B, R, 4), reading at most
        `config.roi_chunk` RoIs of each image at a time: n = ceil(R / roi_chunk) chunks
        of ceil(R / n) RoIs (the last padded with zero boxes, whose rows are dropped)."""
        b, r = rois.shape[:2]
        if not self.config.roi_chunk or r <= self.config.roi_chunk:
            return self.head(features, rois)[-1]
        n = -(-r // self.config.roi_chunk)
        size = -(-r // n)
        rois = jnp.pad(rois, ((0, 0), (0, n * size - r), (0, 0)))
        chunks = rois.reshape(b, n, size, 4).swapaxes(0, 1)  # (n, B, size, 4)

        def one_chunk(model: LCRNet, carry: None, chunk: jax.Array):
            return carry, model.head(features, chunk)[-1]

        scan = nn.scan(one_chunk, variable_broadcast=True, split_rngs={"params": False}, length=n)
        _, out = scan(self, None, chunks)  # fields (n, B, size, ...)
        return jax.tree.map(
            lambda x: x.swapaxes(0, 1).reshape(b, n * size, *x.shape[3:])[:, :r], out
        )

    def initialize(self, images: jax.Array) -> list[HeadOutput]:
        """Runs every parameterised part once (no proposals/NMS): for cheap `init`."""
        feats = self.features(images)
        self.rpn(feats)
        h, w = images.shape[1:3]
        rois = jnp.broadcast_to(jnp.asarray([0.0, 0.0, w, h], jnp.float32), (len(images), 1, 4))
        return self.head(feats, rois, train=True)

    def _anchor_poses(self) -> anchors_lib.AnchorPoses:
        """The model's anchor poses, from the "anchor_poses" collection."""
        c = self.config
        return anchors_lib.AnchorPoses(
            pose2d=self.anchor_pose2d.value,
            pose3d=self.anchor_pose3d.value,
            std=self.anchor_std.value,
            joint_set=c.joint_set,
            margin=c.anchor_margin,
            twins=c.upper_body,
        )

    def __call__(self, images: jax.Array, image_size: jax.Array) -> PoseProposals:
        """Inference: pose proposals for every RPN proposal, from the last estimate.

        With `config.flip_test` the mirrored images go through the network in the same
        batch, and their proposals, mirrored back (boxes and poses; left and right
        joints swapped), follow the image's own: PPI then integrates both views. Their
        class k is anchor k seen in the mirrored image (`PoseProposals.mirrored`). With
        `config.test_scales` the images resized by each factor follow (each with its
        mirrored view), their boxes and 2D poses divided by the factor each axis was
        resized by (round(W * s) / W and round(H * s) / H for a (H, W) batch).

        Args:
          images: (B, H, W, 3) uint8 or float RGB 0-255, padded to a common size.
          image_size: (B, 2) int (height, width) of each image's valid region.

        Returns:
          PoseProposals with R = config.rpn_post_nms_test (or fewer if the image has
          fewer anchors) rows per view: twice as many with `flip_test`, (1 +
          len(test_scales)) times as many with `test_scales`.
        """
        views = []
        for scale, scaled, size in self._scaled(images, image_size):
            props = self._views(scaled, size)
            views.append(
                props.replace(boxes=props.boxes / jnp.tile(scale, 2), poses2d=props.poses2d / scale)
            )
        return jax.tree.map(lambda *rows: jnp.concatenate(rows, axis=1), *views)

    def polish(self, images: jax.Array, image_size: jax.Array, poses2d: jax.Array) -> jax.Array:
        """People's 2D poses moved `config.joint_polish` times by the last joint refinement
        stage (beyond the paper).

        PPI averages the poses of a mode's candidates, refined or not, from every view;
        each pass reads the features at the averaged joints in every view the network
        saw (the image, its mirror image with `flip_test`, each of `test_scales`) and
        moves them by the mean of the views' moves.

        Args:
          images: (B, H, W, 3) as in `__call__`.
          image_size: (B, 2) int (height, width) of each image's valid region.
          poses2d: (B, P, J, 2) pixels.

        Returns:
          (B, P, J, 2) pixels.
        """
        c = self.config
        b = images.shape[0]
        views = []
        for scale, scaled, size in self._scaled(images, image_size):
            width = jnp.asarray(size, jnp.float32)[:, 1, None, None, None]
            if c.flip_test:
                scaled = jnp.concatenate([scaled, mirror_images(scaled, size)])
                size = jnp.concatenate([size, size])
            views.append((scale, width, self.features(scaled, size)))
        flip = partial(skeleton.flip_poses, joint_set=c.joint_set)
        for _ in range(c.joint_polish):
            total = 0.0
            for scale, width, features in views:
                seen = poses2d * scale
                if c.flip_test:
                    seen = jnp.concatenate([seen, flip(seen, image_width=width)])
                seen = seen + self.lcr_head.joint_moves(features, seen)
                if c.flip_test:
                    seen = seen[:b] + flip(seen[b:], image_width=width)
                total = total + seen / scale
            poses2d = total / (len(views) * (2 if c.flip_test else 1))
        return poses2d

    def _scaled(self, images: jax.Array, image_size: jax.Array):
        """[(factors, images, image_size)]: the images, then resized by each of
        `config.test_scales` (bilinear); factors (2,) x, y: a resized (H, W) canvas has
        whole pixels, round(H * s) x round(W * s), so each axis has its own factor."""
        views = [(jnp.ones(2), images, image_size)]
        h, w = images.shape[1:3]
        for scale in self.config.test_scales:
            shape = (round(h * scale), round(w * scale))
            resized = jax.image.resize(
                images.astype(jnp.float32), (images.shape[0], *shape, images.shape[3]), "bilinear"
            )
            factors = jnp.asarray([shape[1] / w, shape[0] / h], jnp.float32)
            size = jnp.round(jnp.asarray(image_size) * factors[::-1]).astype(jnp.int32)
            views.append((factors, resized, size))
        return views

    def _views(self, images: jax.Array, image_size: jax.Array) -> PoseProposals:
        """The images' proposals, then with `flip_test` the mirrored images' mirrored
        back."""
        if not self.config.flip_test:
            return self._proposals(images, image_size)
        b = images.shape[0]
        both = self._proposals(
            jnp.concatenate([images, mirror_images(images, image_size)]),
            jnp.concatenate([image_size, image_size]),
        )
        seen = jax.tree.map(lambda x: x[:b], both)
        mirrored = _mirror_proposals(
            jax.tree.map(lambda x: x[b:], both), image_size, self.config.joint_set
        )
        return jax.tree.map(lambda x, y: jnp.concatenate([x, y], axis=1), seen, mirrored)

    def _proposals(self, images: jax.Array, image_size: jax.Array) -> PoseProposals:
        feats = self.features(images, image_size)
        objectness, deltas = self.rpn(feats)
        props = self.proposals(
            objectness, deltas, image_size, feature_size=feats.shape[1:3], train=False
        )
        out = self._head_in_chunks(feats, props.boxes)
        poses2d, poses3d = anchors_lib.decode_poses(
            out.regression, props.boxes, self._anchor_poses()
        )
        return PoseProposals(
            boxes=props.boxes,
            objectness=props.scores,
            probs=jax.nn.softmax(out.logits, axis=-1),
            poses2d=poses2d,
            poses3d=poses3d,
            valid=props.valid,
            mirrored=jnp.zeros_like(props.valid),
        )


def mirror_images(images: jax.Array, image_size: jax.Array) -> jax.Array:
    """(B, H, W, 3) images mirrored left-right within each one's valid width
    (`image_size` (B, 2) (height, width)); the padding stays where it is."""
    columns = jnp.arange(images.shape[2])
    width = jnp.asarray(image_size)[:, 1:]  # (B, 1)
    source = jnp.where(columns < width, width - 1 - columns, columns)  # (B, W)
    return jnp.take_along_axis(images, source[:, None, :, None], axis=2)


def _mirror_proposals(props: PoseProposals, image_size: jax.Array, joint_set: str):
    """Proposals of mirrored images mapped back to the images (see `mirror_images`)."""
    width = jnp.asarray(image_size, jnp.float32)[:, 1]  # (B,)
    boxes = props.boxes
    return props.replace(
        boxes=jnp.stack(
            [
                width[:, None] - boxes[..., 2],
                boxes[..., 1],
                width[:, None] - boxes[..., 0],
                boxes[..., 3],
            ],
            axis=-1,
        ),
        poses2d=skeleton.flip_poses(
            props.poses2d, joint_set, image_width=width[:, None, None, None, None]
        ),
        poses3d=skeleton.flip_poses(props.poses3d, joint_set),
        mirrored=jnp.ones_like(props.mirrored),
    )


def init_variables(
    config: LCRNetConfig,
    key: jax.Array,
    *,
    anchors: anchors_lib.AnchorPoses | None = None,
    image_size: tuple[int, int] = (64, 64),
) -> dict:
    """Fresh variables of `LCRNet(config)`: "params", "anchor_poses" (and "batch_stats").

    Args:
      config: the model.
      key: PRNG key of the initialisation.
      anchors: anchor poses to store (default: zero poses and unit std, to be replaced
        with `with_anchor_poses` before inference).
      image_size: (height, width) of the dummy image used for shapes.
    """
    model = LCRNet(config)
    images = jnp.zeros((1, *image_size, 3), jnp.float32)
    variables = dict(jax.jit(partial(model.init, method=LCRNet.initialize))(key, images))
    return variables if anchors is None else with_anchor_poses(variables, anchors)


def variable_shapes(config: LCRNetConfig) -> dict:
    """`jax.ShapeDtypeStruct`s of `init_variables(config, ...)`, computing nothing (e.g.
    restore targets for checkpoints, or weight-import targets)."""
    model = LCRNet(config)
    images = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    return dict(
        jax.eval_shape(partial(model.init, method=LCRNet.initialize), jax.random.key(0), images)
    )


def with_anchor_poses(variables: Mapping, anchors: anchors_lib.AnchorPoses) -> dict:
    """Variables with their "anchor_poses" collection replaced by `anchors`' arrays.

    Raises ValueError if the shapes differ from those the model was built with.
    """
    new = {"pose2d": anchors.pose2d, "pose3d": anchors.pose3d, "std": anchors.std}
    if "anchor_poses" not in variables:
        raise ValueError(f"variables have no 'anchor_poses' collection, only {list(variables)}")
    old = variables["anchor_poses"]
    for name, value in new.items():
        if np.shape(value) != np.shape(old[name]):
            raise ValueError(
                f"anchor {name} has shape {np.shape(value)}, the model expects "
                f"{np.shape(old[name])}"
            )
    out = dict(variables)
    out["anchor_poses"] = {k: jnp.asarray(v, jnp.float32) for k, v in new.items()}
    return out


def anchor_poses(variables: Mapping, config: LCRNetConfig) -> anchors_lib.AnchorPoses:
    """The `AnchorPoses` stored in `variables["anchor_poses"]` (static fields from `config`)."""
    a = variables["anchor_poses"]
    return anchors_lib.AnchorPoses(
        pose2d=jnp.asarray(a["pose2d"]),
        pose3d=jnp.asarray(a["pose3d"]),
        std=jnp.asarray(a["std"]),
        joint_set=config.joint_set,
        margin=config.anchor_margin,
        twins=config.upper_body,
    )


def _stage_index(path: tuple[str, ...]) -> int | None:
    """The Detectron stage number of a backbone/head parameter path, None if none."""
    if path[0] == "backbone":
        name = path[1]
        if name == "stem":
            return 1
        if name.startswith("res"):
            return int(name[3:])
        if name.startswith("conv"):  # VGG16 conv{s}_{i}
            return int(name[4 : name.index("_")])
    if path[:2] == ("lcr_head", "res5"):
        return 5
    return None


def trainable_mask(params: Mapping, config: LCRNetConfig) -> Any:
    """Pytree of bools over `params`: False for frozen BatchNorm tensors and for the
    stages up to `config.freeze_at` (for `optax.masked` / `optax.multi_transform`)."""

    def leaf(path, _):
        keys = tuple(getattr(p, "key", str(p)) for p in path)
        if config.norm == "frozen" and "bn" in keys:
            return False
        stage = _stage_index(keys)
        return stage is None or stage > config.freeze_at

    return jax.tree_util.tree_map_with_path(leaf, params)
