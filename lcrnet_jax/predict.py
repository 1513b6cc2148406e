"""Predictor: images and videos -> one 2D + 3D pose per person (LCR-Net++ Sec. 3, 3.6).

`Predictor` runs the whole test-time chain of the paper on the user's pictures: the
network gives pose proposals for every RoI and anchor-pose class (Sec. 3.1-3.5), the
pose proposal integration (Sec. 3.6, `lcrnet_jax.ppi`) or the NMS baseline turns them
into people, and the poses are mapped back to the pixels of the original image.

Preprocessing (`lcrnet_jax.data.resize`, the same scale as training and evaluation): the
short side is resized to `short_side` unless the long side would then pass
`max_long_side` (tiny images are upscaled, huge ones downscaled); the resized image
lies in the top-left corner of a zero canvas of the smallest fitting size bucket
(`size_buckets`), so the network compiles once per bucket and batch size. Normalisation
(pixel mean/std, channel order) happens inside the model from its config. Network pixels
= original pixels * scale, so 2D results are divided by the image's scale.

Inputs (`load_image`, `find_inputs`, `VideoReader`): file paths, numpy arrays, PIL
images, folders, globs and videos. Grayscale, palette and RGBA images are converted to
RGB, and JPEG EXIF orientation is applied (results are in the pixels of the image as
displayed). Animated GIFs are read with PIL; other videos (mp4, mov, avi, mkv, webm)
need PyAV (`pip install av`), as does writing annotated videos (`VideoWriter`).

Model sources: `Predictor.from_released` (an original LCR-Net++ model file through
`lcrnet_jax.model.weights`) and `Predictor.from_checkpoint` (a training run's orbax
checkpoint, read with `lcrnet_jax.train.checkpoint`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pathlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from lcrnet_jax import ppi as ppi_lib
from lcrnet_jax import skeleton
from lcrnet_jax.data import pipeline
from lcrnet_jax.data.resize import pick_bucket, resize_scale, resized_size, size_buckets
from lcrnet_jax.model import lcrnet

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
METHODS = ("ppi", "nms")
_RELEASED_BOX_JOINTS = {"bbox": "all", "bbox_torsohead": "torso_head"}
ImageLike = Any
"""A path (str or os.PathLike), an (H, W[, 1|3|4]) uint8 array or a PIL image."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """A temporary path beside `path` that is renamed to it when the block succeeds.

    The temporary name keeps the suffix (writers that pick a format from it still
    work); it may be a file or a folder, and is removed if the block raises.
    """
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            for child in tmp.iterdir():
                child.unlink()
            tmp.rmdir()
        elif tmp.exists():
            tmp.unlink()


def _to_rgb(pil: Image.Image) -> np.ndarray:
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        # Transparent pixels over white rather than their (often black) hidden colour.
        rgba = pil.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        pil = Image.alpha_composite(background, rgba)
    return np.asarray(pil.convert("RGB"))


def load_image(image: ImageLike) -> np.ndarray:
    """Reads or converts one image to an (H, W, 3) uint8 RGB array.

    Args:
      image: a file path (EXIF orientation applied), a PIL image, or an (H, W),
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
                rgb = _to_rgb(pil)
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
            raise ValueError(f"cannot read image {path}: {e}") from None
    elif isinstance(image, Image.Image):
        rgb = _to_rgb(image)
    else:
        array = np.asarray(image)
        if array.dtype != np.uint8:
            raise ValueError(f"image array must be uint8 (0-255), got {array.dtype}")
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
            raise ValueError(f"image array must be (H, W[, 1|3|4]) uint8, got {array.shape}")
        rgb = {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[-1]]
        rgb = _to_rgb(Image.fromarray(array[..., 0] if rgb == "L" else array, rgb))
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"image has no pixels: shape {rgb.shape}")
    return rgb


