import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax.model import weights
from lcrnet_jax.model.rpn import RPNHead, generate_proposals


def test_rpn_head_output_order_is_y_x_anchor():
    features = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2, 3, 8)), jnp.float32)
    head = RPNHead(num_rpn_anchors=3)
    variables = weights.random_weights(jax.eval_shape(head.init, jax.random.key(0), features))
    assert variables["params"]["conv"]["kernel"].shape == (3, 3, 8, 8)
    apply = jax.jit(functools.partial(head.apply, capture_intermediates=True))
    (logits, deltas), inter = apply(variables, features)
    assert logits.shape == (2, 18) and deltas.shape == (2, 18, 4)
    cls = np.asarray(inter["intermediates"]["cls"]["__call__"][0])  # (B, H, W, A)
    bbox = np.asarray(inter["intermediates"]["bbox"]["__call__"][0])  # (B, H, W, 4A)
    y, x, a = 1, 2, 1
    n = (y * 3 + x) * 3 + a
    np.testing.assert_allclose(logits[:, n], cls[:, y, x, a], rtol=1e-6)
    np.testing.assert_allclose(deltas[:, n], bbox[:, y, x, 4 * a : 4 * a + 4], rtol=1e-6)


_ANCHORS = jnp.asarray(
    [[10, 10, 50, 50], [12, 12, 52, 52], [60, 60, 90, 95], [95, 95, 140, 140]], jnp.float32
)
_LOGITS = jnp.asarray([[2.0, 3.0, 1.0, 4.0]] * 2)
_SIZES = jnp.asarray([[100, 100], [50, 40]])  # (height, width)


@functools.partial(jax.jit, static_argnames=("pre", "post", "border"))
def _proposals(logits, deltas, sizes, pre, post, border=0.0):
    return generate_proposals(
        logits,
        deltas,
        _ANCHORS,
        sizes,
        pre_nms_top_n=pre,
        post_nms_top_n=post,
        nms_threshold=0.7,
        min_size=8.0,
        border=border,
    )


def test_proposals_hand_case_nms_clip_min_size_and_padding():
    props = _proposals(_LOGITS, jnp.zeros((2, 4, 4)), _SIZES, 4, 3)
    assert props.boxes.shape == (2, 3, 4) and props.scores.shape == (2, 3)
    # Image 0: anchor 3 is clipped to 5x5 (< min_size), anchor 0 overlaps anchor 1 (IoU
    # 0.82 > 0.7): anchors 1 and 2 remain, by score.
    np.testing.assert_allclose(props.boxes[0], [_ANCHORS[1], _ANCHORS[2], [0, 0, 0, 0]])
    np.testing.assert_allclose(props.scores[0], [jax.nn.sigmoid(3.0), jax.nn.sigmoid(1.0), 0])
    np.testing.assert_array_equal(props.valid[0], [True, True, False])
    # Image 1 (40 wide, 50 high): boxes clipped, anchors 2 and 3 fall outside.
    np.testing.assert_allclose(props.boxes[1, 0], [12, 12, 40, 50])
    np.testing.assert_array_equal(props.valid[1], [True, False, False])
    np.testing.assert_array_equal(props.boxes[1, 1:], 0.0)
    # Deltas are decoded: anchor 2 (30 x 35 centred at (75, 77.5)) moved right by 3 px
    # and made half as high.
    deltas = jnp.zeros((2, 4, 4)).at[:, 2].set(jnp.asarray([0.1, 0.0, 0.0, jnp.log(0.5)]))
    props = _proposals(_LOGITS, deltas, _SIZES, 4, 3)
    np.testing.assert_allclose(props.boxes[0, 1], [63, 68.75, 93, 86.25], rtol=1e-5)
    # Only the 2 best anchors before NMS: anchor 3 (invalid) and anchor 1.
    props = _proposals(_LOGITS, jnp.zeros((2, 4, 4)), _SIZES, 2, 3)
    assert props.boxes.shape == (2, 2, 4)
    np.testing.assert_array_equal(props.valid, [[True, False], [True, False]])
    np.testing.assert_allclose(props.boxes[0, 0], _ANCHORS[1])

    # With a border of a quarter of the image, anchor 3 of image 0 keeps 30 x 30 px
    # (to 125 px), and is the best proposal.
    props = _proposals(_LOGITS, jnp.zeros((2, 4, 4)), _SIZES, 4, 3, border=0.25)
    np.testing.assert_allclose(props.boxes[0, 0], [95, 95, 125, 125])
    np.testing.assert_array_equal(props.valid[0], [True, True, True])


