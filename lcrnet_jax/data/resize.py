"""The one input scale of training, evaluation and prediction (LCR-Net++ Sec. 4.2-4.3).

The paper and its released models resize every image so that its short side is 800
pixels, the long side capped at 1333 (`resize_scale`). Training multiplies that scale by
a random jitter (`pipeline.Augment.scale_range`), evaluation and prediction use it as it
is. Static shapes come from size buckets (`size_buckets`): the resized image lies in the
top-left corner of the smallest bucket that holds it (`pick_bucket`, `scale_into`), so
a jitted network compiles once per bucket. Needs only numpy and PIL (the exported-model
loader, `lcrnet_jax.predict.exported`, relies on it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
from typing import Any

import numpy as np
from PIL import Image

from lcrnet_jax.data.images import DECODE_ERRORS, ImageDecodeError, decode_failure, to_rgb
from lcrnet_jax.geometry import is_whole


@dataclasses.dataclass(frozen=True)
class Resize:
    """Input scale: short side to `short_side`, long side at most `max_long_side`.

    Attributes:
      short_side: target short side, network pixels (800 in the paper).
      max_long_side: cap on the long side, network pixels (1333).
    """

    short_side: int = 800
    max_long_side: int = 1333

    def __post_init__(self):
        _check_sides(self.short_side, self.max_long_side)

    def scale(self, height: int, width: int) -> float:
        """`resize_scale` of an image of (height, width) pixels."""
        return resize_scale(height, width, self.short_side, self.max_long_side)

    def buckets(self) -> tuple[tuple[int, int], ...]:
        """The default `size_buckets` of this scale."""
        return size_buckets(self.short_side, self.max_long_side)


def _check_sides(short_side, max_long_side) -> None:
    """ValueError unless `short_side` and `max_long_side` are ints, 1 <= short <= long."""
    if not (is_whole(short_side) and is_whole(max_long_side) and 1 <= short_side <= max_long_side):
        raise ValueError(
            f"need ints 1 <= short_side <= max_long_side (pixels), got {short_side!r} and "
            f"{max_long_side!r}"
        )


def checked_buckets(buckets) -> tuple[tuple[int, int], ...]:
    """`buckets` as (height, width) pairs of ints; ValueError unless each holds 2 ints >= 1."""
    checked = []
    for bucket in buckets:
        if np.shape(bucket) != (2,) or not all(is_whole(side) and side >= 1 for side in bucket):
            raise ValueError(f"buckets must be (height, width) ints >= 1 (pixels), got {bucket!r}")
        checked.append((int(bucket[0]), int(bucket[1])))
    return tuple(checked)


def resize_scale(height: int, width: int, short_side: int, max_long_side: int) -> float:
    """Network pixels per original pixel: the short side to `short_side`, the long side
    at most `max_long_side`."""
    return min(short_side / min(height, width), max_long_side / max(height, width))


def resized_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) of an image scaled by `scale` (floored, at least 1 pixel)."""
    return (max(1, math.floor(height * scale + 1e-6)), max(1, math.floor(width * scale + 1e-6)))


