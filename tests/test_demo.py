import functools
import json
import pathlib
import signal

import numpy as np
import pytest
import tensorflow_datasets as tfds
from absl.testing import flagsaver
from matplotlib.figure import Figure
from PIL import Image

from experiments import demo
from lcrnet_jax import skeleton, visualize
from lcrnet_jax.data import pipeline
from lcrnet_jax.predict import canvas
from lcrnet_jax.train import loop
from tests.test_loop import tiny_config


def _methods(ppi_pckh, ppi_ap, ppi_mpjpe, recall):
    baseline = {"pckh": 0.25, "AP": 0.02, "mpjpe_mm": 240.0, "recall": 0.6}
    ppi = {"pckh": ppi_pckh, "AP": ppi_ap, "mpjpe_mm": ppi_mpjpe, "recall": recall}
    return {"ppi": ppi, "anchor": baseline, "mean_pose": dict(baseline, mpjpe_mm=270.0)}


def test_the_bar_needs_every_margin():
    ok, text = demo.learned(_methods(0.64, 0.33, 180.0, 0.82))
    assert ok and text.count("yes") == 5
    for worse in (_methods(0.60, 0.33, 180.0, 0.82), _methods(0.64, 0.30, 180.0, 0.82),
                  _methods(0.64, 0.33, 180.0, 0.78)):  # fmt: skip
        ok, text = demo.learned(worse)
        assert not ok and text.count("NO") == 1
    # MPJPE against each baseline: 0.7 x 270 mm (mean pose), 0.85 x 240 mm (anchor pose).
    ok, text = demo.learned(_methods(0.64, 0.33, 205.0, 0.82))
    assert not ok and text.count("NO") == 2
    baselines = _methods(0.64, 0.33, 185.0, 0.82)
    baselines["anchor"]["mpjpe_mm"] = 300.0
    ok, text = demo.learned(baselines)
    assert ok, text
    baselines["mean_pose"]["mpjpe_mm"] = 260.0
    ok, text = demo.learned(baselines)
    assert not ok and "NO" in text.split(";")[3]


def test_plot_against_truth_places_exact_poses_on_the_ground_truth(data_dir):
    test = tfds.data_source("synthetic_people/test", split="test", data_dir=data_dir)
    record = test[0]
    src = pipeline.source_joint_set(test)
    truth, _ = skeleton.convert(record["people"]["joints3d"], None, src, "lcr13")
    poses2d, _ = skeleton.convert(record["people"]["joints2d"], None, src, "lcr13")
    centred = truth - truth[:, list(skeleton.get_joint_set("lcr13").torso)].mean(1, keepdims=True)
    found = {  # what predict.py would write for a perfect model
        "joint_set": "lcr13",
        "joint_names": list(skeleton.get_joint_set("lcr13").joints),
        "people": [
            {"score": 1.0, "pose2d": p2.tolist(), "pose3d": p3.tolist()}
            for p2, p3 in zip(poses2d, centred, strict=True)
        ],
    }
    unsure = {"score": 0.5, "pose2d": poses2d[0].tolist(), "pose3d": (centred[0] + 0.3).tolist()}
    found["people"].append(unsure)  # below min_score: not drawn
    fig = demo.plot_against_truth(record, src, found, min_score=1.0)
    lines = fig.axes[0].get_lines()
    grey = [ln for ln in lines if np.array_equal(ln.get_color(), visualize.GROUND_TRUTH_COLOR)]
    coloured = [ln for ln in lines if ln not in grey]
    assert len(grey) == len(coloured) > 0
    for drawn, true in zip(coloured, grey[: len(coloured)], strict=True):
        np.testing.assert_allclose(drawn.get_data_3d(), true.get_data_3d(), atol=2e-3)


