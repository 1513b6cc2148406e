"""Export of a model for `jax.export`: network + candidates + PPI as serialized StableHLO.

`export_predictor` writes, for a `Predictor`, a folder that runs without this repository's
training code or flax (`lcrnet_jax.predict.exported` loads it):
  model_<H>x<W>.jaxexport  one serialized `jax.export.Exported` per size bucket (canvas of
                           H x W pixels), the whole test-time chain of the `Predictor`
                           (Sec. 3.1-3.6): `f(weights, images, image_size) -> people`
  weights.npz              the model's variables, the leaves in `f`'s order (w00000, ...)
  metadata.json            buckets, input scale (short side, long side cap, all the
                           model's buckets), pixel mean/std and channel order, PPI
                           settings, joint names, anchor poses, platforms, jax version
                           (`FORMAT`) and, from a run's config, the pictures' min_score
`f` takes `images` (B, H, W, 3) uint8 RGB canvases (the image in the top-left corner,
`resize.scale_into`; B is symbolic: any batch size) and `image_size` (B, 2) int32
(height, width of each image region); it returns {"poses2d": (B, P, J, 2) network
pixels, "poses3d": (B, P, J, 3) metres, "scores": (B, P), "valid": (B, P) bool},
P = PPI `max_people`, best first. The weights are an argument rather than constants so
that the buckets share one copy of them.
Serialization needs the `flatbuffers` package.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Sequence

import jax
import numpy as np

from lcrnet_jax import skeleton
from lcrnet_jax.data import atomic
from lcrnet_jax.predict.exported import FORMAT, weight_key
from lcrnet_jax.predict.outputs import make_predictor, picture_min_score, run_config
from lcrnet_jax.predict.predictor import Predictor

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
"""The platforms `jax.export` lowers for (it lowers for any other name too, uselessly)."""


_BUCKET_FILE = re.compile(r"model_\d+x\d+\.jaxexport")


def bucket_file(bucket: tuple[int, int]) -> str:
    """The file name of a bucket's serialized function."""
    return f"model_{bucket[0]}x{bucket[1]}.jaxexport"


def parse_bucket(text: str | Sequence[int]) -> tuple[int, int]:
    """(height, width) from "HxW" (e.g. "800x1088") or a pair of ints."""
    try:
        parts = text.lower().split("x") if isinstance(text, str) else list(text)
        height, width = (int(p) for p in parts)
    except (ValueError, TypeError):
        raise ValueError(f"a bucket is HEIGHTxWIDTH, e.g. 800x1088, got {text!r}") from None
    return height, width


def _of_an_export(name: str) -> bool:
    """Whether a file of the output folder is one that an export writes (those of the
    previous export are replaced, its other buckets included; other files are kept)."""
    return name in ("metadata.json", "weights.npz") or bool(_BUCKET_FILE.fullmatch(name))


def _metadata(predictor: Predictor, buckets, platforms, num_weights: int) -> dict:
    config = predictor.config
    anchors = jax.device_get(predictor._variables["anchor_poses"])
    return {
        "format": FORMAT,
        **{k: v for k, v in predictor.provenance.items() if k != "scale"},  # in "input"
        "jax_version": jax.__version__,
        "platforms": list(platforms),
        "buckets": [{"height": h, "width": w, "file": bucket_file((h, w))} for h, w in buckets],
        "weights": {"file": "weights.npz", "count": num_weights},
        "input": {
            "short_side": predictor.short_side,
            "max_long_side": predictor.max_long_side,
            "size_buckets": [list(bucket) for bucket in predictor.buckets],
            "images": "uint8 RGB canvases (B, H, W, 3), any B, the image in the top-left corner",
            "pixel_mean": list(config.pixel_mean),
            "pixel_std": list(config.pixel_std),
            "network_channels": "BGR" if config.bgr else "RGB",
            "normalised_inside": True,
        },
        "outputs": {
            "poses2d": "(B, P, J, 2) network pixels (original pixels * scale)",
            "poses3d": "(B, P, J, 3) metres, camera axes, torso-centred",
            "scores": "(B, P) PPI scores, best first",
            "valid": "(B, P) bool, True for real people",
        },
        "joint_set": config.joint_set,
        "joint_names": list(skeleton.get_joint_set(config.joint_set).joints),
        "anchor_poses": {
            "pose2d": np.round(np.asarray(anchors["pose2d"], np.float64), 5).tolist(),
            "pose3d": np.round(np.asarray(anchors["pose3d"], np.float64), 5).tolist(),
            "upper_body_classes": np.asarray(predictor._upper_body).tolist(),
        },
    }


