"""Tests of lcrnet_jax.evaluation.mupots: matching, bone rescaling, 3DPCK and AUC, the
evaluator."""

import numpy as np
import pytest

from lcrnet_jax import skeleton
from lcrnet_jax.evaluation import mupots
from tests.test_benchmarks import feed


def _mupots_pose(offset2d, seed):
    """A MuPoTS-17 person: 2D pixels around `offset2d`, 3D metres (pelvis at depth 4 m)."""
    rng = np.random.default_rng(seed)
    pose3d = rng.normal(scale=0.25, size=(17, 3)) + np.array([0.0, 0.0, 4.0])
    pose2d = rng.uniform(-80, 80, size=(17, 2)) + np.asarray(offset2d)
    return pose2d, pose3d


def test_mupots_match_follows_the_official_rule():
    assert len(mupots.MUPOTS_EVAL_JOINTS) == 14 and mupots.MUPOTS_EVAL_JOINTS[0] == "head_top"
    assert not {"pelvis", "spine", "head"} & set(mupots.MUPOTS_EVAL_JOINTS)
    a2, _ = _mupots_pose((300, 300), 0)
    b2, _ = _mupots_pose((900, 300), 1)
    gt = np.stack([a2, b2])
    pred = np.stack([b2 + 39.0, a2 - 39.0, a2 + 41.0])  # 39 px: within, 41 px: not
    np.testing.assert_array_equal(mupots.mupots_match(gt, pred), [1, 0])
    np.testing.assert_array_equal(mupots.mupots_match(gt, pred[2:]), [-1, -1])
    # A prediction taken by an earlier person is not reused; padding never matches.
    np.testing.assert_array_equal(mupots.mupots_match(np.stack([a2, a2]), pred[:2]), [1, -1])
    valid = np.array([True, False, True])
    np.testing.assert_array_equal(mupots.mupots_match(gt, pred, pred_valid=valid), [-1, 0])
    # Head top, pelvis, spine and head do not take part.
    moved = a2.copy()
    moved[list(skeleton.MUPOTS17.indices(("head_top", "pelvis", "spine", "head")))] += 500
    np.testing.assert_array_equal(mupots.mupots_match(a2[None], moved[None]), [0])


def test_mupots_match_leaves_out_predicted_joints_at_the_origin():
    """The official script marks a joint a method does not give with (0, 0)
    (`pred_visibility`): such joints never count, even beside a person in the image's
    corner; a joint on an axis (x = 0 only) counts."""
    gt = np.full((1, 17, 2), 12.0)
    absent = np.zeros((17, 2))
    three = np.full((17, 2), 500.0)
    three[list(skeleton.MUPOTS17.indices(("thorax", "left_hip", "right_knee")))] = (0.0, 12.0)
    pred = np.stack([absent, three])
    np.testing.assert_array_equal(mupots.mupots_match(gt, pred), [1])
    np.testing.assert_array_equal(mupots.mupots_match(gt, pred[:1]), [-1])


def test_mupots_match_does_not_count_the_head_top():
    """The official script matches on `annot2` joints 2-14 (`matching_joints`): a
    prediction whose only joint near the person is the head top does not match; one
    whose thorax is near too does."""
    a2, _ = _mupots_pose((300, 300), 0)
    top, thorax = skeleton.MUPOTS17.indices(("head_top", "thorax"))
    pred = a2 + 500.0
    pred[top] = a2[top]
    np.testing.assert_array_equal(mupots.mupots_match(a2[None], pred[None]), [-1])
    pred[thorax] = a2[thorax]
    np.testing.assert_array_equal(mupots.mupots_match(a2[None], pred[None]), [0])


def test_mupots_rescale_bones_restores_ground_truth_lengths():
    _, gt = _mupots_pose((0, 0), 2)
    root = skeleton.MUPOTS17.index("pelvis")
    stretched = gt[root] + 1.5 * (gt - gt[root])
    np.testing.assert_allclose(mupots.mupots_rescale_bones(stretched, gt), gt, atol=1e-12)
    batch = np.stack([stretched, gt + 1.0])
    np.testing.assert_allclose(
        mupots.mupots_rescale_bones(batch, np.stack([gt, gt])), [gt, gt + 1.0], atol=1e-12
    )


