import importlib.util
import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from data_builders.human36m import human36m_dataset_builder as h36m
from lcrnet_jax import skeleton
from tests import fake_datasets as fake

TINY = h36m.Human36mConfig(
    name="tiny", train_subjects=(1,), test_subjects=(11,), train_frame_step=64, test_frame_step=64
)
FROM_32 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]


def _build(data_dir, manual_dir, config=TINY):
    return fake.build(h36m.Human36m, config, data_dir, manual_dir)


@pytest.fixture(scope="module")
def mono(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m")
    written = fake.write_human36m(root / "manual", layout="mono")
    return root, written, _build(root / "data", root / "manual")


def test_official_cdf_layout_frames_metadata_and_joints(mono, caplog):
    root, written, source = mono
    assert source["train"].dataset_info.metadata["joint_set"] == "h36m17"
    folder = root / "manual" / "S11" / "Images" / f"Walking 1.{fake.H36M_CAMERAS[1]}"
    frame = str(folder / "frame_000065.jpg")
    assert fake.skipped(root / "data", "human36m/tiny", "test") == (1, [frame])
    assert fake.skipped(root / "data", "human36m/tiny", "train") == (0, [])
    train, test = fake.records(source["train"]), fake.records(source["test"])
    # S1: 3 sequences x 4 cameras x 3 frames; S11 camera 2: 3 sequences x 3 frames - 1 corrupt.
    assert len(train) == 36 and len(test) == 8
    assert "S11/Walking 1.55011271/000064" not in test
    assert {int(r["camera"]) for r in test.values()} == {2}

    cam = fake.H36M_CAMERAS[1]
    record = train[f"S1/TakingPhoto.{cam}/000064"]
    assert record["action"].decode() == "Photo" and int(record["trial"]) == 1
    assert (int(record["subject"]), int(record["camera"]), int(record["frame"])) == (1, 2, 64)
    r, t = written["cameras"][(1, cam)]
    truth_cam = (written["world"][(1, "TakingPhoto")][64] @ r.T + t)[FROM_32] / 1000
    np.testing.assert_allclose(record["people"]["joints3d"][0], truth_cam, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(record["intrinsics"], written["intrinsics"][cam], rtol=1e-6)
    np.testing.assert_allclose(record["camera_rotation"], r, atol=1e-6)
    np.testing.assert_allclose(record["camera_translation"], t / 1000, rtol=1e-5)
    k = written["intrinsics"][cam]
    projected = k[:2] * truth_cam[:, :2] / truth_cam[:, 2:] + k[2:]
    # S1 has D2_Positions files (shifted from the projection); S11 is projected.
    np.testing.assert_allclose(
        record["people"]["joints2d"][0], projected + fake.H36M_D2_SHIFT, atol=1e-3
    )
    s11 = test[f"S11/Directions 1.{cam}/000128"]
    r11, t11 = written["cameras"][(11, cam)]
    c11 = (written["world"][(11, "Directions 1")][128] @ r11.T + t11)[FROM_32] / 1000
    np.testing.assert_allclose(
        s11["people"]["joints2d"][0], k[:2] * c11[:, :2] / c11[:, 2:] + k[2:], atol=1e-3
    )
    h, w = fake.H36M_SIZE
    x, y = s11["people"]["joints2d"][0].T
    np.testing.assert_array_equal(
        s11["people"]["visible"][0], (x >= 0) & (x < w) & (y >= 0) & (y < h)
    )
    trials = {r["image_id"].decode().split(".")[0]: int(r["trial"]) for r in train.values()}
    assert trials["S1/Directions 1"] == 1 and trials["S1/Directions"] == 2

    lcr, _ = skeleton.convert(record["people"]["joints3d"], None, "h36m17", "lcr13")
    np.testing.assert_allclose(lcr[0, skeleton.LCR13.index("right_ankle")], truth_cam[3], rtol=1e-4)


def test_npz_layout_with_camera_file_gives_the_same_poses(mono, tmp_path):
    _, _, reference = mono
    fake.write_human36m(tmp_path / "manual", layout="npz")
    source = _build(tmp_path / "data", tmp_path / "manual")
    ref_train = fake.records(reference["train"])
    train = fake.records(source["train"])
    # npz keys use VideoPose3D's names ("Photo"); frames are found under "TakingPhoto".
    assert len(train) == 36
    key = f"S1/Directions.{fake.H36M_CAMERAS[3]}/000128"
    np.testing.assert_allclose(
        train[key]["people"]["joints3d"], ref_train[key]["people"]["joints3d"], atol=1e-5
    )
    photo = next(k for k in train if k.startswith("S1/Photo."))
    assert train[photo]["action"].decode() == "Photo"
    # S1's 2D views (data_2d_h36m_gt.npz, one per camera) are the mono layout's D2 CDFs.
    for cam in fake.H36M_CAMERAS:
        key = f"S1/Directions 1.{cam}/000064"
        np.testing.assert_allclose(
            train[key]["people"]["joints2d"], ref_train[key]["people"]["joints2d"], atol=1e-3
        )


def test_sequence_names_trials_and_protocols():
    assert h36m.split_sequence_name("WalkingDog 1") == ("WalkDog", 1)
    assert h36m.trials(1, ["Eating 2", "Eating", "Sitting 1", "Sitting 2", "TakingPhoto"]) == {
        "Eating 2": 1,
        "Eating": 2,
        "Sitting 1": 1,
        "Sitting 2": 2,
        "TakingPhoto": 1,
    }
    # P3's test subjects: Human3.6M's own sub-actions where the naming rule differs.
    s11 = ["Phoning 2", "Phoning 3", "SittingDown", "SittingDown 1", "Smoking 2", "Smoking"]
    assert h36m.trials(11, s11) == {
        "Phoning 3": 1,
        "Phoning 2": 2,
        "SittingDown": 1,
        "SittingDown 1": 2,
        "Smoking 2": 1,
        "Smoking": 2,
    }
    assert h36m.trials(9, ["SittingDown 1", "SittingDown", "Discussion 2", "Discussion 1"]) == {
        "SittingDown": 1,
        "SittingDown 1": 2,
        "Discussion 1": 1,
        "Discussion 2": 2,
    }
    assert h36m.trials(5, ["TakingPhoto 2", "TakingPhoto"]) == {
        "TakingPhoto": 1,
        "TakingPhoto 2": 2,
    }
    p1, p2, p3 = (h36m.Human36m.builder_configs[n] for n in ("p1", "p2", "p3"))
    assert (p1.train_subjects, p1.test_subjects, p1.test_cameras, p1.test_frame_step) == (
        (1, 5, 6, 7, 8, 9),
        (11,),
        (2,),
        64,
    )
    assert (p2.train_subjects, p2.test_subjects, p2.test_cameras, p2.test_frame_step) == (
        (1, 5, 6, 7, 8),
        (9, 11),
        None,
        5,
    )
    assert (p3.test_cameras, p3.test_trials, p3.test_subjects) == ((4,), (1,), (9, 11))


def test_missing_subjects_videos_without_reader_and_missing_folder(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="missing or empty.*S1, S5, S6, S7, S8, S9, S11"):
        _build(tmp_path / "data", tmp_path / "absent", h36m.P1)
    manual = tmp_path / "manual"
    fake.write_human36m(manual, layout="world")
    for s in (5, 6, 7, 8, 9):
        (manual / f"S{s}").mkdir()
    with pytest.raises(FileNotFoundError, match="no poses for S5, S6, S7, S8, S9 in"):
        _build(tmp_path / "data", manual, h36m.P1)
    for path in sorted((manual / "S1" / "Images").iterdir()):
        for frame in path.iterdir():
            frame.unlink()
        path.rmdir()
    (manual / "S1" / "Videos").mkdir()
    (manual / "S1" / "Videos" / f"Directions 1.{fake.H36M_CAMERAS[0]}.mp4").write_bytes(b"")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "av" else real_find_spec(n, *a)
    )
    with pytest.raises(FileNotFoundError, match="PyAV is not installed: `pip install av`"):
        _build(tmp_path / "data", manual)


def test_a_cdf_cut_near_its_end_is_named_corrupt_or_read_whole(tmp_path):
    """A partly downloaded pose file: a ValueError naming it (some cuts made cdflib raise
    OverflowError), unless the cut spared every pose."""
    whole = tmp_path / "whole.cdf"
    fake._write_cdf(whole, np.random.default_rng(0).random((50, 32, 3), np.float32) * 1000)
    expected = h36m._read_cdf(whole, 3)
    data = whole.read_bytes()
    cut = tmp_path / "cut.cdf"
    named = 0
    for size in range(len(data) - 400, len(data), 7):
        cut.write_bytes(data[:size])
        try:
            np.testing.assert_array_equal(h36m._read_cdf(cut, 3), expected)
        except ValueError as error:
            assert str(error).startswith(f"corrupt Human3.6M CDF {cut}")
            named += 1
    assert named > 0


def test_corrupt_cdf_is_skipped_and_counted(tmp_path, caplog):
    manual = tmp_path / "manual"
    fake.write_human36m(manual, layout="world")
    (manual / "S1" / "MyPoseFeatures" / "D3_Positions" / "Directions.cdf").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING):
        source = _build(tmp_path / "data", manual)
    assert "Directions.cdf: corrupt Human3.6M CDF" in caplog.text
    assert "skipped 1 corrupt or missing file(s)" in caplog.text
    assert len(source["train"]) == 24  # the two other S1 sequences
    cdf = str(manual / "S1" / "MyPoseFeatures" / "D3_Positions" / "Directions.cdf")
    assert fake.skipped(tmp_path / "data", "human36m/tiny", "train") == (1, [cdf])
    assert fake.skipped(tmp_path / "data", "human36m/tiny", "test")[0] == 1  # the S11 frame


