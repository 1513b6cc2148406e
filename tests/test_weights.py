import os
import pickle
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax import geometry, ops
from lcrnet_jax.model import lcrnet, weights

# A standing LCR-13 pose facing the camera in our axes (X right, Y down, Z forward): its
# right joints at -X, its front towards -Z, knees bent forward by 8 cm.
_POSE = np.array(
    [
        [-0.1, 0.9, 0.0], [0.1, 0.9, 0.0], [-0.1, 0.45, -0.08], [0.1, 0.45, -0.08],
        [-0.1, 0.0, 0.0], [0.1, 0.0, 0.0], [-0.25, 0.0, -0.05], [0.25, 0.0, -0.05],
        [-0.22, -0.25, 0.02], [0.22, -0.25, 0.02], [-0.18, -0.5, 0.0], [0.18, -0.5, 0.0],
        [0.0, -0.7, -0.03],
    ],
    np.float64,
)  # fmt: skip


def _anchors_ours(k=10, seed=0):
    """K anchors in our axes: the pose turned about the vertical axis, plus noise."""
    rng = np.random.default_rng(seed)
    rot = geometry.rotation_matrix(jnp.asarray(rng.uniform(-np.pi, np.pi, k)), 0.0)
    pose3d = np.asarray(geometry.rotate(_POSE, rot), np.float64)
    pose3d = pose3d + rng.normal(0, 0.01, pose3d.shape)
    pose3d = np.asarray(geometry.center_on_torso(pose3d))
    lo, hi = pose3d[..., :2].min(1, keepdims=True), pose3d[..., :2].max(1, keepdims=True)
    pose2d = (pose3d[..., :2] - lo) / (hi - lo)  # orthographic, normalised in its box
    return pose2d.astype(np.float32), pose3d.astype(np.float32)


# Foreign axes: theirs = ours @ T.T for a signed permutation T (ours = theirs @ T).
_FOREIGN = {
    "y_up_z_back": np.diag([1.0, -1.0, -1.0]),
    "y_up_left_handed": np.diag([1.0, -1.0, 1.0]),
    "z_up_permuted": np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
    "ours": np.eye(3),
}


@pytest.mark.parametrize("name", sorted(_FOREIGN))
def test_infer_3d_axes_recovers_our_camera_axes(name):
    pose2d, pose3d = _anchors_ours()
    t = _FOREIGN[name]
    theirs = pose3d @ t.T
    m = weights.infer_3d_axes(pose2d, theirs)
    np.testing.assert_allclose(m, t.T, atol=0)
    np.testing.assert_allclose(theirs @ m.T, pose3d, atol=1e-6)


def test_infer_3d_axes_refuses_straight_legs():
    pose2d, pose3d = _anchors_ours()
    knees = [2, 3]
    pose3d[:, knees] = 0.5 * (pose3d[:, [4, 5]] + pose3d[:, [0, 1]])
    with pytest.raises(ValueError, match="depth direction"):
        weights.infer_3d_axes(pose2d, pose3d)


# ------------------------------------------------------------------ torchvision


def _resnet_shapes(depth):
    from lcrnet_jax.model import backbones

    model = backbones.ResNet(depth=depth)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    return shapes["params"]


@pytest.fixture(scope="module")
def r50():
    """Random ResNet-50 params and their torchvision state dict."""
    params = weights.random_weights(_resnet_shapes(50))
    return params, weights.resnet_params_to_torchvision(params)


