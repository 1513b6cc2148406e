"""Prediction on files: the poses of every input as JSON, optionally with pictures.

`predict_files` is what `experiments/predict.py` runs: it finds the inputs, builds the
model (`make_predictor`: a `Predictor`, or an `ExportedModel`) and writes, per input,
NAME.json and the pictures drawn by the callables it is given (`lcrnet_jax.visualize`
comes later in the layering).
The outputs and the JSON schema are described in `experiments/predict.py`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import itertools
import json
import os
import pathlib
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO

import numpy as np
from PIL import Image

from lcrnet_jax.data import atomic
from lcrnet_jax.data.atomic import atomic_path
from lcrnet_jax.data.progress import progress_bar
from lcrnet_jax.postprocess import ppi as ppi_lib
from lcrnet_jax.postprocess.detect import ppi_config_from_mapping
from lcrnet_jax.predict.canvas import ImageModel, PoseResult
from lcrnet_jax.predict.exported import ExportedModel
from lcrnet_jax.predict.inputs import InputFile, find_inputs, load_image
from lcrnet_jax.predict.predictor import Predictor, ppi_config_from_released
from lcrnet_jax.predict.tracking import Tracker, TrackingConfig
from lcrnet_jax.predict.video import VideoReader, VideoWriter

SavePictures = Callable[[pathlib.Path, np.ndarray, PoseResult], object]
DrawFrame = Callable[..., np.ndarray]  # (frame, result, *, ids=None) -> frame
# fps -> a page with add(index, frame, result, *, ids=None) and save(path, *, title=...)
VideoPageFactory = Callable[[float], Any]

FORMAT = "lcrnet-jax/poses/v1"

DERIVED_SUFFIXES = ("_2d", "_3d", "_tracks")
"""What the outputs of an input NAME add to it, besides NAME.json and NAME.html:
NAME_2d.png and NAME_3d.png (`save_pictures`), NAME_2d.mp4 or the folder NAME_2d/
(`draw_frame`), NAME_tracks.json (`tracking`)."""


COORDINATES = {
    "pose2d": "pixels of the original image, x right, y down, origin at the top-left corner "
    "of the top-left pixel",
    "pose3d": "metres, camera axes X right, Y down, Z forward, origin at the torso centre "
    "(mean of the hips and shoulders)",
    "pose3d_camera": "metres, camera axes, origin at the camera: pose3d placed by the "
    "translation that best aligns it with pose2d under the intrinsics in camera (null when "
    "degenerate)",
}


FAILED_FILE = "failed.txt"
"""In the output folder, the inputs of the last run that failed: one line each, the
path, a tab and the reason (`failure_reason`); absent when none failed."""

PICTURE_SUFFIXES = ("_2d.png", "_3d.png")
"""The pictures of an image NAME that `visualize.save_visualizations` writes (NAME + each):
`run`'s default `picture_suffixes`."""

_HEADER_BYTES = 1 << 16
"""Bytes read from the start of an output JSON to find its header (a few KB)."""

_HEADER_END = re.compile(r',\n "(?:people|frames)": ')
"""Where the header of an output JSON ends, as `json.dumps(..., indent=1)` writes it (one
member a line, at one space): at its people (an image) or its frames (a video)."""

FAILURES_SHOWN = 10
"""Failed inputs that a run names on stderr, one line each; the others are only listed in
`FAILED_FILE`."""


def failure_reason(message: str, path: str) -> str:
    """The reason in an input's one-line error `message` without its `path` (e.g.
    "cannot read image: not an image file PIL can identify"), as `FAILED_FILE` and
    `Summary.reasons` give it."""
    return " ".join(message.replace(path, "").split()).replace(" :", ":")


