"""Inputs of the cross-checks against torchvision and the authors' PPI, from numpy seeds.

numpy only, so that `tests/data/make_reference_fixtures.py` builds the very same inputs
in an environment with torch (and without jax) and stores the reference outputs in
`tests/data/*.npz`; the tests rebuild the inputs here and compare lcrnet_jax's outputs
with the stored ones. Each fixture also stores the `fingerprint` of its inputs, so a
fixture older than a change of these generators fails loudly instead of comparing
unrelated arrays.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------
# Fingerprints
# ---------------------------------------------------------------------------------------


def fingerprint(*arrays) -> np.ndarray:
    """(3,) float64 summary of arrays: element count, sum, position-weighted sum.

    Any change of a generator (seed, shape, case) changes it; the last-bit drift of a
    transcendental function between numpy builds does not (compare with rtol 1e-9).
    """
    flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
    weights = 1.0 + np.arange(flat.size) % 97
    return np.array([flat.size, flat.sum(), flat @ weights])


def check_fresh(inputs_fingerprint, stored, fixture: str) -> None:
    """Fails naming tests/data/`fixture` and its maker when `stored`, the fingerprint in
    the fixture, is not `inputs_fingerprint`, today's inputs' (a generator changed)."""
    np.testing.assert_allclose(
        inputs_fingerprint,
        stored,
        rtol=1e-9,
        err_msg=f"stale tests/data/{fixture}: run tests/data/make_reference_fixtures.py",
    )


# ---------------------------------------------------------------------------------------
# RoIAlign (torchvision.ops.roi_align)
# ---------------------------------------------------------------------------------------

ROI_ALIGN_OUTPUT = (5, 4)  # (out_h, out_w), not square on purpose
ROI_ALIGN_SCALE = 1 / 16
ROI_ALIGN_RATIOS = (1, 2, 3)


def roi_align_case(seed: int = 3) -> dict[str, np.ndarray]:
    """Random features and boxes at stride 16, with border, empty and outside boxes.

    Returns:
      features (2, 20, 30, 4) NHWC, boxes (2, 32, 4) x1, y1, x2, y2 in input pixels
      (image 320 x 480; the first four per image have corners on cell borders), and a
      cotangent (2, 32, 5, 4, 4) for the gradient with respect to the features.
    """
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((2, 20, 30, 4)).astype(np.float32)
    xy = rng.uniform(-50, 480, (2, 32, 2))
    wh = rng.uniform(-5, 250, (2, 32, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    boxes[:, :4] = np.round(boxes[:, :4] / 16) * 16  # corners on cell borders
    boxes[0, 4] = 0.0  # a padded row
    boxes[0, 5] = [100.0, 100.0, 100.0, 100.0]  # empty
    boxes[1, 4] = [-200.0, -100.0, -20.0, -10.0]  # entirely outside
    boxes[1, 5] = [400.0, 250.0, 600.0, 400.0]  # across the bottom-right border
    boxes[1, 6] = [-40.0, -30.0, 60.0, 50.0]  # across the top-left border
    cotangent = rng.standard_normal((2, 32) + ROI_ALIGN_OUTPUT + (4,)).astype(np.float32)
    return {"features": features, "boxes": boxes, "cotangent": cotangent}


# ---------------------------------------------------------------------------------------
# NMS (torchvision.ops.nms and batched_nms)
# ---------------------------------------------------------------------------------------

NMS_THRESHOLDS = {"rpn": (0.3, 0.5, 0.7), "grid": (0.25, 0.5, 0.75)}
"""IoU thresholds per case. The grid's are exact in float32: torchvision compares the
float32 IoU with a float64 threshold, so an IoU of exactly 3/10 (float32 0.3000000119)
counts as > 0.3 there and not here; with thresholds exact in float32 both are exact."""


def nms_cases(seed: int = 6) -> dict[str, dict[str, np.ndarray]]:
    """Two box sets, each with scores and 4 classes.

    "rpn": 3000 random boxes of RPN sizes over a 1500-pixel image, uniform scores.
    "grid": 600 boxes with corners on a 5-pixel grid (duplicates, and pairs with an IoU
    of exactly 1/4, 1/2 or 3/4) and scores in eighths (many exact ties).
    """
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1200, (3000, 2))
    rpn = np.concatenate([xy, xy + rng.uniform(10, 300, (3000, 2))], -1)
    rpn_scores = rng.uniform(size=3000)
    xy = 5 * rng.integers(0, 40, (600, 2))
    grid = np.concatenate([xy, xy + 5 * rng.integers(2, 9, (600, 2))], -1)
    grid_scores = rng.integers(1, 9, 600) / 8
    return {
        name: {
            "boxes": boxes.astype(np.float32),
            "scores": scores.astype(np.float32),
            "classes": rng.integers(0, 4, len(scores)).astype(np.int32),
        }
        for name, boxes, scores in (("rpn", rpn, rpn_scores), ("grid", grid, grid_scores))
    }


# ---------------------------------------------------------------------------------------
# ResNet import (torchvision.models.resnet.ResNet with Bottleneck blocks)
# ---------------------------------------------------------------------------------------

RESNET_BLOCKS = (2, 1, 2, 1)  # a reduced-depth bottleneck ResNet, standard width 64


def random_torchvision_resnet(
    rng: np.random.Generator, blocks, width: int = 64, expansion: int = 4
) -> dict[str, np.ndarray]:
    """A torchvision-named bottleneck ResNet state dict with random weights (numpy).

    Non-trivial batch-norm statistics; a 10-class `fc`.
    """
    sd = {}

    def conv(name, cout, cin, k):
        sd[f"{name}.weight"] = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))

    def bn(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.5, 1.0, c)
        sd[f"{name}.bias"] = rng.normal(0, 0.1, c)
        sd[f"{name}.running_mean"] = rng.normal(0, 0.1, c)
        sd[f"{name}.running_var"] = rng.uniform(0.5, 2.0, c)
        sd[f"{name}.num_batches_tracked"] = np.array(7)

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    cin = width
    for s, n in enumerate(blocks):
        inner = width * 2**s
        for i in range(n):
            p = f"layer{s + 1}.{i}"
            conv(f"{p}.conv1", inner, cin, 1)
            bn(f"{p}.bn1", inner)
            conv(f"{p}.conv2", inner, inner, 3)
            bn(f"{p}.bn2", inner)
            conv(f"{p}.conv3", inner * expansion, inner, 1)
            bn(f"{p}.bn3", inner * expansion)
            if i == 0:
                conv(f"{p}.downsample.0", inner * expansion, cin, 1)
                bn(f"{p}.downsample.1", inner * expansion)
            cin = inner * expansion
    sd["fc.weight"] = rng.normal(size=(10, cin))
    sd["fc.bias"] = np.zeros(10)
    return {k: np.asarray(v, np.float32) for k, v in sd.items()}


def resnet_case(seed: int = 0) -> dict:
    """State dict of a `RESNET_BLOCKS` ResNet and an image (1, 3, 48, 64) NCHW."""
    rng = np.random.default_rng(seed)
    state_dict = random_torchvision_resnet(rng, RESNET_BLOCKS)
    image = rng.uniform(-2, 2, (1, 3, 48, 64)).astype(np.float32)
    return {"state_dict": state_dict, "image": image}


def resnet_fingerprint(case: dict) -> np.ndarray:
    """`fingerprint` of a `resnet_case` (weights in key order, then the image)."""
    sd = case["state_dict"]
    return fingerprint(*(sd[k] for k in sorted(sd)), case["image"])


# ---------------------------------------------------------------------------------------
# VGG16 import (torchvision.models.vgg16().features)
# ---------------------------------------------------------------------------------------

VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
"""Indices of torchvision's `vgg16().features` convolutions (conv1_1 ... conv5_3), written
from its layer list (conv, ReLU, ..., 2x2 max-pool after each stage), not from
`lcrnet_jax.model.weights`."""
VGG16_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG16_CONV4_3_CHANNELS = 64  # the fixture stores conv4_3's first channels only (size)


def random_torchvision_vgg16_features(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A torchvision-named VGG16 `features.*` state dict (the 13 convolutions, 14.7M
    parameters) with random float32 weights (He scale) and biases (numpy)."""
    sd, cin = {}, 3
    for index, cout in zip(VGG16_CONVS, VGG16_WIDTHS, strict=True):
        std = np.float32(np.sqrt(2.0 / (cin * 9)))
        sd[f"features.{index}.weight"] = rng.standard_normal((cout, cin, 3, 3), np.float32) * std
        sd[f"features.{index}.bias"] = rng.standard_normal(cout, np.float32) * np.float32(0.1)
        cin = cout
    return sd


