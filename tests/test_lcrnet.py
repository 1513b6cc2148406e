import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import ops, skeleton
from lcrnet_jax.model import lcrnet, weights
from lcrnet_jax.model.lcr_head import JointOffsets
from lcrnet_jax.model.lcrnet import LCRNet
from lcrnet_jax.model.rpn import generate_proposals
from lcrnet_jax.postprocess import detect, ppi

K, J = 20, 13


def _anchors(seed=0):
    rng = np.random.default_rng(seed)
    return anchors_lib.AnchorPoses(
        pose2d=jnp.asarray(rng.uniform(0, 1, (K, J, 2)), jnp.float32),
        pose3d=jnp.asarray(rng.normal(0, 0.3, (K, J, 3)), jnp.float32),
        std=jnp.asarray(rng.uniform(0.5, 1.5, (5, J)), jnp.float32),
        twins=True,
    )


_SMALL = lcrnet.small_config(iterative=True, rpn_post_nms_test=50)


@pytest.fixture(scope="module")
def small():
    """The small config and random variables (no init compile) with `_anchors()`."""
    variables = weights.random_weights(lcrnet.variable_shapes(_SMALL))
    return _SMALL, lcrnet.with_anchor_poses(variables, _anchors())


def _chain(model, variables, images, sizes):
    """The inference path through the public methods, as a training step calls them."""
    feats = model.apply(variables, images, sizes, method=LCRNet.features)
    obj, deltas = model.apply(variables, feats, method=LCRNet.rpn)
    props = model.apply(
        variables,
        obj,
        deltas,
        sizes,
        feature_size=feats.shape[1:3],
        train=False,
        method=LCRNet.proposals,
    )
    outs = model.apply(variables, feats, props.boxes, train=True, method=LCRNet.head)
    return feats, obj, props, outs


@jax.jit
def _run_small(variables, images, sizes):
    model = LCRNet(_SMALL)
    return model.apply(variables, images, sizes), _chain(model, variables, images, sizes)


_IMAGES = jnp.asarray(np.random.default_rng(0).integers(0, 255, (2, 256, 256, 3)), jnp.uint8)
_SIZES = jnp.asarray([[256, 256], [200, 160]], jnp.int32)