# Parents of the MuPoTS-17 joints in the official code's 1-based numbering
# (`mpii_get_joints('relevant')`, joint order of `skeleton.MUPOTS17`): the pelvis (15) is
# the root (its own parent); the thorax (2, "neck") hangs from the spine (16), the head
# (17) from the thorax.
_OFFICIAL_PARENTS = (2, 16, 2, 3, 4, 2, 6, 7, 15, 9, 10, 15, 12, 13, 15, 15, 2)


def _official_tree():
    """(0-based parents, joints in tree order: root first, every parent before its children)."""
    parent = [p - 1 for p in _OFFICIAL_PARENTS]
    root = next(j for j in range(17) if parent[j] == j)  # the pelvis is its own parent
    order, todo = [root], [j for j in range(17) if j != root]
    while todo:
        ready = [j for j in todo if parent[j] in order]
        order += ready
        todo = [j for j in todo if j not in ready]
    return parent, order


def _official_rescale(pred, gt):
    """`mpii_map_to_gt_bone_lengths` written out: joints in tree order from the pelvis,
    each at its rescaled parent plus its own predicted bone direction times the
    ground-truth bone length."""
    parent, order = _official_tree()
    out = pred.copy()
    for j in order[1:]:
        bone = pred[j] - pred[parent[j]]
        length = np.linalg.norm(gt[j] - gt[parent[j]])
        out[j] = out[parent[j]] + bone / np.linalg.norm(bone) * length
    return out


def test_mupots_rescale_bones_walks_the_official_tree_with_uneven_stretches():
    _, gt = _mupots_pose((0, 0), 7)
    js = skeleton.MUPOTS17
    parent, order = _official_tree()
    # Same bone directions as the ground truth, uneven lengths: forearms x2, shoulders
    # x0.5, spine x1.3, the rest x1; the pelvis moved. Rescaling gives back gt + shift.
    stretch = np.ones(17)
    stretch[list(js.indices(("right_wrist", "left_wrist")))] = 2.0
    stretch[list(js.indices(("right_shoulder", "left_shoulder")))] = 0.5
    stretch[js.index("spine")] = 1.3
    root = js.index("pelvis")
    shift = np.array([0.1, -0.2, 0.3])
    pred = np.zeros_like(gt)
    pred[root] = gt[root] + shift
    for j in order[1:]:
        pred[j] = pred[parent[j]] + stretch[j] * (gt[j] - gt[parent[j]])
    np.testing.assert_allclose(mupots.mupots_rescale_bones(pred, gt), gt + shift, atol=1e-12)
    # Noisy directions too: the official walk, joint by joint.
    noisy = pred + np.random.default_rng(8).normal(scale=0.05, size=pred.shape)
    np.testing.assert_allclose(
        mupots.mupots_rescale_bones(noisy, gt), _official_rescale(noisy, gt), atol=1e-12
    )
    # An error at the right elbow moves the right wrist (its child) with it, and no
    # joint outside the elbow's subtree.
    wrong = noisy.copy()
    elbow, wrist = js.index("right_elbow"), js.index("right_wrist")
    wrong[elbow] += np.array([0.05, 0.0, -0.05])
    before = mupots.mupots_rescale_bones(noisy, gt)
    after = mupots.mupots_rescale_bones(wrong, gt)
    moved = np.linalg.norm(after - before, axis=-1) > 1e-9
    np.testing.assert_array_equal(np.flatnonzero(moved), [elbow, wrist])
    np.testing.assert_allclose(after, _official_rescale(wrong, gt), atol=1e-12)


