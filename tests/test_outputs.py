import collections
import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from experiments.configs import synthetic_tiny
from lcrnet_jax import geometry, predict, skeleton, visualize
from lcrnet_jax.data import atomic, progress
from lcrnet_jax.model import weights
from lcrnet_jax.postprocess import ppi as ppi_lib
from lcrnet_jax.predict import outputs, tracking
from lcrnet_jax.train import loop
from tests.test_atomic import dead_pid
from tests.test_predictor import (
    HAS_AV,
    LCR13,
    LONG,
    SHORT,
    bright_rectangle,
    fake_network,
    random_variables,
    save,
    save_run,
    tiny_config,
    tiny_run_config,
)
from tests.test_video import color_frames, noise_frames, write_gif

ROOT = pathlib.Path(__file__).resolve().parent.parent
PICTURES = {"save_pictures": visualize.save_visualizations, "draw_frame": visualize.draw_result}
SCHEMA = {
    "format",
    "source",
    "model",
    "method",
    "ppi",
    "scale",
    "coordinates",
    "joint_set",
    "joint_names",
}


@pytest.fixture(scope="module")
def predictor():
    """The bright-rectangle 'detector' (see test_predictor.fake_network), NMS baseline."""
    return predict.Predictor(
        tiny_config(),
        random_variables(tiny_config()),
        method="nms",
        short_side=SHORT,
        max_long_side=LONG,
        apply_fn=fake_network,
        model_name="fake",
    )


def torso(person: dict) -> np.ndarray:
    return np.asarray(person["pose2d"])[list(LCR13.torso)].mean(0)


