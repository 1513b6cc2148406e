import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax import geometry, ops


def test_anchor_count_order_centres_and_shapes():
    sizes, ratios = (32, 64, 128, 256, 512), (0.5, 1.0, 2.0)
    anchors = np.asarray(
        ops.generate_rpn_anchors((3, 4), stride=16, sizes=sizes, aspect_ratios=ratios)
    )
    assert anchors.shape == (3 * 4 * 15, 4)
    cells = anchors.reshape(3, 4, 15, 4)
    centres = (cells[..., :2] + cells[..., 2:]) / 2
    wh = cells[..., 2:] - cells[..., :2]
    # Cell (i, j) is centred at ((j + 0.5) * 16, (i + 0.5) * 16).
    np.testing.assert_allclose(centres[2, 1, :, 0], 1.5 * 16, atol=1e-4)
    np.testing.assert_allclose(centres[2, 1, :, 1], 2.5 * 16, atol=1e-4)
    np.testing.assert_allclose(
        centres[..., 0],
        np.broadcast_to((np.arange(4)[None, :, None] + 0.5) * 16, (3, 4, 15)),
        atol=1e-4,
    )
    # Ratio-major: anchor a has ratio ratios[a // 5] and size sizes[a % 5].
    for a in range(15):
        ratio, size = ratios[a // 5], sizes[a % 5]
        np.testing.assert_allclose(wh[0, 0, a, 1] / wh[0, 0, a, 0], ratio, rtol=1e-5)
        np.testing.assert_allclose(wh[0, 0, a, 0] * wh[0, 0, a, 1], size**2, rtol=1e-5)
    np.testing.assert_allclose(
        cells[0, 0, 5], [-8.0, -8.0, 24.0, 24.0], atol=1e-4
    )  # size 32, ratio 1
    # Every cell holds the same anchors, shifted.
    np.testing.assert_allclose(
        cells[1, 2] - cells[0, 0], np.tile([32.0, 16.0], 2)[None].repeat(15, 0), atol=1e-4
    )


def test_whole_pixel_anchors_are_detectrons():
    # Detectron's generate_anchors: a 16 x 16 box per ratio rounded to whole pixels (ratio
    # 0.5: round(sqrt(512)) = 23 x round(11.5) = 12; ratio 2: 11 x 22), then scaled.
    anchors = ops.generate_rpn_anchors(
        (1, 2), stride=16, sizes=(32, 128), aspect_ratios=(0.5, 1.0, 2.0), whole_pixels=True
    )
    cells = np.asarray(anchors).reshape(2, 6, 4)
    wh = cells[..., 2:] - cells[..., :2]
    expected = [(46, 24), (184, 96), (32, 32), (128, 128), (22, 44), (88, 176)]
    np.testing.assert_allclose(wh[0], expected, atol=1e-4)
    np.testing.assert_allclose(wh[1], expected, atol=1e-4)
    np.testing.assert_allclose(
        (cells[..., :2] + cells[..., 2:]) / 2, [[[8, 8]], [[24, 8]]] * np.ones((2, 6, 2)), atol=1e-4
    )
    # Detectron's inclusive [-84, -40, 99, 55] for size 128, ratio 0.5, in continuous pixels.
    np.testing.assert_allclose(cells[0, 1], [-84.0, -40.0, 100.0, 56.0], atol=1e-4)


def test_anchor_errors():
    with pytest.raises(ValueError, match="feature_size"):
        ops.generate_rpn_anchors((3,))
    with pytest.raises(ValueError, match="aspect_ratios"):
        ops.generate_rpn_anchors((3, 3), aspect_ratios=(0.0, 1.0))


def test_encode_decode_round_trip_and_hand_case():
    rng = np.random.default_rng(0)
    anchors = ops.generate_rpn_anchors((4, 5))
    xy = rng.uniform(0, 80, (anchors.shape[0], 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 300, xy.shape)], -1).astype(np.float32)
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
        deltas = ops.encode_boxes(boxes, anchors, weights=weights)
        assert deltas.shape == boxes.shape
        np.testing.assert_allclose(
            ops.decode_boxes(deltas, anchors, weights=weights), boxes, rtol=1e-5, atol=2e-3
        )
    # Anchor (0, 0, 10, 20): centre (5, 10), size (10, 20).
    deltas = ops.encode_boxes(jnp.array([2.0, 4.0, 22.0, 24.0]), jnp.array([0.0, 0.0, 10.0, 20.0]))
    np.testing.assert_allclose(deltas, [0.7, 0.2, math.log(2.0), 0.0], rtol=1e-6)