def test_an_unreadable_sequence_leaves_its_siblings_trial(tmp_path):
    """ "Directions 1" unreadable: "Directions" stays trial 2 (it does not move up)."""
    manual = tmp_path / "manual"
    fake.write_human36m(manual, layout="world")
    (manual / "S1" / "MyPoseFeatures" / "D3_Positions" / "Directions 1.cdf").write_bytes(b"junk")
    train = fake.records(_build(tmp_path / "data", manual)["train"])
    directions = [r for name, r in train.items() if name.startswith("S1/Directions.")]
    assert len(directions) == 12 and {int(r["trial"]) for r in directions} == {2}


def test_the_all_sequences_are_not_an_action(tmp_path):
    """Human3.6M's "_ALL" recordings (sub-actions of its action 1, not one of the 15
    actions) are left out, poses and frames there or not."""
    manual = tmp_path / "manual"
    fake.write_human36m(manual, layout="world")
    poses = manual / "S1" / "MyPoseFeatures" / "D3_Positions"
    shutil.copy(poses / "Directions.cdf", poses / "_ALL 1.cdf")
    for camera in fake.H36M_CAMERAS:
        images = manual / "S1" / "Images"
        shutil.copytree(images / f"Directions.{camera}", images / f"_ALL 1.{camera}")
    train = fake.records(_build(tmp_path / "data", manual)["train"])
    assert len(train) == 36 and {r["action"].decode() for r in train.values()} == {
        "Directions",
        "Photo",
    }


