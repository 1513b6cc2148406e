import importlib
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from lcrnet_jax import ops
from tests import reference_cases

METHODS = ("gather", "einsum")
# The package exports the function `roi_align`, which hides the submodule of that name.
roi_align_module = importlib.import_module("lcrnet_jax.ops.roi_align")


def _reference(features, boxes, out_hw, scale, ratio, aligned, pooling):
    """Scalar transcription of torchvision's CPU RoIAlign (NHWC), with optional max."""
    _, height, width, channels = features.shape
    out_h, out_w = out_hw
    result = np.zeros(boxes.shape[:2] + (out_h, out_w, channels), np.float64)

    def read(fmap, y, x):
        if not (-1.0 <= y <= height and -1.0 <= x <= width):
            return np.zeros(channels)
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = int(y), int(x)
        if y0 >= height - 1:
            y0 = y1 = height - 1
            y = float(y0)
        else:
            y1 = y0 + 1
        if x0 >= width - 1:
            x0 = x1 = width - 1
            x = float(x0)
        else:
            x1 = x0 + 1
        ly, lx = y - y0, x - x0
        return (
            (1 - ly) * (1 - lx) * fmap[y0, x0]
            + (1 - ly) * lx * fmap[y0, x1]
            + ly * (1 - lx) * fmap[y1, x0]
            + ly * lx * fmap[y1, x1]
        )

    offset = 0.5 if aligned else 0.0
    for b in range(boxes.shape[0]):
        for r in range(boxes.shape[1]):
            x1, y1, x2, y2 = (
                np.float32(v) * np.float32(scale) - np.float32(offset) for v in boxes[b, r]
            )
            rw, rh = x2 - x1, y2 - y1
            if not aligned:
                rw, rh = max(rw, 1.0), max(rh, 1.0)
            bh, bw = rh / out_h, rw / out_w
            for ph in range(out_h):
                for pw in range(out_w):
                    vals = [
                        read(
                            features[b],
                            y1 + ph * bh + (iy + 0.5) * bh / ratio,
                            x1 + pw * bw + (ix + 0.5) * bw / ratio,
                        )
                        for iy in range(ratio)
                        for ix in range(ratio)
                    ]
                    pool = np.mean if pooling == "avg" else np.max
                    result[b, r, ph, pw] = pool(np.stack(vals), axis=0)
    return result


def _arange_map():
    """(1, 5, 5, 1) map with value 5 * y + x at cell (y, x): bilinear reads are exact."""
    return jnp.arange(25, dtype=jnp.float32).reshape(1, 5, 5, 1)


# One compile per shape and option set (eager calls would compile every primitive).
_roi_align = jax.jit(
    ops.roi_align,
    static_argnums=2,
    static_argnames=("spatial_scale", "sampling_ratio", "aligned", "pooling", "method"),
)


