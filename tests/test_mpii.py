"""Tests of lcrnet_jax.evaluation.mpii: head sizes, multi-person AP, the evaluator."""

import re
import types

import numpy as np
import pytest

from lcrnet_jax import skeleton
from lcrnet_jax.evaluation import mpii
from tests.test_anchors import _STANDING
from tests.test_benchmarks import feed


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
    # A head box of size 0 matches nothing, even an exact pose (the toolkit divides by it).
    empty_head = mpii.mpii_multi_person_ap(
        [gt], [np.ones(1)], [gt], [np.ones((1, 14), bool)], [[0.0]]
    )
    assert empty_head["mean"] == 0.0
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


def test_mpii_ap_each_prediction_keeps_its_best_person_and_pckh_0_never_matches():
    """`assignGTmulti` on 10 joints: A has PCKh 0.8 with g0 and 0.9 with g1, B 0.7 with g0
    (0.6 with g1). A keeps g1 only, so g0 takes B: both are matched. A third person, far
    from every prediction (PCKh 0), takes nothing, in particular not prediction 0."""
    g0 = np.stack([100.0 * np.arange(10), np.zeros(10)], -1)
    g1 = g0.copy()
    g1[7:, 1] = 500.0  # g0 and g1 share joints 0-6
    a, b = g0.copy(), g0.copy()
    a[8:] = g1[8:]  # A: g0's joints 0-7, g1's joints 0-6, 8, 9
    b[[6, 8, 9], 1] += 300.0  # B: g0's joints 0-5 and 7, g1's joints 0-5
    out = _mpii_ap(np.stack([a, b]), np.array([0.9, 0.8]), np.stack([g0, g1]))
    # Joints 0-5: both right. 6, 8, 9: A (ranked first) right, B wrong -> 1/2.
    # 7: A wrong for g1, B right -> precision 1/2 at recall 1/2 -> 1/4.
    expected = np.array([1, 1, 1, 1, 1, 1, 1 / 2, 1 / 4, 1 / 2, 1 / 2])
    np.testing.assert_allclose(out["per_joint"], expected)
    far = g0 + np.array([0.0, 2000.0])
    out = _mpii_ap(np.stack([a, b]), np.array([0.9, 0.8]), np.stack([g0, g1, far]))
    np.testing.assert_allclose(out["per_joint"], expected * 2 / 3)  # 3 positives, not 2


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


class _Records(list):
    """Records with the version of the builder that wrote them, as a TFDS source."""

    def __init__(self, version: str):
        super().__init__()
        self.dataset_info = types.SimpleNamespace(
            version=version, full_name=f"mpii_human_pose/default/{version}"
        )


def test_records_of_an_older_builder_are_refused(mpii_validation):
    """TFDS opens whatever version is built: records without `groups` stop at once."""
    with pytest.raises(
        ValueError,
        match=r"mpii_human_pose/default was built by version 1\.0\.0 of its builder; the "
        r"mpii_human_pose evaluation needs 1\.1\.0 or later \(people's multi-person "
        r"`groups`\): rebuild it with .* --dataset=mpii_human_pose/default --overwrite",
    ):
        mpii.MPIIEvaluator(_Records("1.0.0"), joint_set="lcr13")
    mpii.MPIIEvaluator(_Records("1.10.0"), joint_set="lcr13")  # versions compare as numbers
    assert str(mpii_validation.dataset_info.version) == "1.1.0"


def test_mpii_pckh_and_map_on_the_toolkits_14_joints(mpii_validation):
    evaluator = mpii.MPIIEvaluator(mpii_validation, joint_set="lcr13")
    far = mpii.MPIIEvaluator(mpii_validation, joint_set="lcr13")
    for i in range(len(mpii_validation)):
        people = mpii_validation[i]["people"]
        truth, _ = skeleton.convert(people["joints2d"], None, "mpii16", "lcr13")
        scores = np.linspace(1.0, 0.5, len(truth))
        no_3d = np.zeros(truth.shape[:-1] + (3,))
        feed(evaluator, i, {"ppi": (truth, no_3d, scores)})
        feed(far, i, {"ppi": (truth + 1000.0, no_3d, scores)})
    out, far_out = evaluator.evaluate()["ppi"], far.evaluate()["ppi"]
    # The 12 limb joints are exact; only the made upper neck and head top may miss.
    assert out["num_single"] > 0 and out["single_missed"] == 0
    assert out["pckh"] >= 12 / 14 - 1e-9
    assert far_out["single_missed"] == far_out["num_single"] and far_out["pckh"] == 0.0
    assert evaluator.evaluate()["nms"]["single_missed"] == out["num_single"]