def all_files(folder: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_run_writes_json_pngs_and_frames_and_reports_bad_inputs(
    predictor, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "av", None)  # no PyAV: annotated frames as PNGs
    album = tmp_path / "album"
    (album / "trip").mkdir(parents=True)
    save(bright_rectangle(30, 45, 10, 5, 20, 15), tmp_path / "photo.png")
    (album / "corrupt.jpg").write_bytes(b"\xff\xd8\xff truncated")
    gray = bright_rectangle(90, 40, 5, 50, 15, 70)[..., 0]
    save(gray, album / "trip" / "gray.png")
    rgba = np.dstack([bright_rectangle(20, 20, 2, 2, 6, 6), np.full((20, 20), 255, np.uint8)])
    save(rgba, album / "rgba.png")
    frames = [bright_rectangle(24, 32, x, 8, x + 6, 14) for x in (2, 12, 22)]
    write_gif(tmp_path / "clip.gif", frames)
    (tmp_path / "empty").mkdir()
    patterns = [str(tmp_path / n) for n in ("photo.png", "album", "clip.gif", "empty", "gone.jpg")]
    inputs, errors = predict.find_inputs(patterns)
    assert len(errors) == 2 and [i.video for i in inputs] == [False] * 4 + [True]

    out = tmp_path / "out"
    summary = outputs.run(predictor, inputs, out, progress=False, **PICTURES)
    assert (summary.images, summary.inputs_done, summary.failed) == (6, 4, 1)
    assert summary.people == 6
    assert (
        "6 images from 4 of 5 inputs (1 failed: 1 'cannot read image: not an image file PIL "
        f"can identify'; listed in {out / 'failed.txt'}), 6 people"
    ) in summary.line()
    stderr = capsys.readouterr().err
    assert f"predict: skipped: cannot read image {album / 'corrupt.jpg'}: " in stderr

    assert all_files(out) == [
        "clip.json",
        "clip_2d",
        *[f"clip_2d/{i:06d}.png" for i in range(3)],
        "failed.txt",
        "photo.json",
        "photo_2d.png",
        "photo_3d.png",
        "rgba.json",
        "rgba_2d.png",
        "rgba_3d.png",
        "trip",
        "trip/gray.json",
        "trip/gray_2d.png",
        "trip/gray_3d.png",
    ], "no partial or temporary file is left"
    photo = json.loads((out / "photo.json").read_text())
    assert SCHEMA | {"image_size", "camera", "people"} == set(photo)
    assert photo["format"] == outputs.FORMAT and photo["model"] == "fake"
    assert photo["method"] == "nms" and photo["ppi"]["iou_threshold"] == 0.2
    assert photo["joint_names"] == list(skeleton.LCR13.joints)
    assert photo["image_size"] == {"height": 30, "width": 45}
    (person,) = photo["people"]
    assert person["score"] == pytest.approx(0.9)
    np.testing.assert_allclose(torso(person), (15, 10), atol=0.3)
    # Absolute 3D: the default field of view of a PNG without EXIF; pose3d_camera
    # projects back onto pose2d.
    camera = photo["camera"]
    assert camera["source"] == "default" and (camera["cx"], camera["cy"]) == (22.5, 15.0)
    assert camera["fx"] == pytest.approx(22.5 / np.tan(np.radians(55.0) / 2), abs=0.01)
    pose_cam = np.asarray(person["pose3d_camera"])
    intrinsics = [camera[k] for k in ("fx", "fy", "cx", "cy")]
    reprojected = geometry.project(pose_cam, np.asarray(intrinsics))
    np.testing.assert_allclose(reprojected, person["pose2d"], atol=0.2)
    assert "pose3d_camera" in photo["coordinates"]
    gray_person = json.loads((out / "trip" / "gray.json").read_text())["people"][0]
    np.testing.assert_allclose(torso(gray_person), (10, 60), atol=1.0)
    overlay = np.asarray(Image.open(out / "photo_2d.png"))
    assert overlay.shape == (30, 45, 3) and (overlay != save_back(tmp_path / "photo.png")).any()

    clip = json.loads((out / "clip.json").read_text())
    assert SCHEMA | {"fps", "frames"} == set(clip) and clip["fps"] == pytest.approx(20.0)
    assert {"camera", "people"} <= set(clip["frames"][0])
    assert np.shape(clip["frames"][0]["people"][0]["pose3d_camera"]) == (13, 3)
    assert [f["frame"] for f in clip["frames"]] == [0, 1, 2]
    centers = [torso(f["people"][0])[0] for f in clip["frames"]]
    np.testing.assert_allclose(centers, [5, 15, 25], atol=0.5)
    assert np.asarray(Image.open(out / "clip_2d" / "000001.png")).shape == (24, 32, 3)


def test_a_video_predicted_again_without_pyav_replaces_its_frames_folder(
    predictor, tmp_path, monkeypatch
):
    """Before: the second run stopped with "Directory not empty" (a folder is not
    renamed over a full one)."""
    monkeypatch.setitem(sys.modules, "av", None)  # no PyAV: annotated frames as PNGs
    frames = [bright_rectangle(24, 32, x, 8, x + 6, 14) for x in (2, 12)]
    inputs, _ = predict.find_inputs([write_gif(tmp_path / "clip.gif", frames)])
    out = tmp_path / "out"
    outputs.run(predictor, inputs, out, progress=False, **PICTURES)
    (out / "clip_2d" / "000001.png").unlink()
    summary = outputs.run(predictor, inputs, out, progress=False, **PICTURES)
    assert (summary.inputs_done, summary.failed) == (1, 0)
    assert all_files(out) == ["clip.json", "clip_2d", "clip_2d/000000.png", "clip_2d/000001.png"]


def test_images_of_one_bucket_share_network_calls_with_batch_size_1s_outputs(tmp_path, monkeypatch):
    """With batch_size 4, 4 images of one size bucket go through the network in one call
    (before: one call per image, each padded to a batch of 4, 4 times the work: 0.45
    instead of 1.35 images/s in the scale audit), and give the outputs of batch_size 1;
    an unreadable image is still skipped alone."""
    album = tmp_path / "album"
    album.mkdir()
    for x in (5, 10, 15, 20):
        save(bright_rectangle(30, 45, x, 5, x + 10, 15), album / f"p{x:02d}.png")
    (album / "z_corrupt.png").write_bytes(b"not a png")
    inputs, _ = predict.find_inputs([str(album)])
    calls, written = {}, {}
    for batch_size in (1, 4):
        model = predict.Predictor(
            tiny_config(), random_variables(tiny_config()), method="nms", short_side=SHORT,
            max_long_side=LONG, apply_fn=fake_network, model_name="fake", batch_size=batch_size,
        )  # fmt: skip
        calls[batch_size] = []
        run_batch = model.run_batch
        monkeypatch.setattr(
            model,
            "run_batch",
            lambda batch, c=calls[batch_size], r=run_batch: c.append(len(batch)) or r(batch),
        )
        out = tmp_path / f"out{batch_size}"
        summary = outputs.run(model, inputs, out, progress=False)
        assert (summary.images, summary.failed, summary.people) == (4, 1, 4)
        written[batch_size] = {name: (out / name).read_text() for name in all_files(out)}
    assert calls == {1: [1, 1, 1, 1], 4: [4]}
    assert written[4] == written[1] and len(written[1]) == 5  # and failed.txt


def test_a_redirected_log_gets_whole_lines_and_a_videos_frames(
    predictor, tmp_path, monkeypatch, capsys
):
    """stderr not a terminal (`nohup ... > log 2>&1`, a scheduler): plain lines (here one
    at every step), a video's frames counted too, a skipped input's line whole (before:
    carriage-return redraws, each skip line glued to a redrawn bar, and a video showed
    nothing until its end)."""
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    save(bright_rectangle(30, 45, 10, 5, 20, 15), tmp_path / "photo.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    write_gif(tmp_path / "clip.gif", [bright_rectangle(24, 32, x, 8, x + 6, 14) for x in (2, 12)])
    inputs, _ = predict.find_inputs(
        [str(tmp_path / n) for n in ("photo.png", "bad.png", "clip.gif")]
    )
    outputs.run(predictor, inputs, tmp_path / "out")
    log = capsys.readouterr().err
    assert "\r" not in log and "\x1b[" not in log
    lines = log.splitlines()
    skipped = f"predict: skipped: cannot read image {tmp_path / 'bad.png'}"
    assert [line for line in lines if "skipped" in line][0].startswith(skipped)
    assert [line.split(" in ")[0] for line in lines if line.startswith("clip: ")] == [
        "clip: 1/2 (50%)", "clip: 2/2 (100%)", "clip: 2/2 (100%)",
    ]  # fmt: skip
    assert lines[-1].startswith("inputs: 3/3 (100%) in ")


def test_a_compilation_is_announced_once_per_size_bucket(tmp_path, capsys):
    """The first input of each size bucket says that the network compiles (before: a
    23-33 s stall without a word and an ETA of hours); a bucket compiled before is not
    announced again, and the Python API says nothing."""
    model = predict.Predictor(
        tiny_config(), random_variables(tiny_config()), method="nms", short_side=SHORT,
        max_long_side=LONG, apply_fn=fake_network, model_name="fake",
    )  # fmt: skip
    for name, (height, width) in {"a": (30, 45), "b": (30, 45), "c": (45, 30)}.items():
        save(bright_rectangle(height, width, 5, 5, 15, 15), tmp_path / f"{name}.png")
    write_gif(tmp_path / "d.gif", [bright_rectangle(24, 24, x, 8, x + 6, 14) for x in (2, 9)])
    inputs, _ = predict.find_inputs([str(tmp_path / n) for n in ("a.png", "b.png", "d.gif")])
    model.predict(str(tmp_path / "c.png"))
    assert capsys.readouterr().err == ""
    outputs.run(model, inputs, tmp_path / "out")
    inputs, _ = predict.find_inputs([str(tmp_path / n) for n in ("c.png", "a.png")])
    outputs.run(model, inputs, tmp_path / "out")
    said = [line for line in capsys.readouterr().err.splitlines() if "compiling" in line]
    assert said == [
        "inputs: compiling the network for 64x96 canvases (once per size)",
        "d: compiling the network for 64x64 canvases (once per size)",
    ]


def test_many_failed_inputs_name_their_path_once_and_are_listed_in_failed_txt(
    predictor, tmp_path, capsys
):
    """13 unreadable files: the first 10 named in one line each (the path once; before:
    "cannot read image X: cannot identify image file 'X'"), then one line saying the
    others are not; all listed in failed.txt (path, tab, reason), named in the summary
    with the counts by reason. A later run without failures removes the list."""
    album = tmp_path / "album"
    album.mkdir()
    save(bright_rectangle(30, 45, 10, 5, 20, 15), album / "photo.png")
    for i in range(13):
        (album / f"bad{i:02d}.jpg").write_bytes(b"random bytes")
    inputs, _ = predict.find_inputs([str(album), str(tmp_path / "gone.png")])
    out = tmp_path / "out"
    summary = outputs.run(predictor, inputs, out, progress=False)
    reason = "cannot read image: not an image file PIL can identify"
    assert (summary.inputs_done, summary.failed, dict(summary.reasons)) == (1, 13, {reason: 13})
    lines = capsys.readouterr().err.splitlines()
    assert lines[:10] == [
        f"predict: skipped: cannot read image {album}/bad{i:02d}.jpg: not an image file PIL "
        "can identify"
        for i in range(10)
    ]
    assert lines[10:] == [
        f"predict: skipped: more than 10 inputs; the others are not named here, "
        f"{out / 'failed.txt'} lists them all at the end"
    ]
    listed = (out / "failed.txt").read_text()
    assert listed == "".join(f"{album}/bad{i:02d}.jpg\t{reason}\n" for i in range(13))
    assert f"(13 failed: 13 {reason!r}; listed in {out / 'failed.txt'})" in summary.line()
    outputs.run(predictor, inputs[-1:], out, progress=False)
    assert all_files(out) == ["photo.json"]


def save_back(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_an_image_stopped_while_its_pictures_are_written_leaves_none_of_its_files(
    predictor, tmp_path
):
    save(bright_rectangle(30, 45, 10, 5, 20, 15), tmp_path / "photo.png")
    (inputs, _) = predict.find_inputs([str(tmp_path / "photo.png")])

    def stopped(prefix, image, result):  # Ctrl-C after the 2D picture
        visualize.save_visualizations(prefix, image, result)
        raise KeyboardInterrupt

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):  # it left photo.json and the pictures
        outputs.run(predictor, inputs, out, progress=False, save_pictures=stopped)
    assert os.listdir(out) == []
    outputs.run(predictor, inputs, out, progress=False, **PICTURES)
    assert sorted(os.listdir(out)) == ["photo.json", "photo_2d.png", "photo_3d.png"]


def test_an_input_whose_outputs_names_are_too_long_is_skipped_alone(predictor, tmp_path, capsys):
    """The JSON of a legal 255-byte "NAME.png" has 256 bytes, past the file system's
    limit: that input fails in one line and the others go on (the whole run stopped)."""
    long_name = tmp_path / ("x" * 251 + ".png")
    for path in (long_name, tmp_path / "photo.png"):
        save(bright_rectangle(30, 45, 10, 5, 20, 15), path)
    inputs, _ = predict.find_inputs([str(long_name), str(tmp_path / "photo.png")])
    summary = outputs.run(predictor, inputs, tmp_path / "out", progress=False)
    assert (summary.inputs_done, summary.failed) == (1, 1)
    assert "File name too long" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "out")) == ["failed.txt", "photo.json"]


