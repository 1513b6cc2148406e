import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import ops, skeleton
from lcrnet_jax.model import lcr_head, weights
from lcrnet_jax.model.backbones import resnet_stage
from lcrnet_jax.model.lcr_head import JointOffsets, LCRHead, PoseRegressor

C, J = 5, 13


def _head(**kw):
    base = dict(
        num_classes=C,
        num_joints=J,
        roi_size=4,
        res5=resnet_stage(5, depth=18, width=4, stage_sizes=(1, 1, 1, 1), norm="group"),
        fc_dim=16,
        refine_dim=8,
    )
    return LCRHead(**{**base, **kw})


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    features = jnp.asarray(rng.normal(size=(2, 6, 5, 16)), jnp.float32)
    rois = jnp.asarray(
        [
            [[0, 0, 80, 96], [10, 20, 40, 60], [0, 0, 0, 0]],
            [[5, 5, 30, 30], [16, 16, 64, 90], [0, 0, 0, 0]],
        ],
        jnp.float32,
    )  # (B=2, R=3, 4), the last row padding
    return features, rois


def test_predictor_regression_layout():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 7)), jnp.float32)
    pred = PoseRegressor(C, J)
    variables = jax.jit(pred.init)(jax.random.key(0, impl="rbg"), x)
    logits, reg = pred.apply(variables, x)
    assert logits.shape == (3, C) and reg.shape == (3, C, 5, J)
    p = variables["params"]["reg"]
    flat = np.asarray(x @ p["kernel"] + p["bias"])
    c, k, j = 3, 2, 11  # class 3, coordinate X, joint 11
    np.testing.assert_allclose(reg[:, c, k, j], flat[:, c * 5 * J + k * J + j], rtol=1e-6)
    # Detectron's init: small weights, zero biases
    assert float(jnp.std(p["kernel"])) < 0.01 and not np.any(p["bias"])


def test_iterative_res5_head_returns_every_estimate_in_training(inputs):
    features, rois = inputs
    head = _head(iterative=True)
    variables = weights.random_weights(jax.eval_shape(head.init, jax.random.key(0), features, rois))
    assert {"res5", "predict", "refine", "refine_fc1", "refine_fc2", "predict_refined"} <= set(
        variables["params"]
    )

    def loss(feats, boxes):
        outs = head.apply(variables, feats, boxes, train=True)
        return sum(jnp.sum(o.logits**2) + jnp.sum(o.regression**2) for o in outs), outs

    (_, train_out), (g_feat, g_rois) = jax.jit(
        jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    )(features, rois)
    test_out = jax.jit(head.apply)(variables, features, rois)
    assert len(train_out) == 2 and len(test_out) == 1
    assert all(out.classifies for out in (*train_out, *test_out))  # iterative: both classify
    for out in train_out:
        assert out.logits.shape == (2, 3, C) and out.regression.shape == (2, 3, C, 5, J)
        assert np.isfinite(np.asarray(out.regression)).all()
    np.testing.assert_allclose(test_out[0].logits, train_out[1].logits, rtol=1e-5, atol=1e-6)
    assert not np.allclose(train_out[0].logits, train_out[1].logits)
    assert float(jnp.abs(g_feat).sum()) > 0
    np.testing.assert_array_equal(g_rois, 0.0)  # boxes are constants (Sec. 3.5)


def test_fc_head_shapes(inputs):
    features, rois = inputs
    head = _head(pooler="fc", roi_size=3, res5=None)
    out, variables = jax.eval_shape(head.init_with_output, jax.random.key(0), features, rois)
    assert sorted(variables["params"]) == ["fc6", "fc7", "predict"]
    assert variables["params"]["fc6"]["kernel"].shape == (3 * 3 * 16, 16)
    assert len(out) == 1 and out[0].regression.shape == (2, 3, C, 5, J)