def test_small_model_inits_runs_jitted_at_256_and_decodes_poses():
    config = _SMALL
    variables = lcrnet.init_variables(config, jax.random.key(0, impl="rbg"), anchors=_anchors())
    assert jax.tree_util.tree_map(np.shape, variables) == jax.tree_util.tree_map(
        lambda s: s.shape, lcrnet.variable_shapes(config)
    )
    out, (feats, obj, props, heads) = _run_small(variables, _IMAGES, _SIZES)
    r, c = 50, config.num_classes
    assert out.boxes.shape == (2, r, 4) and out.probs.shape == (2, r, c)
    assert out.poses2d.shape == (2, r, c, J, 2) and out.poses3d.shape == (2, r, c, J, 3)
    assert out.objectness.shape == (2, r) and out.valid.shape == (2, r)
    assert int(out.valid.sum()) > 10
    for leaf in jax.tree_util.tree_leaves(out):
        assert np.isfinite(np.asarray(leaf, np.float32)).all()
    np.testing.assert_allclose(out.probs.sum(-1), 1.0, rtol=1e-5)
    boxes = np.asarray(out.boxes)
    for b, (h, w) in enumerate(np.asarray(_SIZES)):
        valid = np.asarray(out.valid[b])
        assert (boxes[b, valid, 2] <= w).all() and (boxes[b, valid, 3] <= h).all()
        assert (boxes[b, valid, :2] >= 0).all()
    # The methods give the same result as __call__ (its last head estimate).
    assert feats.shape == (2, 16, 16, 4 * config.width)
    assert obj.shape == (2, 16 * 16 * config.num_rpn_anchors)
    assert lcrnet.anchor_boxes(config, (16, 16)).shape == (obj.shape[1], 4)
    np.testing.assert_array_equal(props.boxes, out.boxes)
    assert len(heads) == 2
    np.testing.assert_allclose(jax.nn.softmax(heads[-1].logits), out.probs, rtol=1e-5, atol=1e-6)

    # Decoding: a zero regression gives the anchor poses placed in the boxes (the same
    # compiled function with other parameter values).
    params = jax.tree_util.tree_map(lambda x: x, variables["params"])
    reg = params["lcr_head"]["predict_refined"]["reg"]
    reg["kernel"] = jnp.zeros_like(reg["kernel"])
    reg["bias"] = jnp.zeros_like(reg["bias"])
    out, _ = _run_small({**variables, "params": params}, _IMAGES, _SIZES)
    a = _anchors()
    box = np.asarray(out.boxes)[:, :, None, None, :]  # (B, R, 1, 1, 4)
    expect2d = box[..., :2] + np.asarray(a.pose2d) * (box[..., 2:] - box[..., :2])
    np.testing.assert_allclose(out.poses2d[:, :, 1:], expect2d, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(
        out.poses3d[:, :, 1:], np.broadcast_to(a.pose3d, out.poses3d[:, :, 1:].shape), atol=1e-6
    )


def test_the_padding_is_the_mean_colour_whatever_its_pixels(small):
    """Beyond each image's valid region the normalised pixels are 0, as Detectron and
    torchvision pad: what the canvas holds there changes nothing."""
    _, variables = small
    h, w = np.asarray(_SIZES[1])
    images = np.asarray(_IMAGES).copy()
    images[1, h:], images[1, :, w:] = 0, 0
    out, (feats, *_) = _run_small(variables, jnp.asarray(images), _SIZES)
    images[1, h:], images[1, :, w:] = 255, 77
    other, (other_feats, *_) = _run_small(variables, jnp.asarray(images), _SIZES)
    np.testing.assert_array_equal(other_feats, feats)
    for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(out), strict=True):
        np.testing.assert_array_equal(a, b)
    # The mean colour itself: a canvas padded with it, seen whole, gives the same features.
    mean = np.asarray(_SMALL.pixel_mean, np.float32)
    filled = np.asarray(_IMAGES).astype(np.float32)
    filled[1, h:], filled[1, :, w:] = mean, mean
    whole = jax.jit(lambda v, x: LCRNet(_SMALL).apply(v, x, method=LCRNet.features))
    np.testing.assert_allclose(whole(variables, filled)[1], feats[1], rtol=1e-5, atol=1e-5)


def test_anchor_collection_helpers(small):
    config, variables = small
    got = lcrnet.anchor_poses(variables, config)
    np.testing.assert_array_equal(got.pose3d, _anchors().pose3d)
    assert got.twins and got.num_classes == config.num_classes
    with pytest.raises(ValueError, match="pose2d"):
        lcrnet.with_anchor_poses(variables, _anchors().replace(pose2d=jnp.zeros((K, 14, 2))))
    with pytest.raises(ValueError, match="anchor_poses"):
        lcrnet.with_anchor_poses({"params": variables["params"]}, _anchors())