@pytest.fixture(scope="module")
def random_case():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((2, 6, 7, 3)).astype(np.float32)
    xy = rng.uniform(-30, 120, (2, 12, 2))
    wh = rng.uniform(-4, 90, (2, 12, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    boxes[0, 0] = 0.0  # padded row
    boxes[1, 1] = [40.0, 40.0, 40.0, 40.0]  # empty box
    boxes[1, 2] = [-50.0, -50.0, -20.0, -20.0]  # entirely outside
    boxes[1, 3] = [90.0, 80.0, 200.0, 150.0]  # crossing the bottom-right border
    return features, boxes


@pytest.mark.parametrize("method", METHODS)
def test_hand_computed_aligned_and_not(method):
    box = jnp.array([[[1.0, 1.0, 3.0, 3.0]]])
    # aligned: the box corners map to 0.5 and 2.5, samples average cell centres 1 and 2.
    out = _roi_align(_arange_map(), box, 2, aligned=True, method=method)
    np.testing.assert_allclose(out[0, 0, ..., 0], [[6.0, 7.0], [11.0, 12.0]], atol=1e-5)
    # not aligned: the bins are [1, 2] and [2, 3], centred at 1.5 and 2.5.
    out = _roi_align(_arange_map(), box, 2, aligned=False, method=method)
    np.testing.assert_allclose(out[0, 0, ..., 0], [[9.0, 10.0], [14.0, 15.0]], atol=1e-5)
    # spatial_scale 1/2 on a box twice as large gives the same.
    out = _roi_align(_arange_map(), 2 * box, 2, spatial_scale=0.5, aligned=False, method=method)
    np.testing.assert_allclose(out[0, 0, ..., 0], [[9.0, 10.0], [14.0, 15.0]], atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_border_rules(method):
    boxes = jnp.array(
        [
            [
                [3.0, 0.0, 7.0, 1.0],  # x samples 4 (last cell) and 6 (> W: zero)
                [-3.0, 0.0, 1.0, 1.0],  # x samples -2 (< -1: zero) and 0
                [4.5, 0.0, 5.5, 1.0],  # x samples 4.75 and 5.25 -> last cell, then zero
                [-1.5, 4.0, -0.5, 5.0],  # x -1.25: zero; x -0.75 clamps to 0; y 4.5: last row
            ]
        ]
    )
    out = _roi_align(_arange_map(), boxes, (1, 2), sampling_ratio=1, aligned=False, method=method)
    expected = [[2.5 + 4.0, 0.0], [0.0, 2.5 + 0.0], [2.5 + 4.0, 0.0], [0.0, 20.0]]
    np.testing.assert_allclose(out[0, :, 0, :, 0], expected, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_degenerate_padded_and_nan_boxes(method):
    feats = _arange_map() + 1.0
    boxes = jnp.array([[[2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0], [np.nan, 0.0, 3.0, 3.0]]])
    # aligned: an empty box samples one point, (1.5, 1.5) -> 5 * 1.5 + 1.5 + 1.
    out = _roi_align(feats, boxes, 1, aligned=True, method=method)[0, :, 0, 0, 0]
    np.testing.assert_allclose(out, [10.0, 1.0, 0.0], atol=1e-5)
    # not aligned: widened to one cell, samples 2.25 and 2.75 -> 5 * 2.5 + 2.5 + 1.
    out = _roi_align(feats, boxes, 1, aligned=False, method=method)[0, :, 0, 0, 0]
    np.testing.assert_allclose(out, [16.0, 1.0 + 5 * 0.5 + 0.5, 0.0], atol=1e-5)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_matches_reference_and_backends_agree(random_case, aligned, pooling):
    features, boxes = random_case
    expected = _reference(features, boxes, (3, 2), 1 / 16, 2, aligned, pooling)
    for method in METHODS:
        out = _roi_align(
            features,
            boxes,
            (3, 2),
            spatial_scale=1 / 16,
            aligned=aligned,
            pooling=pooling,
            method=method,
        )
        assert out.shape == (2, 12, 3, 2, 3) and out.dtype == jnp.float32
        np.testing.assert_allclose(out, expected, atol=2e-5, err_msg=method)


def test_sampling_ratio_one_and_three(random_case):
    features, boxes = random_case
    for ratio in (1, 3):
        expected = _reference(features, boxes, (2, 2), 1 / 16, ratio, True, "avg")
        for method in METHODS:
            out = _roi_align(
                features, boxes, 2, spatial_scale=1 / 16, sampling_ratio=ratio, method=method
            )
            np.testing.assert_allclose(out, expected, atol=2e-5)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_gradients(random_case, pooling):
    features, boxes = random_case
    small = jnp.asarray(features[:, :4, :5, :2])
    fd_boxes = jnp.asarray([[[5.0, 3.0, 60.0, 50.0], [20.0, 10.0, 75.0, 70.0]]] * 2)
    cot = jnp.asarray(np.random.default_rng(1).standard_normal((2, 12, 3, 2, 3)), jnp.float32)
    grads = {}
    for method in METHODS:
        fn = lambda f, m=method: _roi_align(
            f, fd_boxes, 2, spatial_scale=1 / 16, pooling=pooling, method=m
        )
        check_grads(fn, (small,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
        loss = lambda f, m=method: jnp.sum(
            cot * _roi_align(f, boxes, (3, 2), spatial_scale=1 / 16, pooling=pooling, method=m)
        )
        grads[method] = jax.grad(loss)(jnp.asarray(features))
    assert np.all(np.isfinite(grads["gather"]))
    assert np.abs(grads["gather"]).sum() > 0
    np.testing.assert_allclose(grads["gather"], grads["einsum"], atol=1e-4)


def test_chunked_cpu_backward_matches(random_case, monkeypatch):
    features, boxes = random_case
    cot = jnp.asarray(np.random.default_rng(2).standard_normal((2, 12, 3, 2, 3)), jnp.float32)

    def grad(pooling):
        loss = lambda f: jnp.sum(
            cot * _roi_align(f, boxes, (3, 2), spatial_scale=1 / 16, pooling=pooling)
        )
        return jax.grad(loss)(jnp.asarray(features))

    whole = {p: grad(p) for p in ("avg", "max")}
    # 7 bins per chunk: 144 bins in 21 chunks, the last one padded.
    monkeypatch.setattr(roi_align_module, "_CPU_CHUNK_BYTES", 7 * 4 * 16 * 3)
    for pooling, expected in whole.items():
        np.testing.assert_allclose(grad(pooling), expected, atol=1e-5)


def test_jit_vmap_and_padded_rows_are_finite(random_case):
    features, boxes = random_case
    stacked_f = jnp.stack([features, features[::-1]])
    stacked_b = jnp.stack([boxes, boxes[::-1] * 0.5])
    fn = jax.jit(
        jax.vmap(lambda f, b: _roi_align(f, b, (3, 2), spatial_scale=1 / 16, method="gather"))
    )
    out = fn(stacked_f, stacked_b)
    for i in range(2):
        np.testing.assert_allclose(
            out[i],
            _roi_align(stacked_f[i], stacked_b[i], (3, 2), spatial_scale=1 / 16),
            atol=1e-6,
        )
    # Padded (all-zero) boxes: finite values and gradients; boxes get no gradient.
    zeros = jnp.zeros_like(boxes)
    for method in METHODS:
        loss = lambda f, b, m=method: jnp.sum(
            _roi_align(f, b, (3, 2), spatial_scale=1 / 16, method=m) ** 2
        )
        value, (grad, box_grad) = jax.value_and_grad(loss, argnums=(0, 1))(
            jnp.asarray(features), zeros
        )
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        np.testing.assert_array_equal(box_grad, 0.0)


def test_bad_inputs_raise():
    feats = jnp.zeros((1, 4, 4, 2))
    box = jnp.zeros((1, 3, 4))
    with pytest.raises(ValueError, match="features"):
        _roi_align(feats[0], box, 2)
    with pytest.raises(ValueError, match="boxes"):
        _roi_align(feats, box[:, :, :3], 2)
    with pytest.raises(ValueError, match="boxes"):
        _roi_align(feats, jnp.zeros((2, 3, 4)), 2)
    with pytest.raises(ValueError, match="sampling_ratio"):
        _roi_align(feats, box, 2, sampling_ratio=0)
    with pytest.raises(ValueError, match="output_size"):
        _roi_align(feats, box, (2, 0))
    with pytest.raises(ValueError, match="pooling"):
        _roi_align(feats, box, 2, pooling="mean")
    with pytest.raises(ValueError, match="method"):
        _roi_align(feats, box, 2, method="loop")
    with pytest.raises(ValueError, match="output_size must be a positive int"):
        _roi_align(feats, box, 2.5)  # a TypeError: 'float' object is not iterable
    with pytest.raises(ValueError, match=r"features must be \(B, H, W, C\) with H, W >= 1"):
        _roi_align(jnp.zeros((1, 0, 0, 2)), box, 2)  # an IndexError from jnp.take


def test_no_roi_gives_an_empty_result():
    # A ZeroDivisionError ("integer modulo by zero") before.
    feats = jnp.ones((2, 4, 4, 3))
    assert _roi_align(feats, jnp.zeros((2, 0, 4)), 2).shape == (2, 0, 2, 2, 3)
    assert _roi_align(feats[:0], jnp.zeros((0, 5, 4)), 2).shape == (0, 5, 2, 2, 3)
    assert ops.sample_grids(feats, jnp.zeros((2, 0, 2)), 3).shape == (2, 0, 3, 3, 3)


@pytest.fixture(scope="module")
def torchvision_case():
    """The inputs of tests/data/roi_align_torchvision.npz and torchvision's outputs."""
    case = reference_cases.roi_align_case()
    ref = np.load(pathlib.Path(__file__).parent / "data" / "roi_align_torchvision.npz")
    reference_cases.check_fresh(
        reference_cases.fingerprint(*case.values()), ref["fingerprint"], "roi_align_torchvision.npz"
    )
    return case, ref


@pytest.mark.parametrize("aligned", [True, False])
def test_matches_torchvision(torchvision_case, aligned):
    """Forward and feature gradient against torchvision.ops.roi_align (stored outputs)."""
    case, ref = torchvision_case
    boxes, cotangent = case["boxes"], case["cotangent"]
    out_hw = reference_cases.ROI_ALIGN_OUTPUT
    for ratio in reference_cases.ROI_ALIGN_RATIOS:
        key = f"aligned{int(aligned)}_ratio{ratio}"
        for method in METHODS:
            kw = dict(
                spatial_scale=reference_cases.ROI_ALIGN_SCALE,
                sampling_ratio=ratio,
                aligned=aligned,
                method=method,
            )

            def loss(f, kw=kw):
                out = _roi_align(f, boxes, out_hw, **kw)
                return jnp.sum(cotangent * out), out

            (_, out), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(case["features"])
            np.testing.assert_allclose(out, ref[f"{key}_output"], atol=2e-5, err_msg=method)
            np.testing.assert_allclose(grad, ref[f"{key}_grad"], atol=1e-4, err_msg=method)


@pytest.mark.parametrize("grid", [1, 2, 3])
def test_sample_grids_equal_roi_align_of_point_centred_boxes(grid):
    """Values and gradients of `roi_align` on boxes `grid` cells wide, sampling ratio 1,
    including lattices across every border, beyond the map and NaN points."""
    rng = np.random.default_rng(grid)
    features = jnp.asarray(rng.standard_normal((2, 6, 7, 5)), jnp.float32)
    scale = 0.25  # input pixels 24 x 28
    points = rng.uniform(-12.0, 40.0, (2, 40, 2)).astype(np.float32)
    points[0, :3] = [[0.0, 0.0], [27.9, 23.9], [-6.0, 2.0]]  # corners and just outside
    points[1, 0] = [np.nan, 5.0]
    # Samples exactly on the limits (x = W, y = H, y = -1), still read: the last lattice
    # sample at x * scale - grid / 2 + grid - 1.
    last = 2.0 * (grid - 1)
    points[1, 1:4] = [[30.0 - last, 10.0], [10.0, 26.0 - last], [10.0, -2.0 + last]]
    points = jnp.asarray(points)
    half = 0.5 * grid / scale
    boxes = jnp.concatenate([points - half, points + half], axis=-1)

    def by_roi_align(f):
        return ops.roi_align(f, boxes, grid, spatial_scale=scale, sampling_ratio=1)

    def by_lattice(f):
        return ops.sample_grids(f, points, grid, spatial_scale=scale)

    expect = by_roi_align(features)
    got = by_lattice(features)
    assert got.shape == (2, 40, grid, grid, 5)
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)
    assert not np.any(np.asarray(got[1, 0]))  # NaN point: zeros
    cotangent = jnp.asarray(rng.standard_normal(expect.shape), jnp.float32)
    grads = [
        jax.grad(lambda f, g=g: jnp.sum(g(f) * cotangent))(features)
        for g in (by_roi_align, by_lattice)
    ]
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-5)


def test_sample_grids_bad_inputs_raise():
    features = jnp.zeros((2, 4, 4, 3))
    with pytest.raises(ValueError, match="points must be"):
        ops.sample_grids(features, jnp.zeros((3, 5, 2)), 2)
    with pytest.raises(ValueError, match="grid must be"):
        ops.sample_grids(features, jnp.zeros((2, 5, 2)), 0)
    with pytest.raises(ValueError, match="features must be"):
        ops.sample_grids(jnp.zeros((4, 4, 3)), jnp.zeros((2, 5, 2)), 2)
