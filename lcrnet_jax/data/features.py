"""The record schema shared by every pose dataset builder (TFDS, array_record, no TensorFlow).

Every builder in `data_builders/` stores one record per image with these features, in
the dataset's native joint order (named by the builder's `JOINT_SET` and in the dataset
info's metadata as `joint_set`); mapping to LCR joints happens in the input pipeline
through `lcrnet_jax.skeleton`.

  image              (H, W, 3) uint8, stored encoded (PNG or JPEG bytes).
  image_id           text, unique within the dataset (e.g. a relative file name).
  intrinsics         (4,) float32 fx, fy, cx, cy in pixels; zeros when unknown.
  people/joints2d    (P, J, 2) float32 pixels (x right, y down, pixel-corner origin).
  people/joints3d    (P, J, 3) float32 metres, camera coordinates (X right, Y down,
                     Z forward), not centred; zeros where `has_3d` is False.
  people/visible     (P, J) bool: the 2D joint is annotated, inside the image and not
                     occluded.
  people/has_3d      (P,) bool: joints3d holds a real (or pseudo) 3D pose.
  people/box         (P, 4) float32 person box x1, y1, x2, y2 in pixels (the dataset's
                     own box if it has one, else the box of the visible joints).

P may be 0. Builders may add dataset-specific features through `extra`.

The helpers at the end (`manual_dir`, `read_image`, `load_mat`, `inside_image`,
`person_tensor`, `people`, `joints_box`, `SkipLog`) are what every builder needs to read
the user's manual downloads.
"""

from __future__ import annotations

import io
import logging
import os
import pathlib
from collections.abc import Sequence

import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from lcrnet_jax import geometry
from lcrnet_jax.data import records
from lcrnet_jax.data.images import DECODE_ERRORS, to_rgb

IMAGE_FORMATS = ("png", "jpeg")
_FIRST_SKIPS = 20  # skipped paths a split's metadata keeps (`SkipLog`)


def pose_features(
    num_joints: int,
    *,
    image_format: str = "jpeg",
    extra: dict | None = None,
    extra_people: dict | None = None,
) -> tfds.features.FeaturesDict:
    """The FeaturesDict of a pose dataset with `num_joints` native joints.

    `extra` adds record-level features, `extra_people` per-person ones (leading axis P).
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    people = {
        "joints2d": tfds.features.Tensor(shape=(None, num_joints, 2), dtype=np.float32),
        "joints3d": tfds.features.Tensor(shape=(None, num_joints, 3), dtype=np.float32),
        "visible": tfds.features.Tensor(shape=(None, num_joints), dtype=np.bool_),
        "has_3d": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
        "box": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
        **(extra_people or {}),
    }
    features = {
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format=image_format),
        "image_id": tfds.features.Text(),
        "intrinsics": tfds.features.Tensor(shape=(4,), dtype=np.float32),
        "people": people,
    }
    features.update(extra or {})
    return tfds.features.FeaturesDict(features)


def encode_image(image: np.ndarray, image_format: str = "jpeg", *, quality: int = 92) -> bytes:
    """Encodes an (H, W, 3) uint8 RGB image to PNG or JPEG bytes with PIL (no TensorFlow)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    buffer = io.BytesIO()
    options = {"quality": quality} if image_format == "jpeg" else {}
    Image.fromarray(image).save(buffer, format=image_format.upper(), **options)
    return buffer.getvalue()


# Helpers shared by the builders in data_builders/: reading the user's manual files.


def manual_dir(dl_manager, *, dataset: str, expected: Sequence[str], url: str) -> pathlib.Path:
    """The manual folder of a builder, checked to hold every `expected` pattern.

    Args:
      dl_manager: the `tfds.download.DownloadManager` given to `_split_generators`.
      dataset: builder name, for the message.
      expected: glob patterns relative to the manual folder; each must match a path
        ("a | b": either alternative).
      url: where the user gets the files.

    Returns:
      The manual folder.

    Raises:
      FileNotFoundError: naming the folder, every missing pattern and `url`.
    """
    where = f"(get them from {url}; see data_builders/{dataset}/README.md)"
    try:
        root = pathlib.Path(os.fspath(dl_manager.manual_dir))
    except AssertionError:
        # TFDS raises AssertionError for a missing or empty manual folder.
        folder = getattr(dl_manager, "_manual_dir", "the manual folder")
        raise FileNotFoundError(
            f"{dataset}: manual folder {folder} is missing or empty; it must contain "
            f"{', '.join(expected)} {where}"
        ) from None
    missing = [
        p for p in expected if not any(next(iter(root.glob(a.strip())), None) for a in p.split("|"))
    ]
    if missing:
        raise FileNotFoundError(f"{dataset}: {root} lacks {', '.join(missing)} {where}")
    return root


