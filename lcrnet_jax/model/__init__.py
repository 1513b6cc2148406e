"""The LCR-Net++ network (Sec. 3): backbones, RPN, LCR heads, the full model, weight import."""

from lcrnet_jax.model.backbones import VGG16, FrozenBatchNorm, ResNet, ResStage, resnet_stage
from lcrnet_jax.model.lcr_head import HeadOutput, LCRHead, PoseRegressor
from lcrnet_jax.model.lcrnet import (
    LCRNet,
    LCRNetConfig,
    PoseProposals,
    anchor_boxes,
    anchor_poses,
    init_variables,
    released_config,
    resnet50_c4_config,
    small_config,
    trainable_mask,
    variable_shapes,
    vgg16_config,
    with_anchor_poses,
)
from lcrnet_jax.model.rpn import Proposals, RPNHead, generate_proposals

__all__ = [
    "VGG16",
    "FrozenBatchNorm",
    "HeadOutput",
    "LCRHead",
    "LCRNet",
    "LCRNetConfig",
    "PoseProposals",
    "PoseRegressor",
    "Proposals",
    "RPNHead",
    "ResNet",
    "ResStage",
    "anchor_boxes",
    "anchor_poses",
    "generate_proposals",
    "init_variables",
    "released_config",
    "resnet50_c4_config",
    "resnet_stage",
    "small_config",
    "trainable_mask",
    "variable_shapes",
    "vgg16_config",
    "with_anchor_poses",
]
