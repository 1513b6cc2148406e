import json

import numpy as np
import pytest

from data_builders.human36m import human36m_dataset_builder as h36m
from data_builders.mpii_human_pose import mpii_human_pose_dataset_builder as mpii
from data_builders.mupots3d import mupots3d_dataset_builder as mupots
from lcrnet_jax import evaluation, ppi, protocols, skeleton
from lcrnet_jax.data import pipeline
from tests import fake_datasets as fake


@pytest.fixture(scope="module")
def h36m_test(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m")
    fake.write_human36m(root / "manual", layout="mono")
    config = h36m.Human36mConfig(
        name="tiny", train_subjects=(1,), test_subjects=(11,), train_frame_step=64,
        test_frame_step=64,
    )  # fmt: skip
    return fake.build(h36m.Human36m, config, root / "data", root / "manual")["test"]


@pytest.fixture(scope="module")
def mpii_validation(tmp_path_factory):
    root = tmp_path_factory.mktemp("mpii")
    fake.write_mpii(root / "manual")
    config = mpii.MpiiConfig(name="tiny", val_images=2, seed=0)
    return fake.build(mpii.MpiiHumanPose, config, root / "data", root / "manual")["validation"]


@pytest.fixture(scope="module")
def mupots_test(tmp_path_factory):
    root = tmp_path_factory.mktemp("mupots")
    fake.write_mupots(root / "manual")
    config = mupots.MupotsConfig(name="tiny", sequences=(1, 2))
    return fake.build(mupots.Mupots3d, config, root / "data", root / "manual")["test"]


def no_2d(poses3d):
    return np.zeros(poses3d.shape[:-1] + (2,))


def test_human36m_scores_the_top_person_of_each_frame(h36m_test):
    protocol = protocols.for_dataset("human36m/p1", h36m_test, joint_set="lcr17")
    assert protocol.name == "human36m/p1"
    for i in range(len(h36m_test)):
        gt, _ = skeleton.convert(h36m_test[i]["people"]["joints3d"], None, "h36m17", "lcr17")
        # A translated copy of the truth (torso-centring removes it) beats a worse pose.
        protocol.add("ppi", i, no_2d(gt[:1]).repeat(2, 0), [gt[0] + 1.0, gt[0] * 1.3], [0.9, 0.1])
        protocol.add("nms", i, no_2d(gt[:1]), gt[:1] * 1.1, [0.9])
    protocol.add("empty", 0, np.zeros((0, 17, 2)), np.zeros((0, 17, 3)), np.zeros(0))
    summary = protocol.summary()
    assert summary["ppi"]["num_poses"] == len(h36m_test) and summary["ppi"]["missed"] == 0
    assert summary["ppi"]["abs_mm"] < 0.01 and summary["ppi"]["align_mm"] < 0.01
    # 10% too large: an absolute error, none after the similarity alignment.
    assert summary["nms"]["abs_mm"] > 10 and summary["nms"]["align_mm"] < 0.01
    # "empty" saw every frame (missing ones count as empty) and found nobody.
    assert summary["empty"]["missed"] == len(h36m_test) and summary["empty"]["num_poses"] == 0
    assert np.isnan(summary["empty"]["abs_mm"])
    assert json.loads(json.dumps(summary))["ppi"]["num_poses"] == len(h36m_test)
    table = protocols.format_table(summary, protocol.name)
    assert table.splitlines()[0] == "| human36m/p1 | ppi | nms | empty |"
    assert "| missed | 0 | 0 |" in table


def test_mpii_pckh_and_map_on_lcr14_joints(mpii_validation):
    protocol = protocols.for_dataset("mpii_human_pose", mpii_validation, joint_set="lcr13")
    known_joints = 0
    for i in range(len(mpii_validation)):
        people = mpii_validation[i]["people"]
        truth, _ = skeleton.convert(people["joints2d"], None, "mpii16", "lcr13")
        _, known = skeleton.convert(people["joints2d"], people["annotated"], "mpii16", "lcr14")
        known_joints += known.sum()
        scores = np.linspace(1.0, 0.5, len(truth))
        protocol.add("ppi", i, truth, np.zeros(truth.shape[:-1] + (3,)), scores)
        protocol.add("far", i, truth + 1000.0, np.zeros(truth.shape[:-1] + (3,)), scores)
    summary = protocol.summary()
    # The 13 joints are exact; only the extrapolated head top may miss.
    num_people = summary["ppi"]["num_people"]
    assert num_people > 0
    assert summary["ppi"]["pckh"] >= 1.0 - num_people / known_joints
    assert summary["ppi"]["map"] >= 13 / 14 - 1e-9
    assert summary["far"]["pckh"] == 0.0 and summary["far"]["map"] == 0.0


def test_mupots_3dpck_all_and_matched(mupots_test):
    protocol = protocols.for_dataset("mupots3d", mupots_test, joint_set="lcr17")
    for i in range(len(mupots_test)):
        people = mupots_test[i]["people"]
        pose2d, _ = skeleton.convert(people["joints2d"], None, "mupots17", "lcr17")
        pose3d, _ = skeleton.convert(people["joints3d_univ"], None, "mupots17", "lcr17")
        scores = np.ones(len(pose2d))
        protocol.add("ppi", i, pose2d, pose3d - pose3d[:, :1], scores)  # any centring
        protocol.add("first", i, pose2d[:1], pose3d[:1], scores[:1])
    summary = protocol.summary()
    ppi_summary, first = summary["ppi"], summary["first"]
    assert ppi_summary["missed"] == 0 and ppi_summary["num_annotated"] > 0
    assert ppi_summary["3dpck_all"] == ppi_summary["3dpck_matched"] >= 13 / 14 - 1e-9
    assert first["missed"] > 0 and first["3dpck_all"] < first["3dpck_matched"]


def test_to_mupots17_copies_named_joints_and_completes_lcr13():
    rng = np.random.default_rng(0)
    lcr17 = rng.normal(size=(3, 17, 3))
    out = protocols.to_mupots17(lcr17, "lcr17")
    same = [n for n in skeleton.MUPOTS17.joints if n in skeleton.LCR17.joints]
    np.testing.assert_array_equal(
        out[:, skeleton.MUPOTS17.indices(same)], lcr17[:, skeleton.LCR17.indices(same)]
    )
    lcr13 = lcr17[:, skeleton.LCR17.indices(skeleton.LCR13.joints)]
    made = protocols.to_mupots17(lcr13, "lcr13")
    joint = skeleton.MUPOTS17.index
    np.testing.assert_allclose(made[:, joint("pelvis")], lcr13[:, 4:6].mean(1))
    np.testing.assert_allclose(made[:, joint("neck")], lcr13[:, 10:12].mean(1))
    np.testing.assert_allclose(
        made[:, joint("spine")], (made[:, joint("pelvis")] + made[:, joint("neck")]) / 2
    )
    np.testing.assert_allclose(made[:, joint("head_top")], out[:, joint("head_top")])


def test_only_the_benchmarks_have_protocols(mpii_validation):
    assert protocols.for_dataset("synthetic_people/tiny", None, joint_set="lcr13") is None
    assert protocols.for_dataset("coco_keypoints", None, joint_set="lcr13") is None
    with pytest.raises(ValueError, match="unknown Human3.6M protocol 'tiny'"):
        protocols.for_dataset("human36m/tiny", None, joint_set="lcr13")
    with pytest.raises(ValueError, match="joint_set must be"):
        protocols.for_dataset("mpii_human_pose", mpii_validation, joint_set="coco17")


def test_evaluate_gives_the_protocol_original_pixels(mpii_validation):
    """End to end: pipeline batches (resized images) -> detections in network pixels ->
    the protocol sees the annotations' own pixels again (perfect PCKh)."""
    loader = pipeline.make_loader(
        mpii_validation, batch_size=2, image_size=(64, 48), joint_set="lcr13", max_people=4,
        train=False,
    )  # fmt: skip

    def detect(variables, images, image_size):
        del variables, images, image_size
        batch = current["batch"]
        result = ppi.PPIResult(
            poses2d=batch["poses2d"], poses3d=batch["poses3d"],
            scores=batch["person_valid"].astype(np.float32), valid=batch["person_valid"],
        )  # fmt: skip
        return {method: result for method in evaluation.METHODS}

    current = {}

    def remember(batches):
        for batch in batches:
            current["batch"] = batch
            yield batch

    protocol = protocols.for_dataset("mpii_human_pose", mpii_validation, joint_set="lcr13")
    evaluation.evaluate(
        detect, {}, loader, joint_set="lcr13", batch_size=2, progress=remember, protocol=protocol
    )
    summary = protocol.summary()
    assert set(summary) == set(evaluation.PROTOCOL_METHODS)
    assert summary["ppi"]["num_people"] > 0 and summary["ppi"]["pckh"] > 0.9
