import errno
import fcntl
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from absl.testing import flagsaver
from PIL import Image

from data_builders.synthetic_people.synthetic_people_dataset_builder import SyntheticPeople
from experiments import build_dataset
from lcrnet_jax.data import pipeline, poses, records
from tests.test_records import damage_test_shard

_NAME = "synthetic_people/test"


def _image_ids(data_dir):
    source = pipeline.open_source(_NAME, split="test", data_dir=str(data_dir))
    return [records.read_record(source, i)["image_id"] for i in range(len(source))]


def test_overwrite_rebuilds_a_damaged_dataset(tmp_path):
    build_dataset.build(_NAME, data_dir=str(tmp_path))
    expected = _image_ids(tmp_path)
    damage_test_shard(tmp_path)
    with pytest.raises(records.DamagedRecordError):
        _image_ids(tmp_path)
    build_dataset.build(_NAME, data_dir=str(tmp_path), overwrite=True)
    assert _image_ids(tmp_path) == expected
    assert [p.name for p in (tmp_path / _NAME).iterdir()] == ["1.1.0"]  # nothing set aside


def test_a_build_in_place_made_with_other_options_is_refused(tmp_path):
    build_dataset.build(_NAME, data_dir=str(tmp_path))
    # A MoCap corpus of 40 standing people, each a little different.
    rng = np.random.default_rng(0)
    standing = np.asarray(poses.sample_poses(rng, 1).poses[0], np.float32)
    corpus = tmp_path / "mocap.npz"
    np.savez(corpus, poses3d=standing + rng.normal(0, 0.1, (40, 17, 3)), joint_set="lcr17")
    with pytest.raises(ValueError, match="built with pose_corpus=none.*--overwrite"):
        build_dataset.build(_NAME, data_dir=str(tmp_path), corpus=str(corpus))
    build_dataset.build(_NAME, data_dir=str(tmp_path), corpus=str(corpus), overwrite=True)
    metadata = json.loads((tmp_path / _NAME / "1.1.0" / "metadata.json").read_text())
    assert metadata["pose_corpus"] == str(corpus) and metadata["background_dir"] == ""
    build_dataset.build(_NAME, data_dir=str(tmp_path), corpus=str(corpus))  # the same: kept
    with pytest.raises(ValueError, match=f"built with pose_corpus={corpus}"):
        build_dataset.build(_NAME, data_dir=str(tmp_path))
    assert metadata["reference_corpus"] == ""
    path = tmp_path / _NAME / "1.1.0" / "metadata.json"
    path.write_text(json.dumps({k: v for k, v in metadata.items() if k != "reference_corpus"}))
    build_dataset.build(_NAME, data_dir=str(tmp_path), corpus=str(corpus))  # from before it
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        build_dataset.build(_NAME, data_dir=str(tmp_path), reference_corpus="missing.npz")
    reference = tmp_path / "reference.npz"
    np.savez(reference, poses3d=np.load(corpus)["poses3d"][:20], joint_set="lcr17")
    build_dataset.build(_NAME, data_dir=str(tmp_path), corpus=str(corpus),
                        reference_corpus=str(reference), overwrite=True)  # fmt: skip
    metadata = json.loads((tmp_path / _NAME / "1.1.0" / "metadata.json").read_text())
    assert metadata["reference_corpus"] == str(reference)
    with pytest.raises(ValueError, match=f"reference_corpus={reference}, not"):
        build_dataset.build(_NAME, data_dir=str(tmp_path), corpus=str(corpus))


def test_a_build_by_an_older_version_without_recorded_options(tmp_path, caplog):
    """Its metadata does not say what it was built from: refused when options are given
    (before: "built with background_dir=none", false for a build with backgrounds),
    reused with a warning when none are (before: reused without a word)."""
    build_dataset.build(_NAME, data_dir=str(tmp_path))
    path = tmp_path / _NAME / "1.1.0" / "metadata.json"
    metadata = json.loads(path.read_text())
    for key in ("pose_corpus", "background_dir", "reference_corpus"):
        del metadata[key]
    path.write_text(json.dumps(metadata))
    expected = _image_ids(tmp_path)
    backgrounds = tmp_path / "backgrounds"
    backgrounds.mkdir()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(backgrounds / "grey.png")
    with pytest.raises(ValueError, match="does not record the pose corpus.*--overwrite"):
        build_dataset.build(_NAME, data_dir=str(tmp_path), background_dir=str(backgrounds))
    with caplog.at_level("WARNING"):
        build_dataset.build(_NAME, data_dir=str(tmp_path))
    assert "reused as built with pose_corpus=none, background_dir=none" in caplog.text
    assert _image_ids(tmp_path) == expected and json.loads(path.read_text()) == metadata


def test_the_launcher_passes_its_builder_options(monkeypatch):
    calls = []

    def build(dataset, **kwargs):
        calls.append((dataset, kwargs))
        raise SystemExit(0)

    monkeypatch.setattr(build_dataset, "build", build)
    flags = dict(dataset=_NAME, corpus="mocap.npz", background_dir="photos",
                 reference_corpus="human36m")  # fmt: skip
    parsed = dict(flags, data_dir="", manual_dir="", overwrite="false")
    with flagsaver.as_parsed(**parsed), pytest.raises(SystemExit):
        build_dataset.main([])
    options = {k: v for k, v in calls[0][1].items() if k in flags}
    assert options == {k: v for k, v in flags.items() if k != "dataset"}


