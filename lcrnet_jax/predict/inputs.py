"""Prediction inputs: images as arrays and the files, folders, globs and videos to read.

Grayscale, palette, RGBA and 16-bit images are converted to 8-bit RGB (`data.images`),
and JPEG EXIF orientation is applied (results are in the pixels of the image as
displayed).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from lcrnet_jax.data import atomic
from lcrnet_jax.data.images import DECODE_ERRORS, decode_failure, to_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


ImageLike = Any
"""A path (str or os.PathLike), an (H, W[, 1|3|4]) uint8 array or a PIL image."""


def load_image(image: ImageLike) -> np.ndarray:
    """Reads or converts one image to an (H, W, 3) uint8 RGB array.

    Args:
      image: a file path or a PIL image (EXIF orientation applied to both; of an
        animated GIF, the first frame: `VideoReader` reads them all), or an (H, W),
        (H, W, 1), (H, W, 3) or (H, W, 4) uint8 array (gray and RGBA are converted;
        transparent pixels become white).

    Returns:
      (H, W, 3) uint8 RGB.

    Raises:
      FileNotFoundError: the path does not exist.
      ValueError: the file is not a readable image, or the array has a wrong shape/dtype.
    """
    if isinstance(image, str | os.PathLike):
        path = os.fspath(image)
        if not os.path.isfile(path):
            kind = "is a folder, not an image" if os.path.isdir(path) else "not found"
            raise FileNotFoundError(f"image {path}: {kind}")
        try:
            with Image.open(path) as pil:
                pil = ImageOps.exif_transpose(pil)
                rgb = to_rgb(pil)
        except DECODE_ERRORS as e:
            raise ValueError(f"cannot read image {path}: {decode_failure(e)}") from None
    elif isinstance(image, Image.Image):
        rgb = to_rgb(ImageOps.exif_transpose(image))
    elif not isinstance(image, np.ndarray | list | tuple) and not hasattr(image, "__array__"):
        raise ValueError(
            f"an image must be a path, a PIL image or a uint8 array, got {type(image).__name__}"
            " (open file contents with PIL.Image.open)"
        )
    else:
        array = np.asarray(image)
        if array.dtype != np.uint8:
            raise ValueError(f"image array must be uint8 (0-255), got {array.dtype}")
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
            raise ValueError(f"image array must be (H, W[, 1|3|4]) uint8, got {array.shape}")
        rgb = {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[-1]]
        rgb = to_rgb(Image.fromarray(array[..., 0] if rgb == "L" else array, rgb))
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"image has no pixels: shape {rgb.shape}")
    return rgb


_EXIF_ORIENTATION = 0x0112


def jpeg_bytes(image: ImageLike) -> bytes | None:
    """The bytes of a JPEG file that decode as they are, else None.

    `resize.scale_into` decodes JPEG bytes as the training and evaluation pipeline does
    (at 1/2, 1/4 or 1/8 size when shrinking by 2x or more: different pixels from a full
    decode then a resize), so a photo given as such bytes reaches the network exactly as
    the same photo in a dataset does, and faster. None for anything else: arrays, PIL
    images, other formats, an EXIF orientation to apply, modes other than RGB and gray
    (`load_image` converts those). Never raises: `load_image` reports unreadable files.
    """
    if not isinstance(image, str | os.PathLike):
        return None
    try:
        with Image.open(os.fspath(image)) as pil:
            usable = (
                pil.format == "JPEG"
                and pil.mode in ("RGB", "L")
                and pil.getexif().get(_EXIF_ORIENTATION, 1) == 1
            )
        return pathlib.Path(image).read_bytes() if usable else None
    except DECODE_ERRORS:
        return None


_EXIF_IFD = 0x8769  # the Exif sub-IFD
_FOCAL_35MM = 0xA405  # FocalLengthIn35mmFilm, millimetres (0: unknown)


def exif_focal_35mm(image: ImageLike) -> float | None:
    """The 35 mm equivalent focal length in a picture's EXIF data, if any.

    Args:
      image: a file path or a PIL image (arrays have no EXIF: None).

    Returns:
      Millimetres, or None when absent, zero or unreadable (never raises for a bad file;
      `load_image` reports that).
    """
    try:
        if isinstance(image, str | os.PathLike):
            with Image.open(os.fspath(image)) as pil:
                exif = pil.getexif()
        elif isinstance(image, Image.Image):
            exif = image.getexif()
        else:
            return None
        focal = float(exif.get_ifd(_EXIF_IFD).get(_FOCAL_35MM, 0) or 0)
    except (*DECODE_ERRORS, TypeError):
        return None
    return focal if focal > 0 else None


def is_video(path: str | os.PathLike) -> bool:
    """A video extension, or a GIF with more than one frame or damaged after its first
    (`VideoReader` reports it; read as an image, its first frame would pass as one)."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in VIDEO_EXTENSIONS:
        return True
    if suffix == ".gif":
        try:
            pil = Image.open(path)
        except DECODE_ERRORS:  # read as an image, which reports it in one line
            return False
        with pil:
            try:
                return getattr(pil, "n_frames", 1) > 1
            except DECODE_ERRORS:
                return True
    return False


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One image or video found by `find_inputs`.

    Attributes:
      path: the file.
      name: a unique output name (relative path inside its folder, without suffix; see
        `find_inputs`).
      video: True for videos (and animated GIFs).
    """

    path: str
    name: str
    video: bool


def _inside(path: str, folder: str | None) -> bool:
    """Whether `path` is `folder` or lies under it (links resolved)."""
    if folder is None:
        return False
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def _files_under(folder: str) -> Iterator[str]:
    """The paths of the files under `folder`, through links to folders too, each folder
    read once (a link to a folder above it makes no loop)."""
    seen = set()
    for root, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            folders.clear()
            continue
        seen.add(real)
        yield from (os.path.join(root, name) for name in names)


def find_inputs(
    patterns: Sequence[str],
    *,
    exclude: str | os.PathLike | None = None,
    output_suffixes: Sequence[str] = (),
) -> tuple[list[InputFile], list[str]]:
    """Expands files, folders (recursively, through links to folders) and globs into
    image and video files.

    Folders and globs contribute regular files only (not a named pipe or a device, whose
    reading would block), folders those with an image or video extension, sorted, never
    the temporary files of a prediction writing there (`atomic.is_partial`); a file
    given by name is taken whatever its extension (it fails later if unreadable).

    Args:
      patterns: paths of files or folders, or glob patterns ("*", "?", "[", "**").
      exclude: the run's output folder: folders and globs never contribute its files
        (a run never reads its own outputs), and a folder pattern that is this folder
        or lies inside it is an error.
      output_suffixes: what the outputs add to an input's name (`outputs.DERIVED_SUFFIXES`):
        a name that, bare or with one of them, is another input's, bare or with one of
        them, gets "-2", "-3", ... (no two inputs write the same file).

    Returns:
      (inputs in order without duplicates, one-line errors for patterns that give
      nothing: a missing file, an empty folder, a glob without matches, the output
      folder, a path that is not a regular file).
    """
    exclude = None if exclude is None else os.fspath(exclude)
    found: list[tuple[str, str]] = []  # (path, name)
    errors = []
    for pattern in patterns:
        if os.path.isdir(pattern) and _inside(pattern, exclude):
            errors.append(f"folder {pattern} is the output folder {exclude} or inside it")
        elif os.path.isdir(pattern):
            files = sorted(
                f
                for f in _files_under(pattern)
                if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
                and not atomic.is_partial(os.path.relpath(f, pattern))
                and os.path.isfile(f)
                and not _inside(f, exclude)
            )
            if not files:
                errors.append(f"folder {pattern} has no image or video file")
            found += [(f, os.path.splitext(os.path.relpath(f, pattern))[0]) for f in files]
        elif os.path.isfile(pattern):
            found.append((pattern, pathlib.Path(pattern).stem))
        elif glob.has_magic(pattern):
            matches = [f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f)]
            files = sorted(f for f in matches if not _inside(f, exclude))
            if matches and not files:
                errors.append(f"every file matching {pattern} is in the output folder {exclude}")
            elif not files:
                errors.append(f"no file matches {pattern}")
            found += [(f, pathlib.Path(f).stem) for f in files]
        elif os.path.exists(pattern):
            errors.append(f"input {pattern} is not a regular file (a named pipe or a device)")
        else:
            errors.append(f"input {pattern} not found")
    suffixes = ("", *output_suffixes)
    inputs, seen_paths, taken = [], set(), set()
    for path, name in found:
        key = os.path.realpath(path)
        if key in seen_paths:
            continue
        seen_paths.add(key)
        unique, n = name, 1
        while any(unique + suffix in taken for suffix in suffixes):
            n += 1
            unique = f"{name}-{n}"
        taken.update(unique + suffix for suffix in suffixes)
        inputs.append(InputFile(path=path, name=unique, video=is_video(path)))
    return inputs, errors
