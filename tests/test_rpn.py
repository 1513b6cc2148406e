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