def test_proposals_stop_gradient():
    deltas = jnp.zeros((2, 4, 4))

    def total(logits, d):
        p = generate_proposals(
            logits, d, _ANCHORS, _SIZES, pre_nms_top_n=4, post_nms_top_n=3, min_size=8.0
        )
        return jnp.sum(p.scores) + jnp.sum(p.boxes)

    g_logits, g_deltas = jax.jit(jax.grad(total, argnums=(0, 1)))(_LOGITS, deltas)
    np.testing.assert_array_equal(g_logits, 0.0)
    np.testing.assert_array_equal(g_deltas, 0.0)


def test_proposals_reject_bad_shapes():
    kw = dict(pre_nms_top_n=4, post_nms_top_n=3)
    with pytest.raises(ValueError, match="deltas"):
        generate_proposals(_LOGITS, jnp.zeros((2, 4, 3)), _ANCHORS, _SIZES, **kw)
    with pytest.raises(ValueError, match="anchors"):
        generate_proposals(_LOGITS, jnp.zeros((2, 4, 4)), _ANCHORS[:3], _SIZES, **kw)
    with pytest.raises(ValueError, match="image_size"):
        generate_proposals(_LOGITS, jnp.zeros((2, 4, 4)), _ANCHORS, _SIZES[:1], **kw)


def test_rpn_head_conv_width_and_relu():
    """`channels` sets the 3x3 conv's width; the 1x1 layers read it after a ReLU."""
    features = jnp.asarray(np.random.default_rng(0).normal(size=(1, 2, 3, 8)), jnp.float32)
    head = RPNHead(num_rpn_anchors=3, channels=5)
    variables = weights.random_weights(jax.eval_shape(head.init, jax.random.key(0), features))
    assert variables["params"]["conv"]["kernel"].shape == (3, 3, 8, 5)
    apply = jax.jit(functools.partial(head.apply, capture_intermediates=True))
    (logits, _), inter = apply(variables, features)
    hidden = np.asarray(inter["intermediates"]["conv"]["__call__"][0])  # (B, H, W, 5)
    assert hidden.min() == 0.0 and hidden.max() > 0.0
    cls = variables["params"]["cls"]
    by_hand = hidden @ np.asarray(cls["kernel"])[0, 0] + np.asarray(cls["bias"])
    np.testing.assert_allclose(logits, by_hand.reshape(1, -1), rtol=1e-5, atol=1e-6)


def test_proposals_edge_cases():
    big = jnp.asarray([[10_000, 10_000]] * 2)
    kw = dict(pre_nms_top_n=4, post_nms_top_n=4)
    # More boxes asked for than anchors: every anchor, once.
    props = generate_proposals(
        _LOGITS,
        jnp.zeros((2, 4, 4)),
        _ANCHORS,
        big,
        pre_nms_top_n=100,
        post_nms_top_n=100,
        min_size=8.0,
    )
    assert props.boxes.shape == (2, 4, 4)
    # The NMS threshold is the argument's: at 0.9 anchors 0 and 1 (IoU 0.82) both stay.
    props = generate_proposals(
        _LOGITS, jnp.zeros((2, 4, 4)), _ANCHORS, big, nms_threshold=0.9, **kw
    )
    np.testing.assert_array_equal(props.valid, True)
    # dw is clamped at log(1000 / 16) as Detectron: anchor 0 (third by score, 40 px wide,
    # centred at x = 30) grows 62.5 times at most, then is clipped at x = 0.
    deltas = jnp.zeros((2, 4, 4)).at[:, 0, 2].set(10.0)
    props = generate_proposals(_LOGITS, deltas, _ANCHORS, big, nms_threshold=0.9, **kw)
    np.testing.assert_allclose(props.boxes[:, 2], [[0, 10, 30 + 20 * 62.5, 50]] * 2, rtol=1e-6)
    # A box exactly `min_size` wide stays; one wide enough but too low goes, as does an
    # empty one (outside the image, min_size 0) and one of -inf objectness.
    anchors = jnp.asarray(
        [[0, 0, 8, 20], [0, 0, 30, 7.9], [0, 0, 30, 30], [50, 0, 60, 10]], jnp.float32
    )
    sizes = jnp.asarray([[40, 40]] * 2)
    logits = jnp.asarray([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, -jnp.inf, 1.0]])
    props = generate_proposals(
        logits, jnp.zeros((2, 4, 4)), anchors, sizes, nms_threshold=1.0, min_size=8.0, **kw
    )
    np.testing.assert_array_equal(props.valid, [[True, True, False, False], [True] + [False] * 3])
    props = generate_proposals(
        logits, jnp.zeros((2, 4, 4)), anchors, sizes, nms_threshold=1.0, **kw
    )
    np.testing.assert_array_equal(props.valid, [[True] * 3 + [False], [True, True, False, False]])