def counted_calls(monkeypatch, *models, stop_at: int | None = None) -> list[int]:
    """The images of each network call of `models` from now on (`run_batch`), which
    raises KeyboardInterrupt (a Ctrl-C, a kill) at call number `stop_at`."""
    calls = []
    for model in models:

        def run_batch(batch, original=model.run_batch):
            calls.append(len(batch))
            if len(calls) == stop_at:
                raise KeyboardInterrupt
            return original(batch)

        monkeypatch.setattr(model, "run_batch", run_batch)
    return calls


def folder_bytes(folder: pathlib.Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in all_files(folder)
            if (folder / name).is_file()}  # fmt: skip


def test_a_stopped_run_resumed_with_skip_existing_predicts_only_the_rest(
    predictor, tmp_path, monkeypatch
):
    """A run stopped in a video's frames, after 3 of 6 inputs, and run again with
    skip_existing predicts only the video and the 2 images after it (network calls
    counted: before, all 8 images and frames again), and leaves the outputs of a run never
    stopped, byte for byte; the summary counts the kept inputs."""
    monkeypatch.setitem(sys.modules, "av", None)  # no PyAV: annotated frames as PNGs
    album = tmp_path / "album"
    album.mkdir()
    for name, x in zip("abcde", (2, 8, 14, 20, 26), strict=True):
        save(bright_rectangle(30, 45, x, 5, x + 10, 15), album / f"{name}.png")
    write_gif(album / "clip.gif", [bright_rectangle(24, 32, x, 8, x + 6, 14) for x in (2, 12, 22)])
    inputs, _ = predict.find_inputs([str(album)])
    assert [item.name for item in inputs] == ["a", "b", "c", "clip", "d", "e"]
    options = dict(
        progress=False, tracking=tracking.TrackingConfig(), **PICTURES,
        video_page=lambda fps: visualize.VideoPage(fps=fps),
    )  # fmt: skip
    calls = counted_calls(monkeypatch, predictor)
    outputs.run(predictor, inputs, tmp_path / "whole", **options)
    assert calls == [1] * 8  # 5 images, 3 frames

    out = tmp_path / "out"
    calls = counted_calls(monkeypatch, predictor, stop_at=5)  # the video's second frame
    with pytest.raises(KeyboardInterrupt):
        outputs.run(predictor, inputs, out, **options)
    assert {name.split("_")[0].split(".")[0] for name in all_files(out)} == {"a", "b", "c"}

    calls = counted_calls(monkeypatch, predictor)
    summary = outputs.run(predictor, inputs, out, skip_existing=True, **options)
    assert calls == [1] * 5  # 3 frames, d and e
    assert (summary.inputs_done, summary.kept, summary.failed, summary.images) == (3, 3, 0, 5)
    assert "inputs (0 failed), 3 kept from an earlier run, 5 people found" in summary.line()
    assert folder_bytes(out) == folder_bytes(tmp_path / "whole")


def test_skip_existing_predicts_again_another_models_sources_or_damaged_outputs(
    predictor, tmp_path, monkeypatch
):
    """Only outputs recording this input, model and settings, whole, are kept: a
    NAME.json cut short, not JSON, of another input of the same name, or of another
    model is predicted again (and replaced)."""
    album, other = tmp_path / "album", tmp_path / "other"
    album.mkdir(), other.mkdir()
    for name, x in zip("abcde", (2, 8, 14, 20, 26), strict=True):
        save(bright_rectangle(30, 45, x, 5, x + 10, 15), album / f"{name}.png")
    save(bright_rectangle(30, 45, 5, 5, 9, 9), other / "c.png")
    inputs, _ = predict.find_inputs([str(album)])
    out = tmp_path / "out"
    outputs.run(predictor, inputs, out, progress=False)
    whole = folder_bytes(out)
    another_model = predict.Predictor(
        tiny_config(), random_variables(tiny_config()), method="nms", short_side=SHORT,
        max_long_side=LONG, apply_fn=fake_network, model_name="another",
    )  # fmt: skip
    calls = counted_calls(monkeypatch, predictor, another_model)
    outputs.run(another_model, inputs[3:4], out, progress=False, skip_existing=True)
    other_c, _ = predict.find_inputs([str(other)])  # also named "c"
    outputs.run(predictor, other_c, out, progress=False, skip_existing=True)
    assert calls == [1, 1]
    assert json.loads((out / "d.json").read_text())["model"] == "another"
    assert json.loads((out / "c.json").read_text())["source"] == str(other / "c.png")
    (out / "a.json").write_bytes(whole["a.json"][:-1])
    (out / "b.json").write_text("not JSON]\n}")

    calls.clear()
    summary = outputs.run(predictor, inputs, out, progress=False, skip_existing=True)
    assert calls == [1] * 4 and (summary.inputs_done, summary.kept) == (4, 1)
    assert folder_bytes(out) == whole