@dataclasses.dataclass
class Summary:
    """What a `run` did.

    Attributes:
      images: images and video frames processed.
      inputs_done: input files fully processed.
      failed: inputs that failed (missing, unreadable, ...).
      kept: inputs not predicted, their outputs complete from an earlier run
        (`run`'s `skip_existing`).
      people: people found in all images and frames.
      seconds: wall-clock time of the run.
      reasons: failed inputs by reason (`failure_reason`).
      failed_file: the file listing the failed inputs (`FAILED_FILE`), or None.
    """

    images: int = 0
    inputs_done: int = 0
    failed: int = 0
    kept: int = 0
    people: int = 0
    seconds: float = 0.0
    reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failed_file: pathlib.Path | None = None

    def line(self) -> str:
        """One line: counts, rate, and the failures' three commonest reasons."""
        kept = f", {self.kept} kept from an earlier run" if self.kept else ""
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        failed = f"{self.failed} failed"
        if self.reasons:
            common = self.reasons.most_common(3)
            others = self.failed - sum(count for _, count in common)
            failed += ": " + ", ".join(f"{count} {reason!r}" for reason, count in common)
            failed += f", {others} other" if others else ""
        if self.failed_file is not None:
            failed += f"; listed in {self.failed_file}"
        return (
            f"{self.images} images from {self.inputs_done} of {self.inputs_done + self.failed} "
            f"inputs ({failed}){kept}, {self.people} people found, {rate:.2f} images/s"
        )


def _header(predictor: ImageModel, source: str) -> dict:
    return {
        "format": FORMAT,
        "source": source,
        **predictor.provenance,
        "coordinates": COORDINATES,
    }


def _recorded(path: pathlib.Path) -> dict | None:
    """The header of the output JSON at `path` and what follows it up to the people or
    frames (`_HEADER_END`), if the file is one that this module writes whole (ASCII,
    ending where its list of people or frames and the object close); None if it is absent
    or not such a file (damaged, cut short, another program's)."""
    try:
        with open(path, "rb") as file:
            start = file.read(_HEADER_BYTES).decode("ascii")
            file.seek(-3, os.SEEK_END)
            whole = file.read() == b"]\n}"
        end = _HEADER_END.search(start)
        header = json.loads(start[: end.start()] + "\n}") if whole and end else None
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return header if isinstance(header, dict) else None


def _complete(
    predictor: ImageModel,
    item: InputFile,
    out: pathlib.Path,
    *,
    tracking: TrackingConfig | None,
    files: Sequence[tuple[str, ...]],
) -> bool:
    """Whether `out` holds outputs of `item` complete from an earlier run that made them as
    this one would: NAME.json (written last, so present when the others are) whole
    (`_recorded`) with this run's header (`_header`: this input's path, the predictor's
    `provenance`) and, for a video, tracking parameters (none without `tracking`); and
    for each tuple of suffixes in `files`, NAME + one of them."""
    made = _header(predictor, item.path)
    if item.video:
        made["tracking"] = None if tracking is None else dataclasses.asdict(tracking)
    recorded = _recorded(out / f"{item.name}.json") or {}
    # Compared as JSON text: tuples read back as lists, NaN (unequal to itself) as NaN.
    as_made = json.dumps({key: recorded.get(key) for key in made}, sort_keys=True)
    return as_made == json.dumps(made, sort_keys=True) and all(
        any(os.path.lexists(out / f"{item.name}{suffix}") for suffix in names) for names in files
    )


def _compiling(bucket: tuple[int, int]) -> str:
    """What a bar says while the network compiles for a size bucket."""
    return f"compiling the network for {bucket[0]}x{bucket[1]} canvases (once per size)"


def _results(
    predictor: ImageModel, inputs: Sequence[InputFile], note: Callable[[str], object]
) -> Iterator[tuple[InputFile, PoseResult | Exception | None]]:
    """(input, its `PoseResult` or the error that stopped it) for every input, in order;
    None for a video (read and predicted by `_predict_video`). Consecutive images of
    one size bucket share network calls (`predict_stream`, up to `batch_size` images a
    call), each read from its file (its EXIF focal length counts); `note` gets
    `_compiling`'s text before a compilation."""
    for video, group in itertools.groupby(inputs, key=lambda item: item.video):
        if video:
            yield from ((item, None) for item in group)
        else:
            pairs = ((item, item.path) for item in group)
            yield from predictor.predict_stream(pairs, on_compile=lambda b: note(_compiling(b)))


