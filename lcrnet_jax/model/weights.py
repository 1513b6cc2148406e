"""Weight import: torchvision ImageNet backbones and the released LCR-Net++ models.

(a) torchvision ResNet-50/101 and VGG16 state dicts (`.pth` read with torch when
    installed, or an `.npz` of the same names) -> backbone params, for ImageNet
    initialisation (Sec. 3.5); `with_imagenet_backbone` puts them into an `LCRNet`.
(b) The released LCR-Net++ models (Detectron.pytorch R50-C4, K = 10 + 10, J = 13): a
    pickled dict {"model": state dict, "cfg": Detectron config, "anchor_poses": (K, 5J),
    "ppi_params": dict} -> `LCRNet` variables including the "anchor_poses" collection.
    Their pose regression is divided by 5 in the network (Detectron's regression
    weights), so the imported anchors carry std = 0.2 for every coordinate. Their 3D axes
    are not documented: `infer_3d_axes` reads them from the anchor poses and the import
    converts anchors and regression layers to ours (X right, Y down, Z forward).

torch is optional: it is imported only to read `.pth`/`.pkl` files that hold torch
tensors. Conversions work on numpy arrays; tests build state dicts in numpy.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from lcrnet_jax import ops, skeleton
from lcrnet_jax.data import npz
from lcrnet_jax.model import backbones
from lcrnet_jax.model import lcrnet as lcrnet_lib

# Detectron's pose regression is `linear(x) / 5` (its BBOX_REG_WEIGHT): std = 1 / 5.
RELEASED_REGRESSION_STD = 0.2
_BN_TORCHVISION = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
_MAX_LISTED = 8


# A rule for one Flax leaf: (torch name, layout) to read a tensor, or (None, value) for a
# leaf without a tensor (the statistics of Detectron's AffineChannel layers).
_Rule = tuple[str | None, Any]


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _from_torch(value: np.ndarray, layout: str) -> np.ndarray:
    if layout == "conv":  # OIHW -> HWIO
        return value.transpose(2, 3, 1, 0)
    if layout == "linear":  # (out, in) -> (in, out)
        return value.T
    if layout == "linear_chw7":  # (out, C*7*7) on CHW-flattened input -> (7*7*C, out)
        out = value.shape[0]
        return value.reshape(out, -1, 7, 7).transpose(2, 3, 1, 0).reshape(-1, out)
    return value


def _to_torch(value: np.ndarray, layout: str) -> np.ndarray:
    if layout == "conv":
        return value.transpose(3, 2, 0, 1)
    if layout == "linear":
        return value.T
    if layout == "linear_chw7":
        out = value.shape[-1]
        return value.reshape(7, 7, -1, out).transpose(3, 2, 0, 1).reshape(out, -1)
    return value


def _flatten(tree: Mapping, prefix: tuple = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict:
    out: dict = {}
    for path, v in flat.items():
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return out


def _listing(kind: str, items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"{kind} {len(items)}: {shown}{more}"


def _convert(
    state_dict: Mapping[str, Any],
    target: Mapping[tuple[str, ...], Any],
    rule: Callable[[tuple[str, ...]], _Rule],
    *,
    what: str,
    ignore: Callable[[str], bool] = lambda name: False,
) -> dict[tuple[str, ...], np.ndarray]:
    """Reads every target leaf from the state dict; one ValueError listing all problems."""
    out, used, missing, misshaped = {}, set(), [], []
    for path, leaf in target.items():
        name, layout = rule(path)
        if name is None:
            out[path] = np.broadcast_to(np.asarray(layout, np.float32), leaf.shape).copy()
            continue
        if name not in state_dict:
            missing.append(name)
            continue
        used.add(name)
        value = _from_torch(_to_numpy(state_dict[name]), layout)
        if value.shape != tuple(leaf.shape):
            torch_shape = tuple(_to_torch(np.empty(leaf.shape), layout).shape)
            misshaped.append(f"{name} {tuple(_to_numpy(state_dict[name]).shape)} != {torch_shape}")
            continue
        out[path] = value.astype(np.float32)
    unexpected = sorted(n for n in state_dict if n not in used and not ignore(n))
    problems = [
        _listing(kind, items)
        for kind, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped (got != expected)", misshaped),
        )
        if items
    ]
    if problems:
        raise ValueError(f"state dict does not match {what}: " + "; ".join(problems))
    return out


def random_weights(shapes: Any, *, seed: int = 0, scale: float = 0.05) -> Any:
    """Random numpy values for a tree of shapes, e.g. `jax.eval_shape(model.init, ...)`.

    Normal(0, scale) everywhere except normalisation variances ("var" leaves), which are
    1. For tests and benchmarks: it compiles nothing (an `init` under jit compiles every
    initialiser, tens of seconds for a ResNet on CPU); it is not a training init.
    """
    rng = np.random.default_rng(seed)

    def leaf(path, s):
        if getattr(path[-1], "key", None) == "var":
            return np.ones(s.shape, np.float32)
        return rng.normal(0.0, scale, s.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


# ---------------------------------------------------------------------------- files


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a torch state dict from `.pth`/`.pt` (needs torch) or `.npz` as numpy arrays."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weight file not found: {path}")
    if path.endswith(".npz"):
        return npz.read_npz(path, "weight file")
    if path.endswith((".pth", ".pt")):
        torch = _import_torch(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and "state_dict" in state:
            state = state["state_dict"]
        return {k: _to_numpy(v) for k, v in state.items()}
    raise ValueError(f"{path}: expected a .pth, .pt or .npz state dict")


def _import_torch(path: str):
    try:
        import torch
    except ImportError:
        raise ValueError(
            f"{path} holds torch tensors: install torch to read it, or convert it to .npz"
        ) from None
    return torch


# ---------------------------------------------------------------------------- torchvision


def _resnet_target(depth: int, width: int, stage_sizes) -> dict[tuple[str, ...], Any]:
    model = backbones.ResNet(depth=depth, width=width, stage_sizes=stage_sizes, last_stage=5)
    shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))
    return _flatten(shapes["params"])


def _torchvision_rule(path: tuple[str, ...]) -> _Rule:
    if path[0] == "stem":
        conv, bn = "conv1", "bn1"
    else:
        layer = f"layer{int(path[0][3:]) - 1}.{int(path[1][5:])}"
        unit = path[2]
        if unit == "shortcut":
            conv, bn = f"{layer}.downsample.0", f"{layer}.downsample.1"
        else:
            conv, bn = f"{layer}.{unit}", f"{layer}.bn{unit[4:]}"
    if path[-1] == "kernel":
        return f"{conv}.weight", "conv"
    return f"{bn}.{_BN_TORCHVISION[path[-1]]}", "vector"


def _torchvision_ignored(name: str) -> bool:
    return name.startswith("fc.") or name.endswith("num_batches_tracked")


def resnet_params_from_torchvision(
    state_dict: Mapping[str, Any],
    depth: int = 50,
    *,
    width: int = 64,
    stage_sizes: tuple[int, ...] | None = None,
) -> dict:
    """torchvision `resnet{depth}` state dict -> params of `ResNet(depth, last_stage=5)`.

    Frozen-BatchNorm layout: each BN's weight, bias, running_mean, running_var become
    "bn" {"scale", "bias", "mean", "var"}. The classifier (fc.*) is ignored.

    Args:
      state_dict: name -> array (numpy or torch) with torchvision's names.
      depth: 50 or 101 (any `backbones.RESNET_LAYOUTS` depth).
      width, stage_sizes: for non-standard ResNets (see `backbones.ResNet`).

    Returns:
      Nested params {"stem": ..., "res2": ..., ..., "res5": ...} of numpy float32.

    Raises:
      ValueError listing missing, unexpected and mis-shaped tensors.
    """
    flat = _convert(
        state_dict,
        _resnet_target(depth, width, stage_sizes),
        _torchvision_rule,
        what=f"torchvision ResNet-{depth}",
        ignore=_torchvision_ignored,
    )
    return _unflatten(flat)


def _export(params: Mapping, rule: Callable[[tuple[str, ...]], _Rule]) -> dict:
    out = {}
    for path, value in _flatten(params).items():
        name, layout = rule(path)
        out[name] = _to_torch(np.asarray(value), layout)
    return out


def resnet_params_to_torchvision(params: Mapping) -> dict[str, np.ndarray]:
    """The inverse of `resnet_params_from_torchvision` (without fc.*), numpy arrays."""
    return _export(params, _torchvision_rule)


# torchvision vgg16: our layer -> its module (features.i are the convs, classifier.0/3
# fc6/fc7; fc6 reads the 7x7x512 pool5 flattened in CHW order).
_VGG16_NAMES = {
    **dict(
        zip(
            (
                f"conv{s}_{i}"
                for s, w in enumerate(backbones.VGG16_STAGES, 1)
                for i in range(1, len(w) + 1)
            ),
            (f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)),
            strict=True,
        )
    ),
    "fc6": "classifier.0",
    "fc7": "classifier.3",
}


def _vgg16_rule(path: tuple[str, ...]) -> _Rule:
    module = _VGG16_NAMES[path[0]]
    if path[-1] == "bias":
        return f"{module}.bias", "vector"
    return f"{module}.weight", {"fc6": "linear_chw7", "fc7": "linear"}.get(path[0], "conv")


def _vgg16_target() -> dict[tuple[str, ...], Any]:
    x = np.zeros((1, 32, 32, 3), np.float32)
    convs = jax.eval_shape(backbones.VGG16().init, jax.random.key(0), x)["params"]
    fc = {
        "fc6": {"kernel": (7 * 7 * 512, 4096), "bias": (4096,)},
        "fc7": {"kernel": (4096, 4096), "bias": (4096,)},
    }
    fc = jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s, np.float32), fc, is_leaf=lambda v: isinstance(v, tuple)
    )
    return _flatten({**convs, **fc})


def vgg16_params_from_torchvision(state_dict: Mapping[str, Any]) -> dict:
    """torchvision `vgg16` state dict -> {"conv1_1".."conv5_3" (`VGG16` params), "fc6",
    "fc7" (the LCR head's fc layers on 7x7 RoIs)}; the last classifier is ignored.

    Raises ValueError listing missing, unexpected and mis-shaped tensors.
    """
    flat = _convert(
        state_dict,
        _vgg16_target(),
        _vgg16_rule,
        what="torchvision VGG16",
        ignore=lambda name: name.startswith("classifier.6."),
    )
    return _unflatten(flat)


def vgg16_params_to_torchvision(params: Mapping) -> dict[str, np.ndarray]:
    """The inverse of `vgg16_params_from_torchvision` (without classifier.6)."""
    return _export(params, _vgg16_rule)


def with_imagenet_backbone(
    variables: Mapping, backbone_params: Mapping, config: lcrnet_lib.LCRNetConfig
) -> dict:
    """`LCRNet` variables with ImageNet weights in the trunk and the head: ResNet stem..res4
    in the trunk and res5 in the head (from `resnet_params_from_torchvision`), or VGG16
    conv1_1..conv5_3 in the trunk and fc6, fc7 in the head (`vgg16_params_from_torchvision`).

    Raises ValueError if a part is missing or a shape differs.
    """
    if config.backbone == "resnet":
        parts = {"stem": "backbone", "res2": "backbone", "res3": "backbone",
                 "res4": "backbone", "res5": "lcr_head"}  # fmt: skip
    else:
        parts = {name: "lcr_head" if name.startswith("fc") else "backbone" for name in _VGG16_NAMES}
    params = dict(variables["params"])
    dest = {"backbone": dict(params["backbone"]), "lcr_head": dict(params["lcr_head"])}
    for part, where in parts.items():
        if part not in backbone_params:
            raise ValueError(f"ImageNet params have no {part!r}; got {sorted(backbone_params)}")
        old_shapes = jax.tree_util.tree_map(np.shape, dest[where][part])
        new_shapes = jax.tree_util.tree_map(np.shape, backbone_params[part])
        if old_shapes != new_shapes:
            raise ValueError(f"ImageNet {part} shapes {new_shapes} differ from the model's")
        dest[where][part] = backbone_params[part]
    return {**variables, "params": {**params, **dest}}


# ---------------------------------------------------------------------------- 3D axes


def infer_3d_axes(pose2d: np.ndarray, pose3d: np.ndarray, joint_set: str = "lcr13") -> np.ndarray:
    """Signed permutation M taking a model's 3D axes to ours: `ours = theirs @ M.T`.

    The image axes come from the 2D anchors (x right, y down): the 3D axis most
    correlated with image x becomes X, with image y becomes Y, signs included. The depth
    axis is the remaining one; its sign is fixed by anatomy, which orthographic 2D cannot
    give: with Z forward, the body's front is F = (left - right) x (up), and bent knees
    point to the front (summed over all anchors and both legs).

    Args:
      pose2d: (K, J, 2) 2D anchors (any per-anchor offset and positive scale).
      pose3d: (K, J, 3) the matching 3D anchors in the unknown axes.
      joint_set: their joint set.

    Returns:
      (3, 3) float32 matrix with one +-1 per row and column.

    Raises:
      ValueError if an image axis matches no 3D axis clearly, or no knee is bent.
    """
    js = skeleton.get_joint_set(joint_set)
    p2 = np.asarray(pose2d, np.float64)
    p3 = np.asarray(pose3d, np.float64)
    if p2.ndim != 3 or p3.shape != (*p2.shape[:2], 3) or p2.shape[1:] != (js.num_joints, 2):
        raise ValueError(
            f"anchors must be (K, {js.num_joints}, 2) and (K, {js.num_joints}, 3), got "
            f"{p2.shape} and {p3.shape}"
        )
    p2 = p2 - p2.mean(axis=1, keepdims=True)
    p2 = p2 / np.linalg.norm(p2, axis=(1, 2), keepdims=True)  # per-anchor scale
    p3 = p3 - p3.mean(axis=1, keepdims=True)
    p3 = p3 / np.linalg.norm(p3, axis=(1, 2), keepdims=True)
    corr = np.einsum("kji,kjd->id", p2, p3)
    corr = corr / np.sqrt(np.einsum("kji->i", p2**2)[:, None] * np.einsum("kjd->d", p3**2))
    m = np.zeros((3, 3))
    free = [0, 1, 2]
    for row in (0, 1):
        axis = free[int(np.argmax(np.abs(corr[row, free])))]
        if abs(corr[row, axis]) < 0.5:
            raise ValueError(
                f"cannot match image axis {'xy'[row]} to a 3D axis (correlations "
                f"{np.round(corr[row], 2).tolist()})"
            )
        m[row, axis] = np.sign(corr[row, axis])
        free.remove(axis)
    m[2, free[0]] = 1.0
    ours = np.asarray(pose3d, np.float64) @ m.T
    if _knee_front_score(ours, js) < 0:
        m[2] = -m[2]
    return m.astype(np.float32)


def _knee_front_score(poses3d: np.ndarray, js: skeleton.JointSet) -> float:
    """Mean signed distance (m) of the knees in front of the hip-ankle lines, front
    computed assuming right-handed axes X right, Y down, Z forward."""
    j = lambda name: poses3d[:, js.index(name)]  # noqa: E731
    left = j("left_hip") + j("left_shoulder") - j("right_hip") - j("right_shoulder")
    up = j("left_shoulder") + j("right_shoulder") - j("left_hip") - j("right_hip")
    front = np.cross(left, up)
    front /= np.maximum(np.linalg.norm(front, axis=-1, keepdims=True), 1e-9)
    bend = [j(f"{s}_knee") - 0.5 * (j(f"{s}_hip") + j(f"{s}_ankle")) for s in ("left", "right")]
    score = float(np.mean([np.sum(b * front, axis=-1) for b in bend]))
    if abs(score) < 1e-3:
        raise ValueError(
            "cannot infer the depth direction of the 3D anchors: no knee is bent by 1 mm"
        )
    return score


# ---------------------------------------------------------------------------- released


def _detectron_unit(path: tuple[str, ...]) -> tuple[str, str]:
    """(conv name, affine name) of a ResNet unit path (stage, block, unit, ...)."""
    stage = int(path[0][3:])
    prefix = f"res{stage}.{int(path[1][5:])}"
    unit = path[2]
    if unit == "shortcut":
        return f"{prefix}.downsample.0", f"{prefix}.downsample.1"
    return f"{prefix}.{unit}", f"{prefix}.bn{unit[4:]}"


def _released_rule(path: tuple[str, ...]) -> _Rule:
    top, rest = path[0], path[1:]
    if top == "rpn_head":
        layer = {"conv": "RPN_conv", "cls": "RPN_cls_score", "bbox": "RPN_bbox_pred"}[rest[0]]
        name = f"RPN.{layer}"
        return (f"{name}.weight", "conv") if rest[-1] == "kernel" else (f"{name}.bias", "vector")
    if top == "lcr_head" and rest[0] == "predict":
        name = "Pose_Outs." + {"cls": "cls_score", "reg": "pose_pred"}[rest[1]]
        return (f"{name}.weight", "linear") if rest[-1] == "kernel" else (f"{name}.bias", "vector")
    if rest[0] == "stem":
        conv, bn = "Conv_Body.res1.conv1", "Conv_Body.res1.bn1"
    else:
        body = "Conv_Body" if top == "backbone" else "Box_Head"
        conv, bn = (f"{body}.{n}" for n in _detectron_unit(rest))
    leaf = rest[-1]
    if leaf == "kernel":
        return f"{conv}.weight", "conv"
    if leaf in ("scale", "bias"):
        return f"{bn}.{'weight' if leaf == 'scale' else 'bias'}", "vector"
    # AffineChannel layers have no statistics: mean 0, var 1 - eps make them exact.
    return None, 0.0 if leaf == "mean" else 1.0 - backbones.BN_EPSILON


def _cfg_get(cfg: Any, *keys: str, default: Any = None) -> Any:
    node = cfg
    for k in keys:
        if not isinstance(node, Mapping) or k not in node:
            return default
        node = node[k]
    return node


def _released_config(cfg: Mapping, num_classes: int, num_joints: int, twins: bool):
    joint_sets = {13: "lcr13", 14: "lcr14", 17: "lcr17"}
    if num_joints not in joint_sets:
        raise ValueError(f"released anchor poses have {num_joints} joints, expected 13/14/17")
    body = _cfg_get(cfg, "MODEL", "CONV_BODY", default="ResNet50_conv4_body")
    # Detectron.pytorch names the function with its module ("ResNet.ResNet50_conv4_body"),
    # Caffe2 Detectron with an "add_" too ("ResNet.add_ResNet50_conv4_body").
    body = str(body).rsplit(".", 1)[-1].removeprefix("add_")
    if body not in ("ResNet50_conv4_body", "ResNet101_conv4_body"):
        raise ValueError(f"released model body {body!r}: only ResNet50/101 C4 are supported")
    overrides = dict(
        num_classes=num_classes,
        num_joints=num_joints,
        joint_set=joint_sets[num_joints],
        upper_body=twins,
        depth=101 if "101" in body else 50,
        stride_in_1x1=bool(_cfg_get(cfg, "RESNETS", "STRIDE_1X1", default=True)),
        roi_size=int(_cfg_get(cfg, "FAST_RCNN", "ROI_XFORM_RESOLUTION", default=14)),
        rpn_pre_nms_test=int(_cfg_get(cfg, "TEST", "RPN_PRE_NMS_TOP_N", default=6000)),
        rpn_post_nms_test=int(_cfg_get(cfg, "TEST", "RPN_POST_NMS_TOP_N", default=1000)),
        rpn_nms_threshold=float(_cfg_get(cfg, "TEST", "RPN_NMS_THRESH", default=0.7)),
    )
    for key, field in (("SIZES", "rpn_anchor_sizes"), ("ASPECT_RATIOS", "rpn_anchor_ratios")):
        value = _cfg_get(cfg, "RPN", key)
        if value is not None:
            overrides[field] = tuple(float(v) for v in value)
    means = _cfg_get(cfg, "PIXEL_MEANS")
    if means is not None:
        overrides["pixel_mean"] = tuple(float(v) for v in np.ravel(means))
    ratio = int(_cfg_get(cfg, "FAST_RCNN", "ROI_XFORM_SAMPLING_RATIO", default=2))
    # 0, Detectron's adaptive grid (ceil(RoI size / bins) points per bin), is read as 2:
    # with static shapes every RoI needs the largest RoI's grid (6 x 6 points a bin for a
    # 1,333 px RoI at stride 16), and an exact version with 8 x 8 did not finish one call
    # on 1,000 RoIs within 10 min on 2 CPU cores, where 2 x 2 points take 2.7 s.
    overrides["roi_sampling_ratio"] = ratio if ratio > 0 else 2
    if _cfg_get(cfg, "FAST_RCNN", "ROI_XFORM_METHOD", default="RoIAlign") == "RoIPoolF":
        overrides["roi_pooling"] = "max"
    return lcrnet_lib.released_config(**overrides)


def _rpn_anchor_permutation(config: lcrnet_lib.LCRNetConfig) -> np.ndarray:
    """perm[a] = Detectron's index of our anchor a within a cell (Detectron enumerates
    aspect ratios, then sizes; ours follow `ops.generate_rpn_anchors`)."""
    ours = np.asarray(
        ops.generate_rpn_anchors(
            (1, 1),
            stride=config.feature_stride,
            sizes=config.rpn_anchor_sizes,
            aspect_ratios=config.rpn_anchor_ratios,
        )
    )
    wh = ours[:, 2:] - ours[:, :2]
    log_ratio = np.log(wh[:, 1] / wh[:, 0])
    log_size = 0.5 * np.log(wh[:, 0] * wh[:, 1])
    theirs = np.array(
        [(np.log(r), np.log(s)) for r in config.rpn_anchor_ratios for s in config.rpn_anchor_sizes]
    )
    dist = (log_ratio[:, None] - theirs[None, :, 0]) ** 2 + (
        log_size[:, None] - theirs[None, :, 1]
    ) ** 2
    perm = np.argmin(dist, axis=1)
    if len(set(perm.tolist())) != len(perm):
        raise ValueError("RPN anchors do not match Detectron's one to one")
    return perm


def released_variables(
    model_file: Mapping[str, Any],
    config: lcrnet_lib.LCRNetConfig | None = None,
    *,
    axes: np.ndarray | None = None,
) -> tuple[lcrnet_lib.LCRNetConfig, dict]:
    """A released LCR-Net++ model dict -> (config, `LCRNet` variables).

    Args:
      model_file: {"model": Detectron.pytorch state dict, "anchor_poses": (K, 5 J)
        [x(J), y(J), X(J), Y(J), Z(J)] per anchor, optional "cfg": Detectron config}.
      config: the model's config; default: `lcrnet.released_config` adjusted to the
        file's anchors (K, J, twins) and config.
      axes: (3, 3) signed permutation of the file's 3D axes to ours; default
        `infer_3d_axes` on its anchor poses.

    Returns:
      (config, {"params": ..., "anchor_poses": ...}) with numpy leaves.

    Raises:
      ValueError listing missing / unexpected / mis-shaped tensors, or on bad anchors.
    """
    for key in ("model", "anchor_poses"):
        if key not in model_file:
            raise ValueError(
                f"released model file has no {key!r} entry; keys: {sorted(model_file)}"
            )
    raw = _to_numpy(model_file["anchor_poses"]).astype(np.float32)
    if raw.ndim != 2 or raw.shape[1] % 5:
        raise ValueError(f"anchor_poses must be (K, 5 J), got {raw.shape}")
    k, j = raw.shape[0], raw.shape[1] // 5
    per_coord = raw.reshape(k, 5, j)
    pose2d = per_coord[:, :2].transpose(0, 2, 1)
    pose3d_theirs = per_coord[:, 2:].transpose(0, 2, 1)
    twins = k % 2 == 0 and np.allclose(pose3d_theirs[: k // 2], pose3d_theirs[k // 2 :])
    if config is None:
        config = _released_config(model_file.get("cfg") or {}, k + 1, j, twins)
    if config.backbone != "resnet" or config.iterative or config.norm != "frozen":
        raise ValueError(
            "released models are ResNet C4 with frozen BN and no iterative head; got "
            f"backbone={config.backbone!r}, iterative={config.iterative}, norm={config.norm!r}"
        )
    if config.num_classes != k + 1 or config.num_joints != j:
        raise ValueError(
            f"config has {config.num_classes} classes / {config.num_joints} joints, the "
            f"file's anchors give {k + 1} / {j}"
        )
    m = infer_3d_axes(pose2d, pose3d_theirs, config.joint_set) if axes is None else axes
    m = np.asarray(m, np.float32)
    if (
        m.shape != (3, 3)
        or not np.allclose(np.abs(m).sum(0), 1)
        or not np.allclose(np.abs(m).sum(1), 1)
    ):
        raise ValueError(f"axes must be a (3, 3) signed permutation, got {m.tolist()}")

    shapes = lcrnet_lib.variable_shapes(config)
    flat = _convert(
        {n: v for n, v in model_file["model"].items()},
        _flatten(shapes["params"]),
        _released_rule,
        what=f"released LCR-Net (R{config.depth}-C4, C={config.num_classes}, J={j})",
    )
    perm = _rpn_anchor_permutation(config)
    cls = ("rpn_head", "cls")
    bbox = ("rpn_head", "bbox")
    flat[(*cls, "kernel")] = flat[(*cls, "kernel")][..., perm]
    flat[(*cls, "bias")] = flat[(*cls, "bias")][perm]
    order = (perm[:, None] * 4 + np.arange(4)).reshape(-1)
    flat[(*bbox, "kernel")] = flat[(*bbox, "kernel")][..., order]
    flat[(*bbox, "bias")] = flat[(*bbox, "bias")][order]
    reg = ("lcr_head", "predict", "reg")
    flat[(*reg, "kernel")] = _rotate_regression(flat[(*reg, "kernel")], m, config)
    flat[(*reg, "bias")] = _rotate_regression(flat[(*reg, "bias")], m, config)
    anchors = {
        "pose2d": pose2d,
        "pose3d": (pose3d_theirs @ m.T).astype(np.float32),
        "std": np.full((5, j), RELEASED_REGRESSION_STD, np.float32),
    }
    return config, {"params": _unflatten(flat), "anchor_poses": anchors}


def _rotate_regression(w: np.ndarray, m: np.ndarray, config) -> np.ndarray:
    """Applies the axis change to the X, Y, Z rows of a (..., C * 5 * J) regression layer."""
    lead = w.shape[:-1]
    w = w.reshape(*lead, config.num_classes, 5, config.num_joints)
    xyz = np.einsum("id,...cdj->...cij", m, w[..., 2:, :])
    return np.concatenate([w[..., :2, :], xyz], axis=-2).reshape(*lead, -1).astype(np.float32)


class _AttrDict(dict):
    """Stands for the configs' AttrDict classes (Detectron's `utils.collections`)."""


# What the released pickles hold: containers, numpy arrays and torch tensors.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "bytearray"), ("builtins", "complex"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy.dtypes", "Float32DType"), ("numpy.dtypes", "Float64DType"),
    ("numpy.dtypes", "Int64DType"), ("numpy.dtypes", "Int32DType"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch.storage", "_load_from_bytes"),
}  # fmt: skip


class _ReleasedUnpickler(pickle.Unpickler):
    """A pickle reader that builds only `_ALLOWED_GLOBALS` (and maps any `AttrDict` to a
    plain dict subclass): a crafted model file cannot run code. Anything else raises
    `pickle.UnpicklingError` naming the forbidden global."""

    def find_class(self, module: str, name: str):
        if name == "AttrDict":
            return _AttrDict
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"forbidden global {module}.{name}: a released model file holds only "
                "containers, numpy arrays and torch tensors"
            )
        return super().find_class(module, name)


def load_released(
    path: str | os.PathLike, config: lcrnet_lib.LCRNetConfig | None = None
) -> tuple[lcrnet_lib.LCRNetConfig, dict, dict]:
    """Reads a released LCR-Net++ `.pkl` (a pickle read by `_ReleasedUnpickler`, which
    builds nothing but containers, arrays and tensors; needs torch when it holds torch
    tensors) or an `.npz` with "anchor_poses" and the state dict's
    names (flat) -> (config, variables, the file's PPI parameters)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"released model file not found: {path}")
    if path.endswith(".npz"):
        arrays = npz.read_npz(path, "released model file")
        model_file = {"anchor_poses": arrays.pop("anchor_poses", None), "model": arrays}
        if model_file["anchor_poses"] is None:
            raise ValueError(f"{path} has no 'anchor_poses' array")
    elif path.endswith(".pkl"):
        try:
            with open(path, "rb") as f:
                model_file = _ReleasedUnpickler(f).load()
        except ModuleNotFoundError as e:
            if e.name == "torch":
                _import_torch(path)
            raise
        except (pickle.UnpicklingError, EOFError) as error:
            raise pickle.UnpicklingError(
                f"{path} is not a released model file (a pickle): {error or 'empty file'}"
            ) from error
        if not isinstance(model_file, Mapping):
            raise ValueError(f"{path} does not hold a dict, got {type(model_file).__name__}")
    else:
        raise ValueError(f"{path}: expected a released model .pkl or an .npz")
    config, variables = released_variables(model_file, config)
    return config, variables, dict(model_file.get("ppi_params") or {})