def test_the_last_frame_is_sampled_when_its_number_is_a_multiple_of_the_step(tmp_path):
    """Frames f = 0, step, 2 step, ... up to the sequence's last (H36M_FRAMES - 1 = 129 =
    3 x 43): every one that the video has, the last included."""
    manual = tmp_path / "manual"
    fake.write_human36m(manual, layout="world")
    step = 43
    assert (fake.H36M_FRAMES - 1) % step == 0
    camera = fake.H36M_CAMERAS[1]
    folder = manual / "S11" / "Images" / f"Directions 1.{camera}"
    for f in range(0, fake.H36M_FRAMES, step):  # ffmpeg numbers frames from 1
        fake.write_image(folder / f"frame_{f + 1:06d}.jpg", *fake.H36M_SIZE, seed=f)
    config = h36m.Human36mConfig(
        name="step43", train_subjects=(1,), test_subjects=(11,), train_frame_step=1000,
        test_frame_step=step,
    )  # fmt: skip
    test = fake.records(_build(tmp_path / "data", manual, config)["test"])
    frames = {int(r["frame"]) for k, r in test.items() if k.startswith("S11/Directions 1.")}
    assert frames == {0, 43, 86, 129}


def test_a_protocols_test_trials_keep_only_those_sub_actions(mono, tmp_path):
    """P3 tests on trial 1 only: of S11's "Directions 1", "Walking 1" and "Walking", the
    unnumbered "Walking" is trial 2 (module docstring's rule) and is left out."""
    root, _, _ = mono
    config = h36m.Human36mConfig(
        name="trial1", train_subjects=(1,), test_subjects=(11,), test_trials=(1,),
        train_frame_step=1000, test_frame_step=64,
    )  # fmt: skip
    test = fake.records(_build(tmp_path / "data", root / "manual", config)["test"])
    sequences = {name.split(".")[0] for name in test}
    assert sequences == {"S11/Directions 1", "S11/Walking 1"}
    assert {int(r["trial"]) for r in test.values()} == {1}


