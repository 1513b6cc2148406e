r"""LCR-Net++ on your images and videos: 2D + 3D poses of every person (Sec. 3.6).

python experiments/predict.py --weights=DEMO_R50.pkl --input=photos/ --output_dir=out
python experiments/predict.py --checkpoint=runs/tiny \
    --config=experiments/configs/synthetic_tiny.py \
    --input='clips/*.mp4' --input=me.jpg --output_dir=out --ppi=inthewild --t3d=0.1
python experiments/predict.py --exported=exported/ --input=photos/ --output_dir=out

`--input` (repeatable): an image, a folder (searched recursively for images and videos),
a video (mp4/mov/avi/mkv/webm need PyAV, `pip install av`; animated GIFs do not) or a
glob. Images are read with their EXIF orientation and videos with their display rotation
applied (a phone video filmed upright is predicted upright). The model is an imported
original model file (`--weights`) or a training workdir's orbax checkpoint
(`--checkpoint`, latest step or `--step`; `--config` is the training config, whose
`model` entry describes the network, by default the one the run saved) or a model
written by `experiments/export.py` (`--exported`: no flax model is built; its method,
PPI parameters and input scale are the exported ones, and the flags that would change
them are refused). `--method=ppi`
(the default) integrates the pose proposals (PPI, with the `--ppi` parameter set and any
threshold flag overriding it), `--method=nms` keeps the best proposal per region.

Absolute 3D: every person's pose is also placed in camera space (`pose3d_camera`) by the
translation that best aligns its 3D pose with its 2D pose under the camera intrinsics:
a pinhole camera centred on the image whose field of view across the longer side is
`--fov` degrees when given, else the one of the image's EXIF 35 mm equivalent focal
length, else 55 degrees (`postprocess.camera.DEFAULT_FOV_DEGREES`; video frames have no
EXIF). Depths scale with the focal length: a wrong field of view moves every person nearer
or farther by about the ratio of the focal lengths while X and Y hardly change, so the
scene stretches or flattens along the line of sight.

Outputs in `--output_dir`, named after the input (its path inside a given folder, without
suffix; "-2", "-3" added on clashes, e.g. clip_tracks.png besides clip.gif gives
clip_tracks-2.json), each written under a temporary name and renamed when complete:
  NAME.json      the poses (schema below)
  NAME_2d.png    the skeletons over the image (scaled down to 4096 pixels on its longest
                 side at most); NAME_3d.png a 3D plot of the people in
                 camera space (pictures, pages and videos draw the people scoring at
                 least --min_score, by default the model's own for PPI's people: its
                 config's predict.min_score, 4 for the demo's model, also recorded by
                 its export; else 0.1; the JSON keeps everyone PPI returns)
  NAME.html      with --html: one self-contained page (no network) with the overlay and
                 a 3D view of the people in camera space, rotated with the mouse (WebGL,
                 the vendored regl library); for a video, every frame (at most 900,
                 evenly spaced; JPEGs 480 px wide) with play/pause and a slider, the
                 people coloured by track, and NAME.html#frame=N opens the video's
                 frame N (or the last one the page keeps before it)
  NAME_2d.mp4    for a video: the annotated video (without PyAV: a folder NAME_2d/ of
                 annotated PNG frames 000000.png, ...), drawn with track ids and
                 smoothed poses
  NAME_tracks.json  for a video: the people tracked through it (--track, on by default;
                 algorithm and parameters in lcrnet_jax/predict/tracking.py)
  log.txt        the library logs of every run into --output_dir, appended
A bad input (unreadable, video that cannot be opened or is truncated: frames read and
declared) gets a one-line message (the first 10 only; the others are not named), counts
as failed and leaves no output, and the others go on; these inputs are listed in
--output_dir/failed.txt (path, tab, reason), which the summary line names with the
counts by reason. A path or pattern that gives no input (missing, empty folder, glob
without match) is named in one line each, before the run, and counted as failed, not
listed in failed.txt (the summary calls it a "pattern that gave no input (named
above)"). The exit status is non-zero only when no input could be processed (or kept,
with --skip_existing). Folders and globs never take files inside --output_dir (a file
named on its own is read); temporary files that a killed run left there are removed.

An interrupted run (Ctrl-C, a kill, a scheduler's time limit) is resumed by the same
command with --skip_existing: an input is kept, not predicted again, when its NAME.json
(written last, so present only when its other outputs are) is whole and records this
input's path, the same model, method, PPI parameters and input scale and, for a
video, the same tracking parameters (or none without --track), and the pictures,
annotated video, tracks and page that this run asks for exist; any other input is
predicted, its files replaced.
The summary counts the kept inputs ("K kept from an earlier run"); failed.txt lists this
run's failures. Not compared: --fov (NAME.json records each image's camera, not the
option), --min_score (pictures); after changing them, use another --output_dir.
Progress goes to stderr: tqdm's bars on a terminal, else whole lines, one at most every
30 s; the first input of a size bucket says that the network compiles for it.

JSON schema (one file per image or video):
  format        "lcrnet-jax/poses/v1"
  source        the input file's path
  model         where the weights came from ("released:FILE" or "checkpoint:DIR@STEP";
                an exported model's: the one it was exported from)
  method        "ppi" or "nms"; ppi: the PPI parameters used (PPIConfig fields)
  scale         {"short_side", "max_long_side"} the input scale, pixels (--short_side,
                --max_long_side)
  joint_set     e.g. "lcr13"; joint_names: the J joint names in order
  coordinates   {"pose2d": ..., "pose3d": ..., "pose3d_camera": ...} the units, axes and
                origins below
  image_size    {"height": H, "width": W} pixels of the image (EXIF orientation applied)
  camera        {"fx", "fy", "cx", "cy": pixels of the original image, "source": "fov"
                (--fov), "exif" or "default"} the intrinsics of pose3d_camera
  people        best first, each {"score": float, "pose2d": J x [x, y] in pixels of the
                original image (x right, y down, pixel (i, j) covers [i, i+1) x [j, j+1)),
                "pose3d": J x [X, Y, Z] in metres, camera axes X right, Y down, Z forward,
                origin at the person's torso centre (mean of the hips and shoulders),
                "pose3d_camera": J x [X, Y, Z] metres, camera axes, origin at the camera
                (null when the 2D pose cannot place it, e.g. all joints at one pixel)}
  Videos: fps and frames = [{"frame": index, "time": seconds from the first frame (frame
  durations may vary), "image_size": ..., "camera": ..., "people": [...]}] in place of
  image_size, camera and people; with --track each person has a "track_id" (null for a
  low-scoring detection that no track takes) and tracking gives the tracking parameters.
  NAME_tracks.json: the header fields, fps, tracking (the parameters) and tracks =
  [{"id": int, "frames": [index, ...], "scores": [...], "pose2d": frames x J x [x, y],
  "pose3d": frames x J x [X, Y, Z], "place": frames x [X, Y, Z] metres, the torso centre
  in camera space (null where not placed)}], poses and places One-Euro smoothed
  (--smooth); the annotated video and the page draw the smoothed poses.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence

import numpy as np
from absl import flags, logging

from experiments import launch, model_flags
from lcrnet_jax import visualize
from lcrnet_jax.postprocess import ppi as ppi_lib
from lcrnet_jax.predict import exported, outputs, tracking

flags.adopt_module_key_flags(model_flags)  # --help lists the flags that choose the model

_INPUT = flags.DEFINE_multi_string("input", None, "Image, folder, video or glob (repeatable).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for the JSON and PNG outputs.")
_EXPORTED = flags.DEFINE_string("exported", None, "A model folder of experiments/export.py.")
_IOU = flags.DEFINE_float("iou_threshold", None, "PPI grouping IoU threshold.")
_T3D = flags.DEFINE_float("t3d", None, "PPI mode threshold on D3D, metres.")
_BOX_JOINTS = flags.DEFINE_enum("box_joints", None, list(ppi_lib.BOX_JOINTS), "PPI pose boxes.")
_MIN_MODE = flags.DEFINE_float("min_mode_score", None, "PPI minimum score of further modes.")
_PERSON = flags.DEFINE_float("person_threshold", None, "Minimum score of a person.")
_MAX_PEOPLE = flags.DEFINE_integer("max_people", None, "People kept per image at most.")
_GROUP_BY = flags.DEFINE_enum("group_by", None, list(ppi_lib.GROUP_BY), "PPI grouping boxes.")
_RESCORE = flags.DEFINE_float("rescore_sigma", None, "Eq. 6 rescoring sigma, pixels (off).")
_SHORT_SIDE = flags.DEFINE_integer(
    "short_side", None, "Network short side, pixels (default: the run's config, else 800)."
)
_MAX_LONG_SIDE = flags.DEFINE_integer(
    "max_long_side", None, "Network long side cap, pixels (default: the run's, else 1333)."
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 1, "Images per network call (consecutive images of one size, video frames)."
)
_FOV = flags.DEFINE_float(
    "fov",
    None,
    "Camera field of view across the longer image side, degrees, for pose3d_camera "
    "(default: the image's EXIF 35 mm focal length, else 55).",
)
_VISUALIZE = flags.DEFINE_bool("visualize", True, "Write PNG (and video) visualisations.")
_MIN_SCORE = flags.DEFINE_float(
    "min_score",
    None,
    "Pictures, videos and pages draw the people scoring >= this, and tracks start from them "
    "(JSON: all; default: PPI's with --config, its predict.min_score, or the export's; "
    "else 0.1).",
)
_HTML = flags.DEFINE_bool(
    "html",
    False,
    "Write NAME.html per image or video: the overlay and a rotatable 3D view, no network.",
)
_SKIP_EXISTING = flags.DEFINE_bool(
    "skip_existing",
    False,
    "Resume an interrupted run: keep the inputs whose outputs are complete from an earlier "
    "run with the same model, PPI settings, input scale and tracking, and predict the others.",
)
_TRACK = flags.DEFINE_bool("track", True, "Track the people of videos (ids, NAME_tracks.json).")
_DEFAULT = tracking.TrackingConfig()
_MAX_AGE = flags.DEFINE_integer("track_max_age", _DEFAULT.max_age, "Frames a lost track lives.")
_SMOOTH = flags.DEFINE_bool("smooth", _DEFAULT.smooth, "One-Euro smoothing of tracked poses.")
_MIN_CUTOFF = flags.DEFINE_float(
    "smooth_min_cutoff", _DEFAULT.min_cutoff, "One-Euro cutoff at rest, Hz (lower: smoother)."
)
_BETA = flags.DEFINE_float(
    "smooth_beta", _DEFAULT.beta, "One-Euro cutoff rise, Hz per person size/s (higher: less lag)."
)


_picture_min_score = 0.1  # what pictures, videos and pages draw: `main` sets it (_min_score)


def _min_score() -> float:
    """--min_score; else the model's own for PPI's people: --config's `predict.min_score`
    (--checkpoint) or the one an export recorded; else 0.1 (NMS's class probabilities,
    original model files)."""
    if _MIN_SCORE.value is not None:
        return _MIN_SCORE.value
    if _EXPORTED.value:
        own = exported.recorded_min_score(_EXPORTED.value)
    else:
        config = model_flags.CONFIG.value
        if config is None and model_flags.CHECKPOINT.value:
            config = outputs.run_config(model_flags.CHECKPOINT.value)
        own = outputs.picture_min_score(config, model_flags.METHOD.value or "ppi")
    return 0.1 if own is None else own


def _shown(result):
    """The people the pictures draw (scoring >= `_picture_min_score`); a warning, once,
    when that leaves out everyone of an image with people."""
    shown = result.scoring_at_least(_picture_min_score)
    if result.num_people and not shown.num_people:
        logging.log_first_n(
            logging.WARNING,
            "pictures: no person of %d scores >= %g (--min_score, by default the model's "
            "own); the JSON has them all",
            1, result.num_people, _picture_min_score,
        )  # fmt: skip
    return shown


def _save_pictures(prefix: pathlib.Path, image, result) -> None:
    """An image's pictures: the PNGs (--visualize) and the HTML page (--html)."""
    result = _shown(result)
    if _VISUALIZE.value:
        visualize.save_visualizations(prefix, image, result)
    if _HTML.value:
        page = prefix.with_name(prefix.name + ".html")
        visualize.save_html(page, image, result, title=prefix.name)