def _mpii_people(centers, *, single, groups, objpos=None):
    """MPII annotations of standing people (torso centres `centers`, person height 200 px,
    scale 1, `groups` bits) whose MPII-14 joints an LCR-13 prediction reproduces exactly
    (upper neck and head top where `skeleton.complete` puts them). Returns (record,
    LCR-13 predictions)."""
    lcr13 = np.stack([_STANDING[:, :2] * 100.0 + np.asarray(c) for c in centers])
    lcr14 = skeleton.complete(lcr13, "lcr13", "lcr14")
    joint = skeleton.LCR14.index
    mpii16 = np.zeros((len(centers), 16, 2))
    for k, name in enumerate(skeleton.MPII16.joints):
        if name in skeleton.LCR14.joints:
            mpii16[:, k] = lcr14[:, joint(name)]
    mpii16[:, skeleton.MPII16.index("pelvis")] = lcr14[
        :, [joint("right_hip"), joint("left_hip")]
    ].mean(1)
    mpii16[:, skeleton.MPII16.index("thorax")] = lcr14[
        :, [joint("right_shoulder"), joint("left_shoulder")]
    ].mean(1)
    # LCR's head centre is the midpoint of MPII's upper neck and head top.
    mpii16[:, skeleton.MPII16.index("upper_neck")] = (
        2 * lcr14[:, joint("head")] - lcr14[:, joint("head_top")]
    )
    head = lcr14[:, joint("head")]
    n = len(centers)
    record = {
        "people": {
            "joints2d": mpii16, "annotated": np.ones((n, 16), bool),
            "head_box": np.concatenate([head - 10.0, head + 10.0], axis=-1),  # PCKh@0.5: 8.5 px
            "objpos": np.asarray(centers if objpos is None else objpos, np.float64),
            "scale": np.ones(n), "single_person": np.asarray(single), "groups": np.asarray(groups),
        }
    }  # fmt: skip
    return record, lcr13


def test_mpii_single_person_pose_is_picked_by_localisation_not_by_ground_truth():
    """A rough objpos 30 px right of the person: the prediction shifted there is picked,
    although the exact one (which a ground-truth-based choice would take) exists."""
    record, truth = _mpii_people([(200.0, 300.0)], single=[True], groups=[0])
    shifted = truth + np.array([30.0, 0.0])
    record["people"]["objpos"] = np.array([[230.0, 300.0]])
    evaluator = mpii.MPIIEvaluator([record], joint_set="lcr13")
    both = np.concatenate([truth, shifted])
    feed(evaluator, 0, {"ppi": (both, np.zeros((2, 13, 3)), [0.9, 0.5])})
    assert evaluator.evaluate()["ppi"]["pckh"] == 0.0  # 30 px > 8.5 px on every joint
    # The same predictions with objpos on the person: every joint right.
    record["people"]["objpos"] = np.array([[200.0, 300.0]])
    evaluator.reset()
    feed(evaluator, 0, {"ppi": (both, np.zeros((2, 13, 3)), [0.5, 0.9])})
    out = evaluator.evaluate()["ppi"]
    assert (out["pckh"], out["num_single"], out["single_missed"]) == (1.0, 1, 0)
    # Beyond one person height from objpos nothing is picked: every joint wrong.
    evaluator.reset()
    feed(evaluator, 0, {"ppi": (truth + 201.0, np.zeros((1, 13, 3)), [0.9])})
    out = evaluator.evaluate()["ppi"]
    assert (out["pckh"], out["single_missed"]) == (0.0, 1)
    np.testing.assert_array_equal(
        mpii.mpii_localisation_match([[0.0, 0.0], [90.0, 0.0]], [[100.0, 0.0]], [0.05]), [1]
    )
    assert mpii.mpii_localisation_match([[0.0, 0.0]], [[100.0, 0.0]], [0.0])[0] == -1