def test_paper_heads_shapes_without_compiling():
    # R50-C4 as released: 1024-channel trunk, 14x14 RoIs, res5 -> 2048, K = 10 + 10.
    feats = jax.ShapeDtypeStruct((1, 50, 38, 1024), jnp.float32)
    rois = jax.ShapeDtypeStruct((1, 512, 4), jnp.float32)
    head = LCRHead(num_classes=21, num_joints=13, res5=resnet_stage(5, stride_in_1x1=True))
    out, variables = jax.eval_shape(
        lambda f, r: head.init_with_output(jax.random.key(0), f, r, train=True), feats, rois
    )
    assert out[0].logits.shape == (1, 512, 21) and out[0].regression.shape == (1, 512, 21, 5, 13)
    p = variables["params"]
    assert p["predict"]["reg"]["kernel"].shape == (2048, 1365)
    assert p["res5"]["block0"]["conv1"]["kernel"].shape == (1, 1, 1024, 512)
    # VGG16, K = 100, iterative: fc6 on 7x7x512 RoIs, the refinement on 2048 + 25088.
    feats = jax.ShapeDtypeStruct((8, 38, 50, 512), jnp.float32)
    rois = jax.ShapeDtypeStruct((8, 32, 4), jnp.float32)
    head = LCRHead(num_classes=101, num_joints=13, pooler="fc", roi_size=7, iterative=True)
    out, variables = jax.eval_shape(
        lambda f, r: head.init_with_output(jax.random.key(0), f, r, train=True), feats, rois
    )
    assert len(out) == 2 and out[1].regression.shape == (8, 32, 101, 5, 13)
    p = variables["params"]
    assert p["fc6"]["kernel"].shape == (25088, 4096)
    assert p["refine"]["kernel"].shape == (101 + 101 * 65, 2048)
    assert p["refine_fc1"]["kernel"].shape == (2048 + 25088, 4096)


def _anchor_poses():
    rng = np.random.default_rng(3)
    return anchors_lib.AnchorPoses(
        pose2d=jnp.asarray(rng.uniform(0.1, 0.9, (C - 1, J, 2)), jnp.float32),
        pose3d=jnp.asarray(rng.normal(0.0, 0.3, (C - 1, J, 3)), jnp.float32),
        std=jnp.asarray(rng.uniform(0.05, 0.2, (5, J)), jnp.float32),
        joint_set="lcr13",
        margin=0.1,
        twins=False,
    )


