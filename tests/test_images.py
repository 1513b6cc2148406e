"""Tests of lcrnet_jax.data.images."""

import numpy as np
import pytest
from PIL import Image

from lcrnet_jax.data.images import to_rgb

GRAY = np.array([[0, 1, 128], [200, 254, 255]], np.uint8)


def sixteen_bit_png(path, gray8=GRAY):
    """A 16-bit grayscale PNG of the 8-bit `gray8` (v -> 257 v: the same image)."""
    Image.fromarray(gray8.astype(np.uint16) * 257).save(path)
    return path


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    with Image.open(sixteen_bit_png(tmp_path / "wide.png")) as pil:
        assert pil.mode.startswith("I")
        rgb = to_rgb(pil)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    np.testing.assert_array_equal(rgb, np.repeat(GRAY[..., None], 3, axis=-1))
    # 32-bit integers (how some PIL versions open 16-bit PNGs) outside 0-65535 are clipped.
    wide = Image.fromarray(np.array([[-5, 65535, 70000]], np.int32), "I")
    np.testing.assert_array_equal(to_rgb(wide)[..., 0], [[0, 255, 255]])


def test_8_bit_modes_and_transparency():
    rgb = np.array([[[10, 20, 30], [250, 128, 0]]], np.uint8)
    np.testing.assert_array_equal(to_rgb(Image.fromarray(rgb)), rgb)
    np.testing.assert_array_equal(to_rgb(Image.fromarray(GRAY))[..., 1], GRAY)
    assert to_rgb(Image.fromarray(rgb).convert("CMYK")).shape == (1, 2, 3)
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque; the other pixel is transparent -> white
    np.testing.assert_array_equal(to_rgb(Image.fromarray(rgba)), [[[10, 20, 30], [255] * 3]])


def test_floating_point_images_are_refused():
    with pytest.raises(ValueError, match="floating-point image .*8- or 16-bit"):
        to_rgb(Image.fromarray(np.full((2, 2), 0.5, np.float32)))
