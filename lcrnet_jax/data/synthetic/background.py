"""Random backgrounds for synthetic images (LCR-Net++ Sec. 4.1 renders over real photos).

Procedural kinds, each with low-frequency colour noise so that no two look alike:
  - "horizon": a sky-to-horizon gradient over a ground colour, as outdoors or in a room;
  - "noise": multi-octave value noise between two or three colours (foliage, walls);
  - "tiles": a grid of tiles or bricks with grout lines (floors, facades);
  - "shapes": a plain wall with rectangles and ellipses (furniture, posters);
  - "image": a random crop of a user image from a folder, when one is given.
Colours are moderately saturated so that people stand out without the scene being
absurd.
"""

from __future__ import annotations

import functools
import pathlib

import numpy as np
from PIL import Image, ImageDraw

from lcrnet_jax.data.images import DECODE_ERRORS, decode_failure, to_rgb
from lcrnet_jax.data.synthetic.colors import random_colors

KINDS = ("horizon", "noise", "tiles", "shapes")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_DULL = {"saturation": (0.05, 0.55), "value": (0.25, 0.9)}


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """(H, W, 1) float32 grey value noise in [0, 1]: random cells upsampled bicubically."""
    grid = rng.integers(0, 256, (cells, max(2, round(cells * width / height))), np.uint8)
    big = Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(big, np.float32)[..., None] / 255.0


def _horizon(rng, height, width):
    sky, horizon, ground = random_colors(rng, (3,), **_DULL)
    row = rng.uniform(0.25, 0.7) * height
    y = (np.arange(height, dtype=np.float32) + 0.5)[:, None, None]
    a = np.clip(y / row, 0, 1)
    top = (1 - a) * sky + a * horizon
    bottom = ground * (0.8 + 0.3 * np.clip((y - row) / height, 0, 1))
    image = np.where(y < row, top, bottom) * np.ones((1, width, 1), np.float32)
    return image * (0.75 + 0.5 * _smooth_noise(rng, height, width, int(rng.integers(3, 12))))


def _noise(rng, height, width):
    low, high = random_colors(rng, (2,), **_DULL)
    octaves = [rng.uniform(0.3, 1.0) * _smooth_noise(rng, height, width, c) for c in (3, 8, 24, 64)]
    mix = sum(octaves) / sum(float(o.max()) for o in octaves)
    return (1 - mix) * low + mix * high


def _tiles(rng, height, width):
    tile = int(rng.integers(max(4, height // 24), max(8, height // 5)))
    aspect = rng.choice([1.0, 2.0, 3.0])
    tw, th = int(tile * aspect), tile
    rows, cols = height // th + 2, width // tw + 2
    colour = random_colors(rng, (), **_DULL)
    jitter = colour * rng.uniform(0.8, 1.15, (rows, cols, 1))
    stagger = rng.random() < 0.5
    y = np.arange(height)
    x = np.arange(width)
    r = y // th
    shift = np.where(stagger & (r % 2 == 1), tw // 2, 0)[:, None]
    c = (x[None, :] + shift) // tw
    image = jitter[r[:, None], c]
    grout = ((y % th) < max(1, th // 12))[:, None] | (
        ((x[None, :] + shift) % tw) < max(1, tw // 12)
    )
    image = np.where(grout[..., None], colour * rng.uniform(0.3, 0.6), image)
    return image * (0.8 + 0.4 * _smooth_noise(rng, height, width, int(rng.integers(3, 10))))


def _shapes(rng, height, width):
    canvas = Image.new(
        "RGB", (width, height), tuple(int(v) for v in random_colors(rng, (), **_DULL))
    )
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 12))):
        x0, x1 = sorted(rng.uniform(-0.2, 1.2, 2) * width)
        y0, y1 = sorted(rng.uniform(-0.2, 1.2, 2) * height)
        fill = tuple(int(v) for v in random_colors(rng, (), **_DULL))
        if rng.random() < 0.7:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
    image = np.asarray(canvas, np.float32)
    return image * (0.8 + 0.4 * _smooth_noise(rng, height, width, int(rng.integers(3, 10))))


@functools.lru_cache(maxsize=8)
def list_images(directory: str) -> tuple[str, ...]:
    """Sorted image files (by suffix) directly or recursively under `directory`."""
    root = pathlib.Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"background image folder {directory!r} does not exist")
    files = tuple(sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
    if not files:
        raise FileNotFoundError(
            f"background image folder {directory!r} has no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    return files


def _user_image(rng, height, width, directory):
    files = list_images(str(directory))
    path = files[int(rng.integers(len(files)))]
    try:
        with Image.open(path) as image:
            image = Image.fromarray(to_rgb(image))
    except DECODE_ERRORS as error:
        raise ValueError(f"cannot read background image {path}: {decode_failure(error)}") from None
    w, h = image.size
    scale = rng.uniform(0.5, 1.0) * min(w / width, h / height)
    cw, ch = width * scale, height * scale
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    crop = image.resize((width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    return np.asarray(crop)


def sample_background(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    image_dir: str | pathlib.Path | None = None,
    image_probability: float = 0.5,
) -> np.ndarray:
    """A random background.

    Args:
      rng: numpy random generator.
      height, width: size in pixels.
      image_dir: optional folder of user images (searched recursively); with it, a
        random crop of one of them is used with probability `image_probability`.
      image_probability: share of user-image backgrounds when `image_dir` is given.

    Returns:
      (H, W, 3) uint8 RGB.
    """
    if image_dir is not None and rng.random() < image_probability:
        return _user_image(rng, height, width, image_dir)
    # Procedural backgrounds are smooth: drawn at half size, then upsampled.
    kind = {"horizon": _horizon, "noise": _noise, "tiles": _tiles, "shapes": _shapes}[
        KINDS[int(rng.integers(len(KINDS)))]
    ]
    small = kind(rng, max(1, (height + 1) // 2), max(1, (width + 1) // 2))
    small = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8))
    return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))