@pytest.mark.parametrize("heatmap", [False, True])
def test_joint_refinement_moves_each_joint_by_its_offset(inputs, heatmap):
    features, rois = inputs
    anchors = _anchor_poses()
    scale = 1.0 / 16.0
    plain = _head(pooler="fc", roi_size=3, res5=None, spatial_scale=scale)
    fc = dict(pooler="fc", roi_size=3, res5=None, spatial_scale=scale, joint_heatmap=heatmap)
    refined = _head(**fc, joint_stages=1)
    variables = jax.jit(functools.partial(refined.init, anchors=anchors))(
        jax.random.key(0), features, rois
    )
    params = variables["params"]
    assert set(params) == {"fc6", "fc7", "predict", "joints0"}
    first = plain.apply(
        {"params": {k: v for k, v in params.items() if k != "joints0"}}, features, rois
    )
    apply = jax.jit(functools.partial(refined.apply, anchors=anchors))
    # A new stage starts by keeping the poses (its last layer is zero).
    tight = dict(rtol=1e-5, atol=1e-7)  # `first` runs outside jit
    np.testing.assert_allclose(
        apply(variables, features, rois)[0].regression, first[0].regression, **tight
    )

    rng = np.random.default_rng(4)
    moved = {k: v for k, v in params["joints0"].items() if k in ("kernel2", "heat")}
    moved = {k: jnp.asarray(rng.normal(0.0, 0.5, v.shape), jnp.float32) for k, v in moved.items()}
    params = {**params, "joints0": {**params["joints0"], **moved}}
    out = apply({"params": params}, features, rois)[0]
    np.testing.assert_allclose(out.logits, first[0].logits, **tight)
    # Each joint moves by its perceptron's offsets read around it: x, y in feature cells,
    # X, Y, Z in units of the anchors' std.
    before = anchors_lib.decode_poses(first[0].regression, rois, anchors)  # (B, R, C, J, 2|3)
    after = anchors_lib.decode_poses(out.regression, rois, anchors)
    points = before[0].reshape(2, -1, 2)
    cell = 1.0 / scale  # the default 2 x 2 grid: samples half a cell from the joint
    box = jnp.concatenate([points - cell, points + cell], -1)
    sampled = ops.roi_align(features, box, 2, spatial_scale=scale, sampling_ratio=1)
    offsets = JointOffsets(64, heatmap=heatmap).apply(
        {"params": params["joints0"]}, sampled.reshape(-1, J, 64)
    )
    offsets = offsets.reshape(*before[0].shape[:-1], 5)
    moved2d = (offsets[..., :2] / scale)[:, :2]  # the padding rows' boxes are empty
    np.testing.assert_allclose((after[0] - before[0])[:, :2], moved2d, atol=2e-3)
    moved3d = offsets[..., 2:] * anchors.std[2:].T
    np.testing.assert_allclose(after[1] - before[1], moved3d, atol=1e-5)
    assert float(jnp.abs(after[0] - before[0]).max()) > 1.0
    assert float(jnp.abs(moved3d).max()) > 0.01

    # With `joint_classes`, inference moves only the most probable foreground classes.
    top2 = _head(**fc, joint_stages=1, joint_classes=2)
    out2 = jax.jit(functools.partial(top2.apply, anchors=anchors))(
        {"params": params}, features, rois
    )[0]
    ranked = np.argsort(-np.asarray(out.logits)[..., 1:], axis=-1) + 1  # foreground classes
    chosen = (np.arange(C) == ranked[..., :2, None]).any(-2)  # (B, R, C)
    assert chosen.sum(-1).tolist() == [[2] * chosen.shape[1]] * chosen.shape[0]
    expect = np.where(chosen[..., None, None], out.regression, first[0].regression)
    np.testing.assert_allclose(out2.regression, expect, **tight)
    np.testing.assert_allclose(out2.logits, out.logits, **tight)

    # In training with target classes, the target class's pose is refined as in inference.
    classes = jnp.asarray([[1, 4, 0], [2, 0, 3]], jnp.int32)
    trained = jax.jit(functools.partial(refined.apply, anchors=anchors, train=True))(
        {"params": params}, features, rois, classes=classes
    )
    assert len(trained) == 2
    # The refinement keeps the first estimate's classification: no loss of its own.
    assert [o.classifies for o in trained] == [True, False]
    pick = lambda reg: np.take_along_axis(np.asarray(reg), classes[..., None, None, None], 2)  # noqa: E731
    np.testing.assert_allclose(
        pick(trained[1].regression), pick(out.regression), rtol=1e-5, atol=1e-5
    )
    # and only the target class's: the other rows keep the first estimate's poses.
    target = np.arange(C) == np.asarray(classes)[..., None]  # (B, R, C)
    np.testing.assert_allclose(
        np.where(target[..., None, None], 0.0, trained[1].regression),
        np.where(target[..., None, None], 0.0, trained[0].regression),
        **tight,
    )
    # With `foreground_rois`, only the first RoIs move (the sampler's foreground slots).
    first_two = jax.jit(
        functools.partial(refined.apply, anchors=anchors, train=True, foreground_rois=2)
    )({"params": params}, features, rois, classes=classes)
    moved, kept = first_two[1].regression[:, :2], first_two[1].regression[:, 2:]
    np.testing.assert_allclose(moved, trained[1].regression[:, :2], **tight)
    np.testing.assert_allclose(kept, trained[0].regression[:, 2:], **tight)
    assert float(jnp.abs(trained[1].regression - trained[0].regression)[1, 2].max()) > 1e-2


