import copy
import errno
import fcntl
import functools
import glob
import importlib
import io
import json
import logging
import math
import os
import pathlib
import struct
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from experiments.configs import synthetic_tiny
from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import skeleton
from lcrnet_jax.data import atomic, pipeline, records
from lcrnet_jax.model import lcrnet
from lcrnet_jax.predict import export, exported
from lcrnet_jax.train import checkpoint, loop
from lcrnet_jax.train import step as step_lib
from tests.test_anchors import _toy_poses
from tests.test_train_step import run_on_8_cpu_devices, run_on_two_hosts


def tiny_config(data_dir, num_steps):
    """The demo config shrunk to seconds: 64 x 96 images, a narrow model, 2 + 2 anchors."""
    config = synthetic_tiny.get_config()
    config.data.sources.synthetic.name = "synthetic_people/test"
    config.data.eval_name = "synthetic_people/test"
    config.data.data_dir = data_dir
    config.data.short_side, config.data.max_long_side = 64, 96
    config.data.image_size = (64, 96)
    config.data.batch_size = 2
    config.data.num_workers = 0
    config.anchor_poses.num = 2
    config.model.width = 8
    config.model.fc_dim = 32
    config.model.refine_dim = 32
    config.model.roi_size = 4
    config.model.rpn_anchor_sizes = (32, 64)
    config.model.rpn_pre_nms_train = 64
    config.model.rpn_post_nms_train = 16
    config.model.rpn_pre_nms_test = 64
    config.model.rpn_post_nms_test = 16
    config.targets.rpn_samples = 32
    config.targets.roi_samples = 16
    config.train.num_steps = num_steps
    config.train.log_every = 2
    config.train.checkpoint_every = 2
    config.eval.batch_size = 2
    config.eval.max_images = 4
    return config


def _params(workdir, step):
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    config_path = os.path.join(workdir, "anchors.npz")
    assert os.path.exists(config_path)
    steps = ckpt.all_steps()
    path = os.path.join(ckpt.directory, str(step))
    ckpt.close()
    return steps, path


def test_train_resume_and_evaluate(data_dir, tmp_path, monkeypatch):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    result = loop.train_and_evaluate(tiny_config(data_dir, 4), straight)
    assert result["step"] == 4 and set(result["eval"]) == {"ppi", "nms", "anchor", "mean_pose"}
    loop.train_and_evaluate(tiny_config(data_dir, 2), resumed)  # "killed" after step 2
    again = loop.train_and_evaluate(tiny_config(data_dir, 4), resumed)
    assert again["step"] == 4

    config = tiny_config(data_dir, 4)
    model_config = loop.model_config(config)
    abstract = jax.eval_shape(
        lambda: lcrnet.init_variables(model_config, jax.random.key(0), image_size=(64, 96))
    )
    restored = []
    for workdir in (straight, resumed):
        ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
        assert ckpt.all_steps()[-1] == 4
        restored.append(ckpt.restore_variables(abstract, step=4)[1]["params"])
        ckpt.close()
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), *restored)

    for workdir in (straight, resumed):  # the resumed run writes each step once
        lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
        assert [line["step"] for line in lines if "train/loss" in line] == [2, 4]
    assert glob.glob(os.path.join(straight, "tensorboard", "events.out.tfevents.*"))
    saved = json.load(open(os.path.join(straight, "config.json")))
    assert saved == json.loads(tiny_config(data_dir, 4).to_json_best_effort())
    # A resume refused (a model of another width) leaves the run's config.json as it was.
    wider = tiny_config(data_dir, 6)
    wider.model.width = 16
    with pytest.raises(ValueError, match="does not fit the config's model"):
        loop.train_and_evaluate(wider, straight)
    assert json.load(open(os.path.join(straight, "config.json"))) == saved

    evaluated = loop.evaluate_checkpoint(config, straight, step=2)
    assert evaluated["step"] == 2 and evaluated["eval"]["ppi"]["num_images"] == 4
    # config.eval.max_images = 4 of the split's images: the file says so.
    assert evaluated["metrics_path"] == os.path.join(straight, "eval", "metrics_2_first4.json")
    report = json.load(open(evaluated["metrics_path"]))
    assert set(report["methods"]) == {"ppi", "nms", "anchor", "mean_pose"}
    assert report["num_images"] == 4 < report["split_size"]
    assert isinstance(
        json.load(open(os.path.join(straight, "eval", "predictions_2_first4.json"))), list
    )
    # A smaller partial evaluation writes beside it, never over it; or in another folder.
    partial = loop.evaluate_checkpoint(config, straight, step=2, max_images=3)
    assert partial["metrics_path"] == os.path.join(straight, "eval", "metrics_2_first3.json")
    elsewhere = loop.evaluate_checkpoint(
        config, straight, step=2, max_images=3, eval_dir=str(tmp_path / "other")
    )
    assert elsewhere["metrics_path"] == str(tmp_path / "other" / "metrics_2_first3.json")
    assert elsewhere["table"] == partial["table"]
    # Other PPI settings never overwrite an evaluation of the same name.
    other_ppi = copy.deepcopy(config)
    other_ppi.ppi.t3d = 0.03
    before = open(partial["metrics_path"]).read()
    with pytest.raises(FileExistsError, match=r"made with other settings \(ppi.t3d\); this one"):
        loop.evaluate_checkpoint(other_ppi, straight, step=2, max_images=3)
    assert open(partial["metrics_path"]).read() == before
    # A split whose build skipped files says so in its table and metrics.
    monkeypatch.setattr(records, "skipped_at_build", lambda source, split: (2, ["gone.jpg"]))
    warned = loop.evaluate_checkpoint(
        config, straight, step=2, max_images=3, eval_dir=str(tmp_path / "skipped")
    )
    assert (
        "; WARNING: its build skipped 2 unreadable file(s), frame(s) or sequence(s), "
        "first gone.jpg, which are not counted" in warned["table"].splitlines()[0]
    )
    skipped = json.load(open(warned["metrics_path"]))["skipped_at_build"]
    assert skipped == {"count": 2, "first": ["gone.jpg"]}
    assert json.load(open(evaluated["metrics_path"])) == report
    table = open(os.path.join(straight, "eval", "table_2_first3.md")).read()
    split_size = report["split_size"]
    assert table.startswith(
        f"{config.data.eval_name} {config.data.eval_split}: 3 of {split_size} images, "
    )
    with pytest.raises(FileNotFoundError, match=r"available steps: \[2, 4\]"):
        loop.evaluate_checkpoint(config, straight, step=3)
    with pytest.raises(ValueError, match=r"max_images must be >= 0 \(0: the whole split\)"):
        loop.evaluate_checkpoint(config, straight, step=2, max_images=-3)
    with pytest.raises(FileNotFoundError, match="has no split 'val'; its splits: train, test"):
        loop.evaluate_checkpoint(config, straight, step=2, split="val")

    written = sorted(os.listdir(os.path.join(straight, "eval")))
    diagnosed = loop.diagnose_checkpoint(config, straight, step=2)
    assert diagnosed["step"] == 2
    assert diagnosed["summary"]["all"]["people"] == evaluated["eval"]["ppi"]["num_gt"]
    assert 0.0 <= diagnosed["summary"]["all"]["proposal"] <= 1.0
    assert diagnosed["table"].splitlines()[2].startswith("| people |")
    assert sorted(os.listdir(os.path.join(straight, "eval"))) == written  # writes nothing

    # The run exported and evaluated on the same images: PPI's people and column.
    export.export_model(tmp_path / "exported", checkpoint=straight, config=config)
    from_export = loop.evaluate_exported(config, exported.ExportedModel(tmp_path / "exported"))
    assert from_export["model"] == f"checkpoint:{straight}@4"
    assert list(from_export["eval"]) == ["ppi"]
    for key, value in result["eval"]["ppi"].items():
        assert from_export["eval"]["ppi"][key] == pytest.approx(value, rel=1e-4, nan_ok=True), key
    out = tmp_path / "exported" / "eval"
    assert from_export["metrics_path"] == str(out / "metrics_exported_first4.json")
    # A last batch of 1 image of 2: its padding was an image of size 0, refused.
    ragged = loop.evaluate_exported(
        config, exported.ExportedModel(tmp_path / "exported"), max_images=3
    )
    assert ragged["eval"]["ppi"]["num_images"] == 3
    got, want = (
        json.load(open(path))
        for path in (
            out / "predictions_exported_first4.json",
            f"{straight}/eval/predictions_4_first4.json",
        )
    )
    assert len(got) == len(want) > 0
    for key in ("image_id", "keypoints", "score"):
        np.testing.assert_allclose([p[key] for p in got], [p[key] for p in want], atol=0.02)

    config.data.num_workers = 1  # images decoded in a grain worker process: the same numbers
    with_worker = loop.evaluate_checkpoint(config, straight, step=2, max_images=3)
    assert json.dumps(with_worker["eval"], sort_keys=True) == json.dumps(
        partial["eval"], sort_keys=True
    )