def test_normalisation_and_channel_order_happen_inside(small):
    config, variables = small
    rgb = dataclasses.replace(config, pixel_mean=(10.0, 20.0, 30.0), pixel_std=(2.0, 3.0, 4.0))
    bgr = dataclasses.replace(rgb, bgr=True)  # mean and std are in the network's order
    images = _IMAGES[:1, :32, :32]

    def features(cfg, x):
        return LCRNet(cfg).apply(variables, x, method=LCRNet.features)

    a = jax.jit(features, static_argnums=0)(rgb, images)
    b = jax.jit(features, static_argnums=0)(bgr, images[..., ::-1])
    c = jax.jit(features, static_argnums=0)(rgb, images.astype(jnp.float32))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a, c, rtol=1e-6)
    # (pixels - mean) / std, in the network's channel order: a model without
    # normalisation on images normalised by hand gives the same features.
    plain = dataclasses.replace(config, pixel_mean=(0.0, 0.0, 0.0), pixel_std=(1.0, 1.0, 1.0))
    pixels = np.asarray(images, np.float32)
    by_hand = (pixels - [10.0, 20.0, 30.0]) / [2.0, 3.0, 4.0]
    d = jax.jit(features, static_argnums=0)(plain, jnp.asarray(by_hand, jnp.float32))
    np.testing.assert_allclose(a, d, rtol=1e-4, atol=1e-5)
    by_hand = (pixels[..., ::-1] - [10.0, 20.0, 30.0]) / [2.0, 3.0, 4.0]
    e = jax.jit(features, static_argnums=0)(bgr, images)
    f = jax.jit(features, static_argnums=0)(plain, jnp.asarray(by_hand, jnp.float32))
    np.testing.assert_allclose(e, f, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="images"):
        LCRNet(rgb).apply(variables, images[..., :2], method=LCRNet.features)


@pytest.mark.parametrize(
    "config, image, feature",
    [
        (lcrnet.released_config(), (1, 512, 672, 3), (1, 32, 42, 1024)),
        (lcrnet.vgg16_config(iterative=True), (2, 256, 320, 3), (2, 16, 20, 512)),
        (lcrnet.small_config(dtype="bfloat16"), (2, 256, 256, 3), (2, 16, 16, 64)),
        (lcrnet.small_config(feature_stride=8), (2, 256, 192, 3), (2, 32, 24, 64)),
        (lcrnet.resnet50_c4_config(feature_stride=8), (1, 128, 160, 3), (1, 16, 20, 1024)),
    ],
    ids=["released_r50_c4", "vgg16_k100", "small_bf16", "small_stride8", "r50_c4_stride8"],
)
def test_configs_build_without_compiling(config, image, feature):
    model = LCRNet(config)
    images = jax.ShapeDtypeStruct(image, jnp.uint8)
    sizes = jax.ShapeDtypeStruct((image[0], 2), jnp.int32)
    out, variables = jax.eval_shape(model.init_with_output, jax.random.key(0), images, sizes)
    r, c = config.rpn_post_nms_test, config.num_classes
    assert out.poses3d.shape == (image[0], r, c, J, 3) and out.probs.dtype == jnp.float32
    assert out.poses2d.shape == (image[0], r, c, J, 2) and out.boxes.dtype == jnp.float32
    assert variables["anchor_poses"]["pose3d"].shape == (c - 1, J, 3)
    params = jax.tree_util.tree_leaves(variables["params"])
    assert all(p.dtype == jnp.float32 for p in params)
    feats = jax.eval_shape(
        lambda v, x: model.apply(v, x, method=LCRNet.features), variables, images
    )
    assert feats.shape == feature and feats.dtype == config.compute_dtype


def test_stride8_anchors_and_rois_follow_the_finer_grid():
    config = lcrnet.small_config(feature_stride=8)
    centres = np.asarray(lcrnet.anchor_boxes(config, (32, 24))).reshape(32, 24, -1, 4)
    centres = (centres[..., :2] + centres[..., 2:]) / 2
    np.testing.assert_allclose(centres[3, 5, 0], (5.5 * 8, 3.5 * 8))
    variables = weights.random_weights(lcrnet.variable_shapes(config))
    head = LCRNet(config).bind(variables).lcr_head
    assert head.spatial_scale == 1 / 8


def _mask_of(config):
    return lcrnet.trainable_mask(lcrnet.variable_shapes(config)["params"], config)