@pytest.mark.parametrize("grid", [2, 3])
def test_joint_heatmap_expects_the_position_of_its_hot_sample(grid):
    cells, channels, rows = grid * grid, 4, 3
    module = JointOffsets(8, grid, heatmap=True)
    hot = np.arange(rows * J).reshape(rows, J) % cells  # a sample for each row and joint
    x = np.zeros((rows, J, cells, channels), np.float32)  # samples row by row: y, then x
    x[np.arange(rows)[:, None], np.arange(J), hot, 0] = 1.0
    x = jnp.asarray(x.reshape(rows, J, -1))
    params = module.init(jax.random.key(0), x)["params"]
    assert params["heat"].shape == (J, channels)
    # A new stage starts by keeping the poses: a uniform heatmap expects the grid's centre.
    np.testing.assert_allclose(module.apply({"params": params}, x), 0.0, atol=1e-6)
    heat = params["heat"].at[:, 0].set(50.0)  # the logit of a sample: 50 x its channel 0
    out = module.apply({"params": {**params, "heat": heat}}, x)
    gy, gx = np.divmod(hot, grid)
    centre = 0.5 * (grid - 1)  # in feature cells, one cell apart
    np.testing.assert_allclose(out[..., 0], gx - centre, atol=1e-5)
    np.testing.assert_allclose(out[..., 1], gy - centre, atol=1e-5)
    np.testing.assert_allclose(out[..., 2:], 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="heatmap needs"):
        JointOffsets(8, 1, heatmap=True).init(jax.random.key(0), x[..., :channels])


def test_joint_parameters_are_float32_and_the_same_in_64_bit_mode():
    """With JAX_ENABLE_X64 they were float64 and initialised otherwise for the same key
    (in checkpoints and exports too, which then failed without 64-bit mode)."""
    x = jnp.ones((3, J, 4 * 6), jnp.float32)
    module = JointOffsets(8, 2, heatmap=True)
    want = module.init(jax.random.key(0), x)["params"]
    with jax.enable_x64(True):
        got = module.init(jax.random.key(0), x)["params"]
        out = module.apply({"params": got}, x)
    assert {leaf.dtype for leaf in jax.tree.leaves(got)} == {jnp.dtype(jnp.float32)}
    assert out.dtype == jnp.float32
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_joint_repeats_run_the_stage_again_at_inference_only(inputs):
    features, rois = inputs
    anchors = _anchor_poses()
    fc = dict(pooler="fc", roi_size=3, res5=None, spatial_scale=1.0 / 16.0)
    twice = _head(**fc, joint_stages=1, joint_repeats=2)
    variables = jax.jit(functools.partial(twice.init, anchors=anchors))(
        jax.random.key(0), features, rois
    )
    kernel2 = np.random.default_rng(4).normal(
        0.0, 0.5, variables["params"]["joints0"]["kernel2"].shape
    )
    params = {**variables["params"]}
    params["joints0"] = {**params["joints0"], "kernel2": jnp.asarray(kernel2, jnp.float32)}
    # The same as two stages with equal weights.
    two_stages = _head(**fc, joint_stages=2)
    out = jax.jit(functools.partial(twice.apply, anchors=anchors))(
        {"params": params}, features, rois
    )
    expect = jax.jit(functools.partial(two_stages.apply, anchors=anchors))(
        {"params": {**params, "joints1": params["joints0"]}}, features, rois
    )
    assert len(out) == 1
    np.testing.assert_allclose(out[0].regression, expect[0].regression, rtol=1e-5, atol=1e-5)
    once = _head(**fc, joint_stages=1).apply({"params": params}, features, rois, anchors=anchors)
    assert float(jnp.abs(out[0].regression - once[0].regression).max()) > 1e-2
    # Training runs each stage once.
    classes = jnp.asarray([[1, 4, 0], [2, 0, 3]], jnp.int32)
    train = dict(anchors=anchors, train=True, classes=classes)
    trained = twice.apply({"params": params}, features, rois, **train)
    reference = _head(**fc, joint_stages=1).apply({"params": params}, features, rois, **train)
    assert len(trained) == len(reference) == 2
    np.testing.assert_allclose(trained[1].regression, reference[1].regression, rtol=1e-5, atol=1e-6)


