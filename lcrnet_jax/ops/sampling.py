"""Balanced positive/negative sampling of RoIs and anchors (LCR-Net++ Sec. 3.5).

Training draws a fixed number of examples per image with a bounded share of positives:
256 anchors with up to 50% positives for the RPN (Faster R-CNN), and 512 RoIs with up to
25% positives for the classification-regression heads of the ResNet-50 model (Sec. 3.5).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lcrnet_jax.geometry import is_whole


def max_positives(num_samples: int, positive_fraction: float) -> int:
    """P = floor(num_samples * positive_fraction + 0.5), the most positives
    `sample_balanced` draws: they fill its first P slots at most."""
    return int(num_samples * positive_fraction + 0.5)


def sample_balanced(labels, num_samples: int, positive_fraction: float, key, *, valid=None):
    """Uniformly samples up to a share of positives and fills the rest with negatives.

    At most P = floor(num_samples * positive_fraction + 0.5) positives (labels > 0) are
    drawn uniformly without replacement; negatives (labels == 0) fill the remaining
    num_samples - min(P, #positives) slots the same way; labels < 0 are never drawn.
    Slots that cannot be filled (too few examples) are masked out.

    Args:
      labels: (N,) int labels: > 0 positive, 0 negative, < 0 ignored.
      num_samples: number of output slots (static int >= 0).
      positive_fraction: largest share of positives, in [0, 1].
      key: PRNG key; the result is a deterministic function of it.
      valid: (N,) bool, False for padded entries (never drawn); None for all.

    Returns:
      indices: (num_samples,) int32 indices into `labels`: the positives first, then the
        negatives, then 0 on unfilled slots (always a valid index for gathers).
      mask: (num_samples,) bool, True on filled slots.

    Raises:
      ValueError: on bad shapes, `num_samples` or `positive_fraction`.
    """
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise ValueError(f"sample_balanced: labels must be (N,) with N >= 1, got {labels.shape}")
    if not is_whole(num_samples) or num_samples < 0:
        raise ValueError(f"sample_balanced: num_samples must be an int >= 0, got {num_samples!r}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(
            f"sample_balanced: positive_fraction must be in [0, 1], got {positive_fraction!r}"
        )
    if valid is None:
        valid = jnp.ones(labels.shape, bool)
    valid = jnp.asarray(valid, bool)
    if valid.shape != labels.shape:
        raise ValueError(
            f"sample_balanced: valid must have shape {labels.shape}, got {valid.shape}"
        )
    n = labels.shape[0]
    max_pos = max_positives(num_samples, positive_fraction)
    positive = valid & (labels > 0)
    negative = valid & (labels == 0)
    k = min(num_samples, n)
    key_pos, key_neg = jax.random.split(key)
    # Random priorities: members of the class in [0, 1), everything else -1; the top k are
    # a uniform random subset (in random order) of the members, non-members after them.
    # float32 always: 64-bit mode would draw another stream from the same key.
    priority = functools.partial(jax.random.uniform, shape=(n,), dtype=jnp.float32)
    pos_order = jax.lax.top_k(jnp.where(positive, priority(key_pos), -1.0), k)[1]
    neg_order = jax.lax.top_k(jnp.where(negative, priority(key_neg), -1.0), k)[1]
    num_pos = jnp.minimum(jnp.sum(positive, dtype=jnp.int32), max_pos)
    num_neg = jnp.minimum(jnp.sum(negative, dtype=jnp.int32), num_samples - num_pos)
    slot = jnp.arange(num_samples, dtype=jnp.int32)
    neg_slot = slot - num_pos
    indices = jnp.where(
        slot < num_pos,
        pos_order[jnp.minimum(slot, k - 1)],
        neg_order[jnp.clip(neg_slot, 0, k - 1)],
    )
    mask = slot < num_pos + num_neg
    return jnp.where(mask, indices, 0).astype(jnp.int32), mask
