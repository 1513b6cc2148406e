"""Builds synthetic_people/test into a temporary data_dir and reads it back without TF."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_builders import synthetic_people
from data_builders.synthetic_people import synthetic_people_dataset_builder as builder_lib
from lcrnet_jax import geometry, skeleton
from lcrnet_jax.data import poses, synthetic
from tests import fake_datasets
from tests.test_workers import sigint_as_in_a_terminal, spawned_children

_NO_NETWORK = tfds.download.DownloadConfig(try_download_gcs=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = tfds.builder("synthetic_people/test", data_dir=data_dir, file_format="array_record")
    assert isinstance(builder, synthetic_people.SyntheticPeople)
    builder.download_and_prepare(download_config=_NO_NETWORK)
    return data_dir


def _records(data_dir, split):
    source = tfds.data_source("synthetic_people/test", split=split, data_dir=data_dir)
    return source, fake_datasets.records(source)


def test_builds_from_scratch_and_reads_back(data_dir):
    source, records = _records(data_dir, "train")
    assert len(source) == 24 and len(_records(data_dir, "test")[0]) == 8
    assert source.dataset_info.metadata["joint_set"] == builder_lib.JOINT_SET == "lcr17"
    assert sorted(records) == [f"train/{i:06d}" for i in range(24)]
    for r in records.values():
        assert r["image"].shape == (96, 128, 3) and r["image"].dtype == np.uint8
        people = r["people"]
        num = len(people["joints2d"])
        assert 1 <= num <= 3 and people["joints3d"].shape == (num, 17, 3)
        assert people["visible"].dtype == bool and people["has_3d"].all()
        # 2D annotations are the projections of the stored 3D joints (exact after storage).
        np.testing.assert_allclose(
            people["joints2d"], geometry.project(people["joints3d"], r["intrinsics"]), atol=1e-3
        )
        assert (people["box"][:, :2] <= people["box"][:, 2:]).all()


def test_each_example_depends_only_on_seed_split_and_index(data_dir):
    _, records = _records(data_dir, "test")
    config = builder_lib.SyntheticPeople.builder_configs["test"]
    pool_rng = np.random.default_rng([config.seed, 1, 1 << 30])
    pool = poses.sample_poses(pool_rng, config.pool_size).poses
    pool = pool[poses.subsample_poses(pool, min_distance=config.min_pose_distance)]
    again = builder_lib.ExampleMaker(pool=pool, config=config, split="test")(5)
    stored = records["test/000005"]
    np.testing.assert_array_equal(stored["people"]["joints2d"], again["people"]["joints2d"])
    np.testing.assert_array_equal(stored["people"]["visible"], again["people"]["visible"])
    other = builder_lib.ExampleMaker(pool=pool, config=config, split="test")(6)
    assert not np.array_equal(other["image"], again["image"])
    # The split is part of the seed: train example 5 is not test example 5 (same pool).
    train = builder_lib.ExampleMaker(pool=pool, config=config, split="train")(5)
    assert not np.array_equal(train["image"], again["image"])


def test_make_example_draws_from_min_to_max_people_both_included():
    """`people` = (min, max): images of 1 and of 2 people for (1, 2), none of 3."""
    pool = poses.sample_poses(np.random.default_rng(0), 20).poses
    config = synthetic.RenderConfig(height=48, width=64, max_overlap=1.0)
    counts = {
        len(
            builder_lib.make_example(
                np.random.default_rng(seed), pool, config, people=(1, 2), image_id="x"
            )["people"]["joints3d"]
        )
        for seed in range(12)
    }
    assert counts == {1, 2}


def test_a_pose_pool_smaller_than_the_most_people_per_image_is_refused(tmp_path):
    """Each image draws up to people[1] distinct poses: a smaller pool is refused at once."""
    config = builder_lib.SyntheticPeopleConfig(
        name="small_pool", height=32, width=32, num_train=2, num_test=1, people=(1, 3),
        pool_size=2,
    )  # fmt: skip
    builder = synthetic_people.SyntheticPeople(config=config, data_dir=tmp_path)
    with pytest.raises(ValueError, match="fewer than 3 people per image"):
        builder.download_and_prepare(download_config=_NO_NETWORK)


def test_corpus_poses_are_turned_to_face_the_camera_before_max_yaw(tmp_path, monkeypatch):
    """MoCap poses have any heading; they are turned to face the camera first, so that
    `max_yaw` = 0 shows every body from the front (hip line across the image, not deep)."""
    facing = poses.sample_poses(np.random.default_rng(0), 6).poses  # hips along +X
    sideways = geometry.rotate(facing, geometry.rotation_matrix(np.pi / 2, 0.0))
    right, left = skeleton.LCR17.index("right_hip"), skeleton.LCR17.index("left_hip")
    hips = sideways[:, left] - sideways[:, right]
    assert (np.abs(hips[:, 2]) > 3 * np.abs(hips[:, 0])).all()  # the corpus faces sideways
    monkeypatch.setattr(
        builder_lib.corpus_lib, "load_pose_corpus", lambda *args, **kwargs: (sideways, None)
    )
    config = builder_lib.SyntheticPeopleConfig(
        name="corpus", height=64, width=64, num_train=4, num_test=1, people=(1, 1),
        max_yaw=0.0, pose_corpus="sideways", min_pose_distance=1e-6,
    )  # fmt: skip
    builder = synthetic_people.SyntheticPeople(config=config, data_dir=tmp_path)
    for _, example in builder._generate_examples("train", 4):
        joints = example["people"]["joints3d"]
        hips = joints[:, left] - joints[:, right]
        assert (np.abs(hips[:, 0]) > 3 * np.abs(hips[:, 2])).all()


def test_a_reference_corpus_keeps_the_pool_away_from_its_poses(tmp_path, monkeypatch):
    """Sec. 4.1's CMU poses "in areas ... less populated by Human3.6M poses": pool poses
    within `min_pose_distance` of a reference pose are left out (here the reference is
    half the corpus), and a reference holding every pose leaves no pool."""
    corpus = poses.sample_poses(np.random.default_rng(0), 40).poses
    np.savez(tmp_path / "mocap.npz", poses3d=corpus, joint_set="lcr17")
    np.savez(tmp_path / "half.npz", poses3d=corpus[::2], joint_set="lcr17")
    pools = []

    class Recording(builder_lib.ExampleMaker):
        def __init__(self, *, pool, **kwargs):
            pools.append(len(pool))
            super().__init__(pool=pool, **kwargs)

    monkeypatch.setattr(builder_lib, "ExampleMaker", Recording)
    config = builder_lib.SyntheticPeopleConfig(
        name="reference", height=64, width=64, num_train=1, num_test=1, people=(1, 1),
        min_pose_distance=1e-3,
    )  # fmt: skip

    def pool_of(**options):
        builder = synthetic_people.SyntheticPeople(
            config=config, data_dir=tmp_path, corpus=str(tmp_path / "mocap.npz"), **options
        )
        next(builder._generate_examples("train", 1))
        return pools[-1]

    assert pool_of() == 40
    assert pool_of(reference_corpus=str(tmp_path / "half.npz")) == 20
    with pytest.raises(ValueError, match="the pose pool has 0 poses"):
        pool_of(reference_corpus=str(tmp_path / "mocap.npz"))


@pytest.mark.slow
def test_worker_processes_write_the_same_records(data_dir, tmp_path):
    builder = synthetic_people.SyntheticPeople(
        config="test", data_dir=tmp_path, file_format="array_record", num_workers=2
    )
    builder.MIN_PARALLEL_EXAMPLES = 0
    builder.download_and_prepare(download_config=_NO_NETWORK)
    for split in ("train", "test"):
        serial, parallel = _records(data_dir, split)[1], _records(tmp_path, split)[1]
        assert serial.keys() == parallel.keys()
        for key, record in serial.items():
            np.testing.assert_array_equal(record["image"], parallel[key]["image"])
            np.testing.assert_array_equal(
                record["people"]["joints3d"], parallel[key]["people"]["joints3d"]
            )


def _build_command(data_dir) -> tuple[list[str], pathlib.Path]:
    root = pathlib.Path(__file__).resolve().parents[2]
    command = [sys.executable, str(root / "experiments" / "build_dataset.py"),
               "--dataset=synthetic_people/tiny", f"--data_dir={data_dir}"]  # fmt: skip
    return command, root


def _wait_for_workers(pid: int, count: int, poll: float) -> list[int]:
    deadline = time.monotonic() + 120
    while len(workers := spawned_children(pid)) < count and time.monotonic() < deadline:
        time.sleep(poll)
    assert len(workers) >= count, "the build spawned no rendering workers"
    return workers


@pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_rendering_workers_end_with_a_killed_build(tmp_path):
    command, root = _build_command(tmp_path)
    build = subprocess.Popen(command, cwd=root, stderr=subprocess.DEVNULL)
    workers = _wait_for_workers(build.pid, 2, poll=0.2)
    build.kill()  # SIGKILL: no clean-up runs in the build
    build.wait()
    deadline = time.monotonic() + 30
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [w for w in workers if _running(w)]  # before, they waited for work forever


@pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("stop", ["ctrl_c", "kill"])
def test_ctrl_c_or_a_kill_while_the_workers_start_ends_in_one_line(tmp_path, stop):
    """A terminal's Ctrl-C reaches the whole process group, workers included; while they
    start (seconds of imports) each printed a KeyboardInterrupt traceback. A kill of the
    build alone cut the start-up data of the worker it was writing, which then printed
    an UnpicklingError."""
    command, root = _build_command(tmp_path)
    with sigint_as_in_a_terminal():
        build = subprocess.Popen(
            command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
    _wait_for_workers(build.pid, 1, poll=0.01)
    if stop == "kill":
        time.sleep(1.0)  # the build waits for the first worker's imports to write its data
        os.kill(build.pid, signal.SIGTERM)
    else:
        os.killpg(build.pid, signal.SIGINT)
    _, stderr = build.communicate(timeout=120)
    assert build.returncode == (143 if stop == "kill" else 130)
    assert "Traceback" not in stderr and "Error" not in stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted"


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (an orphan's exit may wait to be
    reaped by whatever adopted it)."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