def test_bad_inputs_raise(inputs):
    features, rois = inputs
    with pytest.raises(ValueError, match="rois"):
        jax.eval_shape(_head().init, jax.random.key(0), features, rois[..., :3])
    with pytest.raises(ValueError, match="batch"):
        jax.eval_shape(_head().init, jax.random.key(0), features, rois[:1])
    with pytest.raises(ValueError, match="pooler"):
        jax.eval_shape(_head(pooler="mlp").init, jax.random.key(0), features, rois)
    with pytest.raises(ValueError, match="res5"):
        jax.eval_shape(_head(pooler="fc").init, jax.random.key(0), features, rois)
    with pytest.raises(ValueError, match="anchor poses"):
        jax.eval_shape(_head(joint_stages=1).init, jax.random.key(0), features, rois)


def test_params_for_joints_copies_kept_joints_and_starts_made_ones_fresh():
    matrix = skeleton.completion_matrix("lcr13", "lcr_mupots")  # (17, 13)
    rng = np.random.default_rng(0)
    shapes_from = {
        "joints0.kernel1": (13, 6, 4),
        "joints0.heat": (13, 3),
        "refine.kernel": (C + C * 5 * 13, 2),
        "refine.bias": (2,),
        "predict.cls.kernel": (6, C),
    }
    trained = {k: rng.normal(size=s) for k, s in shapes_from.items()}
    fresh = {k: rng.normal(size=(17, *s[1:]) if k.startswith("joints") else s)
             for k, s in shapes_from.items()}  # fmt: skip
    fresh["refine.kernel"] = rng.normal(size=(C + C * 5 * 17, 2))
    fresh["refine_fc1.kernel"] = rng.normal(size=(3, 3))  # a layer the run lacks
    std = np.ones((5, 13))
    out = lcr_head.params_for_joints(trained, fresh, matrix, std, std @ np.abs(matrix).T)
    for name in ("joints0.kernel1", "joints0.heat"):
        np.testing.assert_array_equal(out[name][:13], trained[name])
        np.testing.assert_array_equal(out[name][13:], fresh[name][13:])
    np.testing.assert_array_equal(out["refine_fc1.kernel"], fresh["refine_fc1.kernel"])
    np.testing.assert_array_equal(out["predict.cls.kernel"], trained["predict.cls.kernel"])
    rows = out["refine.kernel"][C:].reshape(C, 5, 17, 2)
    np.testing.assert_array_equal(out["refine.kernel"][:C], trained["refine.kernel"][:C])
    kept = trained["refine.kernel"][C:].reshape(C, 5, 13, 2)
    np.testing.assert_array_equal(rows[:, :, :13], kept)
    assert not rows[:, :, 13:].any()  # a made joint's inputs weigh nothing


def test_joint_offsets_is_each_joints_own_two_layer_perceptron():
    """By hand in numpy: relu(x_j W1_j + b1_j) W2_j for joint j's own weights, plus with
    `heatmap` the expected sample position under a softmax of x_jk . heat_j over the grid
    (samples row by row: y, then x, one cell apart around the joint)."""
    grid, channels, hidden, rows = 2, 3, 6, 4
    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, J, grid * grid * channels)).astype(np.float32)
    module = JointOffsets(hidden, grid, heatmap=True)
    init = module.init(jax.random.key(0), jnp.asarray(x))["params"]
    # lecun_normal over each joint's own inputs: std about 1 / sqrt(D), joint by joint.
    std = float(np.std(init["kernel1"])) * np.sqrt(x.shape[-1])
    assert 0.7 < std < 1.3, std
    params = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in init.items()}
    out = np.asarray(module.apply({"params": params}, jnp.asarray(x)))
    hidden_units = np.maximum(np.einsum("njd,jdh->njh", x, params["kernel1"]) + params["bias1"], 0)
    expect = np.einsum("njh,jhe->nje", hidden_units, params["kernel2"])
    logits = np.einsum("njkc,jc->njk", x.reshape(rows, J, grid * grid, channels), params["heat"])
    heat = np.exp(logits - logits.max(-1, keepdims=True))
    heat /= heat.sum(-1, keepdims=True)
    positions = np.array([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])  # (x, y)
    expect[..., :2] += heat @ positions
    np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-4)
    plain = JointOffsets(hidden, grid).apply(
        {"params": {k: v for k, v in params.items() if k != "heat"}}, jnp.asarray(x)
    )
    np.testing.assert_allclose(
        plain, expect - np.pad(heat @ positions, [(0, 0)] * 2 + [(0, 3)]), rtol=1e-4, atol=1e-4
    )