def test_mupots_3dpck_all_vs_matched_with_a_missed_person():
    a2, a3 = _mupots_pose((300, 300), 3)
    b2, b3 = _mupots_pose((900, 300), 4)
    c2, c3 = _mupots_pose((500, 300), 5)
    root = skeleton.MUPOTS17.index("pelvis")
    c3_big = c3[root] + 1.5 * (c3 - c3[root]) + np.array([0.3, 0.0, 0.5])
    padding = np.zeros((17, 2))
    # Sequence 1: a is found (exact up to a translation), b is missed; a padded
    # prediction lies exactly on b but is not valid. Sequence 2: c is found with bones
    # 1.5 times too long (and translated), plus a false positive far away.
    pred2d = [np.stack([a2, b2, padding]), np.stack([c2, c2 + 2000.0])]
    pred3d = [np.stack([a3 + 0.7, b3, b3]), np.stack([c3_big, c3])]
    gt2d = [np.stack([a2, b2]), c2[None]]
    gt3d = [np.stack([a3, b3]), c3[None]]
    pred_valid = [np.array([True, False, False]), np.array([True, True])]
    out = mupots.mupots_3dpck(pred2d, pred3d, gt2d, gt3d, [1, 2], pred_valid=pred_valid)
    seq1, seq2 = out["per_sequence"][1], out["per_sequence"][2]
    assert (seq1["num_annotated"], seq1["num_missed"]) == (2, 1)
    assert (seq1["all"], seq1["matched"]) == (0.5, 1.0)
    assert (seq2["all"], seq2["matched"]) == (1.0, 1.0)  # bone rescaling undoes the 1.5
    assert (out["all"], out["matched"]) == (0.75, 1.0)
    assert (out["num_annotated"], out["num_missed"]) == (3, 1)
    # Without rescaling, a joint of c is right iff half its distance to the pelvis is
    # within 15 cm; the mean over sequences changes accordingly.
    raw = mupots.mupots_3dpck(
        pred2d, pred3d, gt2d, gt3d, [1, 2], pred_valid=pred_valid, rescale_bones=False
    )
    idx = list(skeleton.MUPOTS17.indices(mupots.MUPOTS_EVAL_JOINTS))
    expected = np.mean(0.5 * np.linalg.norm(c3[idx] - c3[root], axis=-1) < 0.15)
    assert expected < 1.0
    assert raw["per_sequence"][2]["all"] == pytest.approx(expected)
    assert raw["all"] == pytest.approx((0.5 + expected) / 2)
    # Nothing annotated counts as missed in "all" only; gt_valid drops people.
    only_a = mupots.mupots_3dpck(
        pred2d[:1], pred3d[:1], gt2d[:1], gt3d[:1], [1], gt_valid=[np.array([True, False])]
    )
    assert (only_a["all"], only_a["num_annotated"]) == (1.0, 1)
    with pytest.raises(ValueError, match="MuPoTS-17"):
        mupots.mupots_3dpck([a2[:13][None]], [a3[None]], [a2[None]], [a3[None]], [1])
    with pytest.raises(ValueError, match="same number of images"):
        mupots.mupots_3dpck(pred2d, pred3d[:1], gt2d, gt3d, [1, 2])
    one_3d_short = [pred3d[0][:2], pred3d[1]]  # was a bare IndexError
    message = (
        "frame 0: the 2D and 3D poses must count the same people, got 2 and 2 annotated, "
        "3 and 2 predicted"
    )
    with pytest.raises(ValueError, match=f"^{message}$"):
        mupots.mupots_3dpck(pred2d, one_3d_short, gt2d, gt3d, [1, 2], pred_valid=pred_valid)


def no_2d(poses3d):
    return np.zeros(poses3d.shape[:-1] + (2,))