def test_mpii_scores_the_upper_neck_and_head_top_not_lcrs_head_centre():
    """The toolkit's 13th and 14th joints are the upper neck and the head top: moved apart
    by a head size each, they are both missed although their midpoint, LCR's head
    centre, stays where the prediction puts it."""
    record, truth = _mpii_people([(200.0, 300.0)], single=[True], groups=[0])
    people = record["people"]
    neck, top = skeleton.MPII16.indices(("upper_neck", "head_top"))
    direction = people["joints2d"][0, top] - people["joints2d"][0, neck]
    step = 17.0 * direction / np.linalg.norm(direction)  # the head size: 0.6 x 28.3 px
    people["joints2d"][0, neck] -= step
    people["joints2d"][0, top] += step
    evaluator = mpii.MPIIEvaluator([record], joint_set="lcr13")
    feed(evaluator, 0, {"ppi": (truth, np.zeros((1, 13, 3)), [0.9])})
    assert evaluator.evaluate()["ppi"]["pckh"] == pytest.approx(12 / 14)
    # An LCR-17 model's neck is its upper neck (MPII's upper neck in training).
    lcr17 = np.zeros((1, 17, 2))
    lcr17[:, :13] = truth
    lcr17[:, skeleton.LCR17.index("neck")] = people["joints2d"][:, neck]
    evaluator = mpii.MPIIEvaluator([record], joint_set="lcr17")
    feed(evaluator, 0, {"ppi": (lcr17, np.zeros((1, 17, 3)), [0.9])}, num_joints=17)
    assert evaluator.evaluate()["ppi"]["pckh"] == pytest.approx(13 / 14)


def test_mpii_map_is_per_group_and_ignores_predictions_outside_groups():
    """People 0 and 1 form a group; person 2, 600 px away, is in none."""
    centers = [(200.0, 300.0), (350.0, 300.0), (950.0, 300.0)]
    record, truth = _mpii_people(centers, single=[False] * 3, groups=[1, 1, 0])
    no_3d = np.zeros((3, 13, 3))
    evaluator = mpii.MPIIEvaluator([record], joint_set="lcr13")
    # The best-scored prediction, on person 2, is outside the group: not a false positive.
    feed(evaluator, 0, {"ppi": (truth, no_3d, [0.5, 0.6, 0.9])})
    out = evaluator.evaluate()["ppi"]
    assert (out["map"], out["num_groups"]) == (1.0, 1)
    # Inside the group's box (grown by half a person height) a wrong pose is one: ranked
    # first, precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> AP 2/3 for every joint.
    wrong = truth[:1] + np.array([0.0, 60.0])
    evaluator.reset()
    feed(evaluator, 0, {"ppi": (np.concatenate([truth, wrong]), np.zeros((4, 13, 3)),
                               [0.5, 0.6, 0.9, 0.95])})  # fmt: skip
    assert evaluator.evaluate()["ppi"]["map"] == pytest.approx(2 / 3)
    inside = mpii.mpii_group_members(
        [[200.0, 360.0], [950.0, 300.0], [99.0, 300.0]], np.array(centers[:2]), [1.0, 1.0]
    )
    np.testing.assert_array_equal(inside, [True, False, False])
    # A group holding a single-person person is not scored (getMultiPersonGroups).
    record["people"]["groups"] = np.array([1, 1, 2])
    record["people"]["single_person"] = np.array([False, False, True])
    evaluator.reset()
    feed(evaluator, 0, {"ppi": (truth, no_3d, [0.5, 0.6, 0.9])})
    assert evaluator.evaluate()["ppi"]["num_groups"] == 1
    # Groups may overlap: person 1 is in both, each scored with its people.
    record["people"]["groups"] = np.array([1, 3, 0])
    record["people"]["single_person"] = np.zeros(3, bool)
    evaluator.reset()
    feed(evaluator, 0, {"ppi": (truth, no_3d, [0.5, 0.6, 0.9])})
    out = evaluator.evaluate()["ppi"]
    assert (out["map"], out["num_groups"]) == (1.0, 2)
    # Without groups there is no mAP.
    record["people"]["groups"] = np.zeros(3, np.int64)
    evaluator.reset()
    feed(evaluator, 0, {"ppi": (truth, no_3d, [0.5, 0.6, 0.9])})
    out = evaluator.evaluate()["ppi"]
    assert np.isnan(out["map"]) and out["num_groups"] == 0