def _write_image(
    predictor: ImageModel,
    item: InputFile,
    result: PoseResult,
    out: pathlib.Path,
    save_pictures: SavePictures | None,
) -> int:
    """One image's JSON and pictures, which appear together (a run stopped while writing
    them leaves none). Returns the number of people."""
    folder, name = (out / item.name).parent, (out / item.name).name
    with atomic.staged_files(folder, replaces=lambda _: False, last=f"{name}.json") as stage:
        atomic.write_json(
            stage / f"{name}.json", {**_header(predictor, item.path), **result.to_json()}
        )
        if save_pictures is not None:
            save_pictures(stage / name, load_image(item.path), result)
    return result.num_people


class _FrameSink:
    """Annotated frames to an mp4 (PyAV) or, without PyAV, to a folder of PNGs."""

    def __init__(self, path: pathlib.Path, fps: float):
        try:
            self._video = VideoWriter(path.with_name(path.name + ".mp4"), fps)
            self._folder = None
        except ValueError:
            self._video = None
            self._path = path
            self._atomic = atomic_path(path)
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
            if self._path.is_dir():  # an earlier run's frames: a folder is not renamed over
                shutil.rmtree(self._path)
            self._atomic.__exit__(None, None, None)
        else:
            self._atomic.__exit__(type(error), error, error.__traceback__)


def _write_json(file: TextIO, value, depth: int = 0) -> None:
    """`json.dumps(value, indent=1)` written to `file` (at `depth` in a larger value),
    taking the iterators in `value` and in its dicts as lists, one item at a time."""
    pad = "\n" + " " * depth
    if isinstance(value, Iterator):
        empty = True
        for item in value:
            file.write(("[" if empty else ",") + pad + " ")
            _write_json(file, item, depth + 1)
            empty = False
        file.write("[]" if empty else pad + "]")
    elif isinstance(value, dict) and value:
        for i, (key, item) in enumerate(value.items()):
            file.write(("," if i else "{") + pad + " " + json.dumps(key) + ": ")
            _write_json(file, item, depth + 1)
        file.write(pad + "}")
    else:
        file.write(json.dumps(value, indent=1).replace("\n", pad))


class _JsonList:
    """`json.dumps({**head, key: items}, indent=1)` written to `file` as the items come
    (`_write_json`), so that they are never all in memory; `close` writes the end."""

    def __init__(self, file: TextIO, head: dict, key: str):
        self._file, self.count = file, 0
        file.write(json.dumps({**head, key: []}, indent=1).removesuffix("[]\n}") + "[")

    def add(self, item) -> None:
        self._file.write(("," if self.count else "") + "\n  ")
        _write_json(self._file, item, depth=2)
        self.count += 1

    def close(self) -> None:
        self._file.write("\n ]\n}" if self.count else "]\n}")