def test_anchor_boxes_follow_the_configs_anchors():
    """The released models' RPN anchors are Detectron's, rounded to whole pixels (46 x 24,
    32 x 32, 22 x 44 at size 32); the default config's are exact (32 / sqrt(0.5) wide)."""
    released = np.asarray(lcrnet.anchor_boxes(lcrnet.released_config(), (2, 3)))
    released = released.reshape(2, 3, 15, 4)
    np.testing.assert_array_equal(
        released[0, 0, [0, 5, 10]], [[-15, -4, 31, 20], [-8, -8, 24, 24], [-3, -14, 19, 30]]
    )
    np.testing.assert_array_equal(released[1, 2, 0], released[0, 0, 0] + [32, 16, 32, 16])
    exact = np.asarray(lcrnet.anchor_boxes(lcrnet.resnet50_c4_config(), (2, 3)))[0]
    np.testing.assert_allclose(exact[2:] - exact[:2], [32 * 2**0.5, 16 * 2**0.5], rtol=1e-6)
    # The config's sizes and ratios: VGG16's 9 anchors of 128, 256 and 512 px.
    vgg = np.asarray(lcrnet.anchor_boxes(lcrnet.vgg16_config(), (1, 1)))
    assert vgg.shape == (9, 4)
    np.testing.assert_allclose(vgg[3:6, 2] - vgg[3:6, 0], [128, 256, 512])


def test_trainable_mask():
    mask = _mask_of(lcrnet.released_config())
    trunk, head = mask["backbone"], mask["lcr_head"]
    assert not any(jax.tree_util.tree_leaves(trunk["stem"]))  # freeze_at = 2
    assert not any(jax.tree_util.tree_leaves(trunk["res2"]))
    assert trunk["res3"]["block0"]["conv1"]["kernel"]
    assert not any(jax.tree_util.tree_leaves(trunk["res3"]["block0"]["conv1"]["bn"]))
    assert head["res5"]["block2"]["conv3"]["kernel"]
    assert not head["res5"]["block2"]["conv3"]["bn"]["scale"]
    assert all(jax.tree_util.tree_leaves(mask["rpn_head"]))
    assert all(jax.tree_util.tree_leaves(head["predict"]))

    mask = _mask_of(lcrnet.vgg16_config(freeze_at=2))
    assert not mask["backbone"]["conv2_2"]["kernel"] and mask["backbone"]["conv3_1"]["kernel"]
    assert all(jax.tree_util.tree_leaves(mask["lcr_head"]))

    mask = _mask_of(lcrnet.small_config())  # GroupNorm, nothing frozen
    assert all(jax.tree_util.tree_leaves(mask))
    mask = _mask_of(lcrnet.resnet50_c4_config(norm="batch", freeze_at=0))
    assert mask["backbone"]["stem"]["bn"]["scale"]  # trainable BatchNorm