def test_the_demo_predicts_on_the_pixels_it_evaluated(data_dir, tmp_path):
    """The exported test images are the records' bytes, and prediction reads them as the
    evaluation's pipeline does: the same canvas to the last bit, though at half size a
    JPEG is decoded at reduced size, unlike a full decode then a resize."""
    encoded = pipeline.open_source("synthetic_people/test", split="test", data_dir=data_dir)
    paths = demo._export_test_images(encoded, str(tmp_path / "inputs"))
    assert [p.rsplit("/", 1)[-1] for p in paths] == [f"test_00{i}.jpg" for i in range(4)]
    config = tiny_config(data_dir, 1)
    config.data.short_side, config.data.max_long_side = 48, 64  # the 96 x 128 images at 1/2
    config.data.image_size, config.eval.batch_size = (48, 64), len(paths)
    batch = next(iter(loop._eval_loader(config, "test", len(paths))[0]))
    for i, path in enumerate(paths):
        assert pathlib.Path(path).read_bytes() == encoded[i]["image"]
        prepare = functools.partial(
            canvas.prepare, short_side=48, max_long_side=64, buckets=[(48, 64)]
        )
        np.testing.assert_array_equal(prepare(path).pixels, batch["image"][i])
        decoded = np.asarray(Image.open(path))  # the same image, decoded whole
        assert np.abs(prepare(decoded).pixels.astype(int) - batch["image"][i]).max() > 0


def test_a_demo_stopped_by_a_signal_says_so_and_exits_with_it(tmp_path, monkeypatch, capsys):
    stopped = {"step": 7, "stopped": True, "signal": signal.SIGTERM}
    monkeypatch.setattr(demo.build_dataset, "build", lambda *args, **kwargs: None)
    monkeypatch.setattr(demo.loop, "train_and_evaluate", lambda config, workdir: stopped)
    with flagsaver.as_parsed(out_dir=str(tmp_path), steps="7"), pytest.raises(SystemExit) as exit:
        demo.main(["demo"])
    assert exit.value.code == 143
    assert "stopped at step 7; checkpoint saved, rerun" in capsys.readouterr().out
    assert not (tmp_path / "summary.json").exists()


def test_a_demo_whose_model_did_not_learn_exits_1(tmp_path, monkeypatch, capsys):
    """`make demo` fails (exit status 1) when the model misses the bar, after writing its
    summary; --steps sets the training steps."""
    report = tmp_path / "metrics.json"
    methods = _methods(0.40, 0.10, 260.0, 0.50)
    methods["ppi"]["num_images"] = 2
    report.write_text(json.dumps({"methods": methods, "seconds": 1.0}))
    steps = []

    def train(config, workdir):
        steps.append(config.train.num_steps)
        return {"step": 7, "train_images_per_s": 1.0, "metrics_path": str(report), "table": ""}

    def predict(command, check):  # writes what predict.py would for the first image
        out = next(a for a in command if a.startswith("--output_dir="))[len("--output_dir=") :]
        pathlib.Path(out).mkdir(parents=True)
        (pathlib.Path(out) / "test_000.json").write_text("{}")

    monkeypatch.setattr(demo.build_dataset, "build", lambda *args, **kwargs: None)
    monkeypatch.setattr(demo.loop, "train_and_evaluate", train)
    monkeypatch.setattr(demo.pipeline, "open_source", lambda *args, **kwargs: [None])
    monkeypatch.setattr(demo.pipeline, "source_joint_set", lambda source: "lcr13")
    monkeypatch.setattr(demo, "_export_test_images", lambda test, folder: [])
    monkeypatch.setattr(demo.subprocess, "run", predict)
    monkeypatch.setattr(demo, "plot_against_truth", lambda *args, **kwargs: Figure())
    with flagsaver.as_parsed(out_dir=str(tmp_path), steps="7"), pytest.raises(SystemExit) as exit:
        demo.main(["demo"])
    assert exit.value.code == 1 and steps == [7]
    assert "WARNING, the model did not learn enough" in capsys.readouterr().out
    assert json.loads((tmp_path / "summary.json").read_text())["learned"] is False
