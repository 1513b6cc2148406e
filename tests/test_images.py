"""Tests of lcrnet_jax.data.images."""

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from lcrnet_jax.data.images import decode_failure, to_rgb

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


def test_16_bit_values_round_to_the_nearest_8_bit_level():
    """v16 / 257 is rounded, not truncated: 257 v + 129 is nearer to v + 1 than to v."""
    levels = np.array([[0, 128, 129, 257 * 10 + 128, 257 * 10 + 129, 65535]])
    wide = Image.fromarray(levels.astype(np.int32), "I")
    nearest = [int(np.argmin(np.abs(257 * np.arange(256) - v))) for v in levels[0]]
    np.testing.assert_array_equal(to_rgb(wide)[..., 0], [nearest])
    assert nearest[2] == 1 and nearest[4] == 11  # the case that truncation gets wrong


def test_transparent_gray_and_palette_pixels_become_white():
    """LA images and palette images with a transparent colour are composited over
    white, as RGBA ones are."""
    la = Image.fromarray(np.array([[[90, 255], [90, 0]]], np.uint8), "LA")
    np.testing.assert_array_equal(to_rgb(la), [[[90] * 3, [255] * 3]])
    palette = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    palette.putpalette([10, 20, 30, 0, 0, 0] + [0] * 762)
    palette.info["transparency"] = 1  # colour 1 (black) is transparent
    np.testing.assert_array_equal(to_rgb(palette), [[[10, 20, 30], [255] * 3]])


def test_decode_failures_are_named_without_the_in_memory_files_repr():
    """An unknown format and a header cut short get a reason a user can read."""
    unknown = UnidentifiedImageError("cannot identify image file <_io.BytesIO object at 0x7f>")
    assert decode_failure(unknown) == "not an image file PIL can identify"
    for error in (EOFError(), IndexError("index out of range")):
        reason = decode_failure(error)
        assert reason.startswith("truncated or damaged (") and "0x7f" not in reason
    assert decode_failure(EOFError()) == "truncated or damaged (EOFError)"  # no message
    assert decode_failure(OSError("broken PNG file")) == "broken PNG file"