def test_skip_existing_predicts_again_at_another_input_scale(predictor, tmp_path, monkeypatch):
    """NAME.json records the input scale (other people at another one): a rerun with
    another --max_long_side predicts again (before: the scale was not recorded, so the
    results of the old scale were kept)."""
    save(bright_rectangle(30, 45, 2, 5, 12, 15), tmp_path / "a.png")
    inputs, _ = predict.find_inputs([str(tmp_path / "a.png")])
    out = tmp_path / "out"
    outputs.run(predictor, inputs, out, progress=False)
    scale = json.loads((out / "a.json").read_text())["scale"]
    assert scale == {"short_side": SHORT, "max_long_side": LONG}
    larger = predict.Predictor(
        tiny_config(), random_variables(tiny_config()), method="nms", short_side=SHORT,
        max_long_side=2 * LONG, apply_fn=fake_network, model_name=predictor.model_name,
    )  # fmt: skip
    calls = counted_calls(monkeypatch, predictor, larger)
    outputs.run(predictor, inputs, out, progress=False, skip_existing=True)
    outputs.run(larger, inputs, out, progress=False, skip_existing=True)
    assert calls == [1]


def test_skip_existing_predicts_again_inputs_missing_outputs_asked_for_now(
    predictor, tmp_path, monkeypatch
):
    """Pictures, an annotated video, tracks or a page asked for now and missing, or other
    tracking parameters, and the input is predicted again; the outputs asked for now and
    all there, and it is kept."""
    monkeypatch.setitem(sys.modules, "av", None)  # no PyAV: annotated frames as PNGs
    save(bright_rectangle(30, 45, 10, 5, 20, 15), tmp_path / "photo.png")
    write_gif(tmp_path / "clip.gif", [bright_rectangle(24, 32, x, 8, x + 6, 14) for x in (2, 12)])
    inputs, _ = predict.find_inputs([str(tmp_path / n) for n in ("photo.png", "clip.gif")])
    out = tmp_path / "out"
    outputs.run(predictor, inputs, out, progress=False)
    assert all_files(out) == ["clip.json", "photo.json"]
    calls = counted_calls(monkeypatch, predictor)
    default = tracking.TrackingConfig()
    options = dict(progress=False, skip_existing=True, **PICTURES)
    for removed, config, predicted in [
        (None, default, [1] * 3),  # pictures, frames and tracks asked for: both again
        (None, default, []),
        ("photo_3d.png", default, [1]),
        ("clip_tracks.json", default, [1] * 2),
        ("clip_2d", default, [1] * 2),
        (None, dataclasses.replace(default, max_age=1), [1] * 2),
    ]:
        if removed:
            shutil.rmtree(out / removed) if (out / removed).is_dir() else (out / removed).unlink()
        calls.clear()
        summary = outputs.run(predictor, inputs, out, tracking=config, **options)
        assert calls == predicted, removed
        assert summary.kept == 2 - summary.inputs_done
    assert all_files(out) == [
        "clip.json", "clip_2d", "clip_2d/000000.png", "clip_2d/000001.png",
        "clip_tracks.json", "photo.json", "photo_2d.png", "photo_3d.png",
    ]  # fmt: skip
    calls.clear()
    outputs.run(predictor, inputs, out, video_page=lambda fps: visualize.VideoPage(fps=fps),
                tracking=config, **options)  # fmt: skip
    assert calls == [1] * 2 and (out / "clip.html").exists()


def test_a_second_prediction_into_a_folder_in_use_is_refused(predictor, tmp_path):
    # Before: both ran, and the folder mixed two models' outputs without a word.
    out = tmp_path / "out"
    out.mkdir()
    with atomic.exclusive(out, busy="held"):  # another predict.py writing there
        with pytest.raises(OSError, match=f"another prediction is writing into {out}: wait"):
            outputs.run(predictor, [], out, progress=False)
    assert outputs.run(predictor, [], out, progress=False).inputs_done == 0


def test_an_output_folder_that_cannot_be_made_is_named(predictor, tmp_path):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    with pytest.raises(OSError, match=r"cannot create the output folder .*file.txt/out: Not a"):
        outputs.run(predictor, [], tmp_path / "file.txt" / "out", progress=False)
    save(bright_rectangle(8, 8, 1, 1, 4, 4), tmp_path / "photo.png")
    with pytest.raises(OSError, match="cannot create the output folder"):  # before the model
        outputs.predict_files(
            [str(tmp_path / "photo.png")], tmp_path / "file.txt" / "out",
            checkpoint=str(tmp_path / "no_run"), config=None,
        )  # fmt: skip


@pytest.mark.slow  # PyAV is optional (pip install av): run by `make test-all` where installed
@pytest.mark.skipif(not HAS_AV, reason="PyAV is optional (pip install av)")
def test_run_on_mp4_writes_an_annotated_video(predictor, tmp_path):
    with predict.VideoWriter(tmp_path / "walk.mp4", fps=10) as writer:
        for x in (4, 20):
            writer.write(bright_rectangle(32, 48, x, 8, x + 8, 16))
    inputs, _ = predict.find_inputs([str(tmp_path / "walk.mp4")])
    summary = outputs.run(predictor, inputs, tmp_path / "out", progress=False, **PICTURES)
    assert (summary.images, summary.failed) == (2, 0)
    assert all_files(tmp_path / "out") == ["walk.json", "walk_2d.mp4"]
    annotated = list(predict.VideoReader(tmp_path / "out" / "walk_2d.mp4"))
    assert len(annotated) == 2 and annotated[0].shape == (32, 48, 3)


