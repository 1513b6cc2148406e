"""Random colours for the synthetic scenes of LCR-Net++ Sec. 4.1 (clothes, backgrounds)."""

from __future__ import annotations

import numpy as np


def random_colors(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    *,
    saturation: tuple[float, float] = (0.15, 0.9),
    value: tuple[float, float] = (0.2, 0.95),
) -> np.ndarray:
    """Colours with uniform hue and uniform saturation and value in the given ranges.

    Returns:
      (*shape, 3) float32 RGB in [0, 255].
    """
    hue = rng.uniform(0.0, 1.0, shape)
    sat = rng.uniform(*saturation, shape)[..., None]
    val = rng.uniform(*value, shape)[..., None]
    # HSV -> RGB: channel offsets 5, 3, 1 give R, G, B.
    k = (hue[..., None] * 6.0 + np.array([5.0, 3.0, 1.0])) % 6.0
    rgb = val * (1.0 - sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))
    return (255.0 * rgb).astype(np.float32)
