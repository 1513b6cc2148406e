"""Tests of lcrnet_jax.evaluation.h36m: test frames, errors, the evaluator."""

import json
import types

import numpy as np
import pytest

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.evaluation import benchmarks, h36m
from lcrnet_jax.postprocess import ppi
from tests.test_benchmarks import feed
from tests.test_mupots import no_2d


def _h36m_grid(num_frames=130):
    grid = np.stack(
        np.meshgrid([1, 5, 6, 7, 8, 9, 11], [1, 2, 3, 4], [1, 2], np.arange(num_frames)),
        -1,
    ).reshape(-1, 4)
    return dict(zip(("subject", "camera", "trial", "frame"), grid.T, strict=True))


def test_h36m_test_masks_select_the_protocol_frames():
    meta = _h36m_grid()
    args = [meta[k] for k in ("subject", "camera", "trial", "frame")]
    p1 = h36m.h36m_test_mask(*args, "p1")
    # S11, camera 2, both trials, frames 0, 64, 128.
    assert p1.sum() == 2 * 3
    assert set(meta["subject"][p1]) == {11} and set(meta["camera"][p1]) == {2}
    assert set(meta["frame"][p1]) == {0, 64, 128}
    p2 = h36m.h36m_test_mask(*args, "P2")
    assert p2.sum() == 2 * 4 * 2 * 26  # subjects x cameras x trials x frames 0..125
    assert set(meta["subject"][p2]) == {9, 11} and np.all(meta["frame"][p2] % 5 == 0)
    p3 = h36m.h36m_test_mask(*args, "p3")
    assert np.all(p2[p3]) and p3.sum() == 2 * 26
    assert set(meta["camera"][p3]) == {4} and set(meta["trial"][p3]) == {1}
    assert h36m.H36M_PROTOCOLS["p1"].train_subjects == (1, 5, 6, 7, 8, 9)
    assert h36m.H36M_PROTOCOLS["p3"].reported == ("align_mm",)
    with pytest.raises(ValueError, match="unknown Human3.6M protocol"):
        h36m.h36m_test_mask(*args, "p4")


def test_h36m_errors_selects_frames_and_reports_mm_per_action():
    poses17 = np.random.default_rng(0).normal(scale=0.3, size=(4, 17, 3))
    gt = np.concatenate([poses17, poses17])[:, :13]  # (8, 13, 3) metres
    pred = gt + np.array([0.03, 0.04, 0.0])  # 50 mm translation
    pred[1] += np.array([0.06, 0.08, 0.0])  # 150 mm in total for frame 1
    pred[2] += 10.0  # frame 2 is not a test frame
    meta = {
        "subject": np.array([11, 11, 11, 11, 11, 9, 11, 11]),
        "camera": np.array([2, 2, 1, 2, 2, 2, 2, 2]),
        "trial": np.ones(8, int),
        "frame": np.array([0, 64, 0, 128, 192, 0, 256, 320]),
        "action": np.array(["Walk", "Walk", "Walk", "Sit", "Sit", "Sit", "Sit", "Sit"]),
    }
    out = h36m.h36m_errors(pred, gt, "p1", metadata=meta)
    assert out["num_poses"] == 6
    # Test frames 0, 1, 3, 4, 6, 7: errors 50, 150, 50, 50, 50, 50 mm.
    np.testing.assert_allclose(out["abs_mm"], (150 + 5 * 50) / 6, rtol=1e-9)
    np.testing.assert_allclose(out["align_mm"], 0.0, atol=1e-3)
    walk, sit = out["per_action"]["Walk"], out["per_action"]["Sit"]
    assert (walk["num_poses"], sit["num_poses"]) == (2, 4)
    np.testing.assert_allclose([walk["abs_mm"], sit["abs_mm"]], [100.0, 50.0], rtol=1e-9)
    np.testing.assert_allclose(out["action_mean_abs_mm"], 75.0, rtol=1e-9)
    # Torso centring removes the translation; without metadata every frame counts.
    centred = h36m.h36m_errors(pred[:2], gt[:2], "p2", joint_set="lcr13")
    assert centred["num_poses"] == 2 and "per_action" not in centred
    np.testing.assert_allclose(centred["abs_mm"], 0.0, atol=1e-3)
    with pytest.raises(ValueError, match="metadata lacks"):
        h36m.h36m_errors(pred, gt, "p1", metadata={"subject": meta["subject"]})
    short = {k: v[:7] for k, v in meta.items()}
    with pytest.raises(ValueError, match=r"^metadata has 7 frames, poses have 8$"):
        h36m.h36m_errors(pred, gt, "p1", metadata=short)
    pelvis = np.zeros((8, 3)), np.zeros(8)  # was a bare numpy broadcast error
    message = r"^pelvis must be \(pred, gt\) of shape \(8, 3\), got \[\(8, 3\), \(8,\)\]$"
    with pytest.raises(ValueError, match=message):
        h36m.h36m_errors(pred, gt, "p1", metadata=meta, pelvis=pelvis)