def test_torchvision_round_trip_and_names(r50):
    params, sd = r50
    sd = dict(sd)
    assert len(sd) == 265  # torchvision resnet50 minus fc.* and num_batches_tracked
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer3.5.bn3.running_var"].shape == (1024,)
    assert sd["layer4.0.downsample.0.weight"].shape == (2048, 1024, 1, 1)
    np.testing.assert_array_equal(
        sd["layer2.1.conv2.weight"],
        params["res3"]["block1"]["conv2"]["kernel"].transpose(3, 2, 0, 1),
    )
    bn = params["res4"]["block2"]["conv3"]["bn"]  # var is 1, the other leaves are not
    for ours, theirs in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean")):
        np.testing.assert_array_equal(sd[f"layer3.2.bn3.{theirs}"], bn[ours])
    np.testing.assert_array_equal(sd["layer3.2.bn3.running_var"], 1.0)
    sd["fc.weight"] = np.zeros((1000, 2048), np.float32)
    sd["bn1.num_batches_tracked"] = np.array(0)
    back = weights.resnet_params_from_torchvision(sd, 50)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, params)


def test_bad_state_dict_lists_missing_unexpected_and_misshaped(r50):
    sd = dict(r50[1])
    del sd["layer1.0.conv1.weight"]
    sd["layer9.0.conv1.weight"] = np.zeros(3)
    sd["bn1.running_mean"] = np.zeros(65)
    with pytest.raises(ValueError) as e:
        weights.resnet_params_from_torchvision(sd, 50)
    msg = str(e.value)
    assert "missing 1: layer1.0.conv1.weight" in msg
    assert "unexpected 1: layer9.0.conv1.weight" in msg
    assert "bn1.running_mean (65,) != (64,)" in msg
    with pytest.raises(ValueError, match="missing"):
        weights.resnet_params_from_torchvision(sd, 101)  # ResNet-101 needs more blocks


def test_state_dict_files(tmp_path, r50):
    sd = r50[1]
    np.savez(tmp_path / "r50.npz", **sd)
    back = weights.load_state_dict(tmp_path / "r50.npz")
    assert set(back) == set(sd)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        weights.load_state_dict(tmp_path / "nope.pth")
    (tmp_path / "w.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.npz"):
        weights.load_state_dict(tmp_path / "w.bin")


def test_imagenet_backbone_goes_to_trunk_and_head(r50):
    config = lcrnet.resnet50_c4_config()
    shapes = lcrnet.variable_shapes(config)
    resnet = r50[0]
    out = weights.with_imagenet_backbone(shapes, resnet, config)
    assert out["params"]["backbone"]["res4"] is resnet["res4"]
    assert out["params"]["lcr_head"]["res5"] is resnet["res5"]
    assert out["params"]["rpn_head"] is shapes["params"]["rpn_head"]
    assert "anchor_poses" in out
    with pytest.raises(ValueError, match="res3"):
        weights.with_imagenet_backbone(shapes, {**resnet, "res3": resnet["res2"]}, config)


def test_vgg16_fc6_reads_our_hwc_flattened_rois():
    rng = np.random.default_rng(0)
    pool5 = rng.normal(size=(512, 7, 7))  # one RoI, torch's CHW
    w = rng.normal(size=(5, 512 * 7 * 7))  # fc6 with 5 outputs, torch layout
    kernel = weights._from_torch(w, "linear_chw7")
    np.testing.assert_allclose(pool5.transpose(1, 2, 0).reshape(-1) @ kernel, w @ pool5.reshape(-1))
    np.testing.assert_array_equal(weights._to_torch(kernel, "linear_chw7"), w)


@pytest.mark.slow
def test_vgg16_round_trip_and_placement():
    config = lcrnet.vgg16_config()
    shapes = lcrnet.variable_shapes(config)
    params = {**shapes["params"]["backbone"]}
    params.update({k: shapes["params"]["lcr_head"][k] for k in ("fc6", "fc7")})
    params = weights.random_weights(params)
    sd = weights.vgg16_params_to_torchvision(params)
    assert sd["features.28.weight"].shape == (512, 512, 3, 3)
    assert sd["classifier.0.weight"].shape == (4096, 25088)
    sd["classifier.6.weight"] = np.zeros((1000, 4096), np.float32)
    back = weights.vgg16_params_from_torchvision(sd)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, params)
    out = weights.with_imagenet_backbone(shapes, back, config)
    assert out["params"]["lcr_head"]["fc6"] is back["fc6"]
    assert out["params"]["backbone"]["conv5_3"] is back["conv5_3"]