def is_video(path: str | os.PathLike) -> bool:
    """A video extension, or a GIF with more than one frame."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in VIDEO_EXTENSIONS:
        return True
    if suffix == ".gif":
        try:
            with Image.open(path) as pil:
                return getattr(pil, "n_frames", 1) > 1
        except (OSError, SyntaxError):
            return False
    return False


def _import_av():
    try:
        import av
    except ImportError:
        raise ValueError(
            "reading or writing mp4/mov/avi/mkv/webm videos needs PyAV: pip install av "
            "(animated GIFs work without it)"
        ) from None
    return av


class VideoReader:
    """Frames of a video file as (H, W, 3) uint8 RGB arrays, decoded lazily.

    Animated GIFs are read with PIL, other formats with PyAV.

    Attributes:
      path: the video file.
      fps: frames per second (10 when the file does not say).
      num_frames: frame count if the container says, else None.

    Raises (at construction):
      FileNotFoundError: no such file.
      ValueError: the video cannot be opened (or PyAV is missing for a non-GIF).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"video {self.path}: not found")
        self._gif = self.path.lower().endswith(".gif")
        try:
            if self._gif:
                with Image.open(self.path) as pil:
                    self.num_frames = getattr(pil, "n_frames", 1)
                    duration_ms = pil.info.get("duration") or 100
                self.fps = 1000.0 / duration_ms
            else:
                av = _import_av()
                with av.open(self.path) as container:
                    if not container.streams.video:
                        raise ValueError("it has no video stream")
                    stream = container.streams.video[0]
                    self.num_frames = stream.frames or None
                    self.fps = float(stream.average_rate or 10)
        except (OSError, SyntaxError, ValueError) as e:
            if isinstance(e, ValueError) and "PyAV" in str(e):
                raise
            raise ValueError(f"cannot open video {self.path}: {e}") from None

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            if self._gif:
                with Image.open(self.path) as pil:
                    for frame in ImageSequence.Iterator(pil):
                        yield _to_rgb(frame)
            else:
                av = _import_av()
                with av.open(self.path) as container:
                    for frame in container.decode(video=0):
                        yield frame.to_ndarray(format="rgb24")
        except (OSError, SyntaxError) as e:
            raise ValueError(f"cannot decode video {self.path}: {e}") from None


