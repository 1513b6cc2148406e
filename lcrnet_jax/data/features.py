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
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

IMAGE_FORMATS = ("png", "jpeg")


def pose_features(
    num_joints: int, *, image_format: str = "jpeg", extra: dict | None = None
) -> tfds.features.FeaturesDict:
    """The FeaturesDict of a pose dataset with `num_joints` native joints."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    people = {
        "joints2d": tfds.features.Tensor(shape=(None, num_joints, 2), dtype=np.float32),
        "joints3d": tfds.features.Tensor(shape=(None, num_joints, 3), dtype=np.float32),
        "visible": tfds.features.Tensor(shape=(None, num_joints), dtype=np.bool_),
        "has_3d": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
        "box": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
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