# ------------------------------------------------------------------ released models


def _detectron_state_dict(rng, num_classes=21, num_joints=13, anchors=15):
    """Detectron.pytorch LCR-Net R50-C4 names and shapes, written from its source."""
    sd = {}

    def conv(name, cout, cin, k, bias=False):
        sd[f"{name}.weight"] = rng.normal(0, 0.05, (cout, cin, k, k))
        if bias:
            sd[f"{name}.bias"] = rng.normal(0, 0.05, cout)

    def affine(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c)
        sd[f"{name}.bias"] = rng.normal(0, 0.1, c)

    conv("Conv_Body.res1.conv1", 64, 3, 7)
    affine("Conv_Body.res1.bn1", 64)
    cin = 64
    for stage, blocks in zip((2, 3, 4, 5), (3, 4, 6, 3), strict=True):
        body = "Box_Head" if stage == 5 else "Conv_Body"
        inner = 64 * 2 ** (stage - 2)
        for i in range(blocks):
            p = f"{body}.res{stage}.{i}"
            for n, (co, ci, k) in enumerate(
                ((inner, cin, 1), (inner, inner, 3), (4 * inner, inner, 1)), start=1
            ):
                conv(f"{p}.conv{n}", co, ci, k)
                affine(f"{p}.bn{n}", co)
            if i == 0:
                conv(f"{p}.downsample.0", 4 * inner, cin, 1)
                affine(f"{p}.downsample.1", 4 * inner)
            cin = 4 * inner
    conv("RPN.RPN_conv", 1024, 1024, 3, bias=True)
    conv("RPN.RPN_cls_score", anchors, 1024, 1, bias=True)
    conv("RPN.RPN_bbox_pred", 4 * anchors, 1024, 1, bias=True)
    sd["Pose_Outs.cls_score.weight"] = rng.normal(size=(num_classes, 2048))
    sd["Pose_Outs.cls_score.bias"] = rng.normal(size=num_classes)
    sd["Pose_Outs.pose_pred.weight"] = rng.normal(size=(num_classes * 5 * num_joints, 2048))
    sd["Pose_Outs.pose_pred.bias"] = rng.normal(size=num_classes * 5 * num_joints)
    return {k: v.astype(np.float32) for k, v in sd.items()}


@pytest.fixture(scope="module")
def released():
    """A fake released model in 'y_up_z_back' axes, 10 + 10 anchors, and its import."""
    rng = np.random.default_rng(0)
    pose2d, pose3d = _anchors_ours(10)
    t = _FOREIGN["y_up_z_back"]
    upper2d = pose2d.copy()
    upper2d[..., 1] = pose2d[..., 1] * 2.0 - 0.3  # a different 2D normalisation
    p2 = np.concatenate([pose2d, upper2d])
    p3 = np.concatenate([pose3d, pose3d]) @ t.T
    raw = np.concatenate([p2.transpose(0, 2, 1), p3.transpose(0, 2, 1)], axis=1)  # (K, 5, J)
    model_file = {
        "model": _detectron_state_dict(rng),
        "anchor_poses": raw.reshape(20, 65),
        # Detectron.pytorch's spelling of the body: the function with its module.
        "cfg": {
            "MODEL": {"CONV_BODY": "ResNet.ResNet50_conv4_body"},
            "TEST": {"RPN_POST_NMS_TOP_N": 300},
        },
        "ppi_params": {"th_pose3D": 0.3},
    }
    config, variables = weights.released_variables(model_file)
    return model_file, config, variables, (p2, p3 @ t)