def test_a_bad_option_leaves_the_built_dataset_alone(tmp_path):
    build_dataset.build(_NAME, data_dir=str(tmp_path))
    expected = _image_ids(tmp_path)
    missing = tmp_path / "no_backgrounds"
    for overwrite in (False, True):
        with pytest.raises(FileNotFoundError, match="no_backgrounds") as error:
            build_dataset.build(
                _NAME, data_dir=str(tmp_path), background_dir=str(missing), overwrite=overwrite
            )
        assert "damaged" not in str(error.value)
        assert [p.name for p in (tmp_path / _NAME).iterdir()] == ["1.1.0"]
        assert _image_ids(tmp_path) == expected


def test_a_rebuild_that_fills_the_disk_keeps_the_previous_build(tmp_path, monkeypatch):
    build_dataset.build(_NAME, data_dir=str(tmp_path))
    expected = _image_ids(tmp_path)

    # What array_record raises on a full disk (TFDS then removes its partial files).
    def fill_the_disk(builder, **kwargs):
        raise RuntimeError(
            'Failed to finalize writing of split "train": write() failed: No space left on '
            "device; writing ..."
        )

    monkeypatch.setattr(SyntheticPeople, "download_and_prepare", fill_the_disk)
    with pytest.raises(OSError) as caught:
        build_dataset.build(_NAME, data_dir=str(tmp_path), overwrite=True)
    assert caught.value.errno == errno.ENOSPC
    assert "(the partial build is removed; the previous build is kept)" in str(caught.value)
    assert _image_ids(tmp_path) == expected
    assert [p.name for p in (tmp_path / _NAME).iterdir()] == ["1.1.0"]


def test_a_killed_build_leaves_nothing_behind_for_the_next(tmp_path):
    build_dataset.build(_NAME, data_dir=str(tmp_path))
    expected = _image_ids(tmp_path)
    version = tmp_path / _NAME / "1.1.0"
    inode = next(version.glob("*-test.array_record-*")).stat().st_ino
    version.rename(version.with_name(".1.1.0.previous"))  # as a killed --overwrite leaves it
    (tmp_path / _NAME / "incomplete.AB12CD_1.1.0").mkdir()  # TFDS's partial folder
    build_dataset.build(_NAME, data_dir=str(tmp_path))
    assert next(version.glob("*-test.array_record-*")).stat().st_ino == inode  # not rebuilt
    assert _image_ids(tmp_path) == expected
    assert [p.name for p in (tmp_path / _NAME).iterdir()] == ["1.1.0"]


def test_a_second_build_of_a_dataset_being_built_is_refused(tmp_path):
    folder = tmp_path / _NAME
    folder.mkdir(parents=True)
    other = os.open(folder, os.O_RDONLY)  # another build's lock, as flock sees it
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OSError, match=f"{_NAME} is being built in {tmp_path} by another"):
            build_dataset.build(_NAME, data_dir=str(tmp_path))
    finally:
        os.close(other)
    assert os.listdir(folder) == []  # nothing removed nor written


def test_a_damaged_dataset_description_is_named_and_overwrite_repairs_it(tmp_path):
    build_dataset.build(_NAME, data_dir=str(tmp_path))
    expected = _image_ids(tmp_path)
    info = tmp_path / _NAME / "1.1.0" / "dataset_info.json"
    info.write_text(info.read_text()[:300])  # cut short
    with pytest.raises(ValueError, match=r"cannot be read \(ParseError: .*--overwrite$"):
        _image_ids(tmp_path)
    # Before, the build said it was built and reading failed again: no way out.
    with pytest.raises(ValueError, match=r"1.1.0 cannot be read .*rebuild it with --overwrite"):
        build_dataset.build(_NAME, data_dir=str(tmp_path))
    build_dataset.build(_NAME, data_dir=str(tmp_path), overwrite=True)
    assert _image_ids(tmp_path) == expected


def test_a_build_into_a_log_file_writes_only_what_it_built(tmp_path):
    """TFDS's bars (cursor moves, shuffling paths) and its "Downloading and preparing
    dataset Unknown size" flooded a log file: the build's own lines are left."""
    root = pathlib.Path(__file__).resolve().parent.parent
    command = [sys.executable, str(root / "experiments" / "build_dataset.py"),
               f"--dataset={_NAME}", f"--data_dir={tmp_path}"]  # fmt: skip
    run = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == f"{_NAME}/1.1.0 is in {tmp_path / _NAME / '1.1.0'}"
    assert "\x1b[A" not in run.stderr and "Generating" not in run.stderr

    root = pathlib.Path(__file__).resolve().parent.parent
    command = [sys.executable, str(root / "experiments" / "build_dataset.py"),
               "--dataset=synthetic_people/tiny", f"--data_dir={tmp_path / 'data'}"]  # fmt: skip
    process = subprocess.Popen(command, cwd=root, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / "data" / "synthetic_people" / "tiny"
    deadline = time.monotonic() + 120
    while not list(partial.glob("incomplete.*")) and time.monotonic() < deadline:
        time.sleep(0.2)  # the build has started writing
    time.sleep(1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr  # SIGTERM: 128 + 15
    assert "error: interrupted" in stderr.splitlines()
    assert not (tmp_path / "data").exists()  # before: TFDS's partial folder stayed


def test_the_default_data_dir_is_where_training_reads():
    """Without --data_dir a dataset is built where TFDS (and so training, whose
    config.data.data_dir "" is TFDS's default) looks: ~/tensorflow_datasets."""
    default = pathlib.Path(build_dataset.DEFAULT_DATA_DIR).expanduser()
    assert default == pathlib.Path.home() / "tensorflow_datasets"