def _trace_loop(monkeypatch, *, skipped_from: int | None = None) -> list:
    """Has the training loop run a stand-in training step (the state's step + 1, with
    steps `skipped_from` on skipped) and no final evaluation. Returns the list that then
    receives the loop's events in order: ("batch", s) when step s's batch is counted,
    ("step", s) its dispatch, ("read", s) the jax.device_get of its metrics (the host
    waits for the device there) and ("save", s)."""
    events, dispatched, read = [], [], []
    counts, get, save = pipeline.people_counts, jax.device_get, loop._save

    def make_train_step(*args, **kwargs):
        def train_step(state, batch, key):
            dispatched.append(len(dispatched) + 1)
            events.append(("step", dispatched[-1]))
            skipped = skipped_from is not None and dispatched[-1] >= skipped_from
            metrics = dict.fromkeys(("loss", "cls_accuracy", "update_norm"), jnp.float32(1))
            return state.replace(step=state.step + 1), {**metrics, "skipped": jnp.int32(skipped)}

        return train_step

    def traced_counts(*args):
        events.append(("batch", len(dispatched) + 1))
        return counts(*args)

    def traced_get(tree):  # (a step's metrics, the values shared by the hosts)
        if isinstance(tree, tuple) and "skipped" in tree[0]:
            read.append(len(read) + 1)
            events.append(("read", read[-1]))
        return get(tree)

    def traced_save(ckpt, step, *args):
        events.append(("save", step))
        save(ckpt, step, *args)

    monkeypatch.setattr(step_lib, "make_train_step", make_train_step)
    monkeypatch.setattr(pipeline, "people_counts", traced_counts)
    monkeypatch.setattr(jax, "device_get", traced_get)
    monkeypatch.setattr(loop, "_save", traced_save)
    monkeypatch.setattr(loop, "run_evaluation", lambda *args, **kwargs: ({}, "", 0.0, None))
    return events


def test_the_next_step_is_dispatched_before_a_steps_metrics_are_read(
    data_dir, tmp_path, monkeypatch
):
    """The device runs step s while the host prepares step s + 1; a step is read before
    it is logged or saved (every 2 steps), and the last step before the run ends."""
    events = _trace_loop(monkeypatch)
    loop.train_and_evaluate(tiny_config(data_dir, 5), str(tmp_path))
    assert events == [
        ("batch", 1), ("step", 1), ("batch", 2), ("step", 2), ("read", 1), ("read", 2),
        ("save", 2), ("batch", 3), ("step", 3), ("batch", 4), ("step", 4), ("read", 3),
        ("read", 4), ("save", 4), ("batch", 5), ("step", 5), ("read", 5), ("save", 5),
    ]  # fmt: skip


def test_a_skipped_step_read_late_still_stops_the_run_before_the_next_save(
    data_dir, tmp_path, monkeypatch
):
    """Steps 3 on are skipped, and one skipped step stops the run: step 3, read once step 4
    is dispatched, is named with checkpoint 2, as a step-by-step loop did, and step 4 is
    not saved."""
    events = _trace_loop(monkeypatch, skipped_from=3)
    config = tiny_config(data_dir, 6)
    config.train.max_consecutive_skipped = 1
    with pytest.raises(
        FloatingPointError, match=r"update norm 1 > .* at step 3; last checkpoint: 2;"
    ):
        loop.train_and_evaluate(config, str(tmp_path))
    assert events[-3:] == [("batch", 4), ("step", 4), ("read", 3)]
    assert [event for event in events if event[0] == "save"] == [("save", 2)]


def test_a_resumed_run_evaluates_logs_and_times_each_step_once(data_dir, tmp_path, monkeypatch):
    """Evaluations every 2 steps of 4, then resumed to 6: each step is evaluated once
    (the last by the final evaluation only); the killed run's row after its checkpoint
    (step 5) is dropped; the untimed step is each run's first (it compiles)."""
    _trace_loop(monkeypatch)
    evaluated, first_steps = [], []

    def run_evaluation(*args, step, **kwargs):
        evaluated.append(step)
        return {}, "", 0.0, None

    class StepMetrics(loop._StepMetrics):
        def __init__(self, *args, first_step, **kwargs):
            first_steps.append(first_step)
            super().__init__(*args, first_step=first_step, **kwargs)

    monkeypatch.setattr(loop, "run_evaluation", run_evaluation)
    monkeypatch.setattr(loop, "_StepMetrics", StepMetrics)
    for num_steps in (4, 6):
        config = tiny_config(data_dir, num_steps)
        config.train.eval_every = 2
        loop.train_and_evaluate(config, str(tmp_path))
        if num_steps == 4:  # the run got on to step 5, logged it, and was killed
            with open(tmp_path / "metrics.jsonl", "a") as metrics:
                metrics.write(json.dumps({"step": 5, "train/loss": 9.0}) + "\n")
    assert evaluated == [2, 4, 6] and first_steps == [1, 5]
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [row["step"] for row in rows if "train/loss" in row] == [2, 4, 6]


