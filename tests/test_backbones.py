import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax.model import backbones, weights
from tests import reference_cases

_LAYERS = {50: (3, 4, 6, 3)}


def _np_conv(x, w, stride, pad):
    """NCHW x OIHW convolution, im2col in float64."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[-1]
    n, c, h, wd = x.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    cols = np.empty((n, c, k, k, oh, ow))
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
    return np.einsum("ncijhw,ocij->nohw", cols, w)


def _np_bn(x, sd, name):
    mult = sd[f"{name}.weight"] / np.sqrt(sd[f"{name}.running_var"] + 1e-5)
    shift = sd[f"{name}.bias"] - sd[f"{name}.running_mean"] * mult
    return x * mult[:, None, None] + shift[:, None, None]


def _np_resnet(x, sd, blocks, *, stride_in_1x1):
    """Reference forward pass written from the torchvision definition (NCHW, numpy)."""
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    y = relu(_np_bn(_np_conv(x, sd["conv1.weight"], 2, 3), sd, "bn1"))
    y = np.pad(y, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    h, w = (y.shape[2] - 3) // 2 + 1, (y.shape[3] - 3) // 2 + 1
    y = np.max(
        [y[:, :, i : i + 2 * h : 2, j : j + 2 * w : 2] for i in range(3) for j in range(3)], 0
    )
    out = {}
    for s, n in enumerate(blocks):
        for i in range(n):
            p = f"layer{s + 1}.{i}"
            stride = 2 if (i == 0 and s > 0) else 1
            s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
            z = relu(_np_bn(_np_conv(y, sd[f"{p}.conv1.weight"], s1, 0), sd, f"{p}.bn1"))
            z = relu(_np_bn(_np_conv(z, sd[f"{p}.conv2.weight"], s3, 1), sd, f"{p}.bn2"))
            z = _np_bn(_np_conv(z, sd[f"{p}.conv3.weight"], 1, 0), sd, f"{p}.bn3")
            if f"{p}.downsample.0.weight" in sd:
                y = _np_bn(_np_conv(y, sd[f"{p}.downsample.0.weight"], stride, 0), sd,
                           f"{p}.downsample.1")  # fmt: skip
            y = relu(z + y)
        out[f"res{s + 2}"] = y
    return out


def _compare(ours, ref):
    for name, r in ref.items():
        got = np.asarray(ours[name]).transpose(0, 3, 1, 2)
        assert got.shape == r.shape, name
        np.testing.assert_allclose(got, r, rtol=1e-3, atol=1e-4 * np.abs(r).max(), err_msg=name)


def test_resnet50_matches_an_independent_reference_forward():
    rng = np.random.default_rng(0)
    sd = reference_cases.random_torchvision_resnet(rng, _LAYERS[50])
    params = weights.resnet_params_from_torchvision(sd, 50)
    x = rng.uniform(-2, 2, (1, 3, 64, 64)).astype(np.float32)
    ours = jax.jit(backbones.ResNet(depth=50).apply)({"params": params}, x.transpose(0, 2, 3, 1))
    assert {k: v.shape for k, v in ours.items()} == {
        "stem": (1, 16, 16, 64),
        "res2": (1, 16, 16, 256),
        "res3": (1, 8, 8, 512),
        "res4": (1, 4, 4, 1024),
        "res5": (1, 2, 2, 2048),
    }
    _compare(ours, _np_resnet(x.astype(np.float64), sd, _LAYERS[50], stride_in_1x1=False))


def test_caffe2_stride_in_1x1_variant_matches_the_reference():
    rng = np.random.default_rng(1)
    blocks = (1, 2, 1, 1)
    sd = reference_cases.random_torchvision_resnet(rng, blocks, width=8)
    params = weights.resnet_params_from_torchvision(sd, 50, width=8, stage_sizes=blocks)
    x = rng.uniform(-2, 2, (2, 3, 40, 36)).astype(np.float32)
    model = backbones.ResNet(depth=50, width=8, stage_sizes=blocks, stride_in_1x1=True)
    ours = jax.jit(model.apply)({"params": params}, x.transpose(0, 2, 3, 1))
    _compare(ours, _np_resnet(x.astype(np.float64), sd, blocks, stride_in_1x1=True))


def test_stage_shapes_and_channels_without_compiling():
    x = jax.ShapeDtypeStruct((2, 224, 200, 3), jnp.float32)
    for depth, channels in ((50, 2048), (101, 2048), (18, 512)):
        model = backbones.ResNet(depth=depth)
        out, _ = jax.eval_shape(model.init_with_output, jax.random.key(0), x)
        assert out["res5"].shape == (2, 7, 7, channels)
        assert out["res4"].shape[1:3] == (14, 13)  # ceil(H / 16)
        assert backbones.resnet_out_channels(5, depth=depth) == channels
    out, variables = jax.eval_shape(backbones.VGG16().init_with_output, jax.random.key(0), x)
    assert out["conv5_3"].shape == (2, 14, 12, 512)  # floor(H / 16), no pool after conv5_3
    assert sorted(variables["params"]) == sorted(
        f"conv{s}_{i}"
        for s, w in enumerate(backbones.VGG16_STAGES, 1)
        for i in range(1, len(w) + 1)
    )
    n = sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(variables["params"]))
    assert n == 14_714_688  # the torchvision VGG16 convolutions
    r101 = jax.eval_shape(backbones.ResNet(depth=101, last_stage=4).init, jax.random.key(0), x)
    assert len(r101["params"]["res4"]) == 23 and "res5" not in r101["params"]


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_trainable_norms_small_resnet(norm):
    model = backbones.ResNet(depth=18, width=8, stage_sizes=(1, 1, 1, 1), norm=norm, last_stage=3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = weights.random_weights(jax.eval_shape(model.init, jax.random.key(0), x), scale=0.1)
    if norm == "batch":
        apply = jax.jit(model.apply, static_argnames=("train", "mutable"))
        out, updates = apply(variables, x, train=True, mutable=("batch_stats",))
        before = variables["batch_stats"]["stem"]["bn"]["mean"]
        after = updates["batch_stats"]["stem"]["bn"]["mean"]
        assert not np.allclose(before, after)  # running statistics were updated
        assert "bn" in variables["params"]["stem"]  # scale and bias are trainable params
        # Inference uses the running statistics, not the batch's own.
        test = apply(variables, x, train=False, mutable=False)
        assert not np.allclose(out["res3"], test["res3"])
    else:
        assert "batch_stats" not in variables and "gn" in variables["params"]["stem"]
        y = np.asarray(jax.jit(model.apply)(variables, x)["res3"])
        assert np.isfinite(y).all() and y.shape == (2, 4, 4, 16)


def test_frozen_stages_pass_no_gradient_back_and_leave_the_others_unchanged():
    small = dict(depth=18, width=8, stage_sizes=(1, 1, 1, 1), norm="group", last_stage=3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 32, 32, 3)), jnp.float32)
    trainable = backbones.ResNet(**small)
    variables = weights.random_weights(jax.eval_shape(trainable.init, jax.random.key(0), x))

    def grads(model):
        loss = lambda params: jnp.sum(model.apply({"params": params}, x)["res3"] ** 2)  # noqa: E731
        return jax.jit(jax.grad(loss))(variables["params"])

    full = grads(trainable)
    frozen = grads(backbones.ResNet(**small, frozen_stages=2))
    for name in ("stem", "res2"):
        assert all(not np.any(g) for g in jax.tree.leaves(frozen[name])), name
        assert all(np.any(g) for g in jax.tree.leaves(full[name])), name
    jax.tree.map(np.testing.assert_array_equal, frozen["res3"], full["res3"])


def test_frozen_batch_norm_is_the_stored_affine_transform():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 3, 4)), jnp.float32)
    bn = backbones.FrozenBatchNorm()
    p = {"scale": np.array([1.0, 2, 3, 4]), "bias": np.array([0.0, 1, 0, -1]),
         "mean": np.array([0.5, 0, -1, 2]), "var": np.array([1.0, 4, 0.25, 9])}  # fmt: skip
    y = bn.apply({"params": p}, x)
    expect = (x - p["mean"]) / np.sqrt(p["var"] + 1e-5) * p["scale"] + p["bias"]
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-6)


def test_bad_arguments_raise():
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    with pytest.raises(ValueError, match="depth"):
        jax.eval_shape(backbones.ResNet(depth=42).init, jax.random.key(0), x)
    with pytest.raises(ValueError, match="norm"):
        jax.eval_shape(backbones.ConvNorm(4, norm="layer").init, jax.random.key(0), x)
    with pytest.raises(ValueError, match="stage_sizes"):
        backbones.resnet_layout(50, (1, 2))


def test_resnet_import_matches_torchvision():
    """A torchvision Bottleneck ResNet's features (stored) from its imported weights.

    The weights come from a numpy seed on both sides; torchvision loaded them with
    `strict=True`, so every name and shape is torchvision's own.
    """
    case = reference_cases.resnet_case()
    ref = np.load(pathlib.Path(__file__).parent / "data" / "resnet_torchvision.npz")
    reference_cases.check_fresh(
        reference_cases.resnet_fingerprint(case), ref["fingerprint"], "resnet_torchvision.npz"
    )
    blocks = reference_cases.RESNET_BLOCKS
    params = weights.resnet_params_from_torchvision(case["state_dict"], 50, stage_sizes=blocks)
    model = backbones.ResNet(depth=50, stage_sizes=blocks)
    ours = jax.jit(model.apply)({"params": params}, case["image"].transpose(0, 2, 3, 1))
    _compare({k: ours[k] for k in ("res4", "res5")}, {k: ref[k] for k in ("res4", "res5")})


def test_vgg16_import_matches_torchvision():
    """torchvision's `vgg16().features` at conv4_3 and conv5_3 (stored) from our VGG16 on
    weights imported through `vgg16_params_from_torchvision`.

    The conv weights come from a numpy seed on both sides; torchvision loaded them by name,
    with only its classifier missing. The import requires fc6 and fc7 at full size; they
    get zero stand-ins that take no memory (a broadcast scalar) until converted.
    """
    case = reference_cases.vgg16_case()
    ref = np.load(pathlib.Path(__file__).parent / "data" / "vgg16_torchvision.npz")
    reference_cases.check_fresh(
        reference_cases.vgg16_fingerprint(case), ref["fingerprint"], "vgg16_torchvision.npz"
    )
    fc = {"classifier.0.weight": (4096, 512 * 7 * 7), "classifier.0.bias": (4096,),
          "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,)}  # fmt: skip
    fc = {k: np.broadcast_to(np.float32(0), shape) for k, shape in fc.items()}
    params = weights.vgg16_params_from_torchvision({**case["state_dict"], **fc})
    params = {k: v for k, v in params.items() if not k.startswith("fc")}
    ours = jax.jit(backbones.VGG16().apply)({"params": params}, case["image"].transpose(0, 2, 3, 1))
    channels = reference_cases.VGG16_CONV4_3_CHANNELS
    got = {"conv4_3": ours["conv4_3"][..., :channels], "conv5_3": ours["conv5_3"]}
    for name in ("conv4_3", "conv5_3"):
        r = ref[name]
        g = np.asarray(got[name]).transpose(0, 3, 1, 2)
        assert g.shape == r.shape, name
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * np.abs(r).max(), err_msg=name)


@pytest.mark.parametrize("features", [16, 24])
def test_rgb_stem_matches_the_plain_convolution(features):
    """The 3-channel convolution (run with a zero fourth channel) is the plain one."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (2, 3, 20, 22)).astype(np.float32)
    conv = backbones.ConvNorm(features, 7, 2, norm="none", relu=False)
    variables = conv.init(jax.random.key(0), jnp.zeros((2, 20, 22, 3)))
    kernel = np.asarray(variables["params"]["kernel"])
    y = np.asarray(conv.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1))))
    expect = _np_conv(x, kernel.transpose(3, 2, 0, 1), 2, 3)
    np.testing.assert_allclose(y.transpose(0, 3, 1, 2), expect, rtol=1e-4, atol=1e-4)