def test_videos_named_with_dots_keep_their_whole_names(predictor, tmp_path, monkeypatch):
    written = []

    class Writer:  # where the annotated videos go (PyAV is optional)
        def __init__(self, path, fps):
            written.append(pathlib.Path(path).name)

        def write(self, frame):
            pass

        def close(self, error):
            pass

    monkeypatch.setattr(outputs, "VideoWriter", Writer)
    paths = [write_gif(tmp_path / name, color_frames(2)) for name in ("a.v1.gif", "a.v2.gif")]
    inputs, _ = predict.find_inputs(paths)
    summary = outputs.run(predictor, inputs, tmp_path / "out", progress=False, **PICTURES)
    assert (summary.images, summary.failed) == (4, 0)
    assert sorted(written) == ["a.v1_2d.mp4", "a.v2_2d.mp4"]  # not "a.mp4" twice
    assert all_files(tmp_path / "out") == ["a.v1.json", "a.v2.json"]


def test_inputs_in_subfolders_write_their_outputs_in_the_same_subfolders(predictor, tmp_path):
    """A folder's tree is kept in the output folder, for videos as for images."""
    album = tmp_path / "album"
    (album / "trip" / "day1").mkdir(parents=True)
    save(bright_rectangle(30, 45, 10, 5, 20, 15), album / "trip" / "photo.png")
    frames = [bright_rectangle(24, 32, x, 8, x + 6, 14) for x in (2, 12)]
    write_gif(album / "trip" / "day1" / "clip.gif", frames)
    inputs, _ = predict.find_inputs([str(album)])
    summary = outputs.run(predictor, inputs, tmp_path / "out", progress=False)
    assert (summary.inputs_done, summary.failed) == (2, 0)
    assert all_files(tmp_path / "out") == [
        "trip", "trip/day1", "trip/day1/clip.json", "trip/photo.json",
    ]  # fmt: skip
    clip = json.loads((tmp_path / "out" / "trip" / "day1" / "clip.json").read_text())
    assert clip["source"] == str(album / "trip" / "day1" / "clip.gif") and len(clip["frames"]) == 2


def test_outputs_of_different_inputs_never_overwrite_each_other(predictor, tmp_path):
    """A video clip.gif writes clip_tracks.json, the JSON that an image clip_tracks.png
    would write under its name."""
    write_gif(tmp_path / "clip.gif", [bright_rectangle(24, 32, x, 8, x + 6, 14) for x in (4, 6)])
    save(bright_rectangle(30, 45, 10, 5, 20, 15), tmp_path / "clip_tracks.png")
    patterns = [str(tmp_path / n) for n in ("clip.gif", "clip_tracks.png")]
    track = tracking.TrackingConfig()
    inputs, _ = predict.find_inputs(patterns)  # names apart, their outputs not
    with pytest.raises(ValueError) as raised:
        outputs.run(predictor, inputs, tmp_path / "refused", tracking=track, progress=False)
    assert str(raised.value) == (
        f"inputs {patterns[0]} and {patterns[1]} would both write clip_tracks.*: find them "
        "with find_inputs(..., output_suffixes=outputs.DERIVED_SUFFIXES)"
    )
    inputs, _ = predict.find_inputs(patterns, output_suffixes=outputs.DERIVED_SUFFIXES)
    assert [i.name for i in inputs] == ["clip", "clip_tracks-2"]
    out = tmp_path / "out"
    summary = outputs.run(predictor, inputs, out, tracking=track, progress=False)
    assert (summary.images, summary.inputs_done, summary.failed) == (3, 2, 0)
    assert all_files(out) == ["clip.json", "clip_tracks-2.json", "clip_tracks.json"]
    tracks = json.loads((out / "clip_tracks.json").read_text())
    assert tracks["source"] == patterns[0] and len(tracks["tracks"]) == 1
    image = json.loads((out / "clip_tracks-2.json").read_text())
    assert image["source"] == patterns[1] and len(image["people"]) == 1


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "experiments" / "predict.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_predict_files_counts_the_patterns_that_gave_no_input(
    predictor, tmp_path, monkeypatch, capsys
):
    """A missing file or an empty folder among the inputs is named on stderr and counted
    as failed in the summary, beside the inputs predicted."""
    monkeypatch.setattr(outputs, "make_predictor", lambda **args: predictor)
    save(bright_rectangle(30, 45, 10, 5, 20, 15), tmp_path / "photo.png")
    (tmp_path / "empty").mkdir()
    patterns = [str(tmp_path / n) for n in ("photo.png", "gone.jpg", "empty")]
    summary = outputs.predict_files(patterns, tmp_path / "out", progress=False)
    assert (summary.inputs_done, summary.failed) == (1, 2)
    assert summary.reasons == {"pattern that gave no input (named above)": 2}
    assert "1 images from 1 of 3 inputs (2 failed" in summary.line()
    assert capsys.readouterr().err.splitlines() == [
        f"predict: input {tmp_path / 'gone.jpg'} not found",
        f"predict: folder {tmp_path / 'empty'} has no image or video file",
    ]


def test_the_summary_line_counts_the_failures_beyond_the_three_commonest_reasons():
    """Six failures of five reasons: the three commonest named, the other two counted."""
    reasons = collections.Counter(
        {"not found": 2, "cannot read image": 1, "truncated": 1, "too long": 1, "empty": 1}
    )
    summary = outputs.Summary(images=3, inputs_done=3, failed=6, reasons=reasons, seconds=1.0)
    line = summary.line()
    assert "3 images from 3 of 9 inputs (6 failed: 2 'not found', " in line
    assert line.count("'") == 6 and ", 2 other)" in line


def test_make_predictor_needs_one_model_source():
    """No weights, checkpoint nor exported folder is refused as such (not as a checkpoint
    missing its config)."""
    for sources in ({}, {"weights": "", "checkpoint": None}):
        with pytest.raises(ValueError, match="^give exactly one of weights, checkpoint and"):
            outputs.make_predictor(**sources)