@pytest.mark.parametrize("joint_set", ["lcr17", "lcr_mupots"])
def test_mupots_3dpck_all_and_matched(mupots_test, joint_set):
    evaluator = mupots.MuPoTSEvaluator(mupots_test, joint_set=joint_set)
    for i in range(len(mupots_test)):
        people = mupots_test[i]["people"]
        pose2d, known = skeleton.convert(people["joints2d"], None, "mupots17", joint_set)
        pose3d, _ = skeleton.convert(people["joints3d_univ"], None, "mupots17", joint_set)
        assert known.all() == (joint_set == "lcr_mupots")  # LCR-17's neck is not MuPoTS's
        scores = np.ones(len(pose2d))
        # "ppi" finds everybody (any centring), "nms" only the first person.
        people = {
            "ppi": (pose2d, pose3d - pose3d[:, :1], scores),
            "nms": (pose2d[:1], pose3d[:1], scores[:1]),
        }
        feed(evaluator, i, people, num_joints=17)
    summary = evaluator.evaluate()
    ppi_summary, first = summary["ppi"], summary["nms"]
    assert ppi_summary["missed"] == 0 and ppi_summary["num_annotated"] > 0
    assert ppi_summary["3dpck_all"] == ppi_summary["3dpck_matched"] >= 13 / 14 - 1e-9
    if joint_set == "lcr_mupots":  # every MuPoTS joint predicted: none made up
        assert ppi_summary["3dpck_all"] == 1.0
    assert ppi_summary["auc_all"] == ppi_summary["auc_matched"] > 0.5
    assert first["missed"] > 0 and first["3dpck_all"] < first["3dpck_matched"]
    assert first["auc_all"] < first["auc_matched"]


def test_mupots_auc_is_the_mean_3dpck_over_0_to_150_mm():
    """Every scored joint 72.5 mm off: right from the 75 mm threshold on (16 of 31)."""
    a2, a3 = _mupots_pose((300, 300), 6)
    b2, b3 = _mupots_pose((900, 300), 7)
    off = a3.copy()
    idx = list(skeleton.MUPOTS17.indices(mupots.MUPOTS_EVAL_JOINTS))
    off[idx] += np.array([0.0, 0.0, 0.0725])
    out = mupots.mupots_3dpck(
        [a2[None]], [off[None]], [np.stack([a2, b2])], [np.stack([a3, b3])], [1],
        rescale_bones=False,
    )  # fmt: skip
    assert out["matched"] == 1.0 and out["all"] == 0.5
    assert out["auc_matched"] == pytest.approx(16 / 31)
    assert out["auc_all"] == pytest.approx(8 / 31)  # b is missed
    # No error is < 0 mm: a perfect prediction's AUC is 30/31, as in the official code.
    exact = mupots.mupots_3dpck([a2[None]], [a3[None]], [a2[None]], [a3[None]], [1])
    assert exact["matched"] == 1.0 and exact["auc_matched"] == pytest.approx(30 / 31)


def test_to_mupots17_copies_named_joints_and_completes_lcr13():
    rng = np.random.default_rng(0)
    lcr17 = rng.normal(size=(3, 17, 3))
    out = mupots.to_mupots17(lcr17, "lcr17")
    same = [n for n in skeleton.MUPOTS17.joints if n in skeleton.LCR17.joints]
    assert "thorax" in same and "neck" not in same  # MuPoTS's "neck" is the thorax
    np.testing.assert_array_equal(
        out[:, skeleton.MUPOTS17.indices(same)], lcr17[:, skeleton.LCR17.indices(same)]
    )
    lcr13 = lcr17[:, skeleton.LCR17.indices(skeleton.LCR13.joints)]
    made = mupots.to_mupots17(lcr13, "lcr13")
    joint = skeleton.MUPOTS17.index
    np.testing.assert_allclose(made[:, joint("pelvis")], lcr13[:, 4:6].mean(1))
    np.testing.assert_allclose(made[:, joint("thorax")], lcr13[:, 10:12].mean(1))
    np.testing.assert_allclose(
        made[:, joint("spine")], (made[:, joint("pelvis")] + made[:, joint("thorax")]) / 2
    )
    np.testing.assert_allclose(made[:, joint("head_top")], out[:, joint("head_top")])