_ROI_HEAD_MESSAGE = r"^roi_head must be None, 'res5' \(ResNet only\) or 'fc', got "


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(backbone="resnet18"), "backbone"),
        (dict(num_classes=20), "num_classes"),
        (dict(num_classes=1, upper_body=False), "num_classes"),
        (dict(test_scales=(float("inf"),)), "test_scales"),
        (dict(proposal_border=float("inf")), "proposal_border"),
        (dict(num_joints=17), "joint_set"),
        (dict(dtype="float16"), "dtype"),
        (dict(norm="layer"), "norm"),
        (dict(roi_pooling="sum"), "roi_pooling"),
        (dict(pixel_std=(1.0, 0.0, 1.0)), "pixel_std"),
        (dict(depth=42), "depth"),
        (dict(width=0), "width must be an int >= 1"),
        (dict(feature_stride=4), "feature_stride"),
        (dict(backbone="vgg16", feature_stride=8), "feature_stride"),
        (dict(joint_refinement=-1), "joint_refinement"),
        (dict(joint_grid=0), "joint_grid"),
        (dict(joint_grid=1, joint_heatmap=True), "joint_heatmap needs"),
        (dict(joint_classes=21), "joint_classes"),
        (dict(joint_classes=-1), "joint_classes"),
        (dict(joint_repeats=0), "joint_repeats"),
        (dict(joint_polish=-1), "joint_polish"),
        (dict(joint_polish=1), "joint_polish needs"),
        (dict(proposal_border=-0.1), "proposal_border"),
        (dict(roi_chunk=-1), "roi_chunk must be an int >= 0"),
        (dict(roi_chunk=2.5), "roi_chunk must be an int >= 0"),
        (dict(roi_head="mlp"), _ROI_HEAD_MESSAGE + "'mlp'$"),
        (dict(backbone="vgg16", roi_head="res5"), _ROI_HEAD_MESSAGE + "'res5'$"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lcrnet.LCRNetConfig(**kwargs)


def _mirror_numpy(images, sizes):
    """Each image mirrored within its valid width, the padding left in place."""
    out = np.array(images)
    for b, (_, w) in enumerate(np.asarray(sizes)):
        out[b, :, :w] = out[b, :, :w][:, ::-1]
    return out


def test_mirror_images_keeps_the_padding_and_is_an_involution():
    images = np.asarray(_IMAGES[:, :40, :48])
    sizes = jnp.asarray([[40, 48], [30, 35]], jnp.int32)
    once = np.asarray(lcrnet.mirror_images(images, sizes))
    np.testing.assert_array_equal(once, _mirror_numpy(images, sizes))
    np.testing.assert_array_equal(once[1, :, 35:], images[1, :, 35:])
    np.testing.assert_array_equal(lcrnet.mirror_images(once, sizes), images)


@functools.partial(jax.jit, static_argnames="chunk")
def _run_in_chunks(variables, images, sizes, *, chunk):
    return LCRNet(dataclasses.replace(_SMALL, roi_chunk=chunk)).apply(variables, images, sizes)


def test_the_head_reads_the_rois_in_chunks_with_the_same_outputs(small):
    """`roi_chunk=16` reads each image's R = 50 RoIs in a loop over 4 chunks of 13 (the
    last padded with 2 zero boxes, dropped): the outputs of reading them at once."""
    _, variables = small
    images, sizes = _IMAGES[:, :96, :128], jnp.asarray([[96, 128], [80, 100]], jnp.int32)
    at_once = _run_in_chunks(variables, images, sizes, chunk=0)
    in_chunks = _run_in_chunks(variables, images, sizes, chunk=16)
    assert at_once.boxes.shape[1] == 50 and int(at_once.valid.sum()) == 100
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4), at_once, in_chunks
    )
    traced = jax.make_jaxpr(lambda *args: _run_in_chunks(*args, chunk=16))
    loop = str(traced(variables, images, sizes))
    assert "length=4" in loop


@jax.jit
def _run_flip_test(variables, images, mirrored, sizes):
    plain = LCRNet(_SMALL)
    both = LCRNet(dataclasses.replace(_SMALL, flip_test=True))
    return (
        plain.apply(variables, images, sizes),
        plain.apply(variables, mirrored, sizes),
        both.apply(variables, images, sizes),
    )