def test_an_evaluation_of_another_dataset_never_overwrites_one_in_its_folder(data_dir, tmp_path):
    config = tiny_config(data_dir, 1)
    eval_dir = tmp_path / "run" / "eval"
    eval_dir.mkdir(parents=True)
    theirs = json.dumps({"dataset": "mpii_human_pose", "split": "validation", "step": 2})
    (eval_dir / "metrics_2.json").write_text(theirs)
    message = (
        f"{eval_dir / 'metrics_2.json'} holds the evaluation of mpii_human_pose validation; "
        "evaluating synthetic_people/test test would overwrite it: evaluate into another folder"
    )
    with pytest.raises(FileExistsError, match=message):  # nothing is evaluated
        loop.run_evaluation(
            config,
            None,
            None,
            split="test",
            max_images=None,
            out_dir=str(eval_dir),
            step=2,
            settings=None,
        )
    assert (eval_dir / "metrics_2.json").read_text() == theirs
    assert os.listdir(eval_dir) == ["metrics_2.json"]
    # The same dataset's other split under the same name (another config's default split)
    # is refused too; the same evaluation again is not.
    path = str(eval_dir / "metrics_2.json")
    (eval_dir / "metrics_2.json").write_text(json.dumps({"dataset": "d", "split": "train"}))
    with pytest.raises(FileExistsError, match="holds the evaluation of d train; evaluating d test"):
        loop._check_eval_files(path, "d", "test")
    loop._check_eval_files(path, "d", "train")
    # An evaluation by a version that recorded no settings (before, replaced silently by
    # other numbers: the padding's convention had changed since) is not compared with
    # this one's settings, and so is not overwritten either.
    with pytest.raises(FileExistsError, match="by an older lcrnet-jax, which did not record"):
        loop._check_eval_files(path, "d", "train", settings={"ppi.t3d": 0.1})
    # Settings recorded before a config key was added (unset, None, now) are the same
    # settings: its evaluation is not refused as "other settings ()".
    recorded = {"dataset": "d", "split": "train", "settings": {"model": {"iterative": False}}}
    (eval_dir / "metrics_2.json").write_text(json.dumps(recorded))
    loop._check_eval_files(
        path, "d", "train", settings={"model": {"iterative": False, "roi_chunk": None}}
    )
    with pytest.raises(FileExistsError, match=r"other settings \(model.roi_chunk\)"):
        loop._check_eval_files(
            path, "d", "train", settings={"model": {"iterative": False, "roi_chunk": 8}}
        )


def test_an_evaluation_written_meanwhile_with_other_settings_is_not_overwritten(
    data_dir, tmp_path, monkeypatch
):
    # Two evaluations of one step started together: the first to finish writes, the other
    # is refused at its end (before: the last to finish replaced the other's files).
    config = tiny_config(data_dir, 1)
    eval_dir = tmp_path / "eval"
    theirs = json.dumps({"dataset": config.data.eval_name, "split": "test",
                         "settings": {"ppi.t3d": 0.03}})  # fmt: skip

    def evaluate_while_another_writes(*args, **kwargs):
        eval_dir.mkdir()
        (eval_dir / "metrics_2_first1.json").write_text(theirs)
        return {"generic": {}}, []

    monkeypatch.setattr(loop.evaluation, "evaluate", evaluate_while_another_writes)
    with pytest.raises(FileExistsError, match=r"made with other settings \(ppi.t3d\)"):
        loop.run_evaluation(
            config, None, None, split="test", max_images=1, out_dir=str(eval_dir), step=2,
            settings={"ppi.t3d": 0.1},
        )  # fmt: skip
    assert os.listdir(eval_dir) == ["metrics_2_first1.json"]
    assert (eval_dir / "metrics_2_first1.json").read_text() == theirs


def test_the_evaluation_bar_knows_how_many_images_come(data_dir, tmp_path, monkeypatch):
    # Before: "evaluate test: 5batch [00:21, ...]", no percentage and no time left. It
    # counts images: with size buckets the batches are regrouped by canvas.
    config = tiny_config(data_dir, 1)  # 3 images in batches of 2
    bars, seen, real_bar = [], [], loop.progress_bar

    def progress_bar(*args, **kwargs):
        bars.append(real_bar(*args, **kwargs))
        return bars[-1]

    def evaluate(detect, variables, loader, evaluators, *, batch_size, progress, over_hosts):
        assert not over_hosts  # one host
        for batch in progress(loader):
            seen.append((bars[0].total, bars[0].n, len(batch["index"])))
        return {"generic": {}}, []

    monkeypatch.setattr(loop, "progress_bar", progress_bar)
    monkeypatch.setattr(loop.evaluation, "evaluate", evaluate)
    loop.run_evaluation(
        config, None, None, split="test", max_images=3, out_dir=str(tmp_path / "eval"), step=2,
        settings=None,
    )  # fmt: skip
    assert seen == [(3, 0, 2), (3, 2, 1)] and bars[0].n == 3 and bars[0].unit == "image"


def test_size_buckets_are_evaluated_in_batches_of_eval_batch_size(data_dir, tmp_path):
    """Size buckets (`data.image_size=()`): the loader gives one image a batch, the
    evaluation regroups them by canvas into `eval.batch_size` images a call (before: one
    image a call whatever eval.batch_size said); the people are those of one at a time."""
    config = tiny_config(data_dir, 1)
    config.data.image_size = ()
    config.ppi.person_threshold = 0.0  # a random model's people
    anchors = anchors_lib.fit_anchor_poses(_toy_poses()[0], 2, upper_body=True, seed=0)
    model, variables = loop.init_model(config, anchors)
    detect = loop._detector(config, model, anchors)
    calls, people = [], {}

    def counted(variables, images, image_size):
        calls.append(images.shape)
        return detect(variables, images, image_size)

    for batch_size in (1, 3):
        config.eval.batch_size = batch_size
        out_dir = tmp_path / f"batch{batch_size}"
        loop.run_evaluation(
            config, counted, variables, split="test", max_images=4, out_dir=str(out_dir),
            step=0, settings=None,
        )  # fmt: skip
        people[batch_size] = json.loads((out_dir / "predictions_0_first4.json").read_text())
    assert [shape[0] for shape in calls] == [1] * 4 + [3, 3]  # the last padded
    assert len({shape[1:] for shape in calls}) == 1  # these images share one bucket
    assert people[3] and len(people[3]) == len(people[1])
    for ours, theirs in zip(people[3], people[1], strict=True):
        assert ours["image_id"] == theirs["image_id"]
        np.testing.assert_allclose(ours["keypoints"], theirs["keypoints"], atol=1e-3)
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-5)


def test_missing_dataset_says_how_to_build_it(tmp_path):
    config = tiny_config(str(tmp_path / "empty"), 2)
    with pytest.raises(FileNotFoundError, match="build_dataset.py --dataset=synthetic_people/test"):
        loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("train.num_steps", -1, "train.num_steps must be >= 0, got -1"),
        ("eval.batch_size", 0, "eval.batch_size must be >= 1, got 0"),
        # Images of several buckets in one batch: a grain error at the first such batch.
        ("data.image_size", (), r"data.batch_size=2 with size buckets \(data.image_size=\(\)\)"),
        # Each of these failed only during or after the training (a modulo by zero, a
        # nonsense stop at step 1, the evaluation's errors).
        ("train.checkpoint_every", 0, "train.checkpoint_every must be >= 1, got 0"),
        ("train.log_every", 0, "train.log_every must be >= 1, got 0"),
        ("train.eval_every", -5, "train.eval_every must be >= 0, got -5"),
        ("train.max_consecutive_skipped", 0, "train.max_consecutive_skipped must be >= 1"),
        ("eval.evaluators", "generic,nope", "unknown evaluator 'nope' in eval.evaluators"),
        ("ppi.iou_threshold", 2.0, r"iou_threshold must be in \[0, 1\), got 2.0"),
        ("loss.cls_weight", -1.0, "config.loss.cls_weight must be >= 0"),
        ("model.test_scales", (0.0,), "test_scales must be positive factors"),
        ("mesh.model_parallel", 2, r"model_parallel=2 must be >= 1 and divide each host's 1"),
        # A NaN, infinite or negative rate skipped every training step.
        ("optimizer.learning_rate", math.nan, "learning_rate must be a finite number >= 0, got"),
        ("optimizer.learning_rate", math.inf, "learning_rate must be a finite number >= 0, got"),
        ("optimizer.learning_rate", -1e-3, "learning_rate must be a finite number >= 0, got -0.0"),
        ("optimizer.warmup_steps", -1, "warmup_steps must be >= 0, got -1"),
        ("optimizer.momentum", math.nan, "optimizer.momentum must be a finite number >= 0"),
        ("optimizer.decay_factor", -0.1, "optimizer.decay_factor must be a finite number >= 0"),
        ("optimizer.clip_norm", math.nan, r"clip_norm must be >= 0 \(0: no clipping\), got nan"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, key, value, message):
    config = tiny_config(str(tmp_path / "empty"), 1)
    group, name = key.split(".")
    config[group][name] = value
    with pytest.raises(ValueError, match=message):
        loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_an_eval_file_in_the_run_directory_is_refused_before_evaluating(tmp_path):
    config = tiny_config(str(tmp_path / "empty"), 1)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "eval").write_text("")
    message = f"{tmp_path / 'run' / 'eval'} is a file, not a folder for the evaluation outputs"
    with pytest.raises(NotADirectoryError, match=message):
        loop.train_and_evaluate(config, str(tmp_path / "run"))
    with pytest.raises(NotADirectoryError, match=message):
        loop.evaluate_checkpoint(config, str(tmp_path / "run"))
    with pytest.raises(NotADirectoryError, match=message):  # nothing is evaluated
        loop.run_evaluation(
            config, None, None, split="test", max_images=None,
            out_dir=str(tmp_path / "run" / "eval"), step=2, settings=None,
        )  # fmt: skip
    assert os.listdir(tmp_path / "run") == ["eval"]


