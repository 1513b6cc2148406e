"""Predictor: images and videos -> one 2D + 3D pose per person (LCR-Net++ Sec. 3, 3.6).

`Predictor` runs the whole test-time chain of the paper on the user's pictures: the
network gives pose proposals for every RoI and anchor-pose class (Sec. 3.1-3.5), the
pose proposal integration (Sec. 3.6, `lcrnet_jax.postprocess`) or the NMS baseline turns them
into people, and the poses are mapped back to the pixels of the original image.

Preprocessing (`lcrnet_jax.data.resize`, the same scale as training and evaluation): the
short side is resized to `short_side` unless the long side would then pass
`max_long_side` (tiny images are upscaled, huge ones downscaled); the resized image
lies in the top-left corner of a zero canvas of the smallest fitting size bucket
(`size_buckets`), so the network compiles once per bucket and batch size. Normalisation
(pixel mean/std, channel order) happens inside the model from its config. Network pixels
= original pixels * scale, so 2D results are divided by the image's scale.

Inputs (`predict.inputs`, `predict.video`): file paths, numpy arrays, PIL
images, folders, globs and videos. Grayscale, palette and RGBA images are converted to
RGB, and JPEG EXIF orientation is applied (results are in the pixels of the image as
displayed). Animated GIFs are read with PIL; other videos (mp4, mov, avi, mkv, webm)
need PyAV (`pip install av`), as does writing annotated videos (`VideoWriter`).

Absolute 3D (beyond the paper, `lcrnet_jax.postprocess.camera`): each person's
torso-centred 3D pose is placed in camera space by the translation that best aligns it
with its 2D pose (`PoseResult.poses3d_cam`). The intrinsics are, first found: the
predictor's `intrinsics` (a calibrated camera), a field of view `fov_degrees` (across
the longer image side), the 35 mm equivalent focal length in the image's EXIF data
(files and PIL images), else `camera.DEFAULT_FOV_DEGREES` (55); the principal point is the
image centre unless `intrinsics` says otherwise.

Model sources: `Predictor.from_released` (an original LCR-Net++ model file through
`lcrnet_jax.model.weights`) and `Predictor.from_checkpoint` (a training run's orbax
checkpoint, read with `lcrnet_jax.train.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from lcrnet_jax.data.resize import checked_buckets, size_buckets
from lcrnet_jax.model import lcrnet
from lcrnet_jax.postprocess import ppi as ppi_lib
from lcrnet_jax.postprocess.detect import METHODS, detect, polish, ppi_config_from_mapping
from lcrnet_jax.predict import canvas
from lcrnet_jax.predict.canvas import PoseResult, PreparedImage
from lcrnet_jax.predict.inputs import ImageLike

_RELEASED_BOX_JOINTS = {"bbox": "all", "bbox_torsohead": "torso_head"}


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
    return ppi_config_from_mapping({**fields, **overrides})


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


class Predictor(canvas.ImageModel):
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
        short_side: int = 800,
        max_long_side: int = 1333,
        buckets: Sequence[tuple[int, int]] | None = None,
        batch_size: int = 1,
        model_name: str = "",
        apply_fn: Callable | None = None,
        fov_degrees: float | None = None,
        intrinsics: Sequence[float] | None = None,
    ):
        """Builds a predictor.

        Args:
          config: the model's config.
          variables: its variables ("params", "anchor_poses", ...).
          ppi_config: every PPI/NMS and candidate setting (Eq. 6 rescoring included).
          method: "ppi" (Sec. 3.6) or "nms" (the baseline).
          short_side: target short side in network pixels (an int).
          max_long_side: cap on the long side in network pixels (an int).
          buckets: canvas sizes (height, width), ints; None for
            `size_buckets(short_side, max_long_side)`.
            Each must hold any image resized by `resize_scale`.
          batch_size: images per network call.
          model_name: provenance of the weights, kept in `model_name`.
          apply_fn: the network, `apply_fn(variables, images (B, H, W, 3) uint8,
            image_size (B, 2)) -> PoseProposals`; None for `LCRNet(config).apply`, which
            also polishes PPI's people (`config.joint_polish`; not with `apply_fn`).
          fov_degrees: field of view across the longer image side for absolute 3D; None:
            the image's EXIF 35 mm focal length, else `DEFAULT_FOV_DEGREES` (55).
          intrinsics: fx, fy, cx, cy in original pixels of every image (a calibrated
            camera); overrides `fov_degrees` and EXIF.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if not isinstance(ppi_config, ppi_lib.PPIConfig):
            raise ValueError(f"ppi_config must be a PPIConfig, got {type(ppi_config).__name__}")
        if "anchor_poses" not in variables:
            raise ValueError(f"variables have no 'anchor_poses' collection, only {list(variables)}")
        self.intrinsics = canvas.check_camera(intrinsics, fov_degrees)
        self.fov_degrees = fov_degrees
        self.config = config
        self.ppi_config = ppi_config
        self.method = method
        default_buckets = size_buckets(short_side, max_long_side)  # checks both sides
        self.short_side, self.max_long_side = int(short_side), int(max_long_side)
        self.buckets = tuple(
            sorted(checked_buckets(buckets or default_buckets), key=lambda s: s[0] * s[1])
        )
        self.batch_size = canvas.checked_batch_size(batch_size)
        self.model_name = model_name
        self.num_traces = 0
        self._variables = jax.device_put(dict(variables))
        self._upper_body = np.asarray(lcrnet.anchor_poses(variables, config).upper_body_classes)
        self._apply = apply_fn or lcrnet.LCRNet(config).apply
        self._polish = apply_fn is None and method == "ppi"
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
          kwargs: further `Predictor` arguments; `ppi_config` defaults to the run's
            `config.ppi` (the PPI its evaluation used), `short_side` and `max_long_side`
            to the run's input scale (`config.data`).

        Raises:
          FileNotFoundError: no such run or step (the message lists the steps).
          ValueError: the checkpoint does not fit the config's model.
        """
        from lcrnet_jax.train import checkpoint, loop

        net_config = loop.model_config(config)
        step, variables = checkpoint.restore_run_variables(
            workdir, lcrnet.variable_shapes(net_config), step=step
        )
        _check_shapes(variables, net_config, f"checkpoint {os.fspath(workdir)} step {step}")
        changed = loop.changed_run_keys(config, os.fspath(workdir), "model")
        if changed:  # e.g. model.dtype: other people than the run's evaluation found
            logging.warning(
                "%s was trained with other %s: the people found may differ from its "
                "evaluation's (its config.json holds the run's config)",
                os.fspath(workdir), ", ".join(changed),
            )  # fmt: skip
        kwargs.setdefault("model_name", f"checkpoint:{os.fspath(workdir)}@{step}")
        kwargs.setdefault("ppi_config", ppi_config_from_mapping(config.ppi.to_dict()))
        # The run's input scale (data.resize), as in its training and evaluation.
        resize = loop.resize(config)
        kwargs.setdefault("short_side", resize.short_side)
        kwargs.setdefault("max_long_side", resize.max_long_side)
        return cls(net_config, variables, **kwargs)

    def _forward(self, variables, images, image_size):
        """The people of a batch of canvases: {`canvas.PEOPLE_FIELDS`: (B, P, ...)}."""
        self.num_traces += 1  # runs at trace time only
        proposals = self._apply(variables, images, image_size)
        people = detect(
            proposals,
            image_size,
            upper_body_classes=self._upper_body,
            ppi=self.ppi_config,
            method=self.method,
        )
        if self._polish:
            people = polish(lcrnet.LCRNet(self.config), variables, images, image_size, people)
        return {name: getattr(people, name) for name in canvas.PEOPLE_FIELDS}

    def camera(self, image: ImageLike, height: int, width: int) -> tuple[np.ndarray, str]:
        """(intrinsics (4,) fx, fy, cx, cy in original pixels, source) of an image
        (`canvas.camera_for` with the predictor's `intrinsics` and `fov_degrees`)."""
        return canvas.camera_for(
            image, height, width, intrinsics=self.intrinsics, fov_degrees=self.fov_degrees
        )

    def preprocess(self, image: ImageLike) -> PreparedImage:
        """Reads/converts an image and scales it into its size bucket (`canvas.prepare`)."""
        return canvas.prepare(
            image,
            short_side=self.short_side,
            max_long_side=self.max_long_side,
            buckets=self.buckets,
            intrinsics=self.intrinsics,
            fov_degrees=self.fov_degrees,
        )

    @property
    def provenance(self) -> dict:
        return {
            "model": self.model_name,
            "method": self.method,
            "ppi": dataclasses.asdict(self.ppi_config),
            "scale": {"short_side": self.short_side, "max_long_side": self.max_long_side},
        }

    def run_batch(self, batch: list[PreparedImage]) -> list[PoseResult]:
        images, sizes = canvas.stack(batch, self.batch_size)
        out = jax.device_get(self._infer(self._variables, images, sizes))
        return canvas.people_of_batch(out, batch, self.config.joint_set)

    def __repr__(self) -> str:
        return (
            f"Predictor({self.model_name or 'model'}, method={self.method}, "
            f"buckets={self.buckets}, batch_size={self.batch_size})"
        )
