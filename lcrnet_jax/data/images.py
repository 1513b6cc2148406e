"""Any image PIL can open as the (H, W, 3) uint8 RGB array that the model reads.

Grayscale, palette and CMYK images are converted as PIL converts them; transparent
pixels become white; 16-bit images (PNG, TIFF) are scaled to 8 bits, not clipped.
"""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image, UnidentifiedImageError

# PIL's modes for one channel of 16 bits ("I;16*") or 32-bit integers ("I", which is
# how some PIL versions open 16-bit PNGs).
_WIDE_INTEGER_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")

# What PIL raises for a file or bytes it cannot decode: truncated, corrupt, not an image,
# larger than its decompression-bomb limit. Its GIF reader parses headers by indexing and
# `struct`, so a file cut inside one raises IndexError, struct.error or EOFError.
_CUT_HEADER_ERRORS = (IndexError, struct.error, EOFError)
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
    *_CUT_HEADER_ERRORS,
)


class ImageDecodeError(ValueError):
    """Encoded image bytes that PIL cannot decode."""


def decode_failure(error: BaseException) -> str:
    """PIL's reason for a failed decode, without the repr of an in-memory file."""
    if isinstance(error, UnidentifiedImageError):
        return "not an image file PIL can identify"
    if isinstance(error, _CUT_HEADER_ERRORS):
        return f"truncated or damaged ({str(error) or type(error).__name__})"
    return str(error)


def to_rgb(pil: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a PIL image.

    Raises:
      ValueError: floating-point images (mode "F": no standard range of values) and
        modes PIL cannot convert to RGB.
    """
    if pil.mode in _WIDE_INTEGER_MODES:
        # PIL's own conversion clips 16-bit values at 255: a white image.
        wide = np.clip(np.asarray(pil, np.float64), 0, 65535)
        gray = np.round(wide / 257.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if pil.mode == "F":
        raise ValueError(
            "floating-point image (PIL mode F) has no standard range of values: "
            "save it as 8- or 16-bit"
        )
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        # Transparent pixels over white rather than their (often black) hidden colour.
        rgba = pil.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        pil = Image.alpha_composite(background, rgba)
    try:
        return np.asarray(pil.convert("RGB"))
    except ValueError as error:
        raise ValueError(f"cannot convert image mode {pil.mode} to RGB: {error}") from None