def test_anchors_fitted_on_the_training_split_cover_its_mirror_images(
    data_dir, tmp_path, monkeypatch
):
    """Training flips half the images (and the flip test mirrors them at inference), so
    K-means fits the training poses and their mirror images; without flips, the poses."""
    fitted, real_fit = [], anchors_lib.fit_anchor_poses

    def fit(poses, num, **kwargs):
        fitted.append(np.asarray(poses))
        return real_fit(poses, num, **kwargs)

    monkeypatch.setattr(loop.anchors_lib, "fit_anchor_poses", fit)
    config = tiny_config(data_dir, 1)
    loop.anchor_poses(config, str(tmp_path / "flips"))
    config.data.flip_probability = 0.0
    loop.anchor_poses(config, str(tmp_path / "no_flips"))
    flipped, plain = fitted[0], fitted[2]  # anchors then mean pose, per run
    assert len(flipped) == 2 * len(plain) > 0
    np.testing.assert_array_equal(flipped[: len(plain)], plain)
    np.testing.assert_array_equal(flipped[len(plain) :], skeleton.flip_poses(plain, "lcr13"))


def test_a_run_without_its_anchor_files_is_refused_and_left_as_it_was(data_dir, tmp_path):
    # Anchors fitted anew would not be the poses the run's classes mean; they were fitted
    # on the config's dataset and written into the run's folder.
    config = tiny_config(data_dir, 1)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "mean_pose.npz").write_bytes(b"")
    message = f"run {run} has no anchors.npz beside its checkpoints/: copy them from the folder"
    with pytest.raises(FileNotFoundError, match=message):
        loop.evaluate_checkpoint(config, str(run))
    with pytest.raises(FileNotFoundError, match=message):
        loop.diagnose_checkpoint(config, str(run))
    assert sorted(os.listdir(run)) == ["checkpoints", "mean_pose.npz"]


def test_the_batch_and_the_mesh_must_fit_the_devices():
    """8 devices on 2 hosts: a batch of 12 or model groups of 8 cannot be split."""
    config = tiny_config("", 1)
    config.data.batch_size = 16
    loop.check_mesh(config, devices=8, local_devices=4)
    config.mesh.model_parallel = 4  # a data axis of 2
    config.data.batch_size = 2
    loop.check_mesh(config, devices=8, local_devices=4)
    config.mesh.model_parallel, config.data.batch_size = 1, 12
    with pytest.raises(ValueError, match=r"batch_size=12 must be a multiple of the mesh's data"):
        loop.check_mesh(config, devices=8, local_devices=4)
    config.mesh.model_parallel, config.data.batch_size = 8, 1
    with pytest.raises(ValueError, match="a model group cannot span hosts"):
        loop.check_mesh(config, devices=8, local_devices=4)


def test_a_run_directory_in_use_by_another_training_is_refused(data_dir, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    other = os.open(workdir, os.O_RDONLY)  # another process's lock, as flock sees it
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OSError, match=r"run is in use by another training process"):
            loop.train_and_evaluate(tiny_config(data_dir, 1), str(workdir))
    finally:
        os.close(other)
    assert os.listdir(workdir) == []


@pytest.mark.parametrize(
    "name",
    sorted(
        os.path.basename(p)[:-3]
        for p in glob.glob("experiments/configs/*.py")
        if not p.endswith("__init__.py")
    ),  # fmt: skip
)
def test_every_config_builds_its_model(name):
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    model_config = loop.model_config(config)
    variables = jax.eval_shape(
        lambda: lcrnet.init_variables(model_config, jax.random.key(0), image_size=(64, 64))
    )
    k = config.anchor_poses.num * (2 if config.anchor_poses.upper_body else 1)
    assert variables["anchor_poses"]["pose3d"].shape == (k, model_config.num_joints, 3)
    loop.ppi_config(config)


def test_the_roi_options_reach_the_network_from_the_command_line():
    """`--config.model.roi_method` and `--config.model.roi_chunk` (a locked config, as the
    launchers' flags give it) become the network's `LCRNetConfig` fields."""
    config = importlib.import_module("experiments.configs.inthewild_r50").get_config()
    config.lock()
    config.model.roi_method, config.model.roi_chunk = "einsum", 8
    model_config = loop.model_config(config)
    assert (model_config.roi_method, model_config.roi_chunk) == ("einsum", 8)


@pytest.mark.parametrize("name", ["inthewild_r50", "mpii_vgg16"])
def test_a_frozen_backbone_without_weights_is_refused_before_any_data(name, tmp_path):
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    with pytest.raises(ValueError, match="would be random: set config.model_init.imagenet"):
        loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    config.model_init.imagenet = "weights.pth"  # read once the data are found
    loop._check_settings(config)
    config.model_init.imagenet = ""
    config.model.norm, config.model.freeze_at = "group", 0  # everything trained
    loop._check_settings(config)


def test_the_papers_vgg16_models_max_pool_the_samples_of_each_roi_cell():
    """Sec. 3.5: "4 regularly sampled points per cell ... a max-pooling operator"."""
    for name in ("h36m_p1_vgg16", "mpii_vgg16"):
        config = loop.model_config(
            importlib.import_module(f"experiments.configs.{name}").get_config()
        )
        assert (config.roi_pooling, config.roi_sampling_ratio) == ("max", 2), name