class VideoWriter:
    """Writes (H, W, 3) uint8 RGB frames to an mp4 with PyAV (H.264 when available).

    Written under a temporary name, renamed to `path` by `close()` (or the end of a
    `with` block); on an exception inside the block the partial file is removed. Odd
    frame sizes are padded by one black row/column (the codec needs even sizes).

    Raises (at construction):
      ValueError: PyAV is not installed.
    """

    def __init__(self, path: str | os.PathLike, fps: float):
        self._av = _import_av()
        self.path = pathlib.Path(path)
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._container = self._av.open(str(self._tmp), mode="w")
        self._fps = fps
        self._stream = None

    def write(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame, np.uint8)
        frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))
        if self._stream is None:
            codecs = self._av.codecs_available
            codec = "libx264" if "libx264" in codecs else "mpeg4"
            rate = max(1, round(self._fps))
            self._stream = self._container.add_stream(codec, rate=rate)
            self._stream.width, self._stream.height = frame.shape[1], frame.shape[0]
            self._stream.pix_fmt = "yuv420p"
        video_frame = self._av.VideoFrame.from_ndarray(frame, format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def close(self, error: BaseException | None = None) -> None:
        """Finishes the file and renames it into place (removes it if `error`)."""
        if self._container is None:
            return
        try:
            if error is None and self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
            if error is None:
                self._atomic.__exit__(None, None, None)
            else:
                self._atomic.__exit__(type(error), error, error.__traceback__)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc)


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One image or video found by `find_inputs`.

    Attributes:
      path: the file.
      name: a unique output name (relative path inside its folder, without suffix).
      video: True for videos (and animated GIFs).
    """

    path: str
    name: str
    video: bool


def find_inputs(patterns: Sequence[str]) -> tuple[list[InputFile], list[str]]:
    """Expands files, folders (recursively) and globs into image and video files.

    Folders contribute the files with an image or video extension, sorted; a file given
    by name is taken whatever its extension (it fails later if unreadable).

    Args:
      patterns: paths of files or folders, or glob patterns ("*", "?", "[", "**").

    Returns:
      (inputs in order without duplicates, one-line errors for patterns that match
      nothing: a missing file, an empty folder, a glob without matches).
    """
    found: list[tuple[str, str]] = []  # (path, name)
    errors = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            files = sorted(
                os.path.join(root, f)
                for root, _, names in os.walk(pattern)
                for f in names
                if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
            )
            if not files:
                errors.append(f"folder {pattern} has no image or video file")
            found += [(f, os.path.splitext(os.path.relpath(f, pattern))[0]) for f in files]
        elif os.path.isfile(pattern):
            found.append((pattern, pathlib.Path(pattern).stem))
        elif glob.has_magic(pattern):
            files = sorted(f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f))
            if not files:
                errors.append(f"no file matches {pattern}")
            found += [(f, pathlib.Path(f).stem) for f in files]
        else:
            errors.append(f"input {pattern} not found")
    inputs, seen_paths, names = [], set(), set()
    for path, name in found:
        key = os.path.realpath(path)
        if key in seen_paths:
            continue
        seen_paths.add(key)
        unique, n = name, 1
        while unique in names:
            n += 1
            unique = f"{name}-{n}"
        names.add(unique)
        inputs.append(InputFile(path=path, name=unique, video=is_video(path)))
    return inputs, errors


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """One image ready for the network.

    Attributes:
      pixels: (h, w, 3) uint8 canvas of a size bucket, the image in its top-left corner.
      valid_size: (height, width) of the image region of the canvas.
      scale: network pixels per original pixel.
      original_size: (height, width) of the original image.
    """

    pixels: np.ndarray
    valid_size: tuple[int, int]
    scale: float
    original_size: tuple[int, int]

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
    """

    joint_set: str
    poses2d: np.ndarray
    poses3d: np.ndarray
    scores: np.ndarray
    image_size: tuple[int, int]

    @property
    def joint_names(self) -> tuple[str, ...]:
        return skeleton.get_joint_set(self.joint_set).joints

    @property
    def num_people(self) -> int:
        return len(self.scores)

    def to_json(self) -> dict:
        """A JSON-serialisable dict (see the schema in `experiments/predict.py`)."""
        return {
            "image_size": {"height": self.image_size[0], "width": self.image_size[1]},
            "joint_set": self.joint_set,
            "joint_names": list(self.joint_names),
            "people": [
                {
                    "score": float(self.scores[p]),
                    "pose2d": np.round(self.poses2d[p].astype(np.float64), 2).tolist(),
                    "pose3d": np.round(self.poses3d[p].astype(np.float64), 4).tolist(),
                }
                for p in range(self.num_people)
            ],
        }