def _damaged(inputs, name, value):
    """The per-image inputs with image 1's `name` replaced by `value`."""
    out = {k: list(v) for k, v in inputs.items()}
    out[name][1] = value
    return out


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("pred_poses2d", np.zeros((1, 13, 2)),
         "pred_poses2d (1, 13, 2) and gt_poses2d (1, 14, 2) must be (P, J, 2) and (G, J, 2)"),
        ("pred_poses2d", np.zeros((14, 2)),
         "pred_poses2d (14, 2) and gt_poses2d (1, 14, 2) must be (P, J, 2) and (G, J, 2)"),
        ("pred_poses2d", np.zeros((1, 14, 1, 2)),
         "pred_poses2d (1, 14, 1, 2) and gt_poses2d (1, 14, 2) must be (P, J, 2) and (G, J, 2)"),
        ("pred_scores", np.ones(2), "pred_scores has shape (2,), expected (1,) or (1, 14)"),
        ("pred_scores", np.ones((1, 13)),
         "pred_scores has shape (1, 13), expected (1,) or (1, 14)"),
        ("gt_head_sizes", np.full(2, 20.0), "gt_head_sizes has (2,), expected (1,)"),
        # A negative head size made every joint correct.
        ("gt_head_sizes", np.full(1, -10.0), "gt_head_sizes must be >= 0 and finite, got [-10.]"),
        ("gt_head_sizes", np.full(1, np.nan), "gt_head_sizes must be >= 0 and finite, got [nan]"),
    ],
)  # fmt: skip
def test_mpii_ap_names_the_image_and_input_of_a_bad_shape(mpii_person, name, value, message):
    gt = mpii_person[None]  # (1, 14, 2)
    inputs = {
        "pred_poses2d": [gt, gt],
        "pred_scores": [np.ones(1), np.ones(1)],
        "gt_poses2d": [gt, gt],
        "gt_visible": [np.ones((1, 14), bool)] * 2,
        "gt_head_sizes": [np.full(1, 20.0)] * 2,
    }
    assert mpii.mpii_multi_person_ap(**inputs)["mean"] == 1.0
    with pytest.raises(ValueError, match=f"^{re.escape('image 1: ' + message)}$"):
        mpii.mpii_multi_person_ap(**_damaged(inputs, name, value))


def test_mpii_ap_ranks_tied_scores_in_input_order(mpii_person):
    """The toolkit sorts the scores with MATLAB's stable `sort(..., 'descend')`: of two
    predictions with the same score, the one given first is ranked first. A right one
    first gives AP 1; a false positive first gives precision 0 then 1/2: AP 1/2."""
    gt = mpii_person[None]
    far = gt[0] + 500.0
    tied = np.array([0.9, 0.9])
    assert _mpii_ap(np.stack([gt[0], far]), tied, gt)["mean"] == 1.0
    assert _mpii_ap(np.stack([far, gt[0]]), tied, gt)["mean"] == pytest.approx(0.5)


def test_mpii_ap_a_joint_at_exactly_half_the_head_size_is_right(mpii_person):
    """`assignGTmulti` counts a joint at exactly the threshold (<=): every joint 10 px off
    with a 20 px head matches and is right."""
    gt = np.round(mpii_person)[None]  # integer pixels: the 10 px offset is exact
    assert _mpii_ap(gt + np.array([6.0, 8.0]), np.array([0.9]), gt)["mean"] == 1.0
    assert _mpii_ap(gt + np.array([6.0, 8.01]), np.array([0.9]), gt)["mean"] == 0.0


def test_mpii_ap_a_joint_the_person_lacks_is_a_false_positive_even_on_its_position(mpii_person):
    """Person A lacks joint 5 (its position still holds a value); a prediction exactly
    on A puts its joint 5 there: a false positive, ranked above B's right one -> AP 1/2
    for joint 5, 1 elsewhere."""
    a = np.round(mpii_person)
    gt = np.stack([a, a + 500.0])
    vis = np.ones((2, 14), bool)
    vis[0, 5] = False
    out = _mpii_ap(gt.copy(), np.array([0.9, 0.8]), gt, gt_visible=vis)
    expected = np.ones(14)
    expected[5] = 0.5
    np.testing.assert_allclose(out["per_joint"], expected)