def _predict_video(
    predictor: ImageModel,
    item: InputFile,
    out: pathlib.Path,
    draw_frame: DrawFrame | None,
    progress: bool,
    tracking: TrackingConfig | None = None,
    video_page: VideoPageFactory | None = None,
) -> tuple[int, int]:
    """One video: a JSON of all frames, the annotated video, with `tracking` a JSON of the
    tracks (the video and page drawn with their ids and smoothed poses; both JSON files
    record the tracking parameters), with `video_page` an HTML page. The JSON files are
    written as the frames come (the tracks' from the tracker's file at the end), so
    memory does not grow with the video's length. NAME.json comes last (an older one is
    removed before the other files are replaced): its presence says that the video's
    outputs are complete. Returns (frames, people)."""
    reader = VideoReader(item.path)
    tracker = None if tracking is None else Tracker(tracking, reader.fps)
    page = None if video_page is None else video_page(reader.fps)
    frames, people, sink = None, 0, None
    path = out / f"{item.name}.json"
    with atomic_path(path) as tmp, open(tmp, "w") as file:
        bar = progress_bar(
            total=reader.num_frames, desc=item.name, unit="frame", leave=False,
            disable=not progress,
        )  # fmt: skip
        try:
            sink = None if draw_frame is None else _FrameSink(out / f"{item.name}_2d", reader.fps)
            stream = predictor.predict_stream(
                (((i, f), f) for i, f in enumerate(reader)),
                on_compile=lambda bucket: bar.note(_compiling(bucket)),
            )
            for (index, frame), result in stream:
                if isinstance(result, Exception):
                    raise result
                seconds = reader.times[index]
                record = {"frame": index, "time": round(seconds, 4), **result.to_json()}
                joints = {k: record.pop(k) for k in ("joint_set", "joint_names")}
                if frames is None:
                    head = {**_header(predictor, item.path), **joints, "fps": reader.fps}
                    if tracking is not None:
                        head["tracking"] = dataclasses.asdict(tracking)
                    frames = _JsonList(file, head, "frames")
                people += result.num_people
                ids, shown = None, result
                if tracker is not None:
                    cam = result.poses3d_cam
                    tracked = tracker.update(
                        index, poses2d=result.poses2d, poses3d=result.poses3d,
                        scores=result.scores, time=seconds,
                        places=None if cam is None else (cam - result.poses3d)[:, 0],
                    )  # fmt: skip
                    ids = tracked.ids
                    for person, track_id in zip(record["people"], ids, strict=True):
                        person["track_id"] = int(track_id) if track_id >= 0 else None
                    poses3d = tracked.poses3d.astype(np.float32)
                    placed = None if cam is None else poses3d + tracked.places[:, None]
                    shown = dataclasses.replace(
                        result,
                        poses2d=tracked.poses2d.astype(np.float32),
                        poses3d=poses3d,
                        poses3d_cam=None if placed is None else placed.astype(np.float32),
                    )
                frames.add(record)
                if sink is not None:
                    sink.write(draw_frame(frame, shown, ids=ids))
                if page is not None:
                    page.add(index, frame, shown, ids=ids, time=seconds)
                bar.update()
            if frames is None:
                raise ValueError(f"video {item.path} has no frame")
        except BaseException as e:
            if sink is not None:
                sink.close(e)
            raise
        finally:
            bar.close()
        frames.close()
        path.unlink(missing_ok=True)  # NAME.json last, an older one first out
        if sink is not None:
            sink.close(None)
        if tracker is None:  # an earlier run's tracks are not this run's
            (out / f"{item.name}_tracks.json").unlink(missing_ok=True)
        else:
            with atomic_path(out / f"{item.name}_tracks.json") as tracks_tmp:
                with open(tracks_tmp, "w") as tracks_file:
                    tracks = _JsonList(tracks_file, head, "tracks")
                    for track in tracker.tracks():
                        tracks.add(track)
                    tracks.close()
        if page is not None:
            page.save(out / f"{item.name}.html", title=item.name)
    return frames.count, people


@contextlib.contextmanager
def _listed(out: pathlib.Path, failures: list[tuple[str, str]], summary: Summary) -> Iterator[None]:
    """At the end of a run, also a stopped one: the `failures` (path, reason) counted
    in `summary` and listed in `out`/`FAILED_FILE` (written atomically; an older list
    removed when none failed)."""
    try:
        yield
    finally:
        path = out / FAILED_FILE
        summary.failed += len(failures)
        summary.reasons.update(reason for _, reason in failures)
        if failures:
            atomic.write_text(path, "".join(f"{p}\t{reason}\n" for p, reason in failures))
            summary.failed_file = path
        else:
            path.unlink(missing_ok=True)


def _check_names_apart(inputs: Sequence[InputFile]) -> None:
    """ValueError when two inputs would write the same file (names not found apart with
    `find_inputs(..., output_suffixes=DERIVED_SUFFIXES)`)."""
    writer: dict[str, str] = {}
    for item in inputs:
        for stem in (item.name + suffix for suffix in ("", *DERIVED_SUFFIXES)):
            first = writer.setdefault(stem, item.path)
            if first != item.path:
                raise ValueError(
                    f"inputs {first} and {item.path} would both write {stem}.*: find them "
                    "with find_inputs(..., output_suffixes=outputs.DERIVED_SUFFIXES)"
                )


def _input_error(error: Exception) -> bool:
    """An error of one input (bad data, a missing file, an output name too long for the
    file system), after which the run goes on."""
    return isinstance(error, ValueError | FileNotFoundError) or (
        isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG
    )


