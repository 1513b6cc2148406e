"""Runs a model exported by `lcrnet_jax.predict.export` (LCR-Net++ Sec. 3, 3.6).

Needs only jax, numpy, PIL, `lcrnet_jax.data.resize` (the preprocessing) and
`lcrnet_jax.postprocess.camera` (camera-space placement): no flax, no training code.
The serialized functions hold the network, the candidates and the PPI; this module
scales each image into its size bucket like `Predictor` (`resize_scale`, `scale_into`),
calls the bucket's function, maps the people back to the pixels of the original image
and places them in camera space like `Predictor`.

    model = ExportedModel("exported/")
    people = model.predict(rgb)  # rgb: (h, w, 3) uint8
    people["poses2d"]  # (P, J, 2) original pixels; poses3d (P, J, 3) metres; scores (P,)

A result dict has the fields of `lcrnet_jax.predict.PoseResult` (`PoseResult(**people)`).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence

import jax
import numpy as np

from lcrnet_jax.data.npz import read_npz
from lcrnet_jax.data.resize import pick_bucket, resize_scale, resized_size, scale_into
from lcrnet_jax.postprocess import camera

FORMAT = "lcrnet-jax/exported/v1"


def weight_key(index: int) -> str:
    """The name in weights.npz of the `index`-th weight argument."""
    return f"w{index:05d}"


class ExportedModel:
    """An exported LCR-Net++ model: preprocessing, the serialized chain, results.

    Attributes:
      metadata: the contents of metadata.json (see `lcrnet_jax.predict.export`).
      buckets: canvas sizes (height, width) with a serialized function.
      batch_size: images per call of a serialized function (partial batches padded).
      joint_set: name of the joint set; `metadata["joint_names"]` its joints.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        batch_size: int = 1,
        fov_degrees: float | None = None,
    ):
        """Reads metadata.json, the weights and the serialized functions of `directory`.

        Args:
          directory: the folder written by `export.export_predictor`.
          batch_size: images per call in `predict` (the functions take any batch size;
            each batch size compiles once per bucket).
          fov_degrees: the camera's field of view across the longer image side, for
            `poses3d_cam`; None for `camera.DEFAULT_FOV_DEGREES` (as `Predictor`).

        Raises:
          FileNotFoundError: a missing file.
          ValueError: a metadata.json of another format, or exported for other platforms.
        """
        root = pathlib.Path(directory)
        path = root / "metadata.json"
        if not path.is_file():
            raise FileNotFoundError(f"{root} holds no exported model (no metadata.json)")
        try:
            self.metadata = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        found = self.metadata.get("format") if isinstance(self.metadata, dict) else None
        if found != FORMAT:
            raise ValueError(
                f"{path} is not an exported model of format {FORMAT!r} (format {found!r})"
            )
        platform = jax.export.default_export_platform()
        if platform not in self.metadata["platforms"]:
            raise ValueError(
                f"{root} was exported for {self.metadata['platforms']}, not for this machine's "
                f"{platform}: export it again with --platforms including {platform}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._fov, self._camera_source = (
            (camera.DEFAULT_FOV_DEGREES, "default") if fov_degrees is None else (fov_degrees, "fov")
        )
        camera.intrinsics_from_fov(1, 1, self._fov)  # ValueError if out of range
        self.joint_set = self.metadata["joint_set"]
        self._short_side = self.metadata["input"]["short_side"]
        self._max_long_side = self.metadata["input"]["max_long_side"]
        self._functions = {}
        for entry in self.metadata["buckets"]:
            data = (root / entry["file"]).read_bytes()
            function = jax.export.deserialize(data)
            self._functions[(entry["height"], entry["width"])] = jax.jit(function.call)
        self.buckets = tuple(self._functions)
        weights = self.metadata["weights"]
        stored = read_npz(root / weights["file"], "exported weight file")
        leaves = [stored[weight_key(i)] for i in range(weights["count"])]
        self._weights = jax.device_put(leaves)

    def run(self, images: np.ndarray, image_size: np.ndarray) -> dict[str, np.ndarray]:
        """The serialized chain on a batch of canvases.

        Args:
          images: (B, H, W, 3) uint8 RGB canvases, (H, W) one of `buckets`, any B.
          image_size: (B, 2) int32 height, width of each image region.

        Returns:
          {"poses2d": (B, P, J, 2) network pixels, "poses3d": (B, P, J, 3) metres,
           "scores": (B, P), "valid": (B, P) bool}.
        """
        images, image_size = np.asarray(images), np.asarray(image_size)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be (B, H, W, 3) uint8, got {images.shape} {images.dtype}"
            )
        function = self._functions.get(images.shape[1:3])
        if function is None:
            raise ValueError(
                f"no exported function for a {images.shape[1]}x{images.shape[2]} canvas; "
                f"exported buckets: {[f'{h}x{w}' for h, w in self.buckets]}"
            )
        if image_size.shape != (images.shape[0], 2):
            raise ValueError(
                f"image_size must be (B, 2) for B = {images.shape[0]} images, got shape "
                f"{image_size.shape}"
            )
        out = function(self._weights, images, image_size.astype(np.int32))
        return {name: np.asarray(value) for name, value in out.items()}

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int], float]:
        """An (h, w, 3) uint8 RGB image scaled into its bucket.

        Returns:
          ((H, W, 3) uint8 canvas, (height, width) of the image region, scale).
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
            raise ValueError(
                f"an image must be (h, w, 3) uint8 RGB, got {image.shape} {image.dtype}"
            )
        height, width = image.shape[:2]
        scale = resize_scale(height, width, self._short_side, self._max_long_side)
        bucket = pick_bucket(resized_size(height, width, scale), self.buckets)
        canvas, valid = scale_into(image, scale=scale, out_size=bucket)
        return canvas, valid, scale

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> dict | list[dict]:
        """The people in one image, or in each of a list of images, best first.

        Args:
          images: an (h, w, 3) uint8 RGB array, or a list of them.

        Returns:
          Per image {"joint_set": str, "poses2d": (P, J, 2) float32 original pixels,
          "poses3d": (P, J, 3) float32 metres, "scores": (P,) float32,
          "image_size": (h, w), "poses3d_cam": (P, J, 3) float32 metres in camera space,
          "intrinsics": (4,) float32, "camera_source"}; a list for a list.
        """
        single = not isinstance(images, list | tuple)
        items = [images] if single else list(images)
        prepared = [self.preprocess(image) for image in items]
        results = []
        for start in range(0, len(prepared), self.batch_size):
            chunk = prepared[start : start + self.batch_size]
            results += self._predict_chunk(chunk, items[start : start + self.batch_size])
        return results[0] if single else results

    def _predict_chunk(self, chunk, images) -> list[dict]:
        """Runs a chunk of prepared images, one call per bucket in it."""
        results = [None] * len(chunk)
        for bucket in dict.fromkeys(canvas.shape[:2] for canvas, _, _ in chunk):
            rows = [i for i, (canvas, _, _) in enumerate(chunk) if canvas.shape[:2] == bucket]
            canvases = np.zeros((self.batch_size, *bucket, 3), np.uint8)
            sizes = np.tile(np.asarray(bucket, np.int32), (self.batch_size, 1))
            for slot, i in enumerate(rows):
                canvases[slot], sizes[slot] = chunk[i][0], chunk[i][1]
            out = self.run(canvases, sizes)
            for slot, i in enumerate(rows):
                keep, scale = out["valid"][slot], chunk[i][2]
                intrinsics = camera.intrinsics_from_fov(*np.shape(images[i])[:2], self._fov)
                # As `Predictor`: the translation is fitted in network pixels.
                translation, _ = camera.fit_translation(
                    out["poses3d"][slot], out["poses2d"][slot], intrinsics * scale
                )
                poses3d = out["poses3d"][slot][keep].astype(np.float32)
                results[i] = {
                    "joint_set": self.joint_set,
                    "poses2d": (out["poses2d"][slot][keep] / scale).astype(np.float32),
                    "poses3d": poses3d,
                    "scores": out["scores"][slot][keep].astype(np.float32),
                    "image_size": tuple(np.shape(images[i])[:2]),
                    "poses3d_cam": poses3d + translation[keep][:, None, :],
                    "intrinsics": np.asarray(intrinsics, np.float32),
                    "camera_source": self._camera_source,
                }
        return results

    def __repr__(self) -> str:
        return (
            f"ExportedModel({self.metadata.get('model') or 'model'}, "
            f"buckets={self.buckets}, batch_size={self.batch_size})"
        )