def _draw_frame(frame, result, *, ids=None):
    """A video frame annotated with the people scoring >= --min_score."""
    keep = result.scores >= _picture_min_score
    ids = None if ids is None else np.asarray(ids)[keep]
    return visualize.draw_result(frame, _shown(result), ids=ids)


def _video_page(fps: float) -> visualize.VideoPage:
    """A video's NAME.html (--html), drawing the people scoring >= --min_score."""
    return visualize.VideoPage(fps=fps, min_score=_picture_min_score)


def main(argv: Sequence[str]) -> None:
    del argv
    sources = (model_flags.WEIGHTS.value, model_flags.CHECKPOINT.value, _EXPORTED.value)
    if sum(map(bool, sources)) != 1:
        raise ValueError("give exactly one of --weights, --checkpoint and --exported")
    global _picture_min_score
    _picture_min_score = _min_score()
    if math.isnan(_picture_min_score):
        raise ValueError("--min_score must be a number, got nan")
    overrides = {
        "iou_threshold": _IOU.value,
        "t3d": _T3D.value,
        "box_joints": _BOX_JOINTS.value,
        "min_mode_score": _MIN_MODE.value,
        "person_threshold": _PERSON.value,
        "max_people": _MAX_PEOPLE.value,
        "group_by": _GROUP_BY.value,
        "rescore_sigma": _RESCORE.value,
    }
    tracking_config = tracking.TrackingConfig(
        max_age=_MAX_AGE.value,
        match_score=max(0.0, _picture_min_score),
        smooth=_SMOOTH.value,
        min_cutoff=_MIN_CUTOFF.value,
        beta=_BETA.value,
    )
    summary = outputs.predict_files(
        _INPUT.value,
        _OUTPUT_DIR.value,
        save_pictures=_save_pictures if _VISUALIZE.value or _HTML.value else None,
        draw_frame=_draw_frame if _VISUALIZE.value else None,
        tracking=tracking_config if _TRACK.value else None,
        video_page=_video_page if _HTML.value else None,
        skip_existing=_SKIP_EXISTING.value,
        picture_suffixes=(
            *(outputs.PICTURE_SUFFIXES if _VISUALIZE.value else ()),
            *((".html",) if _HTML.value else ()),
        ),
        **model_flags.model_args(),
        exported=_EXPORTED.value,
        ppi_overrides=overrides,
        batch_size=_BATCH_SIZE.value,
        fov_degrees=_FOV.value,
        **{
            name: flag.value
            for name, flag in (("short_side", _SHORT_SIDE), ("max_long_side", _MAX_LONG_SIDE))
            if flag.value is not None
        },
    )
    print(f"predict: {summary.line()}; outputs in {_OUTPUT_DIR.value}")
    if summary.images == 0 and summary.kept == 0:
        raise ValueError("no input could be processed")


if __name__ == "__main__":
    flags.mark_flags_as_required(["input", "output_dir"])
    launch.run(
        main,
        log_dir_flag="output_dir",
        on_interrupt="rerun the same command with --skip_existing to keep the inputs done",
    )
