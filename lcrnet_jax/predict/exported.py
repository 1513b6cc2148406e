"""Runs a model exported by `lcrnet_jax.predict.export` (LCR-Net++ Sec. 3, 3.6).

Needs only jax, numpy, PIL and `lcrnet_jax.predict.canvas` (reading and scaling the
images, mapping the people back, camera-space placement): no flax, no training code.
The serialized functions hold the network, the candidates and the PPI; this module
prepares each image as `Predictor` does (`canvas.prepare`: files with EXIF orientation
and focal length, PIL images, gray or RGBA arrays), calls its bucket's function and
returns the same `PoseResult`s as `Predictor` (`canvas.people_of_batch`); like it, it
predicts on files and videos too (`outputs.run`, `experiments/predict.py --exported`).

    model = ExportedModel("exported/")
    people = model.predict("photo.jpg")  # or an (h, w, 3) uint8 array, a PIL image
    people.poses2d  # (P, J, 2) original pixels; poses3d (P, J, 3) metres; scores (P,)
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lcrnet_jax.data.npz import read_npz
from lcrnet_jax.data.resize import size_buckets
from lcrnet_jax.predict import canvas
from lcrnet_jax.predict.canvas import PoseResult, PreparedImage
from lcrnet_jax.predict.inputs import ImageLike

FORMAT = "lcrnet-jax/exported/v1"


def weight_key(index: int) -> str:
    """The name in weights.npz of the `index`-th weight argument."""
    return f"w{index:05d}"


def _read_function(path: pathlib.Path) -> jax.export.Exported:
    """The serialized function of one bucket, read and decoded.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: the file does not decode (truncated, damaged, another format) or is not
        a function f(weights, images, image_size) of `lcrnet_jax.predict.export`.
    """
    if not path.is_file():
        raise FileNotFoundError(f"exported model file not found: {path}")
    try:
        function = jax.export.deserialize(path.read_bytes())
        args, kwargs = jax.tree.unflatten(function.in_tree, function.in_avals)
    except Exception as error:  # the decoder's struct.error, IndexError, ... on bad bytes
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(
            f"exported model file {path} cannot be decoded (truncated or damaged?): {reason}"
        ) from None
    if kwargs or len(args) != 3 or not isinstance(args[0], list | tuple):
        raise ValueError(
            f"exported model file {path} is not a function f(weights, images, image_size) "
            "of lcrnet_jax.predict.export"
        )
    return function


def _read_weights(
    path: pathlib.Path, count: int, functions: Iterable[jax.export.Exported]
) -> list[np.ndarray]:
    """The `count` weight arrays of weights.npz, checked against what every function takes.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: an unreadable file, a missing array, an array of another shape or dtype
        than the functions' weight arguments (or functions that take another number of
        weights), NaN or infinite values.
    """
    stored = read_npz(path, "exported weight file")
    missing = [weight_key(i) for i in range(count) if weight_key(i) not in stored]
    if missing:
        raise ValueError(
            f"exported weight file {path} lacks {len(missing)} of its {count} arrays "
            f"(first: {missing[0]}): it is damaged or from another export"
        )
    leaves = [stored[weight_key(i)] for i in range(count)]
    for function in functions:
        (specs, _, _), _ = jax.tree.unflatten(function.in_tree, function.in_avals)
        if len(specs) != count:
            raise ValueError(
                f"exported weight file {path} holds {count} arrays, but the exported "
                f"functions take {len(specs)}: the folder mixes files of different exports"
            )
        for i, (leaf, spec) in enumerate(zip(leaves, specs, strict=True)):
            if leaf.shape != spec.shape or leaf.dtype != spec.dtype:
                raise ValueError(
                    f"exported weight file {path}: array {weight_key(i)} is {leaf.dtype}"
                    f"{list(leaf.shape)}, the exported functions take {spec.dtype}"
                    f"{list(spec.shape)}: it is damaged or from another export"
                )
    for i, leaf in enumerate(leaves):
        if jnp.issubdtype(leaf.dtype, jnp.inexact) and not np.all(np.isfinite(leaf)):
            bad = int(np.size(leaf) - np.count_nonzero(np.isfinite(leaf)))
            raise ValueError(
                f"exported weight file {path}: array {weight_key(i)} holds {bad} NaN or "
                f"infinite values of {np.size(leaf)} (a diverged or damaged model)"
            )
    return leaves


def _size_buckets(metadata_input: dict, exported: tuple) -> tuple[tuple[int, int], ...]:
    """The model's canvas sizes: recorded, or for an older export the default buckets of
    its input scale when the exported ones are among them (an image needs the bucket the
    `Predictor` picks, not the smallest exported one that holds it)."""
    if "size_buckets" in metadata_input:
        return tuple((h, w) for h, w in metadata_input["size_buckets"])
    default = size_buckets(metadata_input["short_side"], metadata_input["max_long_side"])
    return default if set(exported) <= set(default) else exported


def recorded_min_score(directory: str | os.PathLike) -> float | None:
    """The pictures' score threshold that an export recorded from its training run
    (metadata "min_score"), None when it has none or its metadata cannot be read
    (`ExportedModel` reports that)."""
    try:
        found = json.loads((pathlib.Path(directory) / "metadata.json").read_text())
    except (OSError, ValueError):
        return None
    return found.get("min_score") if isinstance(found, dict) else None


class ExportedModel(canvas.ImageModel):
    """An exported LCR-Net++ model: preprocessing, the serialized chain, results.

    Attributes:
      directory: the export's folder.
      metadata: the contents of metadata.json (see `lcrnet_jax.predict.export`).
      buckets: canvas sizes (height, width) with a serialized function.
      size_buckets: all the model's canvas sizes (`Predictor.buckets`): an image goes
        into the smallest that holds it, as with `Predictor`, and is refused if that one
        is not in `buckets`. Exports made before the list was recorded: the default
        buckets of their input scale, which `Predictor` had then, if `buckets` are among
        them, else `buckets`.
      batch_size: images per call of a serialized function (partial batches padded).
      joint_set: name of the joint set; `metadata["joint_names"]` its joints.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        batch_size: int = 1,
        fov_degrees: float | None = None,
        intrinsics: Sequence[float] | None = None,
    ):
        """Reads metadata.json, the weights and the serialized functions of `directory`.

        Args:
          directory: the folder written by `export.export_predictor`.
          batch_size: images per call in `predict` and `predict_stream` (the functions
            take any batch size; each batch size compiles once per bucket).
          fov_degrees: field of view across the longer image side for `poses3d_cam`;
            None: the image's EXIF 35 mm focal length, else `DEFAULT_FOV_DEGREES` (as
            `Predictor`).
          intrinsics: fx, fy, cx, cy in original pixels of every image (a calibrated
            camera); overrides `fov_degrees` and EXIF.

        Raises:
          FileNotFoundError: a missing file.
          ValueError: a metadata.json of another format, or exported for other platforms;
            a model file that cannot be decoded (truncated); a weights.npz that is not
            the functions' weights (a missing array, another shape or dtype, NaN or
            infinite values); a bad camera setting.
        """
        root = self.directory = pathlib.Path(directory)
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
        self.batch_size = canvas.checked_batch_size(batch_size)
        self._intrinsics = canvas.check_camera(intrinsics, fov_degrees)
        self._fov_degrees = fov_degrees
        self.joint_set = self.metadata["joint_set"]
        self._short_side = self.metadata["input"]["short_side"]
        self._max_long_side = self.metadata["input"]["max_long_side"]
        functions = {
            (entry["height"], entry["width"]): _read_function(root / entry["file"])
            for entry in self.metadata["buckets"]
        }
        weights = self.metadata["weights"]
        leaves = _read_weights(root / weights["file"], weights["count"], functions.values())
        self._exported = functions
        self._functions = {bucket: jax.jit(f.call) for bucket, f in functions.items()}
        self.buckets = tuple(self._functions)
        self.size_buckets = _size_buckets(self.metadata["input"], self.buckets)
        self._weights = jax.device_put(leaves)

    def run(self, images: np.ndarray, image_size: np.ndarray) -> dict[str, np.ndarray]:
        """The serialized chain on a batch of canvases.

        Args:
          images: (B, H, W, 3) uint8 RGB canvases, (H, W) one of `buckets`, any B >= 0.
          image_size: (B, 2) int32 height, width of each image region.

        Returns:
          {"poses2d": (B, P, J, 2) network pixels, "poses3d": (B, P, J, 3) metres,
           "scores": (B, P), "valid": (B, P) bool}; B = 0 gives empty arrays (as
          `predict([])` gives no results) without calling the function.
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
        canvas_size = np.array(images.shape[1:3])
        whole = np.all(np.isfinite(image_size)) and np.all(image_size == np.round(image_size))
        if not (whole and np.all(image_size >= 1) and np.all(image_size <= canvas_size)):
            raise ValueError(
                f"image_size must hold whole heights and widths from 1 to the canvas's "
                f"{canvas_size[0]}x{canvas_size[1]}, got {image_size.tolist()}"
            )
        if not len(images):  # the serialized functions take B >= 1
            exported = self._exported[images.shape[1:3]]
            shapes = jax.tree.unflatten(exported.out_tree, exported.out_avals)
            return {name: np.zeros((0, *a.shape[1:]), a.dtype) for name, a in shapes.items()}
        out = function(self._weights, images, image_size.astype(np.int32))
        return {name: np.asarray(value) for name, value in out.items()}

    def preprocess(self, image: ImageLike) -> PreparedImage:
        """Reads/converts an image and scales it into its bucket (`canvas.prepare`).

        Raises:
          FileNotFoundError, ValueError: the image cannot be read, or its bucket (the
            smallest of `size_buckets` that holds it) was not exported.
        """
        prepared = canvas.prepare(
            image,
            short_side=self._short_side,
            max_long_side=self._max_long_side,
            buckets=self.size_buckets,
            intrinsics=self._intrinsics,
            fov_degrees=self._fov_degrees,
        )
        if prepared.bucket not in self._functions:
            height, width = prepared.bucket
            needed = f"{height}x{width}"
            raise ValueError(
                f"this image needs the {needed} bucket, which was not exported (exported: "
                f"{', '.join(f'{h}x{w}' for h, w in self.buckets)}); export it with "
                f"--bucket={needed}"
            )
        return prepared

    def run_batch(self, batch: list[PreparedImage]) -> list[PoseResult]:
        out = self.run(*canvas.stack(batch, self.batch_size))
        return canvas.people_of_batch(out, batch, self.joint_set)

    @property
    def provenance(self) -> dict:
        scale = {key: self.metadata["input"][key] for key in ("short_side", "max_long_side")}
        return {**{key: self.metadata[key] for key in ("model", "method", "ppi")}, "scale": scale}

    def __repr__(self) -> str:
        return (
            f"ExportedModel({self.metadata.get('model') or 'model'}, "
            f"buckets={self.buckets}, batch_size={self.batch_size})"
        )