def integrate_proposals(
    proposals: lcrnet.PoseProposals,
    image_size: jax.Array,
    *,
    upper_body_classes: np.ndarray,
    ppi_config: ppi_lib.PPIConfig,
    method: str = "ppi",
    rescore_sigma: float | None = None,
) -> ppi_lib.PPIResult:
    """People from a batch of network outputs: candidates then PPI or NMS, per image.

    Args:
      proposals: `PoseProposals` with a batch axis B (network pixels).
      image_size: (B, 2) int (height, width) of each image's valid region.
      upper_body_classes: (C,) bool, the upper-body anchor classes.
      ppi_config: PPI parameters (static).
      method: "ppi" or "nms".
      rescore_sigma: Eq. 6 rescoring of the proposals (pixels), None for none.

    Returns:
      `PPIResult` with a leading batch axis: (B, P, J, 2), (B, P, J, 3), (B, P), (B, P).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    integrate = ppi_lib.ppi if method == "ppi" else ppi_lib.nms_poses

    def one(boxes, probs, poses2d, poses3d, valid, size, config):
        candidates = ppi_lib.candidates_from_outputs(
            boxes,
            probs,
            poses2d,
            poses3d,
            upper_body_classes=upper_body_classes,
            valid=valid,
            rescore_sigma=rescore_sigma,
        )
        return integrate(**candidates.ppi_inputs(), image_size=size, config=config)

    p = proposals
    args = (p.boxes, p.probs, p.poses2d, p.poses3d, p.valid, image_size)
    if p.boxes.shape[0] == 1:
        single = one(*(a[0] for a in args), ppi_config)
        return jax.tree.map(lambda x: x[None], single)
    # Under vmap the PPI's buffer compaction only costs (see `ppi.PPIConfig.min_buffer`).
    no_compaction = dataclasses.replace(ppi_config, min_buffer=2**30)
    return jax.vmap(lambda *a: one(*a, no_compaction))(*args)


def ppi_config_from_released(params: Mapping[str, Any], **overrides) -> ppi_lib.PPIConfig:
    """A `PPIConfig` from the "ppi_params" stored in a released model file.

    Those files name them as the authors' code does: th_pose3D (t3d, metres), th_iou,
    iou_func ("bbox": all joints, "bbox_torsohead"), min_mode_score, th_persondetect.
    Unknown names raise ValueError; `overrides` are `PPIConfig` fields.
    """
    names = {
        "th_pose3D": "t3d",
        "th_iou": "iou_threshold",
        "min_mode_score": "min_mode_score",
        "th_persondetect": "person_threshold",
    }
    fields = {}
    for key, value in params.items():
        if key == "iou_func":
            if value not in _RELEASED_BOX_JOINTS:
                raise ValueError(
                    f"unsupported ppi_params iou_func {value!r}; supported: "
                    f"{sorted(_RELEASED_BOX_JOINTS)}"
                )
            fields["box_joints"] = _RELEASED_BOX_JOINTS[value]
        elif key in names:
            fields[names[key]] = float(value)
        elif key not in ("K", "score_th", "verbose"):
            raise ValueError(f"unknown ppi_params entry {key!r}; known: {sorted(names)}")
    return ppi_lib.PPIConfig(**{**fields, **overrides})


def _check_shapes(variables: Mapping, config: lcrnet.LCRNetConfig, what: str) -> None:
    """ValueError naming the missing and mis-shaped variables of `config`'s model."""

    def shapes(tree):
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {jax.tree_util.keystr(path): tuple(np.shape(leaf)) for path, leaf in leaves}

    expected, found = shapes(lcrnet.variable_shapes(config)), shapes(dict(variables))
    missing = sorted(set(expected) - set(found))
    misshaped = [f"{k} {found[k]} != {v}" for k, v in expected.items() if found.get(k, v) != v]
    if missing or misshaped:
        raise ValueError(
            f"{what} does not fit the model config: {len(missing)} missing variables "
            f"{missing[:3]}, {len(misshaped)} of other shapes {misshaped[:3]}"
        )