def test_mupots_3dpck_needs_one_sequence_id_per_frame():
    a2, a3 = _mupots_pose((300, 300), 3)
    poses2d, poses3d = [a2[None], a2[None]], [a3[None], a3[None]]
    assert mupots.mupots_3dpck(poses2d, poses3d, poses2d, poses3d, [1, 1])["all"] == 1.0
    with pytest.raises(ValueError, match=r"^sequence has 1 entries, expected 2 frames$"):
        mupots.mupots_3dpck(poses2d, poses3d, poses2d, poses3d, [1])


def test_mupots_match_needs_both_coordinates_strictly_within_40_px():
    """The official matching counts a joint when |dx| < 40 and |dy| < 40 px: a prediction
    exactly 40 px off in x on every joint matches nobody, 39 px off it matches."""
    a2 = np.round(_mupots_pose((300, 300), 0)[0])  # integer pixels: offsets are exact
    np.testing.assert_array_equal(mupots.mupots_match(a2[None], (a2 + [40.0, 0.0])[None]), [-1])
    np.testing.assert_array_equal(mupots.mupots_match(a2[None], (a2 + [39.0, 39.0])[None]), [0])


def test_mupots_3dpck_is_strict_at_150_mm():
    """A scored joint exactly 150 mm off is wrong (official `< 150`), 149 mm off right."""
    a2, _ = _mupots_pose((300, 300), 0)
    gt3 = np.zeros((1, 17, 3))
    idx = list(skeleton.MUPOTS17.indices(mupots.MUPOTS_EVAL_JOINTS))
    on, inside = gt3.copy(), gt3.copy()
    on[0, idx, 0], inside[0, idx[:7], 0] = 0.15, 0.149  # the pelvis (root) stays put
    for pred3, expected in ((on, 0.0), (inside, 1.0)):
        out = mupots.mupots_3dpck([a2[None]], [pred3], [a2[None]], [gt3], [1], rescale_bones=False)
        assert out["matched"] == expected


def test_mupots_headline_skips_a_sequence_without_a_matched_person():
    """Sequence 2's only person is missed: its "matched" 3DPCK is NaN and left out of the
    mean over sequences, while "all" counts it as 0."""
    a2, a3 = _mupots_pose((300, 300), 3)
    empty2, empty3 = np.zeros((0, 17, 2)), np.zeros((0, 17, 3))
    out = mupots.mupots_3dpck(
        [a2[None], empty2], [a3[None], empty3], [a2[None], a2[None]], [a3[None], a3[None]], [1, 2]
    )
    assert np.isnan(out["per_sequence"][2]["matched"])
    assert (out["matched"], out["all"]) == (1.0, 0.5)
    assert out["auc_matched"] == pytest.approx(30 / 31)


def test_mupots_evaluator_skips_invalid_people_and_scores_the_universal_skeleton():
    """A person flagged not valid (`is_valid`) is neither scored nor missed; the 3D truth
    is `univ_annot3` (joints3d_univ), not the camera-scale `annot3`."""
    a2, a3 = _mupots_pose((300, 300), 3)
    b2, b3 = _mupots_pose((900, 300), 4)
    noise = np.random.default_rng(9).normal(scale=0.3, size=(2, 17, 3))
    record = {
        "people": {"joints2d": np.stack([a2, b2]), "joints3d": np.stack([a3, b3]) + noise,
                   "joints3d_univ": np.stack([a3, b3]), "is_valid": np.array([True, False])},
        "sequence": 1,
    }  # fmt: skip
    evaluator = mupots.MuPoTSEvaluator([record], joint_set="lcr_mupots")
    pose2d, _ = skeleton.convert(a2[None], None, "mupots17", "lcr_mupots")
    pose3d, _ = skeleton.convert(a3[None], None, "mupots17", "lcr_mupots")
    feed(evaluator, 0, {"ppi": (pose2d, pose3d, [0.9])}, num_joints=17)
    out = evaluator.evaluate()["ppi"]
    assert (out["num_annotated"], out["missed"], out["3dpck_all"]) == (1, 0, 1.0)