def test_flip_test_appends_the_mirrored_images_proposals_mirrored_back(small):
    """With `flip_test` the first R rows are the image's proposals, the next R those of
    the mirrored image (mirrored here in numpy) mapped back: boxes and x mirrored within
    each image's width, left and right joints swapped, 3D X negated."""
    _, variables = small
    images = np.asarray(_IMAGES[:, :96, :128])
    sizes = jnp.asarray([[96, 128], [80, 100]], jnp.int32)
    plain, seen_mirrored, out = _run_flip_test(
        variables, images, _mirror_numpy(images, sizes), sizes
    )
    r = plain.boxes.shape[1]
    assert out.boxes.shape == (2, 2 * r, 4) and out.poses2d.shape[1] == 2 * r
    assert (np.asarray(out.mirrored) == [[False] * r + [True] * r] * 2).all()
    assert not np.asarray(plain.mirrored).any()
    close = dict(rtol=1e-4, atol=2e-3)
    first = jax.tree.map(lambda x: np.asarray(x)[:, :r], out)
    second = jax.tree.map(lambda x: np.asarray(x)[:, r:], out)
    for name in ("boxes", "probs", "poses2d", "poses3d", "valid", "objectness"):
        np.testing.assert_allclose(getattr(first, name), getattr(plain, name), **close)
    np.testing.assert_array_equal(second.valid, seen_mirrored.valid)
    np.testing.assert_allclose(second.probs, seen_mirrored.probs, **close)
    width = np.asarray(sizes)[:, 1].astype(np.float32)
    boxes = np.asarray(seen_mirrored.boxes)
    expect = np.stack(
        [
            width[:, None] - boxes[..., 2],
            boxes[..., 1],
            width[:, None] - boxes[..., 0],
            boxes[..., 3],
        ],
        axis=-1,
    )
    np.testing.assert_allclose(second.boxes, expect, **close)
    for b in range(2):
        np.testing.assert_allclose(
            second.poses2d[b],
            skeleton.flip_poses(
                np.asarray(seen_mirrored.poses2d[b]), "lcr13", image_width=width[b]
            ),
            **close,
        )
    np.testing.assert_allclose(
        second.poses3d, skeleton.flip_poses(np.asarray(seen_mirrored.poses3d), "lcr13"), **close
    )


@functools.partial(jax.jit, static_argnames="scale")
def _run_test_scales(variables, images, resized, sizes, resized_sizes, *, scale):
    plain = LCRNet(_SMALL)
    scaled = LCRNet(dataclasses.replace(_SMALL, flip_test=True, test_scales=(scale,)))
    return plain.apply(variables, resized, resized_sizes), scaled.apply(variables, images, sizes)