class Predictor:
    """LCR-Net++ inference on images: preprocessing, batched jit model + PPI, results.

    Attributes:
      config: the model's `LCRNetConfig`.
      ppi_config: PPI parameters (also the NMS IoU and person thresholds).
      method: "ppi" or "nms".
      buckets: canvas sizes (height, width), smallest area first.
      batch_size: images per network call (partial batches are padded).
      model_name: where the weights came from (written into the results' metadata).
      num_traces: how many times the jitted function was traced (once per bucket).

    The compiled function reads the attributes when it is traced: build a new
    `Predictor` to change them.
    """

    def __init__(
        self,
        config: lcrnet.LCRNetConfig,
        variables: Mapping,
        *,
        ppi_config: ppi_lib.PPIConfig = ppi_lib.PRESETS["default"],
        method: str = "ppi",
        rescore_sigma: float | None = None,
        short_side: int = 800,
        max_long_side: int = 1333,
        buckets: Sequence[tuple[int, int]] | None = None,
        batch_size: int = 1,
        model_name: str = "",
        apply_fn: Callable | None = None,
    ):
        """Builds a predictor.

        Args:
          config: the model's config.
          variables: its variables ("params", "anchors", ...).
          ppi_config: PPI parameters.
          method: "ppi" (Sec. 3.6) or "nms" (the baseline).
          rescore_sigma: Eq. 6 rescoring sigma in pixels, None to skip it (as the
            released code).
          short_side: target short side in network pixels.
          max_long_side: cap on the long side in network pixels.
          buckets: canvas sizes; None for `size_buckets(short_side, max_long_side)`.
            Each must hold any image resized by `resize_scale`.
          batch_size: images per network call.
          model_name: provenance of the weights, kept in `model_name`.
          apply_fn: the network, `apply_fn(variables, images (B, H, W, 3) uint8,
            image_size (B, 2)) -> PoseProposals`; None for `LCRNet(config).apply`.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not isinstance(ppi_config, ppi_lib.PPIConfig):
            raise ValueError(f"ppi_config must be a PPIConfig, got {type(ppi_config).__name__}")
        if "anchors" not in variables:
            raise ValueError(f"variables have no 'anchors' collection, only {list(variables)}")
        self.config = config
        self.ppi_config = ppi_config
        self.method = method
        self.rescore_sigma = rescore_sigma
        self.short_side = short_side
        self.max_long_side = max_long_side
        default_buckets = size_buckets(short_side, max_long_side)
        self.buckets = tuple(sorted(buckets or default_buckets, key=lambda s: s[0] * s[1]))
        self.batch_size = batch_size
        self.model_name = model_name
        self.num_traces = 0
        self._variables = jax.device_put(dict(variables))
        self._upper_body = np.asarray(lcrnet.anchor_poses(variables, config).upper_body_classes)
        self._apply = apply_fn or lcrnet.LCRNet(config).apply
        self._infer = jax.jit(self._forward)

    @classmethod
    def from_released(
        cls, path: str | os.PathLike, *, ppi_config: ppi_lib.PPIConfig | None = None, **kwargs
    ) -> Predictor:
        """A predictor with an original LCR-Net++ model file (`weights.load_released`).

        `ppi_config` None uses the PPI parameters stored in the file (else the defaults);
        the released models take BGR input with Caffe means, as their config says.
        """
        from lcrnet_jax.model import weights

        config, variables, params = weights.load_released(path)
        if ppi_config is None:
            ppi_config = ppi_config_from_released(params) if params else ppi_lib.PPIConfig()
        kwargs.setdefault("model_name", f"released:{os.path.basename(os.fspath(path))}")
        return cls(config, variables, ppi_config=ppi_config, **kwargs)

    @classmethod
    def from_checkpoint(
        cls,
        workdir: str | os.PathLike,
        config,
        *,
        step: int | None = None,
        **kwargs,
    ) -> Predictor:
        """A predictor with the weights of a training run (`train.loop.train_and_evaluate`).

        Args:
          workdir: the run's directory.
          config: the run's experiment config (`experiments/configs/*.py`).
          step: the checkpoint step; None for the latest.

        Raises:
          FileNotFoundError: no such run or step (the message lists the steps).
          ValueError: the checkpoint does not fit the config's model.
        """
        from lcrnet_jax.train import checkpoint, loop

        net_config = loop.model_config(config)
        directory = os.path.join(os.fspath(workdir), "checkpoints")
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"{os.fspath(workdir)} holds no training run (no checkpoints/)")
        ckpt = checkpoint.Checkpointer(directory)
        try:
            step, variables = ckpt.restore_variables(lcrnet.variable_shapes(net_config), step=step)
        except (FileNotFoundError, ValueError):
            raise
        except Exception as error:  # orbax reports mismatched trees in several ways
            raise ValueError(
                f"checkpoint {os.fspath(workdir)} step {step} does not fit the config's model: "
                f"{str(error).splitlines()[0]}"
            ) from None
        finally:
            ckpt.close()
        _check_shapes(variables, net_config, f"checkpoint {os.fspath(workdir)} step {step}")
        kwargs.setdefault("model_name", f"checkpoint:{os.fspath(workdir)}@{step}")
        return cls(net_config, variables, **kwargs)

    def _forward(self, variables, images, image_size):
        self.num_traces += 1  # runs at trace time only
        proposals = self._apply(variables, images, image_size)
        return integrate_proposals(
            proposals,
            image_size,
            upper_body_classes=self._upper_body,
            ppi_config=self.ppi_config,
            method=self.method,
            rescore_sigma=self.rescore_sigma,
        )

    def preprocess(self, image: ImageLike) -> PreparedImage:
        """Reads/converts an image and scales it into its size bucket (`load_image`)."""
        rgb = load_image(image)
        height, width = rgb.shape[:2]
        scale = resize_scale(height, width, self.short_side, self.max_long_side)
        bucket = pick_bucket(resized_size(height, width, scale), self.buckets)
        pixels, valid = pipeline.scale_into(rgb, scale=scale, out_size=bucket)
        return PreparedImage(pixels, valid, scale, (height, width))

    def _run(self, batch: list[PreparedImage]) -> list[PoseResult]:
        bucket = batch[0].bucket
        images = np.zeros((self.batch_size, *bucket, 3), np.uint8)
        sizes = np.tile(np.asarray(bucket, np.int32), (self.batch_size, 1))
        for i, item in enumerate(batch):
            images[i] = item.pixels
            sizes[i] = item.valid_size
        out = jax.device_get(self._infer(self._variables, images, sizes))
        results = []
        for i, item in enumerate(batch):
            keep = np.asarray(out.valid[i])
            results.append(
                PoseResult(
                    joint_set=self.config.joint_set,
                    poses2d=(out.poses2d[i][keep] / item.scale).astype(np.float32),
                    poses3d=np.asarray(out.poses3d[i][keep], np.float32),
                    scores=np.asarray(out.scores[i][keep], np.float32),
                    image_size=item.original_size,
                )
            )
        return results

    def predict_stream(
        self, items: Iterable[tuple[Any, ImageLike]]
    ) -> Iterator[tuple[Any, PoseResult | Exception]]:
        """Predicts on a stream of (key, image) pairs, batching consecutive images of the
        same bucket; results come in input order.

        An image that cannot be read yields (key, the ValueError/FileNotFoundError) and
        the stream goes on.

        Yields:
          (key, PoseResult) or (key, exception) per item.
        """
        pending: list[tuple[Any, PreparedImage]] = []

        def flush():
            results = self._run([p for _, p in pending]) if pending else []
            out = [(key, r) for (key, _), r in zip(pending, results, strict=True)]
            pending.clear()
            return out

        for key, image in items:
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
        """Poses of the people in one image, or in each of a list of images.

        Args:
          images: one image (path, array, PIL image) or a list of them.

        Returns:
          A `PoseResult`, or a list of them for a list.

        Raises:
          FileNotFoundError, ValueError: an image cannot be read.
        """
        single = not isinstance(images, list | tuple)
        results = []
        for _, result in self.predict_stream(enumerate([images] if single else images)):
            if isinstance(result, Exception):
                raise result
            results.append(result)
        return results[0] if single else results

    def __repr__(self) -> str:
        return (
            f"Predictor({self.model_name or 'model'}, method={self.method}, "
            f"buckets={self.buckets}, batch_size={self.batch_size})"
        )