def _output_folder(output_dir: str | os.PathLike) -> pathlib.Path:
    """`output_dir`, created if needed; OSError naming it if it cannot be."""
    out = pathlib.Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create the output folder {out}: {error.strerror or error}") from None
    return out


def run(
    predictor: ImageModel,
    inputs: Sequence[InputFile],
    output_dir: str | os.PathLike,
    *,
    save_pictures: SavePictures | None = None,
    draw_frame: DrawFrame | None = None,
    tracking: TrackingConfig | None = None,
    video_page: VideoPageFactory | None = None,
    progress: bool = True,
    skip_existing: bool = False,
    picture_suffixes: Sequence[str] = PICTURE_SUFFIXES,
) -> Summary:
    """Predicts on every input and writes its outputs, in order; a failing input is
    reported on stderr in one line and skipped. Consecutive images of one size bucket
    share network calls (up to `predictor.batch_size` images a call). Temporary files
    of an interrupted earlier run in `output_dir` are removed first (one line each on
    stderr). With `skip_existing`, the same call resumes an interrupted run.

    Args:
      predictor: the model, a `Predictor` or an `ExportedModel`.
      inputs: from `find_inputs`.
      output_dir: created if needed.
      save_pictures: writes an image's pictures, `save_pictures(prefix, image, result)`
        (`visualize.save_visualizations`); None for none.
      draw_frame: draws a video frame's people, `draw_frame(frame, result, ids=ids)
        -> frame` (`visualize.draw_result`; ids: (P,) track ids or None); None writes
        no annotated video.
      tracking: track the people of videos (`tracking.Tracker`): a track id per person
        in NAME.json, NAME_tracks.json, the annotated video drawn with ids and smoothed
        poses; None for none.
      video_page: makes a video's HTML page from its fps (`visualize.VideoPage`), which
        gets every frame and is saved as NAME.html; None for none.
      progress: show progress bars over the inputs and a video's frames
        (`data.progress`: tqdm's on a terminal, else a line every 30 s at most), and
        say when the network compiles for a new size bucket.
      skip_existing: keep, without predicting it again or a word, an input whose
        outputs are complete from an earlier run that made them as this one would
        (`_complete`: NAME.json, written last, names this input and records this
        predictor's provenance and, for a video, these tracking parameters; and the
        pictures, annotated video, tracks and page that this run asks for exist); the
        others are predicted, their files replaced. Counted in the summary's `kept`.
        Settings that the header does not record (the camera's `fov_degrees` or
        `intrinsics`; how pictures are drawn) are not compared.
      picture_suffixes: the files that `save_pictures` writes for an image NAME
        (NAME + each), which `skip_existing` looks for; default: those of
        `visualize.save_visualizations`.

    Returns:
      The run's `Summary` (its `failed` counts the inputs that failed here, not the
      kept ones).

    Raises:
      ValueError: two inputs would write the same file (see `_check_names_apart`).
      OSError: another prediction is writing into `output_dir` (its lock is held).
    """
    _check_names_apart(inputs)
    out = _output_folder(output_dir)
    busy = f"another prediction is writing into {out}: wait for it, or pass another folder"
    with atomic.exclusive(out, busy):
        for path in atomic.remove_stale(out):
            print(f"predict: removed {path}, left by an interrupted run", file=sys.stderr)
        files = {  # the outputs asked for besides NAME.json, by `InputFile.video`
            False: [(suffix,) for suffix in picture_suffixes if save_pictures is not None],
            True: [("_2d.mp4", "_2d")] * (draw_frame is not None)  # PyAV's, or PNGs'
            + [("_tracks.json",)] * (tracking is not None)
            + [(".html",)] * (video_page is not None),
        }
        todo = [
            item
            for item in inputs
            if not skip_existing
            or not _complete(predictor, item, out, tracking=tracking, files=files[item.video])
        ]
        summary = Summary(kept=len(inputs) - len(todo))
        failures: list[tuple[str, str]] = []  # (path, reason)
        start = time.perf_counter()
        bar = progress_bar(
            _results(predictor, todo, lambda text: bar.note(text)), total=len(todo),
            desc="inputs", unit="input", disable=not progress,
        )  # fmt: skip
        with bar, _listed(out, failures, summary):
            for item, result in bar:
                (out / item.name).parent.mkdir(parents=True, exist_ok=True)
                try:
                    if isinstance(result, Exception):
                        raise result
                    if item.video:
                        images, people = _predict_video(
                            predictor, item, out, draw_frame, progress, tracking, video_page
                        )
                    else:
                        people = _write_image(predictor, item, result, out, save_pictures)
                        images = 1
                except Exception as e:
                    if not _input_error(e):
                        raise
                    message = str(e).splitlines()[0]
                    failures.append((item.path, failure_reason(message, item.path)))
                    if len(failures) <= FAILURES_SHOWN:
                        bar.write(f"predict: skipped: {message}", file=sys.stderr)
                    elif len(failures) == FAILURES_SHOWN + 1:
                        bar.write(
                            f"predict: skipped: more than {FAILURES_SHOWN} inputs; the others "
                            f"are not named here, {out / FAILED_FILE} lists them all at the end",
                            file=sys.stderr,
                        )
                    continue
                summary.inputs_done += 1
                summary.images += images
                summary.people += people
        summary.seconds = time.perf_counter() - start
        return summary