def test_human36m_scores_the_top_person_of_each_frame(h36m_test):
    evaluator = benchmarks.make_evaluators(
        "auto", dataset="human36m/p1", source=h36m_test, joint_set="lcr17"
    )[1]
    assert evaluator.name == "human36m/p1"
    for i in range(len(h36m_test)):
        gt, _ = skeleton.convert(h36m_test[i]["people"]["joints3d"], None, "h36m17", "lcr17")
        # A translated copy of the truth (torso-centring removes it) beats a worse pose.
        people = {
            "ppi": (no_2d(gt[:1]).repeat(2, 0), [gt[0] + 1.0, gt[0] * 1.3], [0.9, 0.1]),
            "nms": (no_2d(gt[:1]), gt[:1] * 1.1, [0.9]),
        }
        feed(evaluator, i, people, num_joints=17)
    summary = evaluator.evaluate()
    ppi, nms = summary["ppi"], summary["nms"]
    assert ppi["num_poses"] == len(h36m_test) and ppi["detection_rate"] == 1.0
    assert ppi["fallback"] == 0 and ppi["no_candidate"] == 0
    assert ppi["abs_mm"] < 0.01 and ppi["align_mm"] < 0.01
    # 10% too large: an absolute error, none after the similarity alignment.
    assert nms["abs_mm"] > 10 and nms["align_mm"] < 0.01
    assert json.loads(json.dumps(summary))["ppi"]["num_poses"] == len(h36m_test)
    evaluator.reset()
    assert evaluator.evaluate() == {}


def _h36m_record(frame, camera, joints3d):
    return {
        "subject": 11, "camera": camera, "trial": 1, "frame": frame, "action": b"Walk",
        "people": {"joints3d": joints3d[None]},
    }  # fmt: skip


def test_human36m_frames_without_detection_still_count():
    """P1 frames: 0 detected, 64 nobody above threshold (its best candidate is used), 128
    no candidate at all (the zero pose: every joint at the torso centre); frame 3 of
    camera 1 is not a P1 test frame."""
    rng = np.random.default_rng(3)
    native = rng.normal(scale=0.3, size=(4, 17, 3))
    gt = [skeleton.convert(n, None, "h36m17", "lcr17")[0] for n in native]
    records = [
        _h36m_record(f, c, n) for f, c, n in zip((0, 64, 128, 3), (2, 2, 2, 1), native, strict=True)
    ]
    evaluator = h36m.H36MEvaluator(records, joint_set="lcr17", protocol="p1")
    feed(evaluator, 0, {"ppi": (no_2d(gt[0][None]), gt[0][None], [0.9])}, num_joints=17)
    feed(evaluator, 1, {}, fallback=(no_2d(gt[1]), gt[1] * 1.2, 0.01), num_joints=17)
    feed(evaluator, 2, {}, num_joints=17)
    feed(evaluator, 3, {}, num_joints=17)
    out = evaluator.evaluate()["ppi"]
    assert out["num_poses"] == 3 and out["fallback"] == 1 and out["no_candidate"] == 1
    assert out["detection_rate"] == pytest.approx(1 / 3)
    centred = [np.asarray(geometry.center_on_torso(g, "lcr17")) for g in gt]
    fallback_mm = 1000 * 0.2 * np.linalg.norm(centred[1], axis=-1).mean()
    zero_mm = 1000 * np.linalg.norm(centred[2], axis=-1).mean()
    np.testing.assert_allclose(out["abs_mm"], (0 + fallback_mm + zero_mm) / 3, rtol=1e-5)
    assert out["align_mm"] > 0  # the zero pose cannot be aligned onto anything


def test_an_exported_models_one_method_is_scored_without_a_fallback():
    """An exported model gives its method's people only (here "nms") and no best candidate:
    a frame without a person then counts as "no_candidate"."""
    native = np.random.default_rng(4).normal(scale=0.3, size=(2, 17, 3))
    gt = [skeleton.convert(n, None, "h36m17", "lcr17")[0] for n in native]
    records = [_h36m_record(f, 2, n) for f, n in zip((0, 64), native, strict=True)]
    evaluator = h36m.H36MEvaluator(records, joint_set="lcr17", protocol="p1")
    for index, people in enumerate((1, 0)):
        found = ppi.PPIResult(
            poses2d=np.zeros((1, people, 17, 2)), poses3d=gt[index][None, None, :][:, :people],
            scores=np.full((1, people), 0.9), valid=np.ones((1, people), bool),
        )  # fmt: skip
        batch = {"index": np.array([index]), "offset": np.zeros((1, 2)), "scale": np.ones(1)}
        evaluator.process(batch, {"nms": found})
    out = evaluator.evaluate()
    assert list(out) == ["nms"]
    assert (out["nms"]["num_poses"], out["nms"]["fallback"], out["nms"]["no_candidate"]) == (
        2,
        0,
        1,
    )
    assert out["nms"]["detection_rate"] == 0.5


