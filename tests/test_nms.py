import functools
import importlib
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax import ops
from tests import reference_cases

# The package exports the function `nms`, which hides the submodule of that name.
nms_module = importlib.import_module("lcrnet_jax.ops.nms")

N = 40
CASES = 120  # per threshold
_nms = jax.jit(ops.nms, static_argnums=3)


def _greedy(boxes, scores, threshold, valid=None, classes=None):
    """Straightforward greedy NMS: visit by descending score (stable), drop overlaps."""
    lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=-1)
    union = area[:, None] + area[None, :] - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
    valid = np.ones(len(scores), bool) if valid is None else valid
    classes = np.zeros(len(scores), int) if classes is None else classes
    kept = []
    for i in np.argsort(-scores, kind="stable"):
        if valid[i] and not any(classes[i] == classes[j] and iou[i, j] > threshold for j in kept):
            kept.append(i)
    return kept


def _random_cases(rng, cases, n, tie_every=3):
    xy = rng.uniform(0, 60, (cases, n, 2))
    wh = rng.uniform(2, 40, (cases, n, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    scores = rng.uniform(size=(cases, n)).astype(np.float32)
    scores[::tie_every] = np.round(scores[::tie_every] * 4) / 4  # many ties
    return boxes, scores


@pytest.fixture(scope="module")
def vmapped_nms():
    return jax.jit(jax.vmap(ops.nms, in_axes=(0, 0, 0, None)), static_argnums=3)


@pytest.mark.parametrize("tile", [None, 8])
def test_matches_greedy_reference_on_random_cases(vmapped_nms, monkeypatch, tile):
    if tile is not None:  # many tiles, the last one padded
        monkeypatch.setattr(nms_module, "_TILE", tile)
        vmapped_nms = jax.jit(jax.vmap(ops.nms, in_axes=(0, 0, 0, None)), static_argnums=3)
    rng = np.random.default_rng(0 if tile is None else 1)
    boxes, scores = _random_cases(rng, 3 * CASES, N)
    thresholds = np.repeat(np.float32([0.3, 0.5, 0.7]), CASES)
    indices, counts = vmapped_nms(boxes, scores, thresholds, N)
    assert indices.shape == (3 * CASES, N) and indices.dtype == jnp.int32
    for c in range(3 * CASES):
        expected = _greedy(boxes[c], scores[c], thresholds[c])
        assert int(counts[c]) == len(expected)
        np.testing.assert_array_equal(indices[c, : len(expected)], expected)
        assert np.all(np.asarray(indices[c, len(expected) :]) == -1)


def test_max_outputs_truncates_in_order():
    boxes, scores = _random_cases(np.random.default_rng(2), 1, N)
    expected = _greedy(boxes[0], scores[0], 0.5)
    assert len(expected) > 5
    idx, count = _nms(boxes[0], scores[0], 0.5, 5)
    assert int(count) == 5
    np.testing.assert_array_equal(idx, expected[:5])
    idx, count = ops.nms(boxes[0], scores[0], 0.5, 0)
    assert idx.shape == (0,) and int(count) == 0


def _pad(boxes, scores, n=N):
    """Pads to n boxes marked invalid (zero boxes with high scores), to share compiles."""
    extra = n - len(scores)
    boxes = np.concatenate([boxes, np.zeros((extra, 4), np.float32)])
    valid = np.arange(n) < len(scores)
    return boxes, np.concatenate([scores, np.ones(extra, np.float32)]), valid


def test_hand_case_ties_threshold_is_strict_and_padding_is_ignored():
    boxes = np.array(
        [[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 5]],
        np.float32,
    )
    scores = np.array([0.5, 0.5, 0.9, 0.5, 0.1], np.float32)
    boxes, scores, valid = _pad(boxes, scores)
    # Box 2 first; box 0 (IoU 1/3 with 2) is kept over its twin 1 (lower index wins the tie);
    # box 4 has IoU exactly 0.5 with box 0: not suppressed at 0.5 (strict), suppressed at 0.4.
    idx, count = _nms(boxes, scores, 0.5, N, valid=valid)
    np.testing.assert_array_equal(idx[:5], [2, 0, 3, 4, -1])
    assert int(count) == 4
    idx, count = _nms(boxes, scores, 0.4, N, valid=valid)
    np.testing.assert_array_equal(idx[:4], [2, 0, 3, -1])


def test_the_padding_of_the_last_tile_is_never_kept(monkeypatch):
    """5 boxes in tiles of 4: the 3 padded slots of the second tile point at box 0, an
    empty box (x2 < x1) that overlaps nothing, so no kept box would suppress them."""
    monkeypatch.setattr(nms_module, "_TILE", 4)
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(5)], np.float32)
    boxes[0] = (10, 0, 0, 10)
    scores = np.array([0.9, 0.5, 0.8, 0.7, 0.6], np.float32)
    idx, count = ops.nms(boxes, scores, 0.7, 8)
    np.testing.assert_array_equal(idx, [0, 2, 3, 4, 1, -1, -1, -1])
    assert int(count) == 5