def make_ppi_config(
    *,
    preset: str | None = None,
    file_params: Mapping | None = None,
    run_ppi: Mapping | None = None,
    overrides: Mapping | None = None,
) -> ppi_lib.PPIConfig:
    """The PPI parameters of a prediction run.

    Args:
      preset: a name of `ppi.PRESETS`; None: the model file's own parameters
        (`file_params`) or the training run's `config.ppi` (`run_ppi`) when given,
        else "default".
      file_params: the "ppi_params" of a released model file, or None.
      run_ppi: a training run's `config.ppi` as a dict, or None.
      overrides: `PPIConfig` fields to change; None values are ignored.
    """
    if preset is None and file_params:
        base = ppi_config_from_released(file_params)
    elif preset is None and run_ppi is not None:
        base = ppi_config_from_mapping(run_ppi)
    else:
        preset = preset or "default"
        if preset not in ppi_lib.PRESETS:
            raise ValueError(
                f"unknown PPI preset {preset!r}; expected one of {sorted(ppi_lib.PRESETS)}"
            )
        base = ppi_lib.PRESETS[preset]
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    return dataclasses.replace(base, **changes)


def run_config(checkpoint: str | os.PathLike, config=None):
    """`config`, else the one the run in `checkpoint` last started or resumed with (its
    config.json).

    Raises:
      ValueError: no config given and none readable in the run.
    """
    if config is not None:
        return config
    from lcrnet_jax.train import loop

    saved = loop.saved_config(os.fspath(checkpoint))
    if saved is None:
        raise ValueError(
            f"{checkpoint} has no readable config.json: pass --config, the training run's "
            "config file"
        )
    return saved


def picture_min_score(config, method: str) -> float | None:
    """The score from which pictures draw a person: a run config's `predict.min_score`
    for PPI's people (a PPI score sums its mode's candidates: each model has its own
    scale); None without a config or for NMS (class probabilities)."""
    if config is None or method != "ppi":
        return None
    return config.get("predict", {}).get("min_score")