def read_image(path: str | os.PathLike, image_format: str = "jpeg") -> tuple[bytes, int, int]:
    """Reads and fully decodes an image file, for a builder to store.

    The file's own bytes are returned when they already are an RGB image in
    `image_format`; anything else PIL can read (grey, CMYK, 16-bit, another format)
    is converted to 8-bit RGB (`data.images.to_rgb`) and re-encoded.

    Returns:
      (encoded bytes, height, width) in pixels.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: the file is not a readable image (truncated, corrupt, floating-point),
        naming it.
    """
    data = pathlib.Path(path).read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if (image.format or "").lower() == image_format and image.mode == "RGB":
                return data, image.height, image.width
            rgb = to_rgb(image)
    except DECODE_ERRORS as error:
        raise ValueError(f"cannot read image {path}: {error}") from None
    return encode_image(rgb, image_format), rgb.shape[0], rgb.shape[1]


def load_mat(path: str | os.PathLike, **kwargs) -> dict:
    """`scipy.io.loadmat(path, **kwargs)`; a corrupt file raises ValueError naming it."""
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"no MATLAB file {path}")
    try:
        return scipy.io.loadmat(path, **kwargs)
    except (scipy.io.matlab.MatReadError, OSError, ValueError, TypeError) as error:
        raise ValueError(f"corrupt MATLAB file {path}: {error}") from None


def inside_image(joints2d: np.ndarray, height: int, width: int) -> np.ndarray:
    """(..., J) bool: the (..., J, 2) pixel positions lie in [0, width] x [0, height].

    Closed on both sides, as the boxes are clipped: a horizontal flip (x -> width - x)
    keeps a joint on the image's left or right edge inside.
    """
    joints2d = np.asarray(joints2d)
    x, y = joints2d[..., 0], joints2d[..., 1]
    return (x >= 0) & (x <= width) & (y >= 0) & (y <= height)


def person_tensor(*shape: int, dtype=np.float32) -> tfds.features.Tensor:
    """A per-person feature for `pose_features(extra_people=...)`: shape (P, *shape)."""
    return tfds.features.Tensor(shape=(None, *shape), dtype=dtype)


def people(
    joints2d: np.ndarray,
    visible: np.ndarray,
    *,
    joints3d: np.ndarray | None = None,
    box: np.ndarray | None = None,
    **extra: np.ndarray,
) -> dict[str, np.ndarray]:
    """The `people` value of a record, with the schema's defaults filled in.

    Args:
      joints2d: (P, J, 2) pixels.
      visible: (P, J) bool.
      joints3d: (P, J, 3) metres, or None for people without 3D (zeros, has_3d False).
      box: (P, 4) the dataset's boxes, or None for the box of the visible joints.
      **extra: per-person features declared through `pose_features(extra_people=...)`.
    """
    joints2d = np.asarray(joints2d, np.float32)
    visible = np.asarray(visible, bool)
    num, num_joints = visible.shape
    has_3d = np.full((num,), joints3d is not None)
    if joints3d is None:
        joints3d = np.zeros((num, num_joints, 3), np.float32)
    return {
        "joints2d": joints2d,
        "joints3d": np.asarray(joints3d, np.float32),
        "visible": visible,
        "has_3d": has_3d,
        "box": joints_box(joints2d, visible) if box is None else np.asarray(box, np.float32),
        **extra,
    }


def joints_box(joints2d: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(P, 4) float32 boxes x1, y1, x2, y2 of the visible joints (no margin); zeros if none."""
    joints2d = np.asarray(joints2d, np.float32)
    if joints2d.shape[0] == 0:
        return np.zeros((0, 4), np.float32)
    return np.asarray(geometry.pose_box(joints2d, visible, margin=0.0), np.float32)


class SkipLog:
    """Records what a builder skipped in one split (corrupt or missing files) and reports it.

    Each skip is logged at once with its path. `report`, at the end of the split, logs the
    count and writes it to the builder's metadata, which TFDS saves as metadata.json once
    every split is generated: `skipped[split] = {"count": n, "first": [up to 20 paths or
    ids]}`, count 0 for a split that skipped nothing. `records.skipped_at_build` reads it.
    """

    def __init__(self, builder: tfds.core.DatasetBuilder, split: str):
        self.dataset = builder.name
        self.split = split
        self.skipped: list[str] = []
        self._metadata = builder.info.metadata

    def add(self, path: str | os.PathLike, error: Exception | str) -> None:
        self.skipped.append(os.fspath(path))
        logging.warning("%s: skipped %s: %s", self.dataset, os.fspath(path), error)

    def read_image(
        self, path: str | os.PathLike, image_format: str = "jpeg"
    ) -> tuple[bytes, int, int] | None:
        """`read_image(path)`, or None (the path logged as skipped) if missing or corrupt."""
        try:
            return read_image(path, image_format)
        except (FileNotFoundError, ValueError) as error:
            self.add(path, error)
            return None

    def report(self) -> None:
        if self.skipped:
            logging.warning(
                "%s: skipped %d corrupt or missing file(s), first: %s",
                self.dataset,
                len(self.skipped),
                self.skipped[0],
            )
        self._metadata.setdefault(records.SKIPPED, {})[self.split] = {
            "count": len(self.skipped),
            "first": self.skipped[:_FIRST_SKIPS],
        }