def test_human36m_reports_the_mean_of_the_action_means_as_the_papers_table_3():
    """Three Walk frames 10 mm off, one Sit frame 20 mm off (the head moved: the torso
    centre stays): 12.5 mm a frame, 15 mm over the actions."""
    native = np.random.default_rng(5).normal(scale=0.3, size=(4, 17, 3))
    records = [
        dict(_h36m_record(64 * i, 2, n), action=b"Sit" if i == 3 else b"Walk")
        for i, n in enumerate(native)
    ]
    evaluator = h36m.H36MEvaluator(records, joint_set="lcr17", protocol="p1")
    head = skeleton.get_joint_set("lcr17").index("head")
    for i, n in enumerate(native):
        gt, _ = skeleton.convert(n, None, "h36m17", "lcr17")
        pred = gt.copy()
        pred[head, 0] += 17 * (0.02 if i == 3 else 0.01)  # metres, over 17 joints
        feed(evaluator, i, {"ppi": (no_2d(pred[None]), pred[None], [0.9])}, num_joints=17)
    out = evaluator.evaluate()["ppi"]
    assert out["abs_mm"] == pytest.approx(12.5) and out["action_mean_abs_mm"] == pytest.approx(15.0)
    assert out["action_mean_align_mm"] > 0


@pytest.mark.parametrize("joint_set", ["lcr17", "lcr13"])
def test_human36m_abs_error_centred_on_the_pelvis_as_the_literature(joint_set):
    """The predicted pelvis 17 cm off (LCR-17's own; LCR-13's is its hips' midpoint):
    centred on the torso, only that joint is off; centred on the pelvis, every other
    joint is, and the aligned error does not change."""
    native = np.random.default_rng(6).normal(scale=0.3, size=(17, 3))
    native[0] = native[[1, 4]].mean(0)  # Human3.6M's pelvis lies between its hips
    gt, _ = skeleton.convert(native, None, "h36m17", joint_set)
    pred = gt.copy()
    js = skeleton.get_joint_set(joint_set)
    moved = (
        [js.index("pelvis")]
        if joint_set == "lcr17"
        else list(js.indices(("right_hip", "left_hip")))
    )
    pred[moved, 0] += 0.17
    evaluator = h36m.H36MEvaluator([_h36m_record(0, 2, native)], joint_set=joint_set)
    feed(evaluator, 0, {"ppi": (no_2d(pred[None]), pred[None], [0.9])}, num_joints=js.num_joints)
    out = evaluator.evaluate()["ppi"]
    # LCR-13's torso centre moves by half the hips' 17 cm: every joint is 85 mm off.
    assert out["abs_mm"] == pytest.approx(10.0 if joint_set == "lcr17" else 85.0)
    others = js.num_joints - len(moved)
    assert out["abs_pelvis_mm"] == pytest.approx(170 * others / js.num_joints)
    assert out["action_mean_abs_pelvis_mm"] == pytest.approx(out["abs_pelvis_mm"])


def test_human36m_refuses_records_of_an_older_builder():
    """Version 1.0.0 numbered trials by file name and tested P3 on another camera."""
    old = type("Records", (list,), {})()
    old.dataset_info = types.SimpleNamespace(version="1.0.0", full_name="human36m/p3/1.0.0")
    with pytest.raises(ValueError, match=r"the human36m/p3 evaluation needs 1\.1\.0 or later"):
        h36m.H36MEvaluator(old, joint_set="lcr13", protocol="p3")


def test_human36m_takes_the_top_scoring_person_and_scores_known_joints_only():
    """The top-scoring person is scored, not the first one; an LCR-MuPoTS model's head
    top, which Human3.6M does not have, is not scored wherever it is."""
    native = np.random.default_rng(7).normal(scale=0.3, size=(17, 3))
    gt, known = skeleton.convert(native, None, "h36m17", "lcr_mupots")
    top = skeleton.LCR_MUPOTS.index("head_top")
    assert not known[top] and known.sum() == 16
    pred = gt.copy()
    pred[top] = [0.5, -0.7, 0.3]
    evaluator = h36m.H36MEvaluator([_h36m_record(0, 2, native)], joint_set="lcr_mupots")
    poses = np.stack([1.5 * pred, pred])  # the worse pose is given first, with a low score
    feed(evaluator, 0, {"ppi": (no_2d(poses), poses, [0.1, 0.9])}, num_joints=17)
    out = evaluator.evaluate()["ppi"]
    assert out["abs_mm"] == pytest.approx(0.0, abs=1e-6) and out["align_mm"] < 0.01
