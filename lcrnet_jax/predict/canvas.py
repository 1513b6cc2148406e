"""Between the user's images and the network's canvases (LCR-Net++ Sec. 3.6).

`prepare`: an image read (`inputs.load_image`; a JPEG file decoded from its bytes as the
training pipeline decodes records), scaled into its size bucket (`data.resize`) and given
its camera (`camera_for`); `people_of_batch`: the people of a batch of canvases mapped
back to the pixels of each original image and placed in camera space
(`postprocess.camera.fit_translation`), as `PoseResult`s; `ImageModel`: images in,
batched by size bucket, `PoseResult`s out. Used by `Predictor` and by the flax-free
`ExportedModel`, so both give the same people for the same image.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from lcrnet_jax import skeleton
from lcrnet_jax.data.images import ImageDecodeError
from lcrnet_jax.data.resize import (
    image_shape,
    pick_bucket,
    resize_scale,
    resized_size,
    scale_into,
)
from lcrnet_jax.geometry import is_whole
from lcrnet_jax.postprocess import camera as camera_lib
from lcrnet_jax.predict.inputs import ImageLike, exif_focal_35mm, jpeg_bytes, load_image

PEOPLE_FIELDS = ("poses2d", "poses3d", "scores", "valid")
"""The network's people for a batch, as `people_of_batch` reads them and as an exported
model's functions return them (`postprocess.ppi.PPIResult`'s fields)."""


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """One image ready for the network.

    Attributes:
      pixels: (h, w, 3) uint8 canvas of a size bucket, the image in its top-left corner.
      valid_size: (height, width) of the image region of the canvas.
      scale: network pixels per original pixel.
      original_size: (height, width) of the original image.
      intrinsics: (4,) float32 fx, fy, cx, cy in original pixels.
      camera_source: where `intrinsics` came from: "given", "fov", "exif" or "default".
    """

    pixels: np.ndarray
    valid_size: tuple[int, int]
    scale: float
    original_size: tuple[int, int]
    intrinsics: np.ndarray
    camera_source: str

    @property
    def bucket(self) -> tuple[int, int]:
        return self.pixels.shape[:2]


@dataclasses.dataclass(frozen=True)
class PoseResult:
    """The people found in one image, best first.

    Attributes:
      joint_set: name of the joint set (see `lcrnet_jax.skeleton`).
      poses2d: (P, J, 2) float32 pixels of the original image (x right, y down, pixel
        (i, j) covering [i, i+1) x [j, j+1)).
      poses3d: (P, J, 3) float32 metres in camera axes (X right, Y down, Z forward),
        origin at each person's torso centre (mean of the hips and shoulders).
      scores: (P,) float32 PPI scores (sum of the averaged proposals' probabilities) or,
        with NMS, the kept proposals' probabilities.
      image_size: (height, width) of the original image in pixels.
      poses3d_cam: (P, J, 3) float32 metres, camera space (camera at the origin, same
        axes): `poses3d` plus each person's translation (`camera.fit_translation`); NaN
        for a person whose translation is degenerate. None when not computed.
      intrinsics: (4,) float32 fx, fy, cx, cy in original pixels used for `poses3d_cam`.
      camera_source: where `intrinsics` came from: "given", "fov", "exif" or "default".
    """

    joint_set: str
    poses2d: np.ndarray
    poses3d: np.ndarray
    scores: np.ndarray
    image_size: tuple[int, int]
    poses3d_cam: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    camera_source: str = "default"

    @property
    def joint_names(self) -> tuple[str, ...]:
        return skeleton.get_joint_set(self.joint_set).joints

    @property
    def num_people(self) -> int:
        return len(self.scores)

    def scoring_at_least(self, min_score: float) -> PoseResult:
        """The people whose score is >= `min_score` (e.g. those worth drawing), in order."""
        keep = np.asarray(self.scores) >= min_score
        cam = None if self.poses3d_cam is None else self.poses3d_cam[keep]
        return dataclasses.replace(
            self,
            poses2d=self.poses2d[keep],
            poses3d=self.poses3d[keep],
            scores=self.scores[keep],
            poses3d_cam=cam,
        )

    def to_json(self) -> dict:
        """A JSON-serialisable dict (see the schema in `experiments/predict.py`)."""

        def rounded(array, decimals):
            return np.round(np.asarray(array, np.float64), decimals).tolist()

        people = [
            {
                "score": float(self.scores[p]),
                "pose2d": rounded(self.poses2d[p], 2),
                "pose3d": rounded(self.poses3d[p], 4),
            }
            for p in range(self.num_people)
        ]
        out = {
            "image_size": {"height": self.image_size[0], "width": self.image_size[1]},
            "joint_set": self.joint_set,
            "joint_names": list(self.joint_names),
        }
        if self.poses3d_cam is not None:
            for person, pose in zip(people, self.poses3d_cam, strict=True):
                person["pose3d_camera"] = rounded(pose, 4) if np.isfinite(pose).all() else None
            fx, fy, cx, cy = (round(float(v), 2) for v in self.intrinsics)
            out["camera"] = {"fx": fx, "fy": fy, "cx": cx, "cy": cy, "source": self.camera_source}
        return out | {"people": people}


def check_camera(
    intrinsics: Sequence[float] | None, fov_degrees: float | None
) -> np.ndarray | None:
    """Validates a camera setting of `camera_for`; returns `intrinsics` as (4,) float32.

    Raises:
      ValueError: intrinsics not fx, fy, cx, cy with fx, fy > 0, or a field of view out
        of range.
    """
    if fov_degrees is not None:
        camera_lib.intrinsics_from_fov(1, 1, fov_degrees)  # ValueError if out of range
    if intrinsics is None:
        return None
    intrinsics = np.asarray(intrinsics, np.float32)
    if (
        intrinsics.shape != (4,)
        or not np.isfinite(intrinsics).all()
        or not (intrinsics[:2] > 0).all()
    ):
        raise ValueError(
            f"intrinsics must be finite fx, fy, cx, cy with fx, fy > 0, got {intrinsics.tolist()}"
        )
    return intrinsics


def camera_for(
    image: ImageLike,
    height: int,
    width: int,
    *,
    intrinsics: np.ndarray | None = None,
    fov_degrees: float | None = None,
) -> tuple[np.ndarray, str]:
    """(intrinsics (4,) fx, fy, cx, cy in original pixels, source) of an image.

    Sources, first found: "given" (`intrinsics`), "fov" (`fov_degrees` across the longer
    side), "exif" (the 35 mm equivalent focal length of a file or PIL image), "default"
    (`camera.DEFAULT_FOV_DEGREES`).
    """
    if intrinsics is not None:
        return intrinsics, "given"
    if fov_degrees is not None:
        return camera_lib.intrinsics_from_fov(height, width, fov_degrees), "fov"
    focal = exif_focal_35mm(image)
    if focal is not None:
        return camera_lib.intrinsics_from_focal_35mm(height, width, focal), "exif"
    fov = camera_lib.DEFAULT_FOV_DEGREES
    return camera_lib.intrinsics_from_fov(height, width, fov), "default"


def prepare(
    image: ImageLike,
    *,
    short_side: int,
    max_long_side: int,
    buckets: Sequence[tuple[int, int]],
    intrinsics: np.ndarray | None = None,
    fov_degrees: float | None = None,
) -> PreparedImage:
    """Reads/converts an image (`load_image`) and scales it into its size bucket; a JPEG
    file as its bytes (`jpeg_bytes`), decoded as the training pipeline decodes records.

    Raises:
      FileNotFoundError, ValueError: the image cannot be read, or no bucket holds it.
    """
    source = jpeg_bytes(image)
    if source is None:
        source = load_image(image)
    height, width = image_shape(source)
    scale = resize_scale(height, width, short_side, max_long_side)
    bucket = pick_bucket(resized_size(height, width, scale), buckets)
    try:
        pixels, valid = scale_into(source, scale=scale, out_size=bucket)
    except ImageDecodeError as error:  # a JPEG file damaged past its header
        raise ValueError(f"cannot read image {os.fspath(image)}: {error}") from None
    camera, source = camera_for(
        image, height, width, intrinsics=intrinsics, fov_degrees=fov_degrees
    )
    return PreparedImage(pixels, valid, scale, (height, width), camera, source)


def checked_batch_size(batch_size) -> int:
    """`batch_size` as an int; ValueError unless it is an int >= 1."""
    if not is_whole(batch_size):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size}")
    return int(batch_size)


def stack(batch: Sequence[PreparedImage], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The canvases of one bucket as a network batch, padded with zero images.

    Returns:
      ((batch_size, H, W, 3) uint8 canvases, (batch_size, 2) int32 valid sizes; the
      padding's is the whole canvas).
    """
    bucket = batch[0].bucket
    images = np.zeros((batch_size, *bucket, 3), np.uint8)
    sizes = np.tile(np.asarray(bucket, np.int32), (batch_size, 1))
    for i, item in enumerate(batch):
        images[i], sizes[i] = item.pixels, item.valid_size
    return images, sizes


def people_of_batch(
    out: Mapping[str, np.ndarray], batch: Sequence[PreparedImage], joint_set: str
) -> list[PoseResult]:
    """The people of each image of a batch, in its original pixels and in camera space.

    Args:
      out: the network's people, numpy: "poses2d" (B, P, J, 2) network pixels,
        "poses3d" (B, P, J, 3) metres, "scores" (B, P), "valid" (B, P) bool; B may
        exceed len(batch) (padding images, ignored).
      batch: the prepared images of the first len(batch) rows.
      joint_set: the model's joint set.

    Returns:
      One `PoseResult` per image of `batch`, its valid people in order.
    """
    # The translations are fitted in network pixels (intrinsics scaled alike); padding
    # images get zero intrinsics (invalid).
    intrinsics = np.zeros((len(out["scores"]), 1, 4), np.float32)
    for i, item in enumerate(batch):
        intrinsics[i, 0] = np.asarray(item.intrinsics, np.float32) * item.scale
    translation, _ = camera_lib.fit_translation(
        np.asarray(out["poses3d"]), np.asarray(out["poses2d"]), intrinsics
    )  # (B, P, 3)
    results = []
    for i, item in enumerate(batch):
        keep = np.asarray(out["valid"][i])
        poses3d = np.asarray(out["poses3d"][i][keep], np.float32)
        results.append(
            PoseResult(
                joint_set=joint_set,
                poses2d=(np.asarray(out["poses2d"][i][keep]) / item.scale).astype(np.float32),
                poses3d=poses3d,
                scores=np.asarray(out["scores"][i][keep], np.float32),
                image_size=item.original_size,
                poses3d_cam=poses3d + translation[i][keep][:, None, :],
                intrinsics=np.asarray(item.intrinsics, np.float32),
                camera_source=item.camera_source,
            )
        )
    return results


class ImageModel(abc.ABC):
    """A model that takes images and gives `PoseResult`s, batching images of one size
    bucket into one network call: what `Predictor` and `ExportedModel` share, and all that
    prediction on files (`outputs.run`) needs of a model.

    Subclasses set `batch_size` (images per network call) and define `preprocess`,
    `run_batch` and `provenance`.
    """

    batch_size: int

    @abc.abstractmethod
    def preprocess(self, image: ImageLike) -> PreparedImage:
        """Reads/converts an image and scales it into its size bucket (`prepare`)."""

    @abc.abstractmethod
    def run_batch(self, batch: list[PreparedImage]) -> list[PoseResult]:
        """The people of 1 to `batch_size` prepared images of one bucket."""

    @property
    @abc.abstractmethod
    def provenance(self) -> dict:
        """{"model": where the weights came from, "method": "ppi" or "nms", "ppi": the
        PPI parameters (`PPIConfig` fields), "scale": {"short_side", "max_long_side"} the
        input scale in pixels}, as prediction's JSON files record them."""

    def predict_stream(
        self,
        items: Iterable[tuple[Any, ImageLike]],
        *,
        on_compile: Callable[[tuple[int, int]], object] | None = None,
    ) -> Iterator[tuple[Any, PoseResult | Exception]]:
        """Predicts on a stream of (key, image) pairs, batching consecutive images of the
        same bucket; results come in input order.

        An image that cannot be read yields (key, the ValueError/FileNotFoundError) and
        the stream goes on.

        Args:
          items: (key, image) pairs.
          on_compile: called with a bucket (height, width) before the model's first
            network call on it, which compiles (tens of seconds for a large model; a
            cache hit with a persistent compilation cache), e.g. to say so; None: nothing.

        Yields:
          (key, PoseResult) or (key, exception) per item.
        """
        pending: list[tuple[Any, PreparedImage]] = []
        called = vars(self).setdefault("_called_buckets", set())  # buckets compiled

        def flush():
            if pending and pending[0][1].bucket not in called:
                called.add(pending[0][1].bucket)
                if on_compile is not None:
                    on_compile(pending[0][1].bucket)
            results = self.run_batch([p for _, p in pending]) if pending else []
            out = [(key, r) for (key, _), r in zip(pending, results, strict=True)]
            pending.clear()
            return out

        for item in items:
            if not (isinstance(item, tuple | list) and len(item) == 2):
                raise ValueError(
                    "predict_stream takes (key, image) pairs, got an item of type "
                    f"{type(item).__name__}: pass enumerate(images) for a stream of images"
                )
            key, image = item
            try:
                prepared = self.preprocess(image)
            except (ValueError, FileNotFoundError) as e:
                yield from flush()
                yield key, e
                continue
            if pending and prepared.bucket != pending[0][1].bucket:
                yield from flush()
            pending.append((key, prepared))
            if len(pending) == self.batch_size:
                yield from flush()
        yield from flush()

    def predict(self, images: ImageLike | Sequence[ImageLike]) -> PoseResult | list[PoseResult]:
        """The people in one image, or in each of a list of images, best first.

        Args:
          images: one image (path, array, PIL image; see `inputs.load_image`) or a list.

        Returns:
          A `PoseResult` (poses in the original image's pixels, metres, camera space),
          or a list of them for a list.

        Raises:
          FileNotFoundError, ValueError: an image cannot be read, or no bucket holds it.
        """
        single = not isinstance(images, list | tuple)
        results = []
        for _, result in self.predict_stream(enumerate([images] if single else images)):
            if isinstance(result, Exception):
                raise result
            results.append(result)
        return results[0] if single else results