def test_frames_numbered_from_0_are_read_as_such(tmp_path):
    """A frames folder holding frame_000000.jpg numbers frames from 0: frame f is
    frame_{f:06d}.jpg there (from 1 elsewhere: frame_{f + 1:06d}.jpg)."""
    manual = tmp_path / "manual"
    fake.write_human36m(manual, layout="world")
    folder = manual / "S1" / "Images" / f"Directions 1.{fake.H36M_CAMERAS[0]}"
    for f in reversed(fake.H36M_SAMPLED):  # renamed from the last: no name is overwritten
        (folder / f"frame_{f + 1:06d}.jpg").rename(folder / f"frame_{f:06d}.jpg")
    source = _build(tmp_path / "data", manual)
    assert fake.skipped(tmp_path / "data", "human36m/tiny", "train") == (0, [])
    train = fake.records(source["train"])
    for f in fake.H36M_SAMPLED:
        stored = train[f"S1/Directions 1.{fake.H36M_CAMERAS[0]}/{f:06d}"]["image"]
        expected = np.asarray(Image.open(folder / f"frame_{f:06d}.jpg").convert("RGB"))
        np.testing.assert_array_equal(stored, expected)


def test_a_2d_cdf_with_other_frames_than_its_3d_cdf_is_skipped(tmp_path, caplog):
    """D2_Positions and D3_Positions_mono CDFs of a sequence must hold the same frames."""
    manual = tmp_path / "manual"
    fake.write_human36m(manual, layout="mono")
    cam = fake.H36M_CAMERAS[1]
    name = f"Directions 1.{cam}.cdf"
    d2 = manual / "S1" / "MyPoseFeatures" / "D2_Positions" / name
    assert len(h36m._read_cdf(d2, 2)) == fake.H36M_FRAMES
    d2.unlink()
    fake._write_cdf(d2, np.zeros((100, 32, 2)))
    with caplog.at_level(logging.WARNING):
        train = fake.records(_build(tmp_path / "data", manual)["train"])
    assert f"has 100 frames, 3D {fake.H36M_FRAMES}" in caplog.text
    mono = str(manual / "S1" / "MyPoseFeatures" / "D3_Positions_mono" / name)
    assert fake.skipped(tmp_path / "data", "human36m/tiny", "train") == (1, [mono])
    assert len(train) == 36 - 3 and not any(k.startswith(f"S1/Directions 1.{cam}") for k in train)


def test_the_built_in_intrinsics_are_human36ms_calibration(tmp_path):
    """Without camera-parameters.json, fx, fy, cx, cy come from the built-in table: the
    official calibration, as VideoPose3D's h36m_dataset.py copies it (focal_length,
    center per camera id)."""
    official = {  # camera id: (focal_length, center)
        "54138969": ([1145.04943847656, 1143.78112792968], [512.54150390625, 515.4514770507812]),
        "55011271": ([1149.67565917968, 1147.59167480468], [508.8486328125, 508.0649108886719]),
        "58860488": ([1149.14074707031, 1148.79895019531], [519.8158569335938, 501.4026489257]),
        "60457274": ([1145.5113525390625, 1144.77392578125], [514.9682006835938, 501.882019042968]),
    }  # fmt: skip
    files = h36m._PoseFiles(tmp_path)  # no camera-parameters.json there
    for cam, (focal, center) in official.items():
        intrinsics, _, _ = files._camera(1, cam)
        np.testing.assert_allclose(intrinsics, [*focal, *center], atol=1e-3, rtol=0)


def test_a_frames_folder_wins_over_a_video_of_the_same_sequence_and_camera(tmp_path):
    """Frames come from S<n>/Images/<sequence>.<camera id>/ when there, else the video."""
    manual = tmp_path / "manual"
    fake.write_human36m(manual, layout="world")
    video = manual / "S1" / "Videos" / f"Directions 1.{fake.H36M_CAMERAS[0]}.mp4"
    video.parent.mkdir()
    video.write_bytes(b"not a video")
    source = _build(tmp_path / "data", manual)
    assert fake.skipped(tmp_path / "data", "human36m/tiny", "train") == (0, [])
    train = fake.records(source["train"])
    assert len(train) == 36 and f"S1/Directions 1.{fake.H36M_CAMERAS[0]}/000064" in train
