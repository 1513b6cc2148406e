"""Anchor poses from a pose corpus: experiments/fit_anchors.py and `anchors.fit_anchor_file`."""

import inspect
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from data_builders.cmu_mocap import cmu_mocap_dataset_builder as cmu
from experiments.configs import base
from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax.data import corpus as corpus_lib
from lcrnet_jax.train import loop
from tests import fake_datasets as fake
from tests.test_launchers import flag_defaults, run_stubbed

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _poses17(num=40, seed=0):
    rng = np.random.default_rng(seed)
    height = np.linspace(0.9, -0.7, 17)[None, :, None] * np.array([0.0, 1.0, 0.0])
    return (height + rng.normal(scale=0.2, size=(num, 17, 3))).astype(np.float32)


@pytest.fixture(scope="module")
def corpus17(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "mocap17.npz"
    np.savez(path, poses3d=_poses17(), joint_set="lcr17")
    return str(path)


def test_fit_anchor_file_writes_anchors_and_mean_pose(corpus17, tmp_path):
    out = tmp_path / "anchors" / "cmu_k4.npz"  # a new folder, as the configs' commands name
    result = anchors_lib.fit_anchor_file(corpus17, out, num_anchors=4, upper_body=True)
    assert result["poses"] == 40 and result["joint_set"] == "lcr13"
    anchors = anchors_lib.load_anchor_poses(out)
    assert anchors.twins and anchors.num_anchors == 8 and anchors.joint_set == "lcr13"
    mean = anchors_lib.load_anchor_poses(anchors_lib.mean_pose_path(out))
    poses, _ = corpus_lib.load_pose_corpus(corpus17, joint_set="lcr13")
    np.testing.assert_allclose(mean.pose3d[0], poses.mean(0), atol=1e-5)


def test_random_views_turn_the_corpus_to_every_heading(tmp_path):
    """A corpus of people who all face the camera (shoulders along X): its anchors do
    too, unless each pose is first seen from a random view."""
    rng = np.random.default_rng(1)
    facing = _poses17(1)[0].copy()
    facing[[10, 11]] = [[-0.2, -0.5, 0.0], [0.2, -0.5, 0.0]]  # LCR shoulders, right, left
    path = tmp_path / "facing.npz"
    np.savez(path, poses3d=facing + rng.normal(scale=0.01, size=(60, 17, 3)), joint_set="lcr17")
    turned = []
    for random_views in (False, True):
        out = tmp_path / f"anchors_{random_views}.npz"
        anchors_lib.fit_anchor_file(str(path), out, num_anchors=6, random_views=random_views)
        pose3d = np.asarray(anchors_lib.load_anchor_poses(out).pose3d)
        shoulders = pose3d[:, 11] - pose3d[:, 10]
        turned.append(np.abs(shoulders[:, 2]) / np.linalg.norm(shoulders, axis=-1))
    assert turned[0].max() < 0.2 and turned[1].max() > 0.7


def test_corpus_errors_name_the_fix(corpus17, tmp_path):
    out = tmp_path / "anchors.npz"
    with pytest.raises(ValueError, match="fewer than the 50 anchors.*lower --num"):
        anchors_lib.fit_anchor_file(corpus17, out, num_anchors=50)
    path13 = tmp_path / "mocap13.npz"
    np.savez(path13, poses3d=_poses17()[:, :13], joint_set="lcr13")
    with pytest.raises(ValueError, match=r"lcr13 poses, which lack .*pelvis.* of lcr17"):
        anchors_lib.fit_anchor_file(str(path13), out, num_anchors=2, joint_set="lcr17")
    with pytest.raises(FileNotFoundError, match="build it with: python experiments/build"):
        anchors_lib.fit_anchor_file("cmu_mocap", out, num_anchors=2, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"max_poses must be >= 1 \(None: every record\), got 0"):
        anchors_lib.fit_anchor_file(corpus17, out, num_anchors=2, max_poses=0)
    (tmp_path / "poses.csv").write_text("0,0,0")
    with pytest.raises(ValueError, match="poses.csv' is a file but not an .npz"):
        anchors_lib.fit_anchor_file(str(tmp_path / "poses.csv"), out, num_anchors=2)
    assert sorted(os.listdir(tmp_path)) == ["mocap13.npz", "poses.csv"]  # nothing written


@pytest.mark.parametrize("max_elevation", [math.nan, 10.0, -1.0])
def test_max_elevation_is_checked_like_add_pseudo_gt(tmp_path, max_elevation):
    """NaN blamed the corpus ("poses3d contains NaN"); 10 and -1 were accepted."""
    with pytest.raises(ValueError, match=r"^max_elevation must be in \[0, pi/2\] radians, got"):
        anchors_lib.fit_anchor_file(
            "missing.npz", tmp_path / "anchors.npz", num_anchors=2, random_views=True,
            max_elevation=max_elevation,
        )  # fmt: skip
    assert os.listdir(tmp_path) == []


def test_cmu_mocap_dataset_is_a_corpus(tmp_path):
    fake.write_cmu_mocap(tmp_path / "manual", num_frames=12)
    config = cmu.CmuMocapConfig(name="tiny", frame_step=4)
    source = fake.build(cmu.CmuMocap, config, tmp_path / "data", tmp_path / "manual")["train"]
    poses, joint_set = corpus_lib.load_pose_corpus(
        "cmu_mocap/tiny", data_dir=str(tmp_path / "data")
    )
    assert joint_set == "lcr17" and poses.shape == (len(source), 17, 3)
    np.testing.assert_allclose(poses[0], source[0]["joints3d"], atol=1e-5)
    extra = tmp_path / "extra.npz"
    np.savez(extra, poses3d=_poses17(5), joint_set="lcr17")
    both, _ = corpus_lib.load_pose_corpus(
        f"cmu_mocap/tiny:train,{extra}", joint_set="lcr13", data_dir=str(tmp_path / "data")
    )
    assert both.shape == (len(source) + 5, 13, 3)


def test_an_output_under_a_file_is_named_as_such(corpus17, tmp_path):
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "sub" / "anchors.npz"
    message = f"^{tmp_path / 'afile'} is a file, not a folder \\(to hold {out.parent}\\)$"
    with pytest.raises(NotADirectoryError, match=message):  # was "[Errno 17] File exists"
        anchors_lib.fit_anchor_file(corpus17, out, num_anchors=3)
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_run_reads_no_dataset_when_anchors_path_is_set(corpus17, tmp_path):
    out = tmp_path / "anchors.npz"
    anchors_lib.fit_anchor_file(corpus17, out, num_anchors=3, upper_body=True)
    config = base.get_config()
    config.data.data_dir = str(tmp_path / "no_datasets_here")
    config.anchor_poses.num, config.anchor_poses.path = 3, str(out)
    anchors, mean = loop.anchor_poses(config, str(tmp_path / "run"))
    assert anchors.num_anchors == 6 and mean.num_anchors == 1
    assert os.path.exists(tmp_path / "run" / "anchors.npz")
    config.anchor_poses.num = 4
    with pytest.raises(ValueError, match="refit it with experiments/fit_anchors.py --num=4"):
        loop.anchor_poses(config, str(tmp_path / "run2"))
    config.anchor_poses.num, config.anchor_poses.normalize = 3, False
    with pytest.raises(
        ValueError,
        match="fitted with a regression std, the config asks anchor_poses.normalize=False",
    ):
        loop.anchor_poses(config, str(tmp_path / "run3"))

    run = tmp_path / "run"  # its saved files, resumed with another count: named
    config.anchor_poses.normalize, config.anchor_poses.num = True, 4
    with pytest.raises(
        ValueError, match=f"run {run} has 3 anchor poses .* --config.anchor_poses.num=3"
    ):
        loop.anchor_poses(config, str(run))
    config.anchor_poses.num = 3  # an anchor file copied over the mean pose: was taken as one
    shutil.copy(run / "anchors.npz", run / "mean_pose.npz")
    with pytest.raises(ValueError, match="mean_pose.npz holds 6 poses, a mean-pose file holds one"):
        loop.anchor_poses(config, str(run))


def test_launcher_bad_input_is_one_line(corpus17, tmp_path):
    out = tmp_path / "anchors.npz"
    cmd = [sys.executable, "experiments/fit_anchors.py", f"--corpus={corpus17}", "--num=99",
           f"--output={out}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and not out.exists()
    assert done.stderr.strip().splitlines() == [
        f"error: corpus {corpus17!r} has 40 poses, fewer than the 99 anchors asked for: "
        "lower --num or use a larger corpus"
    ]


def test_builder_options_are_checked_before_any_build(tmp_path):
    from experiments import build_dataset

    with pytest.raises(ValueError, match=r"--corpus is an option of \('synthetic_people',\)"):
        build_dataset.build("lsp/extended", data_dir=str(tmp_path), corpus="cmu_mocap")
    with pytest.raises(ValueError, match=r"--reference_corpus is an option of \('synthetic_"):
        build_dataset.build("lsp/extended", data_dir=str(tmp_path), reference_corpus="human36m")
    with pytest.raises(FileNotFoundError, match="^background image folder .* does not exist"):
        build_dataset.build(
            "synthetic_people/test", data_dir=str(tmp_path), background_dir=str(tmp_path / "no")
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="^background image folder .*empty' has no images"):
        build_dataset.build(
            "synthetic_people/test", data_dir=str(tmp_path), background_dir=str(tmp_path / "empty")
        )
    (tmp_path / "empty").rmdir()
    assert os.listdir(tmp_path) == []


def test_a_missing_corpus_file_is_named_before_a_built_dataset_is_compared(data_dir, tmp_path):
    from experiments import build_dataset

    # It said that the dataset in place was built with another corpus: rebuild it with
    # --overwrite; only that rerun named the missing file.
    missing = str(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match=f"^corpus file not found: {missing} "):
        build_dataset.build("synthetic_people/test", data_dir=data_dir, corpus=missing)


def test_manual_downloads_default_to_a_folder_per_dataset(tmp_path):
    from experiments import build_dataset

    expected = fake.write_lspet(tmp_path / "downloads" / "manual" / "lsp")
    builder = build_dataset.build("lsp/extended", data_dir=str(tmp_path))
    assert builder.info.splits["train"].num_examples == len(expected[0])


def test_a_split_left_without_examples_is_named(tmp_path):
    from experiments import build_dataset

    manual = tmp_path / "manual"
    fake.write_lsp(manual, num_images=4)  # LSP's test split starts at its 1,001st image
    message = (
        f"^dataset lsp/original: its split test would hold no example: the files in {manual} "
        "give it none, or every one was skipped"
    )  # TFDS said: Failed to finalize writing of split "test": No examples were yielded.
    with pytest.raises(ValueError, match=message):
        build_dataset.build("lsp/original", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    assert not (tmp_path / "data").exists()


def test_a_failed_manual_build_leaves_nothing(tmp_path):
    from experiments import build_dataset

    data_dir, manual = tmp_path / "data", tmp_path / "empty_manual"
    manual.mkdir()
    with pytest.raises(Exception):  # noqa: B017  (TFDS reports missing files in several ways)
        build_dataset.build("lsp/extended", data_dir=str(data_dir), manual_dir=str(manual))
    assert not data_dir.exists()  # created by the build, removed with what it held


def test_the_launchers_defaults_are_the_librarys():
    """fit_anchors.py without a flag fits as `fit_anchor_file` without the argument: 13
    joints, no upper-body twins, normalised, no random views, whose elevation is
    add_pseudo_gt.py's (the same views as the pseudo ground truth's)."""
    names = ("upper_body", "joint_set", "max_poses", "normalize", "seed", "random_views",
             "max_elevation")  # fmt: skip
    params = inspect.signature(anchors_lib.fit_anchor_file).parameters
    assert flag_defaults("fit_anchors", names) == {n: params[n].default for n in names}
    assert flag_defaults("add_pseudo_gt", ["max_elevation"])["max_elevation"] == 0.5
    assert params["max_elevation"].default == 0.5


def test_the_launcher_passes_each_flag_to_its_argument(tmp_path):
    """Every flag of fit_anchors.py reaches its own argument of `fit_anchor_file`."""
    stub = [
        "import json",
        "from lcrnet_jax import anchors",
        "def fit(corpus, output, **options):",
        "    print(json.dumps(dict(options, corpus=corpus, output=output)))",
        "    return dict(anchors=7, joint_set='lcr17', poses=9, path=output, mean_path='m')",
        "anchors.fit_anchor_file = fit",
    ]
    out = str(tmp_path / "a.npz")
    run = run_stubbed(
        "fit_anchors.py", stub, "--corpus=c.npz", "--num=7", f"--output={out}",
        "--random_views", "--joint_set=lcr17", "--data_dir=/d", "--max_poses=9",
        "--nonormalize", "--seed=4", "--max_elevation=0.25",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[0]) == dict(
        corpus="c.npz", output=out, num_anchors=7, upper_body=False, joint_set="lcr17",
        data_dir="/d", max_poses=9, normalize=False, seed=4, random_views=True,
        max_elevation=0.25,
    )  # fmt: skip