def make_predictor(
    *,
    weights: str | None = None,
    checkpoint: str | None = None,
    exported: str | None = None,
    config=None,
    step: int | None = None,
    method: str | None = None,
    ppi: str | None = None,
    ppi_overrides: Mapping | None = None,
    **options,
) -> ImageModel:
    """The model from an original model file, a training run's checkpoint or an exported
    model's folder: a `Predictor`, or an `ExportedModel` for `exported`.

    Args:
      weights: an original LCR-Net++ model file (.pkl/.npz).
      checkpoint: a training workdir (orbax checkpoints); needs `config`.
      exported: a folder written by `export.export_predictor`; its method, PPI parameters
        and input scale are the exported ones, which nothing here can change.
      config: the training run's experiment config; None for a checkpoint: the one the
        run saved (its config.json).
      step: the checkpoint step; None for the latest.
      method: "ppi" or "nms"; None for "ppi".
      ppi: PPI preset name (see `make_ppi_config`).
      ppi_overrides: `PPIConfig` fields to change (None values ignored).
      **options: further `Predictor` arguments (short_side, batch_size, fov_degrees, ...);
        for `exported`, `ExportedModel`'s (batch_size, fov_degrees, intrinsics).

    Raises:
      ValueError: not exactly one source, or a setting that the source cannot take.
    """
    if sum(map(bool, (weights, checkpoint, exported))) != 1:
        raise ValueError("give exactly one of weights, checkpoint and exported")
    if exported:
        given = [name for name, value in (("config", config), ("step", step)) if value is not None]
        if given:
            raise ValueError(
                f"an exported model has no training config or step (given: {', '.join(given)}); "
                "they go with --checkpoint"
            )
        fixed = {
            "method": method, "ppi": ppi,
            "short_side": options.pop("short_side", None),
            "max_long_side": options.pop("max_long_side", None),
            **(ppi_overrides or {}),
        }  # fmt: skip
        given = [name for name, value in fixed.items() if value is not None]
        if given:
            raise ValueError(
                "an exported model keeps the method, PPI parameters and input scale it was "
                f"exported with; export it again to change them (given: {', '.join(given)})"
            )
        return ExportedModel(exported, **options)
    options["method"] = method or "ppi"
    if weights:
        given = [name for name, value in (("config", config), ("step", step)) if value is not None]
        if given:
            raise ValueError(
                f"an original model file has no training config or step (given: "
                f"{', '.join(given)}); they go with --checkpoint"
            )
        from lcrnet_jax.model import weights as weights_lib

        net_config, variables, params = weights_lib.load_released(weights)
        name = f"released:{os.path.basename(weights)}"
        ppi_config = make_ppi_config(preset=ppi, file_params=params, overrides=ppi_overrides)
        return Predictor(net_config, variables, ppi_config=ppi_config, model_name=name, **options)
    config = run_config(checkpoint, config)
    ppi_config = make_ppi_config(preset=ppi, run_ppi=config.ppi.to_dict(), overrides=ppi_overrides)
    return Predictor.from_checkpoint(
        checkpoint, config, step=step, ppi_config=ppi_config, **options
    )


def predict_files(
    patterns: Sequence[str],
    output_dir: str | os.PathLike,
    *,
    save_pictures: SavePictures | None = None,
    draw_frame: DrawFrame | None = None,
    tracking: TrackingConfig | None = None,
    video_page: VideoPageFactory | None = None,
    progress: bool = True,
    skip_existing: bool = False,
    picture_suffixes: Sequence[str] = PICTURE_SUFFIXES,
    **predictor_args,
) -> Summary:
    """Finds the inputs, builds the predictor and predicts on every input (`run`).

    Inputs that cannot be found are reported on stderr in one line each and counted in
    the summary's `failed` (not in `FAILED_FILE`); folders and globs never take files
    inside `output_dir` (a file named on its own is read; `find_inputs`).

    Args:
      patterns: images, folders, videos or globs (`find_inputs`).
      output_dir: where the outputs go (created if needed).
      save_pictures, draw_frame, tracking, video_page, progress, skip_existing,
        picture_suffixes: as `run`.
      **predictor_args: `make_predictor` arguments.

    Raises:
      ValueError: no input was found, or the model cannot be built.
      FileNotFoundError: a model file or checkpoint is missing.
    """
    inputs, errors = find_inputs(patterns, exclude=output_dir, output_suffixes=DERIVED_SUFFIXES)
    for error in errors:
        print(f"predict: {error}", file=sys.stderr)
    if not inputs:
        raise ValueError("no input to process")
    _output_folder(output_dir)  # before the model: a bad folder fails at once
    predictor = make_predictor(**predictor_args)
    summary = run(
        predictor, inputs, output_dir, save_pictures=save_pictures, draw_frame=draw_frame,
        tracking=tracking, video_page=video_page, progress=progress,
        skip_existing=skip_existing, picture_suffixes=picture_suffixes,
    )  # fmt: skip
    if errors:
        summary.failed += len(errors)
        summary.reasons["pattern that gave no input (named above)"] += len(errors)
    return summary