def _roi_features(features, rois, size):
    return ops.roi_align(features, rois, size, spatial_scale=1.0 / 16.0, sampling_ratio=2)


def test_heads_by_hand_fc_iterative_and_res5(inputs):
    """The "fc" pooler: relu(fc7(relu(fc6(flattened RoI)))); the refinement reads the
    first estimate's probabilities and regression then the flattened RoI; "res5" averages
    res5's output over the RoI."""
    features, rois = inputs
    head = _head(pooler="fc", roi_size=3, res5=None, iterative=True)
    variables = weights.random_weights(jax.eval_shape(head.init, jax.random.key(0), features, rois))
    outs = jax.jit(functools.partial(head.apply, train=True))(variables, features, rois)
    p = jax.tree.map(np.asarray, variables["params"])
    dense = lambda x, name: x @ p[name]["kernel"] + p[name]["bias"]  # noqa: E731
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    pooled = np.asarray(_roi_features(features, rois, 3)).reshape(6, -1)
    shared = relu(dense(relu(dense(pooled, "fc6")), "fc7"))
    first_logits = shared @ p["predict"]["cls"]["kernel"] + p["predict"]["cls"]["bias"]
    first_reg = shared @ p["predict"]["reg"]["kernel"] + p["predict"]["reg"]["bias"]
    close = dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outs[0].logits.reshape(6, C), first_logits, **close)
    np.testing.assert_allclose(outs[0].regression.reshape(6, -1), first_reg, **close)
    probs = np.exp(first_logits - first_logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    z = relu(dense(np.concatenate([probs, first_reg], -1), "refine"))
    z = relu(dense(relu(dense(np.concatenate([z, pooled], -1), "refine_fc1")), "refine_fc2"))
    refined = p["predict_refined"]
    np.testing.assert_allclose(
        outs[1].logits.reshape(6, C), z @ refined["cls"]["kernel"] + refined["cls"]["bias"], **close
    )
    np.testing.assert_allclose(
        outs[1].regression.reshape(6, -1),
        z @ refined["reg"]["kernel"] + refined["reg"]["bias"],
        **close,
    )
    # "res5": res5 on the 4 x 4 RoIs (stride 2), then the mean over its 2 x 2 cells.
    head = _head()
    variables = weights.random_weights(jax.eval_shape(head.init, jax.random.key(0), features, rois))
    out = jax.jit(head.apply)(variables, features, rois)[0]
    x = head.res5.apply(
        {"params": variables["params"]["res5"]},
        _roi_features(features, rois, 4).reshape(6, 4, 4, 16),
    )
    shared = np.asarray(x).mean(axis=(1, 2))
    cls = jax.tree.map(np.asarray, variables["params"]["predict"]["cls"])
    np.testing.assert_allclose(
        out.logits.reshape(6, C), shared @ cls["kernel"] + cls["bias"], **close
    )


def test_joint_refinement_grid_gradients_foreground_rois_and_polish_stage(inputs):
    features, rois = inputs
    anchors = _anchor_poses()
    fc = dict(pooler="fc", roi_size=3, res5=None, spatial_scale=1.0 / 16.0)
    # A 3 x 3 grid around each joint: 9 samples of the 16 channels per joint.
    shapes = jax.eval_shape(
        functools.partial(_head(**fc, joint_stages=1, joint_grid=3).init, anchors=anchors),
        jax.random.key(0),
        features,
        rois,
    )
    assert shapes["params"]["joints0"]["kernel1"].shape == (J, 9 * 16, 64)
    head = _head(**fc, joint_stages=2)
    variables = jax.jit(functools.partial(head.init, anchors=anchors))(
        jax.random.key(0), features, rois
    )
    params = dict(variables["params"])
    kernel2 = params["joints0"]["kernel2"]
    params["joints0"] = {**params["joints0"], "kernel2": jnp.full_like(kernel2, 0.3)}
    # The classification is not refined: no gradient reaches anything through the
    # refinement's logits; and the poses it reads the features at are constants, so the
    # gradient of the regression is the first estimate's (one per RoI on each bias).
    classes = jnp.asarray([[1, 4, 0], [2, 0, 3]], jnp.int32)
    train = functools.partial(head.apply, anchors=anchors, train=True, classes=classes)

    def total(params, which):
        outs = train({"params": params}, features, rois, foreground_rois=10)
        return jnp.sum(outs[-1].logits) if which == "logits" else jnp.sum(outs[-1].regression)

    grads = jax.jit(jax.grad(total), static_argnums=1)(params, "logits")
    assert not any(np.any(g) for g in jax.tree.leaves(grads))
    grads = jax.jit(jax.grad(total), static_argnums=1)(params, "regression")
    np.testing.assert_allclose(grads["predict"]["reg"]["bias"], 6.0, rtol=1e-5)
    # Nor does any reach the boxes, whose size turns the moves into box units.
    by_box = jax.grad(
        lambda boxes: jnp.sum(
            head.apply({"params": params}, features, boxes, anchors=anchors)[-1].regression
        )
    )
    np.testing.assert_array_equal(jax.jit(by_box)(rois), 0.0)
    # `foreground_rois` beyond R: every RoI, as without it.
    every = train({"params": params}, features, rois)
    beyond = train({"params": params}, features, rois, foreground_rois=10)
    np.testing.assert_allclose(beyond[-1].regression, every[-1].regression, rtol=1e-6)
    # Without classes (inference) it plays no part: every RoI moves.
    apply = jax.jit(
        functools.partial(head.apply, anchors=anchors), static_argnames="foreground_rois"
    )
    np.testing.assert_array_equal(
        apply({"params": params}, features, rois, foreground_rois=1)[0].regression,
        apply({"params": params}, features, rois)[0].regression,
    )
    # `joint_moves` (the polish) reads the last stage: zero moves while it is zero.
    poses = jnp.asarray(np.random.default_rng(6).uniform(10, 70, (2, 2, J, 2)), jnp.float32)
    moves = head.apply({"params": params}, features, poses, method=LCRHead.joint_moves)
    assert moves.shape == (2, 2, J, 2)
    np.testing.assert_array_equal(moves, 0.0)
    params["joints1"] = params["joints0"]
    moves = head.apply({"params": params}, features, poses, method=LCRHead.joint_moves)
    assert float(jnp.abs(moves).max()) > 1.0


def test_params_for_joints_regression_makes_the_completed_poses_in_the_new_std():
    """The mapped regression layers, times the new std, are `matrix` times the trained
    ones times the old std: the same poses, completed (random std on both sides)."""
    matrix = skeleton.completion_matrix("lcr13", "lcr_mupots")  # (17, 13)
    rng = np.random.default_rng(1)
    trained = {
        "predict.reg.kernel": rng.normal(size=(6, C * 5 * 13)),
        "predict.reg.bias": rng.normal(size=(C * 5 * 13,)),
    }
    fresh = {
        "predict.reg.kernel": np.zeros((6, C * 5 * 17), np.float32),
        "predict.reg.bias": np.zeros((C * 5 * 17,), np.float32),
    }
    std_from, std_to = rng.uniform(0.5, 2.0, (5, 13)), rng.uniform(0.5, 2.0, (5, 17))
    out = lcr_head.params_for_joints(trained, fresh, matrix, std_from, std_to)
    for name, value in trained.items():
        assert out[name].dtype == np.float32 and out[name].shape == fresh[name].shape
        old = value.reshape(*value.shape[:-1], C, 5, 13) * std_from
        new = out[name].reshape(*value.shape[:-1], C, 5, 17) * std_to
        np.testing.assert_allclose(
            new, np.einsum("tj,...rj->...rt", matrix, old), rtol=1e-5, atol=1e-5
        )
