import logging

import numpy as np
import pytest

from data_builders.cmu_mocap import cmu_mocap_dataset_builder as cmu
from lcrnet_jax import skeleton
from lcrnet_jax.data import mocap
from tests import fake_datasets as fake

TINY = cmu.CmuMocapConfig(name="tiny", frame_step=4)


def _build(data_dir, manual_dir, config=TINY):
    return fake.build(cmu.CmuMocap, config, data_dir, manual_dir)


def test_builds_torso_centred_poses_from_amc_and_bvh(tmp_path, caplog):
    manual = tmp_path / "manual"
    motions = fake.write_cmu_mocap(manual, num_frames=12)
    (manual / "bvh" / "02_01.bvh").write_text("HIERARCHY\nROOT Hips\n{\n")
    fake.write_bvh(manual / "bvh" / "01_01.bvh", fake.mocap_motion(20, 3))  # the AMC's take
    with caplog.at_level(logging.WARNING):
        source = _build(tmp_path / "data", manual)["train"]
    assert "skipped 1 corrupt or missing file(s)" in caplog.text and "02_01.bvh" in caplog.text
    assert "1 take(s) given both as AMC and BVH are read from the AMC only" in caplog.text
    assert source.dataset_info.metadata["joint_set"] == "lcr17"
    corrupt = str(manual / "bvh" / "02_01.bvh")
    assert fake.skipped(tmp_path / "data", "cmu_mocap/tiny", "train") == (1, [corrupt])
    records = [source[i] for i in range(len(source))]
    by_sequence = {}
    for r in records:
        by_sequence.setdefault(r["sequence_id"].decode(), {})[int(r["frame"])] = r
    # 12 AMC frames and 15 BVH frames, every 4th.
    assert sorted(by_sequence["01_01"]) == [0, 4, 8] and sorted(by_sequence["01_02"]) == [
        0,
        4,
        8,
        12,
    ]
    assert {int(r["subject"]) for r in records} == {1}

    poses = mocap.read_asf_amc(manual / "subjects/01/01.asf", manual / "subjects/01/01_01.amc")
    torso = list(skeleton.LCR17.torso)
    record = by_sequence["01_01"][8]
    np.testing.assert_allclose(record["joints3d"], poses[8] - poses[8, torso].mean(0), atol=1e-5)
    np.testing.assert_allclose(record["torso"], poses[8, torso].mean(0), atol=1e-5)
    np.testing.assert_allclose(record["joints3d"][torso].mean(0), 0, atol=1e-5)
    # Frame numbers count captured frames: the BVH's reference T-pose is not frame 0.
    fake.write_bvh(tmp_path / "captured.bvh", motions["01_02"])
    bvh = mocap.read_bvh(tmp_path / "captured.bvh")
    np.testing.assert_allclose(
        by_sequence["01_02"][0]["joints3d"], bvh[0] - bvh[0, torso].mean(0), atol=1e-5
    )
    np.testing.assert_allclose(
        by_sequence["01_02"][12]["joints3d"], bvh[12] - bvh[12, torso].mean(0), atol=1e-5
    )
    lcr13, _ = skeleton.convert(record["joints3d"], None, "lcr17", "lcr13")
    np.testing.assert_array_equal(lcr13, record["joints3d"][:13])


def test_missing_manual_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing or empty.*\*\*/\*\.amc \| \*\*/\*\.bvh"):
        _build(tmp_path / "data", tmp_path / "absent")
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"lacks \*\*/\*\.amc \| \*\*/\*\.bvh"):
        _build(tmp_path / "data", tmp_path / "manual")


def test_an_amc_takes_its_subjects_asf_else_the_folders_only_one(tmp_path):
    """CMU names takes `<subject>_<take>.amc` beside `<subject>.asf`; a folder holding
    several subjects' skeletons gives each take its own, one with a single .asf that one,
    and one with several but none of the subject's none."""
    (tmp_path / "all").mkdir()
    for name in ("01.asf", "02.asf", "01_03.amc", "02_01.amc", "07_01.amc"):
        (tmp_path / "all" / name).write_text("")
    assert cmu._asf_for(tmp_path / "all" / "01_03.amc") == tmp_path / "all" / "01.asf"
    assert cmu._asf_for(tmp_path / "all" / "02_01.amc") == tmp_path / "all" / "02.asf"
    assert cmu._asf_for(tmp_path / "all" / "07_01.amc") is None
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "skeleton.asf").write_text("")
    assert cmu._asf_for(tmp_path / "one" / "07_01.amc") == tmp_path / "one" / "skeleton.asf"