def test_mpii_ap_pckh_is_over_the_persons_annotated_joints():
    """A prediction right on both annotated joints of A (PCKh 1) and on 3 of B's 4 (PCKh
    3/4) keeps A, as `assignGTmulti` divides by the annotated joints (over all 4 joints
    it would keep B). Against A its joints 2 and 3 are false positives."""
    a = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    b = np.array([[0.0, 300.0], [100.0, 0.0], [200.0, 0.0], [300.0, 0.0]])
    pred = np.stack([a[0], b[1], b[2], b[3]])[None]
    vis = np.array([[True, True, False, False], [True, True, True, True]])
    out = _mpii_ap(pred, np.array([0.9]), np.stack([a, b]), gt_visible=vis)
    # Joints 0 and 1: 1 of 2 positives found first -> 1/2; joints 2 and 3: a false positive.
    np.testing.assert_allclose(out["per_joint"], [0.5, 0.5, 0.0, 0.0])


def test_mpii_ap_padded_people_are_not_positives(mpii_person):
    gt = np.stack([mpii_person, mpii_person + 1000.0])
    out = _mpii_ap(mpii_person[None], np.array([0.9]), gt, gt_valid=np.array([True, False]))
    assert out["mean"] == 1.0  # not 1/2: the padded person is no positive


def test_mpii_group_box_uses_the_mean_scale_and_holds_its_edge():
    """The group's box is grown by half the mean person height (scales 1 and 3: 200 px),
    not the largest; a torso centre on the grown box's edge is inside."""
    objpos = np.array([[500.0, 500.0], [700.0, 500.0]])
    centers = [[300.0, 500.0], [299.0, 500.0], [500.0, 250.0], [900.0, 700.0]]
    inside = mpii.mpii_group_members(centers, objpos, [1.0, 3.0])
    np.testing.assert_array_equal(inside, [True, False, False, True])


def test_mpii_single_person_pckh_counts_annotated_joints_and_people_only():
    """A single-person person none of whose joints is annotated is neither scored nor
    counted (nor missed); a joint that is not annotated is not scored."""
    record, truth = _mpii_people(
        [(200.0, 300.0), (600.0, 300.0)], single=[True, True], groups=[0, 0]
    )
    record["people"]["annotated"][1] = False
    wrist = skeleton.MPII16.index("right_wrist")  # not annotated: not scored, wherever it is
    record["people"]["annotated"][0, wrist] = False
    record["people"]["joints2d"][0, wrist] += 100.0
    evaluator = mpii.MPIIEvaluator([record], joint_set="lcr13")
    feed(evaluator, 0, {"ppi": (truth[:1], np.zeros((1, 13, 3)), [0.9])})
    out = evaluator.evaluate()["ppi"]
    assert (out["pckh"], out["num_single"], out["single_missed"]) == (1.0, 1, 0)


def test_mpii_ap_ties_go_to_the_first_prediction_and_the_first_person(mpii_person):
    """`assignGTmulti` takes MATLAB's `max`, the first of equals. Two predictions right on
    the person: the first takes it even with the lower score, so the second, ranked
    first, is a false positive (AP 1/2). A prediction with PCKh 1/2 for two people keeps
    the first, whose joint 0 it has right (its joint 1 is g1's)."""
    gt = mpii_person[None]
    out = _mpii_ap(np.stack([gt[0], gt[0] + 1.0]), np.array([0.5, 0.9]), gt)
    np.testing.assert_allclose(out["per_joint"], np.full(14, 0.5))
    g0 = np.array([[0.0, 0.0], [100.0, 0.0]])
    g1 = np.array([[500.0, 0.0], [300.0, 0.0]])
    pred = np.array([[[0.0, 0.0], [300.0, 0.0]]])
    out = _mpii_ap(pred, np.array([0.9]), np.stack([g0, g1]))
    np.testing.assert_allclose(out["per_joint"], [0.5, 0.0])