def test_released_import_config_and_anchors(released):
    model_file, config, variables, (pose2d, pose3d_ours) = released
    assert config.num_classes == 21 and config.num_joints == 13 and config.upper_body
    assert config.bgr and config.stride_in_1x1 and config.rpn_post_nms_test == 300
    # What the cfg leaves out is Detectron's test defaults.
    assert (config.rpn_pre_nms_test, config.rpn_nms_threshold) == (6000, 0.7)
    assert (config.roi_size, config.roi_sampling_ratio) == (14, 2)
    assert config.pixel_mean == lcrnet.CAFFE_MEAN_BGR
    assert config.depth == 50
    # Detectron's anchors: the size 32, ratio 2 anchor is 22 x 44 pixels, not 22.6 x 45.3.
    box = np.asarray(lcrnet.anchor_boxes(config, (1, 1)))[10]
    np.testing.assert_allclose(box[2:] - box[:2], [22.0, 44.0], atol=1e-4)
    caffe2 = {**model_file, "cfg": {"MODEL": {"CONV_BODY": "ResNet.add_ResNet50_conv4_body"}}}
    assert weights.released_variables(caffe2)[0].depth == 50
    a = variables["anchor_poses"]
    np.testing.assert_allclose(a["pose2d"], pose2d, atol=1e-6)
    np.testing.assert_allclose(a["pose3d"], pose3d_ours, atol=1e-6)
    np.testing.assert_allclose(a["std"], 0.2)
    # the result is a complete, correctly shaped variable set for LCRNet(config)
    shapes = lcrnet.variable_shapes(config)
    got = jax.tree_util.tree_map(np.shape, variables)
    assert got == jax.tree_util.tree_map(lambda s: s.shape, shapes)