def test_decode_clamps_and_encode_stays_finite_on_empty_boxes():
    anchor = jnp.array([0.0, 0.0, 16.0, 16.0])
    huge = ops.decode_boxes(jnp.array([0.0, 0.0, 50.0, 50.0]), anchor)
    np.testing.assert_allclose(huge, [8 - 500, 8 - 500, 8 + 500, 8 + 500], rtol=1e-5)
    small = ops.decode_boxes(jnp.array([0.0, 0.0, -1.0, 2.0]), anchor, clamp=1.0)
    np.testing.assert_allclose(small[2] - small[0], 16 * math.exp(-1.0), rtol=1e-5)
    np.testing.assert_allclose(small[3] - small[1], 16 * math.e, rtol=1e-5)
    deltas = ops.encode_boxes(jnp.zeros((3, 4)), jnp.zeros((3, 4)))
    assert np.all(np.isfinite(deltas))
    grad = jax.grad(lambda b: jnp.sum(ops.encode_boxes(b, anchor)))(jnp.zeros(4))
    assert np.all(np.isfinite(grad))


def test_box_coding_under_jit_and_vmap():
    anchors = ops.generate_rpn_anchors((2, 2))
    deltas = jnp.asarray(np.random.default_rng(1).normal(size=(3,) + anchors.shape), jnp.float32)
    fn = jax.jit(jax.vmap(lambda d: ops.encode_boxes(ops.decode_boxes(d, anchors), anchors)))
    np.testing.assert_allclose(fn(deltas), deltas, atol=1e-4)
    # IoU of decoded boxes comes from geometry (no copy in ops).
    iou = geometry.iou_matrix(ops.decode_boxes(jnp.zeros_like(anchors), anchors), anchors)
    np.testing.assert_allclose(jnp.diagonal(iou), 1.0, rtol=1e-6)


def test_clip_boxes_shapes():
    boxes = jnp.array([[[-5.0, -1.0, 50.0, 70.0], [10.0, 20.0, 30.0, 40.0]]] * 2)  # (2, 2, 4)
    sizes = jnp.array([[60.0, 40.0], [30.0, 100.0]])  # (height, width) per image
    clipped = ops.clip_boxes(boxes, sizes)
    np.testing.assert_allclose(clipped[0], [[0, 0, 40, 60], [10, 20, 30, 40]])
    np.testing.assert_allclose(clipped[1], [[0, 0, 50, 30], [10, 20, 30, 30]])
    np.testing.assert_allclose(ops.clip_boxes(boxes[0], (60, 40)), clipped[0])
    per_box = jnp.broadcast_to(sizes[:, None], (2, 2, 2))
    np.testing.assert_allclose(ops.clip_boxes(boxes, per_box), clipped)
    # A border of a quarter of the image on each side: image 0 is 40 x 60 (w x h).
    np.testing.assert_allclose(
        ops.clip_boxes(boxes, sizes, 0.25)[0], [[-5, -1, 50, 70], [10, 20, 30, 40]]
    )
    np.testing.assert_allclose(ops.clip_boxes(boxes[0], (20, 20), 0.25)[0], [-5, -1, 25, 25])
    with pytest.raises(ValueError, match="image_size"):
        ops.clip_boxes(boxes, jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="image_size"):
        ops.clip_boxes(boxes, jnp.zeros(3))