def test_cli_without_any_readable_input_fails_with_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli(
        f"--input={tmp_path / 'gone.jpg'}",
        f"--input={tmp_path / 'empty'}",
        f"--weights={tmp_path / 'model.pkl'}",
        f"--output_dir={tmp_path / 'out'}",
    )
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"predict: input {tmp_path / 'gone.jpg'} not found",
        f"predict: folder {tmp_path / 'empty'} has no image or video file",
        "error: no input to process",
    ]
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A training run of the tiny model with checkpoints at steps 10 and 30, and its
    config file."""
    root = tmp_path_factory.mktemp("run")
    save_run(root, random_variables(tiny_config()))
    (root / "config.py").write_text(
        "from tests.test_predictor import tiny_run_config\n\n\n"
        "def get_config():\n"
        "    return tiny_run_config()\n"
    )
    return root


def test_cli_missing_checkpoint_step_lists_the_steps(workdir, tmp_path):
    save(bright_rectangle(30, 45, 10, 5, 20, 15), tmp_path / "photo.png")
    result = run_cli(
        f"--input={tmp_path / 'photo.png'}",
        f"--checkpoint={workdir}",
        "--step=20",
        f"--config={workdir / 'config.py'}",
        f"--output_dir={tmp_path / 'out'}",
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: no checkpoint at step 20 in {workdir / 'checkpoints'}; available steps: [10, 30]"
    )


def test_cli_end_to_end_from_a_checkpoint(workdir, tmp_path):
    save(bright_rectangle(30, 45, 10, 5, 20, 15), tmp_path / "photo.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    write_gif(tmp_path / "clip.gif", [bright_rectangle(30, 45, x, 5, x + 10, 15) for x in (5, 9)])
    result = run_cli(
        f"--input={tmp_path / 'photo.png'}",
        f"--input={tmp_path / 'clip.gif'}",
        f"--input={tmp_path / 'bad.png'}",
        f"--checkpoint={workdir}",
        f"--config={workdir / 'config.py'}",
        f"--output_dir={tmp_path / 'out'}",
        f"--short_side={SHORT}",
        f"--max_long_side={LONG}",
        "--ppi=demo",
        "--t3d=0.2",
        "--fov=90",
        "--html",
    )
    assert result.returncode == 0, result.stderr
    assert f"predict: skipped: cannot read image {tmp_path / 'bad.png'}" in result.stderr
    assert "predict: 3 images from 2 of 3 inputs (1 failed: 1 'cannot read" in result.stdout
    assert "images/s" in result.stdout
    assert "\x1b[" not in result.stderr  # a video's nested bar moves a terminal's cursor
    photo = json.loads((tmp_path / "out" / "photo.json").read_text())
    assert photo["model"] == f"checkpoint:{workdir}@30"
    assert photo["ppi"]["t3d"] == 0.2 and photo["ppi"]["box_joints"] == "shoulder_head"
    assert photo["image_size"] == {"height": 30, "width": 45}
    assert photo["camera"] == {"fx": 22.5, "fy": 22.5, "cx": 22.5, "cy": 15.0, "source": "fov"}
    clip_2d = ["clip_2d.mp4"] if HAS_AV else ["clip_2d"]
    assert sorted(os.listdir(tmp_path / "out")) == [
        "clip.html", "clip.json", *clip_2d, "clip_tracks.json", "failed.txt", "log.txt",
        "photo.html", "photo.json", "photo_2d.png", "photo_3d.png",
    ]  # fmt: skip
    page = (tmp_path / "out" / "photo.html").read_text()
    assert "<title>photo</title>" in page and "createREGL" in page and "<script src" not in page
    clip = (tmp_path / "out" / "clip.html").read_text()
    assert "<title>clip</title>" in clip and clip.count("data:image/jpeg;base64,") == 2
    # Without --min_score: the config's predict.min_score (synthetic_tiny's, PPI scores of
    # four views) draws the pictures and lets tracks start.
    tracked = json.loads((tmp_path / "out" / "clip.json").read_text())["tracking"]
    assert tracked["match_score"] == synthetic_tiny.get_config().predict.min_score == 4.0


def test_the_pictures_threshold_is_the_run_configs_for_ppi_people_only():
    """A PPI score sums its mode's candidates (the demo's people score 30-50), an NMS
    score is a class probability: the config's predict.min_score (4) drew no NMS person."""
    config = synthetic_tiny.get_config()
    assert outputs.picture_min_score(config, "ppi") == 4.0
    assert outputs.picture_min_score(config, "nms") is None
    assert outputs.picture_min_score(None, "ppi") is None
    del config.predict  # a run config of before the key
    assert outputs.picture_min_score(config, "ppi") is None


def test_a_checkpoint_without_a_config_takes_the_one_its_run_saved(workdir, tmp_path):
    run = shutil.copytree(workdir, tmp_path / "run")
    with pytest.raises(ValueError, match=r"run has no readable config.json: pass --config"):
        outputs.make_predictor(checkpoint=str(run))
    loop.save_config(tiny_run_config(), str(run))
    own = outputs.make_predictor(checkpoint=str(run), short_side=SHORT, max_long_side=LONG)
    given = outputs.make_predictor(
        checkpoint=str(run), config=tiny_run_config(), short_side=SHORT, max_long_side=LONG
    )
    assert own.ppi_config == given.ppi_config and own.model_name == given.model_name
    image = bright_rectangle(30, 45, 10, 5, 20, 15)
    np.testing.assert_array_equal(own.predict(image).poses2d, given.predict(image).poses2d)


def test_weights_take_the_files_ppi_parameters(monkeypatch, tmp_path):
    released = {"th_pose3D": 0.04, "th_iou": 0.14, "iou_func": "bbox_torsohead",
                "min_mode_score": 0.05, "th_persondetect": 0.5}  # fmt: skip
    loaded = (tiny_config(), random_variables(tiny_config()), released)
    monkeypatch.setattr(weights, "load_released", lambda path: loaded)
    path = str(tmp_path / "model.pkl")
    predictor = outputs.make_predictor(
        weights=path, ppi_overrides={"iou_threshold": 0.3, "t3d": None}, method="nms"
    )
    assert predictor.ppi_config == dataclasses.replace(ppi_lib.IN_THE_WILD_R50, iou_threshold=0.3)
    assert predictor.model_name == "released:model.pkl" and predictor.method == "nms"
    assert outputs.make_predictor(weights=path, ppi="demo").ppi_config == ppi_lib.DEMO
    with pytest.raises(ValueError, match="unknown PPI preset 'best'"):
        outputs.make_predictor(weights=path, ppi="best")
    with pytest.raises(ValueError, match="exactly one of weights, checkpoint and exported"):
        outputs.make_predictor(weights=path, checkpoint=str(tmp_path))
    with pytest.raises(ValueError, match=r"no training config or step \(given: config, step\)"):
        outputs.make_predictor(weights=path, config=object(), step=3)


def truncated_gif_message(path, declared: int) -> str:
    """The skip line of a GIF cut in its last frame (PIL counts the frames it has begun)."""
    return (
        re.escape(
            f"predict: skipped: video {path} is truncated or damaged: "
            f"read {declared - 1} frames of the {declared} it declares "
        )
        + r"\(image file is truncated \(\d+ bytes not processed\)\)"
    )