_R50 = dict(
    images=1, rois=512, steps=2_700_000, rates={1_700_000: 1e-3, 2_000_000: 1e-4, 2_600_000: 1e-5}
)
_VGG16 = dict(images=8, rois=32, steps=500_000, rates={200_000: 1e-3, 400_000: 1e-4})
# The paper's settings per preset: training (Sec. 3.5, 4.1, 4.2), K anchor poses (+ as
# many upper-body classes), the iterative head of LCR-Net++ (Sec. 3.4, Table 1; the
# released in-the-wild model has none), PPI's T3D (metres) and IoU (Sec. 4.1, 4.2, Table
# 4), and for the in-the-wild model the released model's PPI parameters (REFERENCE.md).
_PAPER = {
    "h36m_p1_vgg16": dict(_VGG16, k=100, upper=False, iterative=True, t3d=0.125),
    "h36m_p2_r50": dict(_R50, k=100, upper=False, iterative=True, t3d=0.125),
    "mpii_vgg16": dict(_VGG16, k=200, upper=True, iterative=True, t3d=0.13, iou_threshold=0.12),
    "mpii_r50": dict(
        _R50, k=200, upper=True, iterative=True, t3d=0.04, iou_threshold=0.02, box_joints="all"
    ),
    "inthewild_r50": dict(
        _R50,
        k=10,
        upper=True,
        iterative=False,
        t3d=0.04,
        iou_threshold=0.14,
        box_joints="torso_head",
        min_mode_score=0.05,
        person_threshold=0.5,
    ),
}


@pytest.mark.parametrize("name", sorted(_PAPER))
def test_the_paper_presets_hold_the_papers_settings(name):
    """RoIs per image (512 for ResNet-50, 8 images x 32 for VGG16) with a quarter on
    people, SGD at 1e-3 divided by 10 at the paper's steps, the iterations, input short
    side 800, the anchor poses, the iterative head and the PPI parameters of each preset."""
    paper = _PAPER[name]
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    assert (config.data.batch_size, config.targets.roi_samples) == (paper["images"], paper["rois"])
    assert config.targets.roi_foreground_fraction == 0.25
    assert (config.targets.rpn_samples, config.targets.rpn_positive_fraction) == (256, 0.5)
    assert config.optimizer.kind == "sgd" and config.train.num_steps == paper["steps"]
    schedule = loop._schedule(config)
    for step, rate in paper["rates"].items():
        assert float(schedule(step)) == pytest.approx(rate, rel=1e-6), step
    assert config.data.short_side == 800
    assert (config.anchor_poses.num, config.anchor_poses.upper_body) == (paper["k"], paper["upper"])
    assert config.model.iterative == paper["iterative"]
    for key in ("t3d", "iou_threshold", "box_joints", "min_mode_score", "person_threshold"):
        if key in paper:
            assert config.ppi[key] == pytest.approx(paper[key]), key


def test_the_base_ppi_settings_are_the_authors_codes():
    """config.ppi of base.py (every preset's unless it overrides them): the authors' code's
    PPI defaults (t3d 0.3 m, IoU 0.2, boxes of all joints, further modes from 0.05,
    people above 0.002), candidates from 0.1 / C, upper-body candidates at 0.1 on the legs,
    pose boxes (not RoIs), and Eq. 6's sigma of 25 pixels."""
    ppi = importlib.import_module("experiments.configs.base").get_config().ppi
    assert (ppi.t3d, ppi.iou_threshold, ppi.box_joints) == (0.3, 0.2, "all")
    assert (ppi.min_mode_score, ppi.person_threshold) == (0.05, 0.002)
    assert (ppi.candidate_threshold, ppi.lower_limb_weight) == (0.1, 0.1)
    assert (ppi.group_by, ppi.rescore_sigma) == ("pose", 25.0)


def test_the_in_the_wild_mixture_gives_its_2d_only_sources_pseudo_ground_truth():
    """Sec. 4.2: MPII, LSPE and COCO have 2D annotations only, and each of their people
    gets a pseudo ground-truth 3D pose (Sec. 3.7); Human3.6M and the synthetic images
    come with their 3D poses."""
    sources = importlib.import_module("experiments.configs.inthewild_r50").get_config()
    pseudo = {source.name: source.pseudo_gt for source in sources.data.sources.values()}
    assert pseudo == {
        "mpii_human_pose": True, "lsp/extended": True, "coco_keypoints": True,
        "human36m/wild": False, "synthetic_people/cmu": False,
    }  # fmt: skip


def test_fine_tuning_adds_the_parts_a_run_lacks_and_refuses_other_shapes(tmp_path, caplog):
    config = tiny_config(str(tmp_path), 2)
    anchors = anchors_lib.fit_anchor_poses(_toy_poses()[0], 2, upper_body=True, seed=0)
    _, variables = loop.init_model(config, anchors)
    saved = jax.tree.map(lambda x: x + 1.0, variables["params"])  # unlike a fresh init
    state = step_lib.create_train_state({**variables, "params": saved}, optax.sgd(0.1))
    with checkpoint.Checkpointer(tmp_path / "run" / "checkpoints", asynchronous=False) as ckpt:
        ckpt.save(3, state)
    config.model.iterative = True
    _, fresh = loop.init_model(config, anchors)
    config.model_init.workdir = str(tmp_path / "run")
    with caplog.at_level(logging.WARNING):
        _, tuned = loop.init_model(config, anchors)

    flat = functools.partial(traverse_util.flatten_dict, sep=".")
    saved, fresh, tuned = flat(saved), flat(fresh["params"]), flat(tuned["params"])
    new = sorted(set(tuned) - set(saved))
    assert new and all(n.startswith(("lcr_head.refine", "lcr_head.predict_refined")) for n in new)
    for name, value in tuned.items():
        np.testing.assert_array_equal(value, saved[name] if name in saved else fresh[name])
    assert f"{len(new)} of {len(tuned)} parameter arrays are not in it" in caplog.text
    assert new[0] in caplog.text

    deeper = copy.deepcopy(config)
    deeper.model.stage_sizes = (2, 1, 1, 1)  # backbone blocks the run lacks: not fine-tuning
    with pytest.raises(
        checkpoint.ModelMismatchError,
        match="lacks 6 of the config's backbone and RPN arrays, the first backbone.res2",
    ):
        loop.init_model(deeper, anchors)
    other = anchors_lib.fit_anchor_poses(_toy_poses()[0], 3, upper_body=True, seed=0)
    config.anchor_poses.num = 3
    with pytest.raises(checkpoint.ModelMismatchError, match="in the checkpoint and"):
        loop.init_model(config, other)
    anchors_lib.save_anchor_poses(tmp_path / "run" / "anchors.npz", anchors)
    shifted = anchors.replace(pose3d=anchors.pose3d + 0.01)  # the same K, other poses
    config.anchor_poses.num = 2
    with pytest.raises(ValueError, match="its run was trained with other anchor poses"):
        loop.init_model(config, shifted)
    loop.init_model(config, anchors)  # the run's own anchors


def test_fine_tuning_takes_the_runs_anchors_and_saves_no_others(tmp_path):
    config = tiny_config(str(tmp_path / "no_datasets_here"), 2)  # K-means would read data
    anchors = anchors_lib.fit_anchor_poses(_toy_poses()[0], 2, upper_body=True, seed=0)
    mean = anchors_lib.fit_anchor_poses(_toy_poses()[0], 1, normalize=False, seed=0)
    (tmp_path / "wild").mkdir()
    anchors_lib.save_anchor_poses(tmp_path / "wild" / "anchors.npz", anchors)
    anchors_lib.save_anchor_poses(tmp_path / "wild" / "mean_pose.npz", mean)
    config.model_init.workdir = str(tmp_path / "wild")
    config.data.joint_set = "lcr_mupots"
    got, got_mean = loop.anchor_poses(config, str(tmp_path / "mupots"))
    np.testing.assert_array_equal(got.pose3d, anchors_lib.completed(anchors, "lcr_mupots").pose3d)
    np.testing.assert_array_equal(got_mean.pose3d, anchors_lib.completed(mean, "lcr_mupots").pose3d)
    assert sorted(os.listdir(tmp_path / "mupots")) == ["anchors.npz", "mean_pose.npz"]
    # Other anchors given with the run: refused before any is saved in the new workdir.
    other = anchors.replace(pose3d=anchors.pose3d + 0.01)
    anchors_lib.save_anchor_poses(tmp_path / "other.npz", other)
    config.anchor_poses.path = str(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="its run was trained with other anchor poses"):
        loop.anchor_poses(config, str(tmp_path / "again"))
    assert not (tmp_path / "again").exists()