def vgg16_case(seed: int = 1) -> dict:
    """State dict of VGG16's convolutions and an image (1, 3, 32, 48) NCHW."""
    rng = np.random.default_rng(seed)
    state_dict = random_torchvision_vgg16_features(rng)
    image = rng.uniform(-2, 2, (1, 3, 32, 48)).astype(np.float32)
    return {"state_dict": state_dict, "image": image}


def vgg16_fingerprint(case: dict) -> np.ndarray:
    """`fingerprint` of a `vgg16_case` (weights in key order, then the image)."""
    sd = case["state_dict"]
    return fingerprint(*(sd[k] for k in sorted(sd)), case["image"])


# ---------------------------------------------------------------------------------------
# PPI (the authors' LCRNet_PPI)
# ---------------------------------------------------------------------------------------

PPI_ANCHORS = 5  # K full-body anchor classes, then K upper-body ones: C = 2K + 1
PPI_SCENES = {
    # name: seed, (height, width), people, RoIs, joints, score quantum, background bias
    "crowd": (10, (240, 320), 5, 60, 13, None, 0.0),
    "ties": (11, (200, 300), 3, 60, 13, 1 / 64, 0.0),
    "lcr14": (12, (256, 256), 2, 60, 14, None, 0.0),
    "sparse": (13, (240, 320), 2, 60, 13, None, 6.0),  # < 500 pairs above 0.1 / (C - 1)
}
PPI_CONFIGS = {
    # name: keyword arguments of the authors' LCRNet_PPI (their names)
    "default": dict(
        th_pose3D=0.3, th_iou=0.2, iou_func="bbox", min_mode_score=0.05, th_persondetect=0.002
    ),
    "inthewild": dict(
        th_pose3D=0.04,
        th_iou=0.14,
        iou_func="bbox_torsohead",
        min_mode_score=0.05,
        th_persondetect=0.5,
    ),
    "loose": dict(
        th_pose3D=0.5, th_iou=0.05, iou_func="bbox", min_mode_score=0.2, th_persondetect=0.2
    ),
}