def test_run_counts_a_truncated_video_as_failed_and_leaves_nothing(predictor, tmp_path, capsys):
    data = pathlib.Path(write_gif(tmp_path / "clip.gif", noise_frames(10))).read_bytes()
    (tmp_path / "cut.gif").write_bytes(data[: len(data) // 3])
    inputs, _ = predict.find_inputs([str(tmp_path / "cut.gif")])
    declared = predict.VideoReader(tmp_path / "cut.gif").num_frames
    summary = outputs.run(predictor, inputs, tmp_path / "out", progress=False, **PICTURES)
    assert (summary.images, summary.inputs_done, summary.failed) == (0, 0, 1)
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(truncated_gif_message(tmp_path / "cut.gif", declared), line)
    assert all_files(tmp_path / "out") == ["failed.txt"], "no partial JSON or annotated frames"


def test_a_gif_cut_in_a_frame_header_fails_alone(predictor, tmp_path, capsys):
    """Pillow's GIF reader raises IndexError counting the frames of this cut (inside the
    second frame's header): the GIF fails in one line, the other inputs are predicted."""
    album = tmp_path / "album"
    album.mkdir()
    save(bright_rectangle(30, 45, 10, 5, 20, 15), album / "photo.png")
    data = pathlib.Path(write_gif(tmp_path / "clip.gif", noise_frames(10))).read_bytes()
    (album / "cut.gif").write_bytes(data[: len(data) // 8])
    inputs, errors = predict.find_inputs([str(album)])
    assert not errors and [(i.name, i.video) for i in inputs] == [("cut", True), ("photo", False)]
    summary = outputs.run(predictor, inputs, tmp_path / "out", progress=False, **PICTURES)
    assert (summary.images, summary.inputs_done, summary.failed) == (1, 1, 1)
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"predict: skipped: cannot open video {album / 'cut.gif'}: "
        "truncated or damaged (index out of range)"
    )
    assert all_files(tmp_path / "out") == [
        "failed.txt",
        "photo.json",
        "photo_2d.png",
        "photo_3d.png",
    ]


def test_cli_cleans_leftovers_and_never_reads_its_outputs(workdir, tmp_path):
    album, out = tmp_path / "album", tmp_path / "album" / "out"
    out.mkdir(parents=True)
    save(bright_rectangle(30, 45, 10, 5, 20, 15), album / "photo.png")
    data = pathlib.Path(write_gif(tmp_path / "clip.gif", noise_frames(10))).read_bytes()
    (album / "cut.gif").write_bytes(data[: len(data) // 3])
    declared = predict.VideoReader(album / "cut.gif").num_frames
    leftover = out / f".photo_2d.partial-{dead_pid()}.png"  # a killed run's
    leftover.write_bytes(b"half a png")
    args = [f"--input={album}", f"--checkpoint={workdir}", f"--config={workdir / 'config.py'}"]
    args += [f"--output_dir={out}", f"--short_side={SHORT}", f"--max_long_side={LONG}"]
    for removed in ([f"predict: removed {leftover}, left by an interrupted run"], []):
        result = run_cli(*args)  # the second run must not read the first one's PNGs
        assert result.returncode == 0, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("predict:")]
        assert lines[:-1] == removed
        assert re.fullmatch(truncated_gif_message(album / "cut.gif", declared), lines[-1])
        assert "predict: 1 images from 1 of 2 inputs (1 failed: 1 'video is" in result.stdout
        assert all_files(out) == [
            "failed.txt", "log.txt", "photo.json", "photo_2d.png", "photo_3d.png",
        ]  # fmt: skip
    result = run_cli(*args, "--skip_existing")  # the photo kept, the cut video tried again
    assert result.returncode == 0, result.stderr
    assert (
        "predict: 0 images from 0 of 1 inputs (1 failed: 1 'video is truncated or damaged"
    ) in result.stdout and ", 1 kept from an earlier run, 0 people found" in result.stdout
    assert (out / "failed.txt").read_text().startswith(f"{album / 'cut.gif'}\tvideo is")


def test_run_tracks_video_people_and_smooths_their_poses(predictor, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # no PyAV: annotated frames as PNGs
    frames = [bright_rectangle(40, 64, x, 10, x + 6, 16) for x in range(4, 44, 5)]
    write_gif(tmp_path / "walk.gif", frames)
    inputs, _ = predict.find_inputs([str(tmp_path / "walk.gif")])
    config = tracking.TrackingConfig(min_cutoff=0.5, beta=0.0)
    summary = outputs.run(
        predictor, inputs, tmp_path / "out", progress=False, tracking=config, **PICTURES,
        video_page=lambda fps: visualize.VideoPage(fps=fps),
    )  # fmt: skip
    assert (summary.images, summary.failed) == (8, 0)
    assert all_files(tmp_path / "out") == [
        "walk.html",
        "walk.json",
        "walk_2d",
        *[f"walk_2d/{i:06d}.png" for i in range(8)],
        "walk_tracks.json",
    ]
    clip = json.loads((tmp_path / "out" / "walk.json").read_text())
    assert [p["track_id"] for f in clip["frames"] for p in f["people"]] == [0] * 8
    assert [f["time"] for f in clip["frames"]] == pytest.approx([0.05 * i for i in range(8)])
    tracks = json.loads((tmp_path / "out" / "walk_tracks.json").read_text())
    assert SCHEMA | {"fps", "tracking", "tracks"} == set(tracks)
    assert tracks["tracking"] == clip["tracking"] == dataclasses.asdict(config)
    (track,) = tracks["tracks"]
    assert track["id"] == 0 and track["frames"] == list(range(8))
    raw = np.array([torso(f["people"][0])[0] for f in clip["frames"]])
    smooth = np.array([torso({"pose2d": p})[0] for p in track["pose2d"]])
    assert smooth[0] == pytest.approx(raw[0], abs=0.01)
    assert (smooth[1:] < raw[1:] - 1).all(), "smoothed poses lag behind a walk to the right"
    assert np.shape(track["pose3d"]) == (8, 13, 3)
    # Detections under match_score that no track takes: track_id null, no track.
    untracked = dataclasses.replace(config, match_score=1e9)
    outputs.run(predictor, inputs, tmp_path / "low", progress=False, tracking=untracked)
    clip = json.loads((tmp_path / "low" / "walk.json").read_text())
    assert [p["track_id"] for f in clip["frames"] for p in f["people"]] == [None] * 8
    assert json.loads((tmp_path / "low" / "walk_tracks.json").read_text())["tracks"] == []
    outputs.run(predictor, inputs, tmp_path / "low", progress=False)  # without tracking
    assert not (tmp_path / "low" / "walk_tracks.json").exists()  # not the earlier run's
    people = [f["people"][0] for f in clip["frames"]]
    raw_places = [np.subtract(p["pose3d_camera"][0], p["pose3d"][0]) for p in people]
    assert np.shape(track["place"]) == (8, 3)
    assert np.ptp(np.asarray(track["place"])[:, 0]) < np.ptp(np.asarray(raw_places)[:, 0])
    # The page: every frame, the person labelled by track, the smoothed 3D pose at its
    # smoothed place.
    page = (tmp_path / "out" / "walk.html").read_text()
    frames = json.loads(re.search(r"const DATA = (.*);\n", page).group(1))["frames"]
    assert len(frames) == 8 and [f["people"][0]["label"] for f in frames] == ["#0"] * 8
    for frame, pose, place in zip(frames, track["pose3d"], track["place"], strict=True):
        placed = np.add(pose, place)
        np.testing.assert_allclose(frame["people"][0]["joints"], placed, atol=2e-3)


def test_tracking_smooths_over_the_videos_own_time_step(predictor, tmp_path):
    """The tracker's filters step by the video's frame time: the same walk shown at 2
    frames a second lags less behind than at 20 (a fixed rate gave both the same lag)."""
    frames = [bright_rectangle(40, 64, x, 10, x + 6, 16) for x in range(4, 44, 5)]
    config = tracking.TrackingConfig(min_cutoff=0.5, beta=0.0)
    lag = {}
    for duration_ms in (50, 500):
        name = f"walk{duration_ms}"
        write_gif(tmp_path / f"{name}.gif", frames, duration_ms=duration_ms)
        inputs, _ = predict.find_inputs([str(tmp_path / f"{name}.gif")])
        outputs.run(predictor, inputs, tmp_path / "out", progress=False, tracking=config)
        clip = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        (track,) = json.loads((tmp_path / "out" / f"{name}_tracks.json").read_text())["tracks"]
        assert clip["fps"] == pytest.approx(1000 / duration_ms)
        raw = np.array([torso(f["people"][0])[0] for f in clip["frames"]])
        smooth = np.array([torso({"pose2d": p})[0] for p in track["pose2d"]])
        lag[duration_ms] = np.mean(raw[1:] - smooth[1:])
    assert 0 < lag[500] < lag[50] / 2, lag


def test_a_video_stopped_after_its_frames_leaves_no_json(predictor, tmp_path, monkeypatch):
    """A video's NAME.json is written last and an older one removed before the other
    files are replaced (before: NAME.json came first, so a run stopped while writing the
    tracks or the page left it beside the older tracks and page)."""
    monkeypatch.setitem(sys.modules, "av", None)  # no PyAV: annotated frames as PNGs
    frames = [bright_rectangle(24, 32, x, 8, x + 6, 14) for x in (2, 12)]
    inputs, _ = predict.find_inputs([write_gif(tmp_path / "walk.gif", frames)])
    out = tmp_path / "out"
    config = tracking.TrackingConfig()
    outputs.run(predictor, inputs, out, progress=False, tracking=config, **PICTURES)

    class StoppedPage(visualize.VideoPage):
        def save(self, path, *, title):  # Ctrl-C while the page is written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        outputs.run(
            predictor, inputs, out, progress=False, tracking=config, **PICTURES,
            video_page=lambda fps: StoppedPage(fps=fps),
        )  # fmt: skip
    assert all_files(out) == [
        "walk_2d",
        "walk_2d/000000.png",
        "walk_2d/000001.png",
        "walk_tracks.json",
    ]


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--smooth_beta=-1", "beta must be finite and >= 0, got -1.0"),
        ("--smooth_min_cutoff=nan", "min_cutoff must be finite and > 0, got nan"),
        ("--track_max_age=-1", "max_age must be >= 0, got -1"),
    ],
)
def test_cli_rejects_bad_tracking_settings_in_one_line(tmp_path, flag, message):
    save(bright_rectangle(30, 45, 10, 5, 20, 15), tmp_path / "photo.png")
    result = run_cli(
        f"--input={tmp_path / 'photo.png'}",
        f"--weights={tmp_path / 'model.pkl'}",
        f"--output_dir={tmp_path / 'out'}",
        flag,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: tracking: {message}"]
    assert not (tmp_path / "out").exists()


class CrowdModel:
    """A stand-in model, no network: `people` people at random places in every frame."""

    provenance = {"model": "crowd", "method": "ppi", "ppi": {}}

    def __init__(self, people: int):
        self.people = people

    def predict_stream(self, items, *, on_compile=None):
        del on_compile  # nothing to compile
        rng = np.random.default_rng(0)
        shape = (self.people, len(LCR13.joints))
        for key, frame in items:
            height, width = frame.shape[:2]
            poses3d = rng.normal(0, 0.3, (*shape, 3)).astype(np.float32)
            yield (
                key,
                predict.PoseResult(
                    joint_set=LCR13.name,
                    poses2d=rng.uniform(0, (width, height), (*shape, 2)).astype(np.float32),
                    poses3d=poses3d,
                    scores=rng.uniform(0.5, 1, self.people).astype(np.float32),
                    image_size=(height, width),
                    poses3d_cam=poses3d + np.float32(5.0),
                    intrinsics=np.array([20, 20, 8, 6], np.float32),
                ),
            )


def test_a_videos_memory_does_not_grow_with_its_length(tmp_path, monkeypatch):
    """The frames' JSON is written as they come, the tracks' history kept in a file and
    written one frame at a time: a 150-frame video of 10 people (one track each, from
    start to end) needs hardly more memory than a 30-frame one (keeping every frame took
    about 220 KB more per frame). The JSON files are `json.dumps(..., indent=1)`'s."""
    monkeypatch.setattr(tracking.Tracker, "chunk", 8)  # rows read at a time: fewer than 30
    peaks = {}
    for count in (30, 150):
        inputs, _ = predict.find_inputs([write_gif(tmp_path / f"{count}.gif", color_frames(count))])
        tracemalloc.start()
        summary = outputs.run(
            CrowdModel(10), inputs, tmp_path / "out", progress=False,
            tracking=tracking.TrackingConfig(),
        )  # fmt: skip
        peaks[count] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert (summary.images, summary.people) == (count, 10 * count)
    assert (peaks[150] - peaks[30]) / 120 < 1000, peaks  # bytes per frame
    for name in ("150.json", "150_tracks.json"):
        text = (tmp_path / "out" / name).read_text()
        assert text == json.dumps(json.loads(text), indent=1)
    tracks = json.loads(text)["tracks"]
    assert sorted(f for t in tracks for f in t["frames"]) == sorted(list(range(150)) * 10)
