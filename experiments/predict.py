r"""LCR-Net++ on your images and videos: 2D + 3D poses of every person (Sec. 3.6).

python experiments/predict.py --weights=DEMO_R50.pkl --input=photos/ --output_dir=out
python experiments/predict.py --checkpoint=runs/tiny --config=experiments/configs/tiny.py \
    --input='clips/*.mp4' --input=me.jpg --output_dir=out --ppi=inthewild --t3d=0.1

`--input` (repeatable): an image, a folder (searched recursively for images and videos),
a video (mp4/mov/avi/mkv/webm need PyAV, `pip install av`; animated GIFs do not) or a
glob. The model is an imported original model file (`--weights`) or a training workdir's
orbax checkpoint (`--checkpoint`, latest step or `--step`; `--config` is the training
config, whose `model` entry describes the network). `--method=ppi` integrates the pose
proposals (PPI, with the `--ppi` parameter set and any threshold flag overriding it),
`--method=nms` keeps the best proposal per region.

Outputs in `--output_dir`, named after the input (its path inside a given folder, without
suffix; "-2", "-3" added on clashes), each written under a temporary name and renamed
when complete:
  NAME.json      the poses (schema below)
  NAME_2d.png    the skeletons over the image; NAME_3d.png a 3D plot of the people
  NAME_2d.mp4    for a video: the annotated video (without PyAV: a folder NAME_2d/ of
                 annotated PNG frames 000000.png, ...)
A bad input (missing, unreadable, empty folder, video that cannot be opened) gets a
one-line message and the others go on; the exit status is non-zero only when no input
could be processed.

JSON schema (one file per image or video):
  format        "lcrnet-jax/poses/v1"
  source        the input file's path
  model         where the weights came from ("released:FILE" or "checkpoint:DIR@STEP")
  method        "ppi" or "nms"; ppi: the PPI parameters used (PPIConfig fields)
  joint_set     e.g. "lcr13"; joint_names: the J joint names in order
  coordinates   {"pose2d": ..., "pose3d": ...} the units, axes and origins below
  image_size    {"height": H, "width": W} pixels of the image (EXIF orientation applied)
  people        best first, each {"score": float, "pose2d": J x [x, y] in pixels of the
                original image (x right, y down, pixel (i, j) covers [i, i+1) x [j, j+1)),
                "pose3d": J x [X, Y, Z] in metres, camera axes X right, Y down, Z forward,
                origin at the person's torso centre (mean of the hips and shoulders)}
  Videos: fps and frames = [{"frame": index, "image_size": ..., "people": [...]}] in
  place of image_size and people.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
import time
from collections.abc import Sequence

import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image
from tqdm import tqdm

from lcrnet_jax import ppi as ppi_lib
from lcrnet_jax import predict, visualize

FORMAT = "lcrnet-jax/poses/v1"
COORDINATES = {
    "pose2d": "pixels of the original image, x right, y down, origin at the top-left corner "
    "of the top-left pixel",
    "pose3d": "metres, camera axes X right, Y down, Z forward, origin at the torso centre "
    "(mean of the hips and shoulders)",
}

_INPUT = flags.DEFINE_multi_string("input", None, "Image, folder, video or glob (repeatable).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for the JSON and PNG outputs.")
_WEIGHTS = flags.DEFINE_string("weights", None, "An original LCR-Net++ model file (.pkl/.npz).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A training workdir (orbax checkpoints).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config of --checkpoint (its `model` entry).", lock_config=True
)
_METHOD = flags.DEFINE_enum("method", "ppi", list(predict.METHODS), "PPI or the NMS baseline.")
_PPI = flags.DEFINE_enum(
    "ppi",
    None,
    sorted(ppi_lib.PRESETS),
    "PPI parameter set (default: the --weights file's own, else 'default').",
)
_IOU = flags.DEFINE_float("iou_threshold", None, "PPI grouping IoU threshold.")
_T3D = flags.DEFINE_float("t3d", None, "PPI mode threshold on D3D, metres.")
_BOX_JOINTS = flags.DEFINE_enum("box_joints", None, list(ppi_lib.BOX_JOINTS), "PPI pose boxes.")
_MIN_MODE = flags.DEFINE_float("min_mode_score", None, "PPI minimum score of further modes.")
_PERSON = flags.DEFINE_float("person_threshold", None, "Minimum score of a person.")
_MAX_PEOPLE = flags.DEFINE_integer("max_people", None, "People kept per image at most.")
_GROUP_BY = flags.DEFINE_enum("group_by", None, list(ppi_lib.GROUP_BY), "PPI grouping boxes.")
_RESCORE = flags.DEFINE_float("rescore_sigma", None, "Eq. 6 rescoring sigma, pixels (off).")
_SHORT_SIDE = flags.DEFINE_integer("short_side", 800, "Network short side, pixels.")
_MAX_LONG_SIDE = flags.DEFINE_integer("max_long_side", 1333, "Network long side cap, pixels.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 1, "Images per network call.")
_VISUALIZE = flags.DEFINE_bool("visualize", True, "Write PNG (and video) visualisations.")


@dataclasses.dataclass
class Summary:
    """What a `run` did.

    Attributes:
      images: images and video frames processed.
      inputs_done: input files fully processed.
      failed: inputs that failed (missing, unreadable, ...).
      people: people found in all images and frames.
      seconds: wall-clock time of the run.
    """

    images: int = 0
    inputs_done: int = 0
    failed: int = 0
    people: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.images} images from {self.inputs_done} inputs ({self.failed} failed), "
            f"{self.people} people found, {rate:.2f} images/s"
        )


def _header(predictor: predict.Predictor, source: str) -> dict:
    return {
        "format": FORMAT,
        "source": source,
        "model": predictor.model_name,
        "method": predictor.method,
        "ppi": dataclasses.asdict(predictor.ppi_config),
        "coordinates": COORDINATES,
    }


def _write_json(path: pathlib.Path, data: dict) -> None:
    with predict.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def _predict_image(
    predictor: predict.Predictor, item: predict.InputFile, out: pathlib.Path, draw: bool
) -> int:
    """One image: JSON and PNGs. Returns the number of people."""
    image = predict.load_image(item.path)
    result = predictor.predict(image)
    _write_json(out / f"{item.name}.json", {**_header(predictor, item.path), **result.to_json()})
    if draw:
        visualize.save_visualizations(out / item.name, image, result)
    return result.num_people


class _FrameSink:
    """Annotated frames to an mp4 (PyAV) or, without PyAV, to a folder of PNGs."""

    def __init__(self, path: pathlib.Path, fps: float):
        try:
            self._video = predict.VideoWriter(path.with_suffix(".mp4"), fps)
            self._folder = None
        except ValueError:
            self._video = None
            self._atomic = predict.atomic_path(path)
            self._folder = self._atomic.__enter__()
            self._folder.mkdir()
        self._count = 0

    def write(self, frame: np.ndarray) -> None:
        if self._video is not None:
            self._video.write(frame)
        else:
            Image.fromarray(frame).save(self._folder / f"{self._count:06d}.png")
        self._count += 1

    def close(self, error: BaseException | None) -> None:
        if self._video is not None:
            self._video.close(error)
        elif error is None:
            self._atomic.__exit__(None, None, None)
        else:
            self._atomic.__exit__(type(error), error, error.__traceback__)


def _predict_video(
    predictor: predict.Predictor,
    item: predict.InputFile,
    out: pathlib.Path,
    draw: bool,
    progress: bool,
) -> tuple[int, int]:
    """One video: a JSON of all frames and the annotated video. Returns (frames, people)."""
    reader = predict.VideoReader(item.path)
    sink = _FrameSink(out / f"{item.name}_2d", reader.fps) if draw else None
    frames, people = [], 0
    bar = tqdm(total=reader.num_frames, desc=item.name, leave=False, disable=not progress)
    try:
        stream = predictor.predict_stream(((i, f), f) for i, f in enumerate(reader))
        for (index, frame), result in stream:
            if isinstance(result, Exception):
                raise result
            frames.append({"frame": index, **result.to_json()})
            people += result.num_people
            if sink is not None:
                sink.write(
                    visualize.draw_poses_2d(
                        frame, result.poses2d, joint_set=result.joint_set, scores=result.scores
                    )
                )
            bar.update()
        if not frames:
            raise ValueError(f"video {item.path} has no frame")
    except BaseException as e:
        if sink is not None:
            sink.close(e)
        raise
    finally:
        bar.close()
    if sink is not None:
        sink.close(None)
    joints = {k: frames[0][k] for k in ("joint_set", "joint_names")}
    for frame in frames:
        del frame["joint_set"], frame["joint_names"]
    data = {**_header(predictor, item.path), **joints, "fps": reader.fps, "frames": frames}
    _write_json(out / f"{item.name}.json", data)
    return len(frames), people


def run(
    predictor: predict.Predictor,
    inputs: Sequence[predict.InputFile],
    output_dir: str | os.PathLike,
    *,
    visualize_outputs: bool = True,
    progress: bool = True,
) -> Summary:
    """Predicts on every input and writes its outputs; a failing input is reported on
    stderr in one line and skipped.

    Args:
      predictor: the model.
      inputs: from `predict.find_inputs`.
      output_dir: created if needed.
      visualize_outputs: also write the PNGs and annotated videos.
      progress: show a progress bar over the inputs.

    Returns:
      The run's `Summary` (its `failed` counts the inputs that failed here).
    """
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    start = time.perf_counter()
    for item in tqdm(inputs, desc="inputs", unit="input", disable=not progress):
        (out / item.name).parent.mkdir(parents=True, exist_ok=True)
        try:
            if item.video:
                images, people = _predict_video(predictor, item, out, visualize_outputs, progress)
            else:
                images, people = 1, _predict_image(predictor, item, out, visualize_outputs)
        except (ValueError, FileNotFoundError) as e:
            summary.failed += 1
            tqdm.write(f"predict: skipped: {str(e).splitlines()[0]}", file=sys.stderr)
            continue
        summary.inputs_done += 1
        summary.images += images
        summary.people += people
    summary.seconds = time.perf_counter() - start
    return summary


def _ppi_config(file_params: dict | None) -> ppi_lib.PPIConfig:
    if _PPI.value is None and file_params:
        base = predict.ppi_config_from_released(file_params)
    else:
        base = ppi_lib.PRESETS[_PPI.value or "default"]
    overrides = {
        "iou_threshold": _IOU.value,
        "t3d": _T3D.value,
        "box_joints": _BOX_JOINTS.value,
        "min_mode_score": _MIN_MODE.value,
        "person_threshold": _PERSON.value,
        "max_people": _MAX_PEOPLE.value,
        "group_by": _GROUP_BY.value,
    }
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _predictor() -> predict.Predictor:
    options = dict(
        method=_METHOD.value,
        rescore_sigma=_RESCORE.value,
        short_side=_SHORT_SIDE.value,
        max_long_side=_MAX_LONG_SIDE.value,
        batch_size=_BATCH_SIZE.value,
    )
    if _WEIGHTS.value:
        from lcrnet_jax.model import weights

        config, variables, params = weights.load_released(_WEIGHTS.value)
        name = f"released:{os.path.basename(_WEIGHTS.value)}"
        return predict.Predictor(
            config, variables, ppi_config=_ppi_config(params), model_name=name, **options
        )
    if _CONFIG.value is None:
        raise ValueError("--checkpoint needs --config, the training run's config file")
    return predict.Predictor.from_checkpoint(
        _CHECKPOINT.value, _CONFIG.value, step=_STEP.value, ppi_config=_ppi_config(None), **options
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if bool(_WEIGHTS.value) == bool(_CHECKPOINT.value):
        raise app.UsageError("give exactly one of --weights and --checkpoint")
    inputs, errors = predict.find_inputs(_INPUT.value)
    for error in errors:
        print(f"predict: {error}", file=sys.stderr)
    if not inputs:
        raise SystemExit("predict: no input to process")
    try:
        predictor = _predictor()
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"predict: {str(e).splitlines()[0]}") from None
    summary = run(predictor, inputs, _OUTPUT_DIR.value, visualize_outputs=_VISUALIZE.value)
    summary.failed += len(errors)
    print(f"predict: {summary.line()}; outputs in {_OUTPUT_DIR.value}")
    if summary.images == 0:
        raise SystemExit("predict: no input could be processed")


if __name__ == "__main__":
    flags.mark_flags_as_required(["input", "output_dir"])
    app.run(main)
