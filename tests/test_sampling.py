import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax import ops

_sample = jax.jit(ops.sample_balanced, static_argnums=(1, 2))


def _labels(num_pos, num_neg, num_ignored, seed=0):
    labels = np.array([1] * num_pos + [0] * num_neg + [-1] * num_ignored)
    labels[:num_pos] = np.random.default_rng(seed).integers(1, 5, num_pos)  # any class > 0
    return np.random.default_rng(seed).permutation(labels)


@pytest.mark.parametrize(
    ("num_pos", "num_neg", "want_pos", "want_neg"),
    [
        (100, 500, 16, 48),  # enough of both: 25% positives
        (5, 500, 5, 59),  # few positives: negatives fill the rest
        (100, 10, 16, 10),  # few negatives: unfilled slots
        (0, 3, 0, 3),
    ],
)
def test_counts_fractions_and_masks(num_pos, num_neg, want_pos, want_neg):
    labels = _labels(num_pos, num_neg, 37)
    labels = np.pad(labels, (0, 700 - len(labels)), constant_values=-1)
    idx, mask = _sample(labels, 64, 0.25, jax.random.key(0))
    assert idx.shape == (64,) and mask.shape == (64,) and idx.dtype == jnp.int32
    idx, mask = np.asarray(idx), np.asarray(mask)
    chosen = labels[idx[mask]]
    assert np.sum(chosen > 0) == want_pos and np.sum(chosen == 0) == want_neg
    assert mask.sum() == want_pos + want_neg and np.all(mask[: mask.sum()])  # filled slots first
    assert np.all(labels[idx[:want_pos]] > 0)  # positives, then negatives
    assert want_pos <= ops.max_positives(64, 0.25) == 16  # in the first slots only
    assert len(set(idx[mask].tolist())) == mask.sum()  # without replacement
    assert np.all(idx[~mask] == 0)


def test_valid_mask_excludes_entries_and_rounding():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    valid = np.array([True, False, True, True, False, True, True, True, True, True])
    idx, mask = _sample(labels, 6, 0.5, jax.random.key(1), valid=valid)
    assert set(np.asarray(idx)[np.asarray(mask)].tolist()) <= set(np.flatnonzero(valid).tolist())
    assert int(mask.sum()) == 6
    # round(5 * 0.5) = 3 positives (half up), of which only 2 are valid.
    idx, mask = _sample(labels, 5, 0.5, jax.random.key(2), valid=valid)
    assert np.sum(labels[np.asarray(idx)[np.asarray(mask)]] > 0) == 2
    idx, mask = _sample(labels, 5, 0.5, jax.random.key(2))
    assert np.sum(labels[np.asarray(idx)] > 0) == 3


def test_deterministic_for_a_key_and_uniform():
    labels = _labels(20, 60, 20, seed=3)
    a = _sample(labels, 16, 0.25, jax.random.key(7))
    b = _sample(labels, 16, 0.25, jax.random.key(7))
    c = _sample(labels, 16, 0.25, jax.random.key(8))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    keys = jax.random.split(jax.random.key(9), 2000)
    idx, mask = jax.vmap(lambda k: ops.sample_balanced(labels, 16, 0.25, k))(keys)
    assert bool(jnp.all(mask))
    counts = np.bincount(np.asarray(idx).ravel(), minlength=len(labels)) / 2000
    # Each positive is drawn with probability 4/20, each negative with 12/60 = 1/5.
    np.testing.assert_allclose(counts[labels > 0], 0.2, atol=0.05)
    np.testing.assert_allclose(counts[labels == 0], 0.2, atol=0.05)
    assert np.all(counts[labels < 0] == 0)


def test_64_bit_mode_draws_the_same_samples():
    """With JAX_ENABLE_X64 the priorities were float64: another random stream, so a
    training with the same seed sampled other RoIs."""
    labels = _labels(20, 60, 20, seed=3)
    want = _sample(labels, 16, 0.25, jax.random.key(7))
    with jax.enable_x64(True):
        got = _sample(labels, 16, 0.25, jax.random.key(7))
    np.testing.assert_array_equal(got[0], want[0])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="labels"):
        ops.sample_balanced(np.zeros((2, 3)), 4, 0.5, jax.random.key(0))
    with pytest.raises(ValueError, match="positive_fraction"):
        ops.sample_balanced(np.zeros(3), 4, 1.5, jax.random.key(0))
    with pytest.raises(ValueError, match="num_samples"):
        ops.sample_balanced(np.zeros(3), -1, 0.5, jax.random.key(0))
    with pytest.raises(ValueError, match="valid"):
        ops.sample_balanced(np.zeros(3), 2, 0.5, jax.random.key(0), valid=np.ones(2, bool))