def test_valid_mask_and_nan_scores():
    boxes, scores = _random_cases(np.random.default_rng(3), 1, N)
    boxes, scores = boxes[0], scores[0]
    valid = np.random.default_rng(4).uniform(size=N) < 0.6
    scores_nan = np.where(valid, scores, np.nan).astype(np.float32)
    expected = _greedy(boxes, scores, 0.5, valid=valid)
    for mask, s in ((valid, scores), (np.ones(N, bool), scores_nan)):
        idx, count = _nms(boxes, s, 0.5, N, valid=mask)
        assert int(count) == len(expected)
        np.testing.assert_array_equal(idx[: len(expected)], expected)


def test_batched_nms_suppresses_within_classes_only():
    rng = np.random.default_rng(5)
    boxes, scores = _random_cases(rng, 40, N)
    classes = rng.integers(0, 3, (40, N))
    valid = rng.uniform(size=(40, N)) < 0.9
    # Case 0 starts with the same box twice, in two classes: both are kept.
    boxes[0, :2], scores[0, :2], classes[0, :2], valid[0, :2] = 5.0, [2.0, 1.5], [0, 1], True
    boxes[0, :2, 2:] = 30.0
    fn = jax.jit(jax.vmap(lambda b, s, c, v: ops.batched_nms(b, s, c, 0.5, N, valid=v)))
    indices, counts = fn(boxes, scores, classes, valid)
    np.testing.assert_array_equal(indices[0, :2], [0, 1])
    for c in range(40):
        expected = _greedy(boxes[c], scores[c], 0.5, valid=valid[c], classes=classes[c])
        assert int(counts[c]) == len(expected)
        np.testing.assert_array_equal(indices[c, : len(expected)], expected)


def test_bad_inputs_raise():
    boxes = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="boxes"):
        ops.nms(boxes[:, :3], np.zeros(4), 0.5, 2)
    with pytest.raises(ValueError, match="scores"):
        ops.nms(boxes, np.zeros(3), 0.5, 2)
    with pytest.raises(ValueError, match="valid"):
        ops.nms(boxes, np.zeros(4), 0.5, 2, valid=np.ones(5, bool))
    with pytest.raises(ValueError, match="max_outputs"):
        ops.nms(boxes, np.zeros(4), 0.5, -1)
    with pytest.raises(ValueError, match="classes"):
        ops.batched_nms(boxes, np.zeros(4), np.zeros(3), 0.5, 2)
    for threshold in (float("nan"), -0.1, 1.5):  # NaN kept every box: no suppression
        with pytest.raises(ValueError, match=r"^nms: iou_threshold must be in \[0, 1\], got"):
            ops.nms(boxes, np.zeros(4), threshold, 2)


@pytest.fixture(scope="module")
def torchvision_nms():
    return np.load(pathlib.Path(__file__).parent / "data" / "nms_torchvision.npz")


@pytest.mark.parametrize("name", ["grid", "rpn"])
def test_matches_torchvision(torchvision_nms, name):
    """nms and batched_nms against torchvision's kept indices (stored outputs).

    "rpn": 3000 boxes at RPN scale; "grid": exact IoU ties, duplicates and tied scores,
    padded to 3000 boxes with invalid rows so that both cases share one compile.
    """
    case = reference_cases.nms_cases()[name]
    reference_cases.check_fresh(
        reference_cases.fingerprint(*case.values()),
        torchvision_nms[f"{name}_fingerprint"],
        "nms_torchvision.npz",
    )
    size = 3000
    pad = size - len(case["scores"])
    boxes = np.pad(case["boxes"], ((0, pad), (0, 0)))
    scores, classes = (np.pad(case[k], (0, pad)) for k in ("scores", "classes"))
    valid = np.arange(size) < len(case["scores"])
    for threshold in reference_cases.NMS_THRESHOLDS[name]:
        key = f"{name}_iou{threshold}"
        for ours, ref in (
            (_nms_valid(boxes, scores, threshold, size, valid), torchvision_nms[f"{key}_nms"]),
            (
                _batched_nms_valid(boxes, scores, classes, threshold, size, valid),
                torchvision_nms[f"{key}_batched"],
            ),
        ):
            index, count = ours
            np.testing.assert_array_equal(index[: int(count)], ref, err_msg=key)


@functools.partial(jax.jit, static_argnums=3)
def _nms_valid(boxes, scores, threshold, max_outputs, valid):
    return ops.nms(boxes, scores, threshold, max_outputs, valid=valid)


@functools.partial(jax.jit, static_argnums=4)
def _batched_nms_valid(boxes, scores, classes, threshold, max_outputs, valid):
    return ops.batched_nms(boxes, scores, classes, threshold, max_outputs, valid=valid)