@pytest.mark.parametrize("scale, shape", [(0.5, (16, 32)), (0.7, (22, 45))])
def test_test_scales_append_the_resized_images_proposals_mapped_back(small, scale, shape):
    """With `test_scales=(scale,)` and `flip_test` the rows are [image, mirrored image,
    resized image, resized mirrored image] (a smaller view may have fewer anchors than
    the 50 proposals kept, so fewer rows); the third block is the plain model's
    proposals on the 32 x 64 images resized to whole pixels (0.7: 22 x 45, so x by
    45/64 and y by 22/32), boxes and 2D poses divided by those factors, 3D kept."""
    _, variables = small
    images = np.asarray(_IMAGES[:, :32, :64])
    sizes = jnp.asarray([[32, 64], [28, 60]], jnp.int32)
    resized = jax.image.resize(images.astype(np.float32), (2, *shape, 3), "bilinear")
    factors = np.array([shape[1] / 64, shape[0] / 32], np.float32)  # x, y
    resized_sizes = jnp.round(sizes * factors[::-1]).astype(jnp.int32)
    plain, out = _run_test_scales(variables, images, resized, sizes, resized_sizes, scale=scale)
    r = plain.boxes.shape[1]
    full = (out.boxes.shape[1] - 2 * r) // 2
    assert full >= r and out.boxes.shape == (2, 2 * full + 2 * r, 4)
    flags = [False] * full + [True] * full + [False] * r + [True] * r
    assert (np.asarray(out.mirrored) == [flags] * 2).all()
    third = jax.tree.map(lambda x: np.asarray(x)[:, 2 * full : 2 * full + r], out)
    close = dict(rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(third.boxes, np.asarray(plain.boxes) / np.tile(factors, 2), **close)
    np.testing.assert_allclose(third.poses2d, np.asarray(plain.poses2d) / factors, **close)
    for name in ("probs", "poses3d", "valid", "objectness"):
        np.testing.assert_allclose(getattr(third, name), getattr(plain, name), **close)
    with pytest.raises(ValueError, match="test_scales"):
        dataclasses.replace(_SMALL, test_scales=(0.0,))


_POLISH = dataclasses.replace(_SMALL, iterative=False, joint_refinement=1, joint_polish=1)


@pytest.fixture(scope="module")
def polish_inputs():
    """Random variables of `_POLISH`, 64 x 96 images and (2, 3, J, 2) poses inside them."""
    variables = weights.random_weights(lcrnet.variable_shapes(_POLISH))
    variables = lcrnet.with_anchor_poses(variables, _anchors())
    images = np.asarray(_IMAGES[:, :64, :96])
    sizes = jnp.asarray([[64, 96], [56, 80]], jnp.int32)
    rng = np.random.default_rng(3)
    poses = jnp.asarray(rng.uniform(8, 56, (2, 3, J, 2)), jnp.float32)
    return variables, images, sizes, poses


def test_polish_moves_each_joint_by_the_last_stage_read_around_it(polish_inputs):
    variables, images, sizes, poses = polish_inputs
    model = LCRNet(_POLISH)
    out = jax.jit(lambda *a: model.apply(*a, method="polish"))(variables, images, sizes, poses)
    features = model.apply(variables, images, sizes, method="features")
    stride = _POLISH.feature_stride  # the 2 x 2 grid: samples half a cell from the joint
    points = poses.reshape(2, -1, 2)
    boxes = jnp.concatenate([points - stride, points + stride], -1)
    sampled = ops.roi_align(features, boxes, 2, spatial_scale=1 / stride, sampling_ratio=1)
    stage = JointOffsets(64).apply(
        {"params": variables["params"]["lcr_head"]["joints0"]}, sampled.reshape(6, J, -1)
    )
    expected = poses + stage[..., :2].reshape(poses.shape) * stride
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3)
    assert float(jnp.abs(out - poses).max()) > 0.5

    # PPI's people: valid rows moved, the others left at zero; nothing without polish.
    valid = jnp.asarray([[True, False, True], [False, False, True]])
    people = ppi.PPIResult(
        poses2d=jnp.where(valid[..., None, None], poses, 0.0),
        poses3d=jnp.zeros((2, 3, J, 3)),
        scores=valid.astype(jnp.float32),
        valid=valid,
    )
    polished = detect.polish(model, variables, images, sizes, people)
    np.testing.assert_allclose(
        polished.poses2d, jnp.where(valid[..., None, None], out, 0.0), rtol=1e-5, atol=1e-3
    )
    np.testing.assert_array_equal(polished.poses3d, people.poses3d)
    unpolished = LCRNet(dataclasses.replace(_POLISH, joint_polish=0))
    assert detect.polish(unpolished, variables, images, sizes, people) is people


def test_polish_averages_the_moves_of_every_view_and_repeats(polish_inputs):
    """With `flip_test`, `test_scales=(1.5,)` and two passes: each pass is the mean of
    one pass of the single-view model in the image, its mirror image, the 1.5x image and
    its mirror image, the poses mapped into each view and back."""
    variables, images, sizes, poses = polish_inputs
    views = dataclasses.replace(_POLISH, flip_test=True, test_scales=(1.5,), joint_polish=2)
    resized = jax.image.resize(images.astype(np.float32), (2, 96, 144, 3), "bilinear")
    sizes15 = jnp.round(sizes * 1.5).astype(jnp.int32)

    @jax.jit
    def run(variables, poses):
        single = lambda *a: LCRNet(_POLISH).apply(variables, *a, method="polish")  # noqa: E731
        flip = lambda p, size: skeleton.flip_poses(  # noqa: E731
            p, "lcr13", image_width=size[:, 1, None, None, None].astype(jnp.float32)
        )

        def one_pass(p):
            moved = []
            for imgs, size, scale in ((images, sizes, 1.0), (resized, sizes15, 1.5)):
                mirrored = lcrnet.mirror_images(imgs, size)
                moved.append(single(imgs, size, p * scale) / scale)
                seen = single(mirrored, size, flip(p * scale, size))
                moved.append(flip(seen, size) / scale)
            return sum(moved) / 4

        out = LCRNet(views).apply(variables, images, sizes, poses, method="polish")
        return out, one_pass(one_pass(poses))

    out, expected = run(variables, poses)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=2e-3)
    assert float(jnp.abs(out - poses).max()) > 0.5