def size_buckets(
    short_side: int, max_long_side: int, *, steps: int = 3, multiple: int = 32
) -> tuple[tuple[int, int], ...]:
    """Canvas sizes (height, width) for images resized by `resize_scale`.

    Landscape and portrait buckets whose short side is `short_side` and whose long side
    runs from `short_side` to `max_long_side` in `steps` steps, each rounded up to a
    multiple of `multiple` pixels.

    Returns:
      Sizes sorted by area (the square bucket first).
    """
    _check_sides(short_side, max_long_side)
    if steps < 1 or multiple < 1:
        raise ValueError(f"steps and multiple must be >= 1, got {steps} and {multiple}")
    short = -(-short_side // multiple) * multiple
    longs = np.linspace(short_side, max_long_side, steps) if steps > 1 else [max_long_side]
    longs = sorted({max(short, -(-math.ceil(v) // multiple) * multiple) for v in longs})
    sizes = {(short, long) for long in longs} | {(long, short) for long in longs}
    return tuple(sorted(sizes, key=lambda s: (s[0] * s[1], s)))


def pick_bucket(
    size: tuple[int, int], buckets: tuple[tuple[int, int], ...], *, clip: bool = False
) -> tuple[int, int]:
    """The smallest-area bucket holding an image of `size` (height, width).

    Args:
      size: the resized image's (height, width).
      buckets: canvas sizes.
      clip: when no bucket holds it, the largest bucket of the image's orientation (the
        image is then cropped: training with scale jitter); else ValueError.
    """
    fits = [b for b in buckets if b[0] >= size[0] and b[1] >= size[1]]
    if fits:
        return min(fits, key=lambda b: (b[0] * b[1], b))
    if not clip:
        raise ValueError(
            f"no size bucket holds a {size[0]}x{size[1]} resized image; buckets: {buckets}"
        )
    landscape = size[1] >= size[0]
    same = [b for b in buckets if (b[1] >= b[0]) == landscape] or list(buckets)
    return max(same, key=lambda b: (b[0] * b[1], b))


def _open_image(image: Any, scale: float) -> tuple[Image.Image, float]:
    """PIL image from an (h, w, 3) uint8 array or encoded bytes, and its size factor.

    JPEG bytes that will be shrunk by 2x or more are decoded at 1/2, 1/4 or 1/8 size
    (PIL's draft mode, exact DCT scaling); the factor maps original pixels to them.
    """
    if isinstance(image, bytes | bytearray):
        with _decoding():
            pil = Image.open(io.BytesIO(image))
            width = pil.size[0]
            if pil.format == "JPEG" and scale <= 0.5:
                pil.draft("RGB", (math.ceil(pil.size[0] * scale), math.ceil(pil.size[1] * scale)))
            factor = 2.0 ** -round(math.log2(width / pil.size[0]))
            if pil.mode in ("RGB", "L"):
                return pil.convert("RGB"), factor
            # 16-bit, transparent, ...: converted as prediction converts image files.
            return Image.fromarray(to_rgb(pil)), factor
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"record image must be (H, W, 3) uint8 or bytes, got {image.shape}")
    return Image.fromarray(image), 1.0


def image_shape(image: Any) -> tuple[int, int]:
    """(height, width) of an array or of encoded bytes (header only)."""
    if isinstance(image, bytes | bytearray):
        with _decoding():
            width, height = Image.open(io.BytesIO(image)).size
        return height, width
    return np.asarray(image).shape[:2]


@contextlib.contextmanager
def _decoding():
    """Turns PIL's errors on encoded bytes into `ImageDecodeError`."""
    try:
        yield
    except DECODE_ERRORS as error:
        raise ImageDecodeError(f"image cannot be decoded: {decode_failure(error)}") from None


def scale_into(
    image: Any,
    *,
    scale: float,
    out_size: tuple[int, int],
    crop: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> tuple[np.ndarray, tuple[int, int]]:
    """An image scaled (bilinear) into the top-left corner of a zero canvas.

    Output pixels = original pixels * scale - crop, after an optional left-right mirror
    of the original; the valid region is `floor(size * scale - crop)`, capped by the
    canvas and at least 1 pixel.

    Args:
      image: (h, w, 3) uint8 RGB array or encoded bytes (JPEG bytes that shrink by 2x or
        more are decoded at reduced size).
      scale: output pixels per original pixel.
      out_size: (height, width) of the canvas.
      crop: (x, y) of the canvas origin in scaled pixels.
      flip: mirror the original left-right first.

    Returns:
      ((out_h, out_w, 3) uint8 canvas, zero outside the valid region, (valid_h, valid_w)).
    """
    out_h, out_w = out_size
    height, width = image_shape(image)
    valid_w = max(1, min(out_w, math.floor(width * scale - crop[0] + 1e-6)))
    valid_h = max(1, min(out_h, math.floor(height * scale - crop[1] + 1e-6)))
    pil, factor = _open_image(image, scale)
    shift = 0.0
    if flip:
        pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        # A draft decode is ceil(width * factor) wide: mirrored about its own width, the
        # picture moves by the rounding, which the labels (mirrored about width) do not.
        shift = pil.size[0] - width * factor
    # The valid region in (possibly draft-decoded) source pixels.
    box = (
        crop[0] / scale * factor + shift,
        crop[1] / scale * factor,
        min(pil.size[0], (crop[0] + valid_w) / scale * factor + shift),
        min(pil.size[1], (crop[1] + valid_h) / scale * factor),
    )
    resized = pil.resize((valid_w, valid_h), Image.Resampling.BILINEAR, box=box)
    canvas = np.zeros((out_h, out_w, 3), np.uint8)
    canvas[:valid_h, :valid_w] = np.asarray(resized)
    return canvas, (valid_h, valid_w)