def test_fine_tuning_onto_another_joint_set_starts_from_the_runs_poses_completed(tmp_path, caplog):
    config = tiny_config(str(tmp_path), 2)
    config.model.iterative = True
    config.model.joint_refinement, config.model.joint_polish = 0, 0
    config.model.flip_test, config.model.test_scales = False, ()  # one view: a smaller compile
    anchors = anchors_lib.fit_anchor_poses(_toy_poses()[0], 2, upper_body=True, seed=0)
    model, variables = loop.init_model(config, anchors)
    keys = iter(jax.random.split(jax.random.key(1), 100))
    noisy = lambda x: x + 0.05 * jax.random.normal(next(keys), x.shape)  # noqa: E731
    saved = {**variables, "params": jax.tree.map(noisy, variables["params"])}
    state = step_lib.create_train_state(saved, optax.sgd(0.1))
    with checkpoint.Checkpointer(tmp_path / "run" / "checkpoints", asynchronous=False) as ckpt:
        ckpt.save(3, state)
    anchors_lib.save_anchor_poses(tmp_path / "run" / "anchors.npz", anchors)

    config.data.joint_set = "lcr_mupots"
    config.model_init.workdir = str(tmp_path / "run")
    completed = anchors_lib.completed(anchors, "lcr_mupots")
    with caplog.at_level(logging.WARNING):
        tuned_model, tuned = loop.init_model(config, completed)
    assert "the joints it lacks (head_top, thorax, pelvis, spine)" in caplog.text
    assert "parameter arrays are not in it" not in caplog.text  # every array came

    images = jax.random.uniform(jax.random.key(2), (1, 64, 96, 3), maxval=255.0)
    size = np.array([[64, 96]])
    before = jax.jit(model.apply)(saved, images, size)
    after = jax.jit(tuned_model.apply)(tuned, images, size)
    np.testing.assert_allclose(after.probs, before.probs, atol=1e-6)
    for name in ("poses2d", "poses3d"):
        expected = skeleton.complete(getattr(before, name), "lcr13", "lcr_mupots")
        scale = np.abs(expected).max()
        np.testing.assert_allclose(getattr(after, name), expected, atol=1e-5 * scale)

    run = config.model_init.workdir  # evaluated or resumed as another joint set: refused
    anchors_lib.save_anchor_poses(os.path.join(run, "mean_pose.npz"), anchors)
    with pytest.raises(ValueError, match="predicts lcr13 joints, the config lcr_mupots: pass"):
        loop.anchor_poses(config, run)
    config.data.joint_set = "lcr17"  # LCR-13 has no neck
    with pytest.raises(ValueError, match=r"cannot make the 'lcr17' joints \['neck'\]"):
        loop._check_run_anchors(config.model_init.workdir, {}, loop.model_config(config))


def test_the_evaluation_counts_people_beyond_the_training_slots(data_dir):
    config = tiny_config(data_dir, 1)
    config.data.max_people, config.eval.max_people = 1, 8
    loader, _, num_images, *_ = loop._eval_loader(config, "test", None)
    source = pipeline.open_source(config.data.eval_name, split="test", data_dir=data_dir)
    people = sum(
        int(np.any(records.read_record(source, i)["people"]["visible"], -1).sum())
        for i in range(num_images)
    )
    assert people > num_images  # some images hold several people
    assert sum(int(batch["person_valid"].sum()) for batch in loader) == people


def test_a_run_saves_its_config_and_names_what_a_resume_changed(tmp_path, caplog, monkeypatch):
    config = tiny_config(str(tmp_path), 2)
    loop.save_config(config, str(tmp_path))
    assert json.load(open(tmp_path / "config.json")) == json.loads(config.to_json_best_effort())
    config.ppi.t3d, config.train.num_steps = 0.2, 3
    with caplog.at_level(logging.WARNING):
        loop.save_config(config, str(tmp_path))
    assert "another config than the last (ppi.t3d, train.num_steps)" in caplog.text
    assert json.load(open(tmp_path / "config.json"))["ppi"]["t3d"] == 0.2
    # A file that cannot be written does not claim to hold the new config.
    caplog.clear()
    config.ppi.t3d = 0.1

    def read_only(*_):
        raise PermissionError("read-only")

    monkeypatch.setattr(loop.atomic, "write_json", read_only)
    with caplog.at_level(logging.WARNING), pytest.raises(PermissionError):
        loop.save_config(config, str(tmp_path))
    assert "now holds" not in caplog.text


def test_a_one_number_canvas_is_a_square():
    # `--config.data.image_size=64` on the command line gives the tuple (64,).
    config = synthetic_tiny.get_config()
    config.data.image_size = (64,)
    assert loop.canvas(config) == (64, 64)
    config.data.image_size = (64, 0)
    with pytest.raises(ValueError, match=r"an int, \(size,\) or \(height, width\) >= 1"):
        loop.canvas(config)


def test_eval_file_stem_names_split_and_image_count():
    stem = functools.partial(loop.eval_file_stem, default_split="test", split_size=10)
    assert stem(5, split="test", num_images=10) == "5"
    assert stem(5, split="test", num_images=3) == "5_first3"
    assert stem(5, split="validation", num_images=10) == "5_validation"
    assert stem(5, split="validation", num_images=2) == "5_validation_first2"


def test_a_metrics_row_that_cannot_be_written_names_metrics_jsonl(tmp_path):
    class FullDisk(io.StringIO):
        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    with loop._Logger(str(tmp_path)) as logger:
        logger.jsonl.close()
        logger.jsonl = FullDisk()
        logger.jsonl.name = str(tmp_path / "metrics.jsonl")
        with pytest.raises(OSError, match=r"No space left on device: '.*metrics\.jsonl'"):
            logger.write(1, {"train/loss": 1.0})


def test_a_metrics_row_leaves_out_non_finite_values(tmp_path):
    """A window of skipped steps has no loss: the row omits it and stays strict JSON."""
    with loop._Logger(str(tmp_path)) as logger:
        logger.write(3, {"train/loss": math.nan, "train/grad_norm": math.inf, "train/cls": 0.5})

    def refuse(constant):
        raise ValueError(f"{constant} in metrics.jsonl")

    (line,) = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(line, parse_constant=refuse) == {"step": 3, "train/cls": 0.5}


class _Bar:
    def __init__(self):
        self.n = 0

    def update(self, count):
        self.n += count


class _Checkpoints:
    def latest_step(self):
        return 4


def _step_metrics(max_skipped):
    return loop._StepMetrics(
        _Checkpoints(), _Bar(), first_step=1, batch_size=2, max_skipped=max_skipped,
        max_update_norm=10.0,
    )  # fmt: skip


def _metrics(skipped, loss=1.0):
    return {"skipped": np.float32(skipped), "loss": np.float32(loss), "update_norm": 50.0}