def test_the_config_reaches_the_head_the_proposals_and_the_default_anchors(small):
    """Every head and proposal setting is the config's, not its default's."""
    _, variables = small
    config = dataclasses.replace(
        _SMALL,
        roi_aligned=False,
        roi_sampling_ratio=3,
        roi_pooling="max",
        joint_refinement=1,
        joint_grid=3,
        joint_heatmap=True,
        joint_classes=2,
        joint_repeats=2,
        rpn_nms_threshold=0.5,
        rpn_min_size=12.0,
        proposal_border=0.1,
        rpn_pre_nms_train=40,
        rpn_post_nms_train=30,
        rpn_pre_nms_test=60,
        rpn_post_nms_test=50,
    )
    head = LCRNet(config).bind(weights.random_weights(lcrnet.variable_shapes(config))).lcr_head
    want = dict(
        aligned=False,
        sampling_ratio=3,
        roi_pooling="max",
        joint_stages=1,
        joint_grid=3,
        joint_heatmap=True,
        joint_classes=2,
        joint_repeats=2,
    )
    assert {name: getattr(head, name) for name in want} == want
    # The proposals: the config's NMS threshold, minimum size, border and top-k counts.
    rng = np.random.default_rng(7)
    obj = jnp.asarray(rng.normal(size=(2, 8 * 8 * 15)), jnp.float32)
    deltas = jnp.asarray(rng.normal(0.0, 0.3, (2, 8 * 8 * 15, 4)), jnp.float32)
    sizes = jnp.asarray([[128, 128], [100, 90]], jnp.int32)
    for train, pre, post in ((True, 40, 30), (False, 60, 50)):
        got = LCRNet(config).apply(
            variables, obj, deltas, sizes, feature_size=(8, 8), train=train, method=LCRNet.proposals
        )
        expect = generate_proposals(
            obj,
            deltas,
            lcrnet.anchor_boxes(config, (8, 8)),
            sizes,
            pre_nms_top_n=pre,
            post_nms_top_n=post,
            nms_threshold=0.5,
            min_size=12.0,
            border=0.1,
        )
        jax.tree.map(np.testing.assert_array_equal, got, expect)
    # Without anchors given, the model starts with zero poses and unit std.
    anchors = LCRNet(_SMALL).init(jax.random.key(0), method=lambda m: m._anchor_poses())
    np.testing.assert_array_equal(anchors["anchor_poses"]["std"], 1.0)
    np.testing.assert_array_equal(anchors["anchor_poses"]["pose2d"], 0.0)


def test_trainable_mask_counts_the_heads_res5_as_stage_5():
    mask = _mask_of(lcrnet.released_config(freeze_at=4))
    assert not mask["backbone"]["res4"]["block0"]["conv1"]["kernel"]
    assert mask["lcr_head"]["res5"]["block0"]["conv1"]["kernel"]
    mask = _mask_of(lcrnet.released_config(freeze_at=5))
    assert not any(jax.tree_util.tree_leaves(mask["lcr_head"]["res5"]))
    assert all(jax.tree_util.tree_leaves(mask["lcr_head"]["predict"]))


def test_features_in_training_update_the_batch_norm_statistics():
    config = lcrnet.small_config(norm="batch")
    variables = weights.random_weights(lcrnet.variable_shapes(config))
    images = _IMAGES[:1, :32, :32]
    features = functools.partial(LCRNet(config).apply, method=LCRNet.features)
    _, new = features(variables, images, train=True, mutable=["batch_stats"])
    moved = jax.tree.map(
        lambda a, b: bool(np.any(a != b)), new["batch_stats"], variables["batch_stats"]
    )
    assert any(jax.tree.leaves(moved))