def test_released_import_places_and_converts_tensors(released):
    model_file, config, variables, _ = released
    sd, p = model_file["model"], variables["params"]
    np.testing.assert_array_equal(
        p["backbone"]["stem"]["kernel"], sd["Conv_Body.res1.conv1.weight"].transpose(2, 3, 1, 0)
    )
    bn = p["lcr_head"]["res5"]["block0"]["shortcut"]["bn"]
    np.testing.assert_array_equal(bn["scale"], sd["Box_Head.res5.0.downsample.1.weight"])
    np.testing.assert_allclose(bn["var"] + 1e-5, 1.0)
    np.testing.assert_array_equal(bn["mean"], 0.0)
    np.testing.assert_array_equal(
        p["lcr_head"]["predict"]["cls"]["kernel"], sd["Pose_Outs.cls_score.weight"].T
    )
    # RPN channels follow our anchor order: match each of ours to Detectron's by shape.
    ours = np.asarray(ops.generate_rpn_anchors((1, 1)))
    wh = ours[:, 2:] - ours[:, :2]
    for a in range(15):
        ratio, size = wh[a, 1] / wh[a, 0], np.sqrt(wh[a, 0] * wh[a, 1])
        det = [0.5, 1.0, 2.0].index(round(ratio * 2) / 2) * 5 + [32, 64, 128, 256, 512].index(
            round(size)
        )
        np.testing.assert_array_equal(
            p["rpn_head"]["cls"]["kernel"][0, 0, :, a], sd["RPN.RPN_cls_score.weight"][det, :, 0, 0]
        )
        np.testing.assert_array_equal(
            p["rpn_head"]["bbox"]["bias"][4 * a : 4 * a + 4],
            sd["RPN.RPN_bbox_pred.bias"][4 * det : 4 * det + 4],
        )
    # Pose regression: 2D rows unchanged, 3D rows turned into our axes (Y, Z negated).
    x = np.random.default_rng(1).normal(size=2048).astype(np.float32)
    theirs = (sd["Pose_Outs.pose_pred.weight"] @ x + sd["Pose_Outs.pose_pred.bias"]).reshape(
        21, 5, 13
    )
    reg = p["lcr_head"]["predict"]["reg"]
    ours_out = (x @ reg["kernel"] + reg["bias"]).reshape(21, 5, 13)
    np.testing.assert_allclose(ours_out[:, :3], theirs[:, :3], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(ours_out[:, 3:], -theirs[:, 3:], rtol=1e-4, atol=1e-3)


def test_released_import_of_permuted_axes_turns_anchors_and_regression_alike(released):
    """A model whose 3D axes are a non-symmetric signed permutation of ours ("z_up_permuted",
    theirs = ours @ t.T): the anchors and every class's 3D regression come back in our
    axes, ours = theirs @ t, the same map for both (a symmetric t would hide a transpose)."""
    model_file = released[0]
    pose2d, pose3d = _anchors_ours(10)
    t = _FOREIGN["z_up_permuted"]
    assert not np.allclose(t, t.T)
    p2 = np.concatenate([pose2d, pose2d])
    p3 = np.concatenate([pose3d, pose3d]) @ t.T
    raw = np.concatenate([p2.transpose(0, 2, 1), p3.transpose(0, 2, 1)], axis=1).reshape(20, 65)
    _, variables = weights.released_variables({**model_file, "anchor_poses": raw})
    np.testing.assert_allclose(variables["anchor_poses"]["pose3d"], p3 @ t, atol=1e-6)
    np.testing.assert_allclose(variables["anchor_poses"]["pose3d"][:10], pose3d, atol=1e-6)
    sd = model_file["model"]
    x = np.random.default_rng(2).normal(size=2048).astype(np.float32)
    theirs = (sd["Pose_Outs.pose_pred.weight"] @ x + sd["Pose_Outs.pose_pred.bias"]).reshape(
        21, 5, 13
    )
    reg = variables["params"]["lcr_head"]["predict"]["reg"]
    ours = (x @ reg["kernel"] + reg["bias"]).reshape(21, 5, 13)
    np.testing.assert_allclose(ours[:, :2], theirs[:, :2], rtol=1e-4, atol=1e-3)
    expected = np.einsum("di,cdj->cij", t, theirs[:, 2:])
    np.testing.assert_allclose(ours[:, 2:], expected, rtol=1e-4, atol=1e-3)


def test_released_anchors_are_twins_only_when_their_halves_share_the_3d_poses(released):
    """K = 20 anchors whose two halves have different 3D poses are 20 poses, not 10
    full-body poses and their upper-body twins."""
    model_file = released[0]
    raw = np.asarray(model_file["anchor_poses"]).reshape(20, 5, 13).copy()
    raw[10:] = raw[:10][::-1]  # the second half: the first anchors in another order
    config, _ = weights.released_variables({**model_file, "anchor_poses": raw.reshape(20, 65)})
    assert not config.upper_body and config.num_classes == 21


def test_released_config_reads_the_roi_sampling_and_pooling_of_the_cfg():
    """Detectron's ROI_XFORM_SAMPLING_RATIO (0, its adaptive grid, read as 2) and
    ROI_XFORM_METHOD (RoIPoolF: max pooling)."""
    for ratio, expected in ((4, 4), (1, 1), (0, 2)):
        cfg = {"FAST_RCNN": {"ROI_XFORM_SAMPLING_RATIO": ratio}}
        assert weights._released_config(cfg, 21, 13, True).roi_sampling_ratio == expected
    assert weights._released_config({}, 21, 13, True).roi_pooling == "avg"
    cfg = {"FAST_RCNN": {"ROI_XFORM_METHOD": "RoIPoolF"}}
    assert weights._released_config(cfg, 21, 13, True).roi_pooling == "max"


def test_released_config_reads_body_rpn_anchors_and_pixel_means_of_the_cfg():
    """The cfg's body depth, RPN SIZES and ASPECT_RATIOS, and PIXEL_MEANS (BGR, the
    network's channel order: kept as they are)."""
    cfg = {
        "MODEL": {"CONV_BODY": "ResNet.ResNet101_conv4_body"},
        "RPN": {"SIZES": [16, 32, 64, 128, 256], "ASPECT_RATIOS": [0.25, 1, 4]},
        "PIXEL_MEANS": [[[100.0, 110.0, 120.0]]],
    }
    config = weights._released_config(cfg, 21, 13, True)
    assert config.depth == 101
    assert config.rpn_anchor_sizes == (16.0, 32.0, 64.0, 128.0, 256.0)
    assert config.rpn_anchor_ratios == (0.25, 1.0, 4.0)
    assert config.pixel_mean == (100.0, 110.0, 120.0) and config.bgr


def test_released_import_errors(released, tmp_path):
    model_file = released[0]
    bad = dict(model_file["model"])
    bad.pop("Box_Head.res5.2.conv3.weight")
    bad["Pose_Outs.bbox_pred.weight"] = np.zeros((4, 2048), np.float32)
    bad["RPN.RPN_cls_score.bias"] = np.zeros(30, np.float32)
    with pytest.raises(ValueError) as e:
        weights.released_variables({**model_file, "model": bad})
    msg = str(e.value)
    for name in ("Box_Head.res5.2.conv3.weight", "Pose_Outs.bbox_pred.weight", "(30,) != (15,)"):
        assert name in msg
    with pytest.raises(ValueError, match="anchor_poses"):
        weights.released_variables({"model": model_file["model"]})
    with pytest.raises(ValueError, match="classes"):
        weights.released_variables(model_file, lcrnet.released_config(num_classes=11))
    for body in ("ResNet.ResNet50_conv5_body", "FPN.fpn_ResNet50_conv5_body"):
        with pytest.raises(ValueError, match="only ResNet50/101 C4"):
            weights.released_variables({**model_file, "cfg": {"MODEL": {"CONV_BODY": body}}})
    with pytest.raises(FileNotFoundError):
        weights.load_released(tmp_path / "missing.pkl")


def test_load_released_from_pickle_and_npz(released, tmp_path):
    model_file, config, variables, _ = released
    with open(tmp_path / "model.pkl", "wb") as f:
        pickle.dump(model_file, f)
    config2, variables2, ppi = weights.load_released(tmp_path / "model.pkl")
    assert config2 == config and ppi == {"th_pose3D": 0.3}
    jax.tree_util.tree_map(np.testing.assert_array_equal, variables2, variables)
    np.savez(tmp_path / "model.npz", anchor_poses=model_file["anchor_poses"], **model_file["model"])
    config3, variables3, _ = weights.load_released(tmp_path / "model.npz")
    assert config3.rpn_post_nms_test == 1000  # no cfg in the npz: the defaults
    np.testing.assert_array_equal(
        variables3["params"]["rpn_head"]["conv"]["kernel"],
        variables["params"]["rpn_head"]["conv"]["kernel"],
    )


class _Shell:
    """Unpickling this runs a shell command (what a crafted model file could do)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_model_file_that_would_run_code_is_refused_and_nothing_runs(released, tmp_path):
    marker = tmp_path / "pwned"
    model_file = dict(released[0], cfg=_Shell(f"touch {marker}"))
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(model_file))
    with pytest.raises(pickle.UnpicklingError) as error:
        weights.load_released(path)
    assert str(error.value).startswith(
        f"{path} is not a released model file (a pickle): forbidden global posix.system"
    )
    assert not marker.exists()


def test_a_detectron_attrdict_config_is_read_as_a_dict(released, tmp_path, monkeypatch):
    module = types.ModuleType("detectron_collections")  # a module absent at load time

    class AttrDict(dict):
        pass

    AttrDict.__module__, AttrDict.__qualname__ = module.__name__, "AttrDict"
    module.AttrDict = AttrDict
    monkeypatch.setitem(sys.modules, module.__name__, module)
    cfg = AttrDict(TEST=AttrDict(RPN_POST_NMS_TOP_N=77))
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(dict(released[0], cfg=cfg)))
    monkeypatch.delitem(sys.modules, module.__name__)
    config, _, _ = weights.load_released(tmp_path / "model.pkl")
    assert config.rpn_post_nms_test == 77


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_released_pickles_of_every_protocol_pass_the_allow_list(released, tmp_path, protocol):
    model_file, config, _, _ = released
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(dict(model_file, scale=np.float32(2)), protocol=protocol))
    assert weights.load_released(path)[0] == config