def _shared(counts=None):
    """A step's values shared over the hosts: no stop signal and these people counts."""
    return loop._over_hosts({"signal": None}, counts or {}, None)


def test_only_skipped_steps_in_a_row_stop_the_run():
    """max_skipped=2: skips between good steps never stop it, two in a row do, naming the
    step and the last checkpoint."""
    read = _step_metrics(max_skipped=2)
    for step, skipped in enumerate([1, 0, 1, 0, 1, 0], 1):
        read.add(step, _metrics(skipped), _shared(), 0.0)
    read.flush()
    read.add(7, _metrics(1), _shared(), 0.0)
    with pytest.raises(
        FloatingPointError, match=r"^2 steps in a row .* at step 8; last checkpoint: 4;"
    ):
        read.add(8, _metrics(1), _shared(), 0.0)
        read.flush()


def test_a_window_counts_its_skipped_steps_and_averages_the_finite_values():
    """ "skipped" is how many steps of the window were skipped; a loss is the mean of the
    finite ones; the next window starts empty."""
    read = _step_metrics(max_skipped=10)
    for step, (skipped, loss) in enumerate([(1, math.nan), (0, 1.0), (1, math.inf), (0, 3.0)], 1):
        read.add(step, _metrics(skipped, loss), _shared({"people/a/3d": float(step)}), 0.0)
    read.flush()
    means = read.window_means()
    assert means["skipped"] == 2.0 and means["loss"] == 2.0 and means["people/a/3d"] == 2.5
    read.add(5, _metrics(0, 5.0), _shared(), 0.0)
    read.flush()
    assert read.window_means()["loss"] == 5.0


def test_the_compiling_first_step_is_not_timed():
    """Steps after `first_step` count their host time and images; the first does not."""
    read = _step_metrics(max_skipped=10)
    for step, seconds in [(1, 100.0), (2, 0.5), (3, 0.5)]:
        read.add(step, _metrics(0), _shared(), seconds)
    read.flush()
    assert read.images == 2 * 2 and 1.0 <= read.seconds < 100.0
    assert read.window_means()["images_per_s"] == pytest.approx(read.images / read.seconds)


