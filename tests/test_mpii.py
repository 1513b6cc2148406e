"""Tests of lcrnet_jax.evaluation.mpii: head sizes, multi-person AP, the protocol."""

import numpy as np
import pytest

from lcrnet_jax import skeleton
from lcrnet_jax.evaluation import benchmarks, mpii


@pytest.fixture(scope="module")
def mpii_person():
    rng = np.random.default_rng(7)
    return rng.uniform(100, 300, size=(14, 2))


def _mpii_ap(preds, scores, gt, **kw):
    head = np.full(len(gt), 20.0)  # 0.5 PCKh = 10 px
    vis = kw.pop("gt_visible", np.ones(gt.shape[:2], bool))
    kw = {k: [v] for k, v in kw.items()}  # one image
    return mpii.mpii_multi_person_ap([preds], [scores], [gt], [vis], [head], **kw)


def test_mpii_ap_perfect_person_and_ranked_false_positive(mpii_person):
    gt = mpii_person[None]
    out = _mpii_ap(gt.copy(), np.array([0.9]), gt)
    np.testing.assert_allclose(out["per_joint"], np.ones(14))
    assert out["mean"] == 1.0
    # A false positive ranked first: precision 0 then 1/2 at recall 1 -> AP 1/2.
    preds = np.stack([gt[0] + 500.0, gt[0]])
    out = _mpii_ap(preds, np.array([0.95, 0.9]), gt)
    np.testing.assert_allclose(out["per_joint"], np.full(14, 0.5))
    # Ranked last it costs nothing.
    assert _mpii_ap(preds, np.array([0.1, 0.9]), gt)["mean"] == 1.0
    # Padding is ignored.
    padded = _mpii_ap(preds, np.array([0.95, 0.9]), gt, pred_valid=np.array([False, True]))
    assert padded["mean"] == 1.0


def test_mpii_ap_matches_by_pckh_not_by_score(mpii_person):
    gt = mpii_person[None]
    half = gt[0].copy()
    half[7:] += 30.0  # 7 of 14 joints right: PCKh 0.5
    # The better-scored prediction is half right; the perfect one wins the person, so
    # every joint of `half` is a false positive ranked first -> AP 1/2 for every joint.
    out = _mpii_ap(np.stack([half, gt[0]]), np.array([0.9, 0.2]), gt)
    np.testing.assert_allclose(out["per_joint"], np.full(14, 0.5))
    # A matched prediction's wrong joint is a false positive for that joint only; a
    # joint the person lacks is not counted among positives.
    one_wrong = gt[0].copy()
    one_wrong[3] += 11.0
    vis = np.ones((1, 14), bool)
    vis[0, 5] = False
    out = _mpii_ap(one_wrong[None], np.array([0.5]), gt, gt_visible=vis)
    expected = np.ones(14)
    expected[3] = 0.0
    expected[5] = np.nan
    np.testing.assert_allclose(out["per_joint"], expected)
    assert out["mean"] == pytest.approx(12 / 13)


def test_mpii_ap_pools_images_and_per_joint_scores(mpii_person):
    gt = mpii_person[None]
    scores = np.full((1, 14), 0.5)
    scores[0, 0] = 0.01  # joint 0 of the true detection ranks below the false positive
    preds = [gt.copy(), gt + 500.0]
    out = mpii.mpii_multi_person_ap(
        preds,
        [scores, np.array([0.1])],
        [gt, np.zeros((0, 14, 2))],
        [np.ones((1, 14), bool), np.zeros((0, 14), bool)],
        [np.array([20.0]), np.zeros(0)],
    )
    expected = np.ones(14)
    expected[0] = 0.5
    np.testing.assert_allclose(out["per_joint"], expected)
    # A third image with one person and no prediction halves the recall: AP 1/2, and
    # 1/4 for joint 0 (precision 1/2 reached at recall 1/2).
    out = mpii.mpii_multi_person_ap(
        [*preds, np.zeros((0, 14, 2))],
        [scores, np.array([0.1]), np.zeros(0)],
        [gt, np.zeros((0, 14, 2)), gt + 50.0],
        [np.ones((1, 14), bool), np.zeros((0, 14), bool), np.ones((1, 14), bool)],
        [np.array([20.0]), np.zeros(0), np.array([20.0])],
    )
    expected = np.full(14, 0.5)
    expected[0] = 0.25
    np.testing.assert_allclose(out["per_joint"], expected)


def test_mpii_pckh_and_map_on_lcr14_joints(mpii_validation):
    protocol = benchmarks.for_dataset("mpii_human_pose", mpii_validation, joint_set="lcr13")
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