def ppi_scene(name: str) -> dict[str, np.ndarray]:
    """Per-RoI network outputs of one `PPI_SCENES` scene, as the LCR-Net head gives them.

    Each RoI looks at a person; every class regresses a pose of that person from one of
    its three 3D modes, with 1.5 cm 3D and 5 px 2D noise (lower limbs three times noisier
    for the upper-body classes); people may stand partly outside the image. 15% of the
    RoIs are clutter: a pose anywhere, mostly background. Probabilities are a softmax
    over C = 2K + 1 classes (class 0 background, raised by the scene's background bias),
    rounded up to the scene's quantum if it has one.

    Returns:
      boxes (R, 4) pixels, probs (R, C), poses2d (R, C, J, 2) pixels, poses3d
      (R, C, J, 3) metres, upper_body_classes (C,) bool, image_size (2,) (height, width).
    """
    seed, (height, width), people, rois, joints, quantum, background = PPI_SCENES[name]
    rng = np.random.default_rng(seed)
    classes = 2 * PPI_ANCHORS + 1
    upper = np.arange(classes) > PPI_ANCHORS
    modes = rng.normal(0, 0.25, (people, 1, joints, 3)) + rng.normal(
        0, 0.12, (people, 3, joints, 3)
    )
    centre = rng.uniform([-0.1 * width, 0.1 * height], [1.1 * width, 0.9 * height], (people, 2))
    scale = rng.uniform(60, 200, people)  # pixels per metre
    owner = rng.integers(0, people, rois)
    clutter = rng.random(rois) < 0.15
    mode = rng.integers(0, 3, (rois, classes))
    noise = np.where((np.arange(joints) < 4)[:, None] & upper[:, None, None], 3.0, 1.0)
    poses3d = modes[owner[:, None], mode] + 0.015 * noise * rng.normal(
        size=(rois, classes, joints, 3)
    )
    spot = np.where(
        clutter[:, None], rng.uniform([0, 0], [width, height], (rois, 2)), centre[owner]
    )
    poses2d = spot[:, None, None] + scale[owner, None, None, None] * poses3d[..., :2]
    poses2d = poses2d + 5.0 * noise[..., :1] * rng.normal(size=(rois, classes, joints, 2))
    lo, hi = poses2d.min(axis=(1, 2)), poses2d.max(axis=(1, 2))
    boxes = np.concatenate([lo, hi], -1) + rng.normal(0, 4.0, (rois, 4))
    logits = rng.normal(0, 1, (rois, classes))
    logits[:, 0] += background + 3.0 * clutter
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if quantum is not None:
        probs = np.ceil(probs / quantum) * quantum
    return {
        "boxes": boxes.astype(np.float32),
        "probs": probs.astype(np.float32),
        "poses2d": poses2d.astype(np.float32),
        "poses3d": poses3d.astype(np.float32),
        "upper_body_classes": upper,
        "image_size": np.array([height, width]),
    }


def ppi_scene_fingerprint(scene: dict[str, np.ndarray]) -> np.ndarray:
    """`fingerprint` of a `ppi_scene`."""
    return fingerprint(*(scene[k] for k in sorted(scene)))