def test_a_resume_keeps_the_rows_before_its_step_and_refuses_a_damaged_row(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    rows = ['{"step": 1, "train/loss": 2.0}', '{"step": 2, "ppi/AP": 0.1}', '{"step": 3, "train/l']
    path.write_text("\n".join(rows))  # the last one torn by a kill
    loop._Logger(str(tmp_path), after_step=2).close()
    assert path.read_text() == rows[0] + "\n" + rows[1] + "\n"
    loop._Logger(str(tmp_path), after_step=2, final_eval=True).close()  # rerun final eval
    assert path.read_text() == rows[0] + "\n"

    for damaged, what in [("[]", "line 3"), ('{"step": "1"}', "line 3"), ("{torn", "line 3")]:
        path.write_text(f"{rows[0]}\n\n{damaged}\n{rows[0]}\n")  # blank lines are skipped
        with pytest.raises(ValueError, match=f"metrics.jsonl {what} is not a metrics row"):
            loop._Logger(str(tmp_path), after_step=2)
    path.write_bytes(b'{"step": 1}\n\xff\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl is not UTF-8 text"):
        loop._Logger(str(tmp_path), after_step=2)

    def full_disk(self, text, **kwargs):  # half written, then the disk is full
        open(self, "w").write(text[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    path.write_text(rows[0] + "\n")
    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    with pytest.raises(OSError, match=r"No space left on device: '.*metrics\.jsonl'"):
        loop._Logger(str(tmp_path), after_step=2)
    monkeypatch.undo()
    assert path.read_text() == rows[0] + "\n"  # kept whole, nothing left beside it
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["metrics.jsonl"]


def _tensorboard_events(folder):
    """(step, kind) of every event in the folder's event files (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    events = []
    for path in sorted(pathlib.Path(folder).iterdir()):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (size,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + size])
            events.append((event.step, event.WhichOneof("what")))
            at += 16 + size
    return events


def test_a_resume_hides_the_tensorboard_steps_of_the_killed_run(tmp_path):
    with loop._Logger(str(tmp_path)) as logger:
        for step in range(1, 5):
            logger.write(step, {"train/loss": 1.0})
    time.sleep(1.1)  # event files are named by the second they are opened
    with loop._Logger(str(tmp_path), after_step=2) as logger:
        logger.write(3, {"train/loss": 2.0})
    # TensorBoard drops the events at and after a START session log's step.
    assert _tensorboard_events(tmp_path / "tensorboard")[-3:] == [
        (3, "file_version"), (3, "session_log"), (3, "summary"),
    ]  # fmt: skip


def test_the_first_images_of_a_sliced_split_are_evaluated(data_dir):
    _, _, images, split_size, _ = loop._eval_loader(tiny_config(data_dir, 1), "test[2:7]", 3)
    assert (images, split_size) == (3, 5)


def test_a_run_directory_in_use_is_refused_on_every_host(tmp_path):
    script = """
        from lcrnet_jax.train import loop
        try:
            with loop._only_run_in(sys.argv[2]):
                print(process, "ran")
        except OSError as error:
            print(process, error)
    """
    with atomic.exclusive(tmp_path, "held by the test"):
        lines = [out.strip().splitlines()[-1] for out in run_on_two_hosts(script, str(tmp_path))]
    assert lines == [
        f"0 {tmp_path} is in use by another training process; wait for it to end or train "
        "in another --workdir",
        f"1 host 0 could not hold {tmp_path} (its error says why)",
    ]


def test_two_hosts_sum_their_counts_and_stop_after_the_same_step():
    """The training loop's host side on two jax.distributed hosts: each step's people
    counts are the global batch's, and a signal on host 1 alone stops both hosts after
    the same step, read one step late with the metrics (no collective waits for the step
    in flight)."""
    script = """
        import signal
        import numpy as np
        from lcrnet_jax.train import loop
        from lcrnet_jax.train import step as step_lib
        mesh = step_lib.make_mesh()
        read = loop._StepMetrics(None, loop.progress_bar(desc="train", unit="step",
                                 disable=True), first_step=1, batch_size=2, max_skipped=9,
                                 max_update_norm=1.0)
        stop, step = {"signal": None}, 0
        while step < 10 and not loop._stopping(stop, read):
            if process == 1 and step == 2:
                stop["signal"] = signal.SIGINT  # Ctrl-C before step 3, on host 1 only
            counts = {"people/a/3d": 1.0 + process + step, "people/a/2d_only": 2.0}
            shared = loop._over_hosts(stop, counts, mesh)
            step += 1
            read.add(step, {"skipped": np.float32(0)}, shared, 0.0)
        read.flush()
        print(process, step, stop["signal"], read.history["people/a/3d"],
              read.history["people/a/2d_only"])
    """
    lines = [out.strip().splitlines()[-1] for out in run_on_two_hosts(script)]
    # Step 3 carries host 1's stop; both read it with step 3's metrics, after dispatching
    # step 4, and stop there. Host 0 records SIGTERM (15), host 1 its own Ctrl-C (2).
    counts = "[3.0, 5.0, 7.0, 9.0] [4.0, 4.0, 4.0, 4.0]"
    assert lines == [f"0 4 15 {counts}", f"1 4 2 {counts}"]


def truth_detector(truth: str, calls: list):
    """A stand-in for `evaluation.make_detector`'s function: each image's ground-truth
    people found by the image's bytes in `truth` (an npz of `_truth_table`), their 2D
    joints moved by (index % 3) px and scored by the index (imperfect, image-specific
    people); appends each call's batch size to `calls`."""
    import hashlib

    from lcrnet_jax.postprocess import ppi

    table = dict(np.load(truth))
    rows = {key: row for row, key in enumerate(table.pop("keys"))}

    def detect(variables, images, image_size):
        del variables, image_size
        calls.append(len(images))
        found = np.array([rows[hashlib.sha1(image.tobytes()).hexdigest()] for image in images])
        index = table["index"][found].astype(np.float32)[:, None]  # (B, 1)
        return {"ppi": ppi.PPIResult(
            poses2d=table["poses2d"][found] + (index % 3)[..., None, None],
            poses3d=table["poses3d"][found],
            scores=np.broadcast_to(1 / (1 + index), table["person_valid"][found].shape),
            valid=table["person_valid"][found],
        )}  # fmt: skip

    return detect


def _truth_table(loader, path):
    """Writes `truth_detector`'s npz: the loader's images' keys and people."""
    import hashlib

    batches = list(loader)
    columns = ("index", "poses2d", "poses3d", "person_valid")
    table = {k: np.concatenate([b[k] for b in batches]) for k in columns}
    table["keys"] = [hashlib.sha1(i.tobytes()).hexdigest() for b in batches for i in b["image"]]
    np.savez(path, **table)


def test_two_hosts_evaluate_a_share_each_and_score_the_whole_split(data_dir, tmp_path):
    """Each host runs the detector on its own images (3 and 2 of 5), and every host's
    evaluators score all five: the metrics and predictions of one host evaluating alone."""
    script = """
        import json
        from tests.test_loop import tiny_config, truth_detector
        from lcrnet_jax.train import loop
        calls = []
        results, *_ = loop.run_evaluation(
            tiny_config(sys.argv[2], 1), truth_detector(sys.argv[4], calls), None,
            split="test", max_images=5, out_dir=sys.argv[3], step=1, settings=None,
        )
        print(process, calls, json.dumps(results, sort_keys=True))
    """
    config = tiny_config(data_dir, 1)
    truth = str(tmp_path / "truth.npz")
    _truth_table(loop._eval_loader(config, "test", 5)[0], truth)
    calls = []
    alone, *_ = loop.run_evaluation(
        config, truth_detector(truth, calls), None, split="test", max_images=5,
        out_dir=str(tmp_path / "alone"), step=1, settings=None,
    )  # fmt: skip
    assert calls == [2, 2, 2]
    assert alone["ppi"]["recall"] == 1 and 0 < alone["ppi"]["AP"] < 1  # imperfect people
    lines = [
        out.strip().splitlines()[-1]
        for out in run_on_two_hosts(script, data_dir, str(tmp_path / "hosts"), truth)
    ]  # fmt: skip
    together = json.dumps(alone, sort_keys=True)
    assert lines == [f"0 [2, 2] {together}", f"1 [2] {together}"]  # batches padded to 2
    for name in ("metrics_1_first5.json", "predictions_1_first5.json"):
        written, expected = (
            json.loads((tmp_path / d / name).read_text()) for d in ("hosts", "alone")
        )
        if name.startswith("metrics"):
            for report in (written, expected):
                assert 0 < report.pop("seconds") < 60
        assert written == expected


def test_each_host_evaluates_with_the_whole_of_a_state_split_over_its_devices():
    """Two hosts of 2 devices, the state split over "model" (each host's devices hold a
    model group): `_on_this_host` gives every host the whole array, read locally."""
    script = """
        jax.config.update("jax_num_cpu_devices", 2)
        import numpy as np
        from jax.sharding import NamedSharding, PartitionSpec
        from lcrnet_jax.train import loop
        from lcrnet_jax.train import step as step_lib
        mesh = step_lib.make_mesh(model_parallel=2)  # data 2 (the hosts) x model 2
        value = np.arange(24, dtype=np.float32).reshape(3, 8)
        split = NamedSharding(mesh, PartitionSpec(None, "model"))
        x = jax.make_array_from_callback(value.shape, split, lambda index: value[index])
        here = loop._on_this_host({"split": x, "numpy": value})
        print(process, x.is_fully_addressable, type(here["split"]).__name__,
              np.array_equal(here["split"], value), here["numpy"] is value)
    """
    lines = [out.strip().splitlines()[-1] for out in run_on_two_hosts(script)]
    assert lines == ["0 False ndarray True True", "1 False ndarray True True"]


@pytest.mark.slow  # two processes compile and train: about 2 minutes on 2 cores
def test_a_training_on_two_hosts_trains_saves_and_evaluates(data_dir, tmp_path):
    script = """
        import json
        from tests.test_loop import tiny_config
        from lcrnet_jax.train import loop
        result = loop.train_and_evaluate(tiny_config(sys.argv[2], 4), sys.argv[3])
        print(process, result["step"], json.dumps(result["eval"]["ppi"], sort_keys=True))
        config = tiny_config(sys.argv[2], 4)
        config.distributed = True  # joined already: evaluate.py's way
        again = loop.evaluate_checkpoint(config, sys.argv[3], eval_dir=sys.argv[3] + "/again")
        print(process, again["step"], json.dumps(again["eval"]["ppi"], sort_keys=True))
    """
    workdir = tmp_path / "run"
    outputs = [out.strip().splitlines() for out in run_on_two_hosts(script, data_dir, str(workdir))]
    lines = [out[-2] for out in outputs]
    assert [line[:4] for line in lines] == ["0 4 ", "1 4 "] and lines[0][4:] == lines[1][4:]
    # Each host evaluated 2 of the 4 images; together, what one process finds alone,
    # after the training and from its checkpoint.
    alone = loop.evaluate_checkpoint(
        tiny_config(data_dir, 4), str(workdir), eval_dir=str(tmp_path / "alone")
    )
    assert lines[0][4:] == json.dumps(alone["eval"]["ppi"], sort_keys=True)
    assert [out[-1] for out in outputs] == [f"{h} {lines[0][2:]}" for h in (0, 1)]
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "train/loss" in r] == [2, 4]  # host 0 writes, once
    assert all(r["train/people/synthetic/3d"] > 0 for r in logged if "train/loss" in r)
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]


def test_a_distributed_run_joins_its_hosts_before_anything_starts_a_backend():
    """jax.distributed.initialize must come first (the settings' check counts devices)."""
    script = """
    import sys
    import jax
    from jax._src import xla_bridge
    from experiments.configs import synthetic_tiny
    from lcrnet_jax.train import loop

    def initialize():
        print("backends started before joining:", xla_bridge.backends_are_initialized())
        raise SystemExit(0)

    jax.distributed.initialize = initialize
    config = synthetic_tiny.get_config()
    config.distributed = True
    if sys.argv[1] == "train":
        loop.train_and_evaluate(config, "unused")
    else:  # the evaluation launcher, before it loads an export or a checkpoint
        import runpy
        sys.argv = ["evaluate.py", "--config=experiments/configs/synthetic_tiny.py",
                    "--config.distributed=True", f"--{sys.argv[1]}=/nowhere"]
        runpy.run_path("experiments/evaluate.py", run_name="__main__")
    """
    for entry in ("train", "exported"):
        out = run_on_8_cpu_devices(textwrap.dedent(script), entry)
        assert "backends started before joining: False" in out, entry