def export_predictor(
    predictor: Predictor,
    directory: str | os.PathLike,
    *,
    buckets: Sequence[str | tuple[int, int]] | None = None,
    platforms: Sequence[str] | None = None,
    min_score: float | None = None,
) -> pathlib.Path:
    """Writes the predictor's chain (network, candidates, PPI or NMS) for `jax.export`.

    Args:
      predictor: the model, its PPI settings and input scale.
      directory: the output folder (created, with its parents). An export in it is
        replaced, as a whole, once the new one is complete: until then, and if the export
        fails, it stays as it was. Its files that an export does not write are kept.
      buckets: canvas sizes, "HxW" or (height, width), each one of `predictor.buckets`;
        None for all of them. The export refuses an image whose bucket (the predictor's,
        the smallest that holds it) is left out.
      platforms: some of `PLATFORMS`, e.g. ("cpu", "cuda"); None for this machine's
        (`jax.export.default_export_platform()`).
      min_score: the score from which pictures draw a person (a training run's
        `predict.min_score`), recorded as metadata "min_score"; None: not recorded.

    Returns:
      The path of metadata.json.

    Raises:
      ValueError: a bucket that is not one of the predictor's, an unknown platform.
    """
    chosen = [parse_bucket(b) for b in buckets] if buckets else predictor.buckets
    chosen = list(dict.fromkeys(chosen))
    unknown = [b for b in chosen if b not in predictor.buckets]
    if unknown:
        raise ValueError(
            f"bucket {unknown[0][0]}x{unknown[0][1]} is not one of the model's input buckets "
            f"{[f'{h}x{w}' for h, w in predictor.buckets]}"
        )
    platforms = tuple(platforms or (jax.export.default_export_platform(),))
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown:
        raise ValueError(
            f"unknown platform {unknown[0]!r}: export for any of {PLATFORMS} "
            "(a GPU is 'cuda' or 'rocm')"
        )
    leaves, treedef = jax.tree.flatten(jax.device_get(predictor._variables))

    def run(weights, images, image_size):
        return predictor._forward(jax.tree.unflatten(treedef, weights), images, image_size)

    out = pathlib.Path(directory)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file, not a folder for the export")
    weight_specs = [jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype) for x in leaves]
    (batch,) = jax.export.symbolic_shape("b")  # any batch size
    # Staged inside `out` and moved into place once complete: a failed export (a full
    # disk, Ctrl-C) leaves the previous export whole, or no folder of its own.
    with atomic.staged_files(out, replaces=_of_an_export, last="metadata.json") as new:
        for bucket in chosen:
            exported = jax.export.export(jax.jit(run), platforms=platforms)(
                weight_specs,
                jax.ShapeDtypeStruct((batch, *bucket, 3), np.uint8),
                jax.ShapeDtypeStruct((batch, 2), np.int32),
            )
            (new / bucket_file(bucket)).write_bytes(exported.serialize())
        atomic.write_npz(new / "weights.npz", **{weight_key(i): x for i, x in enumerate(leaves)})
        metadata = _metadata(predictor, chosen, platforms, len(leaves))
        if min_score is not None:
            metadata["min_score"] = float(min_score)
        atomic.write_json(new / "metadata.json", metadata)
    return out / "metadata.json"


def export_model(
    directory: str | os.PathLike,
    *,
    buckets: Sequence[str | tuple[int, int]] | None = None,
    platforms: Sequence[str] | None = None,
    **predictor_args,
) -> pathlib.Path:
    """Builds the predictor (`outputs.make_predictor`: a checkpoint or a model file) and
    exports it (`export_predictor`), with the run config's `predict.min_score` when it
    has one and the method is PPI; what `experiments/export.py` runs."""
    if predictor_args.get("checkpoint"):  # the config given, else the run's: read once
        predictor_args["config"] = run_config(
            predictor_args["checkpoint"], predictor_args.get("config")
        )
    predictor = make_predictor(**predictor_args)
    return export_predictor(
        predictor,
        directory,
        buckets=buckets,
        platforms=platforms,
        min_score=picture_min_score(predictor_args.get("config"), predictor.method),
    )
