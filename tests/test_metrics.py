import contextlib
import io

import numpy as np
import pytest

from lcrnet_jax import geometry, metrics, skeleton

# ---------------------------------------------------------------------------------------
# MPJPE / PA-MPJPE
# ---------------------------------------------------------------------------------------


def test_mpjpe_hand_case_with_visibility():
    gt = np.zeros((2, 3, 2, 3))
    pred = gt.copy()
    pred[..., 0, :] = [3.0, 4.0, 0.0]  # joint 0 off by a 3-4-5 triangle
    np.testing.assert_allclose(metrics.mpjpe(pred, gt), np.full((2, 3), 2.5))
    visible = np.zeros((2, 3, 2), bool)
    visible[..., 0] = True
    np.testing.assert_allclose(metrics.mpjpe(pred, gt, visible), np.full((2, 3), 5.0))
    visible[0, 0] = False
    assert np.isnan(metrics.mpjpe(pred, gt, visible)[0, 0])


@pytest.fixture(scope="module")
def poses17():
    rng = np.random.default_rng(0)
    return rng.normal(scale=0.3, size=(4, 17, 3))


def test_pa_mpjpe_is_invariant_to_similarity_transforms(poses17):
    gt = poses17
    rng = np.random.default_rng(1)
    rot = np.asarray(geometry.rotation_matrix([0.3, 1.0, -2.0, 2.5], [0.2, -0.4, 0.1, 0.0], 0.3))
    shift = rng.normal(size=(4, 1, 3))
    moved = 1.7 * np.einsum("njc,ndc->njd", gt, rot) + shift
    np.testing.assert_allclose(metrics.pa_mpjpe(moved, gt), 0.0, atol=1e-5)
    assert np.all(metrics.mpjpe(moved, gt) > 0.1)
    np.testing.assert_allclose(metrics.pa_mpjpe(gt, gt), 0.0, atol=1e-6)
    # A noisy prediction keeps its aligned error under any similarity of itself.
    noisy = gt + rng.normal(scale=0.05, size=gt.shape)
    moved_noisy = 0.6 * np.einsum("njc,ndc->njd", noisy, rot) - shift
    err = metrics.pa_mpjpe(noisy, gt)
    assert np.all(err > 0.01)
    np.testing.assert_allclose(metrics.pa_mpjpe(moved_noisy, gt), err, rtol=1e-4)
    # No reflection: a mirrored pose cannot be aligned perfectly.
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert np.all(metrics.pa_mpjpe(mirrored, gt) > 0.01)


def test_pa_mpjpe_fits_and_scores_only_visible_joints(poses17):
    gt = poses17
    visible = np.ones(gt.shape[:2], bool)
    visible[:, :3] = False
    pred = 2.0 * gt + 1.0
    pred[:, :3] += 5.0  # wrong, but invisible
    np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt, visible), 0.0, atol=1e-5)
    assert np.all(metrics.pa_mpjpe(pred, gt) > 0.1)


def test_errors_reject_bad_shapes():
    with pytest.raises(ValueError, match="gt has shape"):
        metrics.mpjpe(np.zeros((2, 13, 3)), np.zeros((2, 17, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., J, 3\)"):
        metrics.mpjpe(np.zeros((2, 13, 2)), np.zeros((2, 13, 2)))
    with pytest.raises(ValueError, match="visible has shape"):
        metrics.mpjpe(np.zeros((2, 13, 3)), np.zeros((2, 13, 3)), np.ones((2, 12), bool))


# ---------------------------------------------------------------------------------------
# Human3.6M protocols
# ---------------------------------------------------------------------------------------


def _h36m_grid(num_frames=130):
    grid = np.stack(
        np.meshgrid([1, 5, 6, 7, 8, 9, 11], [1, 2, 3, 4], [1, 2], np.arange(num_frames)),
        -1,
    ).reshape(-1, 4)
    return dict(zip(("subject", "camera", "trial", "frame"), grid.T, strict=True))


def test_h36m_test_masks_select_the_protocol_frames():
    meta = _h36m_grid()
    args = [meta[k] for k in ("subject", "camera", "trial", "frame")]
    p1 = metrics.h36m_test_mask(*args, "p1")
    # S11, camera 2, both trials, frames 0, 64, 128.
    assert p1.sum() == 2 * 3
    assert set(meta["subject"][p1]) == {11} and set(meta["camera"][p1]) == {2}
    assert set(meta["frame"][p1]) == {0, 64, 128}
    p2 = metrics.h36m_test_mask(*args, "P2")
    assert p2.sum() == 2 * 4 * 2 * 26  # subjects x cameras x trials x frames 0..125
    assert set(meta["subject"][p2]) == {9, 11} and np.all(meta["frame"][p2] % 5 == 0)
    p3 = metrics.h36m_test_mask(*args, "p3")
    assert np.all(p2[p3]) and p3.sum() == 2 * 26
    assert set(meta["camera"][p3]) == {3} and set(meta["trial"][p3]) == {1}
    assert metrics.H36M_PROTOCOLS["p1"].train_subjects == (1, 5, 6, 7, 8, 9)
    assert metrics.H36M_PROTOCOLS["p3"].reported == ("align_mm",)
    with pytest.raises(ValueError, match="unknown Human3.6M protocol"):
        metrics.h36m_test_mask(*args, "p4")


def test_h36m_errors_selects_frames_and_reports_mm_per_action(poses17):
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
    out = metrics.h36m_errors(pred, gt, "p1", metadata=meta)
    assert out["num_poses"] == 6
    # Test frames 0, 1, 3, 4, 6, 7: errors 50, 150, 50, 50, 50, 50 mm.
    np.testing.assert_allclose(out["abs_mm"], (150 + 5 * 50) / 6, rtol=1e-9)
    np.testing.assert_allclose(out["align_mm"], 0.0, atol=1e-3)
    walk, sit = out["per_action"]["Walk"], out["per_action"]["Sit"]
    assert (walk["num_poses"], sit["num_poses"]) == (2, 4)
    np.testing.assert_allclose([walk["abs_mm"], sit["abs_mm"]], [100.0, 50.0], rtol=1e-9)
    np.testing.assert_allclose(out["action_mean_abs_mm"], 75.0, rtol=1e-9)
    # Torso centring removes the translation; without metadata every frame counts.
    centred = metrics.h36m_errors(pred[:2], gt[:2], "p2", joint_set="lcr13")
    assert centred["num_poses"] == 2 and "per_action" not in centred
    np.testing.assert_allclose(centred["abs_mm"], 0.0, atol=1e-3)
    with pytest.raises(ValueError, match="metadata lacks"):
        metrics.h36m_errors(pred, gt, "p1", metadata={"subject": meta["subject"]})


# ---------------------------------------------------------------------------------------
# PCKh
# ---------------------------------------------------------------------------------------


def test_mpii_head_size_and_pckh_threshold_edges():
    head = metrics.mpii_head_size(np.array([[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 3.0, 4.0]]))
    np.testing.assert_allclose(head, [30.0, 3.0])  # 0.6 x diagonal (50 and 5)
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0, 0] = [9.0, 12.0]  # exactly 0.5 head sizes (15 px): correct
    pred[0, 1] = [9.0, 12.001]  # just above: wrong
    pred[0, 2] = [1000.0, 0.0]  # wrong, but not visible
    pred[1, :] = [1.8, 2.4]  # 3 px = 1 head size: wrong at 0.5, right at 1.0
    visible = np.array([[True, True, False], [True, True, True]])
    per_joint, total = metrics.pckh(pred, gt, visible, head)
    np.testing.assert_allclose(per_joint, [0.5, 0.0, 0.0])
    assert total == pytest.approx(1 / 5)
    per_joint, total = metrics.pckh(pred, gt, visible, head, threshold=1.0)
    np.testing.assert_allclose(per_joint, [1.0, 1.0, 1.0])
    assert total == 1.0
    per_joint, _ = metrics.pckh(pred, gt, np.zeros((2, 3), bool), head)
    assert np.all(np.isnan(per_joint))
    with pytest.raises(ValueError, match="head_size"):
        metrics.pckh(pred, gt, visible, np.array([30.0, 0.0]))


# ---------------------------------------------------------------------------------------
# 3DPCK, AUC, MuPoTS-3D
# ---------------------------------------------------------------------------------------


def test_pck3d_and_auc_hand_cases(poses17):
    gt = poses17
    assert metrics.pck3d(gt, gt) == 1.0
    assert metrics.pck3d_auc(gt, gt) == 1.0
    pred = gt.copy()
    pred[:, 0, 0] += 0.1
    pred[:, 1, 0] += 0.15  # on the threshold: correct
    pred[:, 2, 0] += 0.2
    assert metrics.pck3d(pred, gt) == pytest.approx(16 / 17)
    visible = np.zeros(gt.shape[:2], bool)
    visible[:, :3] = True
    assert metrics.pck3d(pred, gt, visible) == pytest.approx(2 / 3)
    # Every joint off by 52.5 mm: correct from the 55 mm threshold on (20 of 31).
    off = gt + np.array([0.0525, 0.0, 0.0])
    assert metrics.pck3d_auc(off, gt) == pytest.approx(20 / 31)
    assert metrics.pck3d_auc(off, gt, thresholds=[0.05, 0.06]) == pytest.approx(0.5)


def _mupots_pose(offset2d, seed):
    """A MuPoTS-17 person: 2D pixels around `offset2d`, 3D metres (pelvis at depth 4 m)."""
    rng = np.random.default_rng(seed)
    pose3d = rng.normal(scale=0.25, size=(17, 3)) + np.array([0.0, 0.0, 4.0])
    pose2d = rng.uniform(-80, 80, size=(17, 2)) + np.asarray(offset2d)
    return pose2d, pose3d


def test_mupots_match_follows_the_official_rule():
    assert len(metrics.MUPOTS_EVAL_JOINTS) == 14 and metrics.MUPOTS_EVAL_JOINTS[0] == "head_top"
    assert not {"pelvis", "spine", "head"} & set(metrics.MUPOTS_EVAL_JOINTS)
    a2, _ = _mupots_pose((300, 300), 0)
    b2, _ = _mupots_pose((900, 300), 1)
    gt = np.stack([a2, b2])
    pred = np.stack([b2 + 39.0, a2 - 39.0, a2 + 41.0])  # 39 px: within, 41 px: not
    np.testing.assert_array_equal(metrics.mupots_match(gt, pred), [1, 0])
    np.testing.assert_array_equal(metrics.mupots_match(gt, pred[2:]), [-1, -1])
    # A prediction taken by an earlier person is not reused; padding never matches.
    np.testing.assert_array_equal(metrics.mupots_match(np.stack([a2, a2]), pred[:2]), [1, -1])
    valid = np.array([True, False, True])
    np.testing.assert_array_equal(metrics.mupots_match(gt, pred, pred_valid=valid), [-1, 0])
    # Head top, pelvis, spine and head do not take part.
    moved = a2.copy()
    moved[list(skeleton.MUPOTS17.indices(("head_top", "pelvis", "spine", "head")))] += 500
    np.testing.assert_array_equal(metrics.mupots_match(a2[None], moved[None]), [0])


def test_mupots_rescale_bones_restores_ground_truth_lengths():
    _, gt = _mupots_pose((0, 0), 2)
    root = skeleton.MUPOTS17.index("pelvis")
    stretched = gt[root] + 1.5 * (gt - gt[root])
    np.testing.assert_allclose(metrics.mupots_rescale_bones(stretched, gt), gt, atol=1e-12)
    batch = np.stack([stretched, gt + 1.0])
    np.testing.assert_allclose(
        metrics.mupots_rescale_bones(batch, np.stack([gt, gt])), [gt, gt + 1.0], atol=1e-12
    )


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
    out = metrics.mupots_3dpck(pred2d, pred3d, gt2d, gt3d, [1, 2], pred_valid=pred_valid)
    seq1, seq2 = out["per_sequence"][1], out["per_sequence"][2]
    assert (seq1["num_annotated"], seq1["num_missed"]) == (2, 1)
    assert (seq1["all"], seq1["matched"]) == (0.5, 1.0)
    assert (seq2["all"], seq2["matched"]) == (1.0, 1.0)  # bone rescaling undoes the 1.5
    assert (out["all"], out["matched"]) == (0.75, 1.0)
    assert (out["num_annotated"], out["num_missed"]) == (3, 1)
    # Without rescaling, a joint of c is right iff half its distance to the pelvis is
    # within 15 cm; the mean over sequences changes accordingly.
    raw = metrics.mupots_3dpck(
        pred2d, pred3d, gt2d, gt3d, [1, 2], pred_valid=pred_valid, rescale_bones=False
    )
    idx = list(skeleton.MUPOTS17.indices(metrics.MUPOTS_EVAL_JOINTS))
    expected = np.mean(0.5 * np.linalg.norm(c3[idx] - c3[root], axis=-1) <= 0.15)
    assert expected < 1.0
    assert raw["per_sequence"][2]["all"] == pytest.approx(expected)
    assert raw["all"] == pytest.approx((0.5 + expected) / 2)
    # Nothing annotated counts as missed in "all" only; gt_valid drops people.
    only_a = metrics.mupots_3dpck(
        pred2d[:1], pred3d[:1], gt2d[:1], gt3d[:1], [1], gt_valid=[np.array([True, False])]
    )
    assert (only_a["all"], only_a["num_annotated"]) == (1.0, 1)
    with pytest.raises(ValueError, match="MuPoTS-17"):
        metrics.mupots_3dpck([a2[:13][None]], [a3[None]], [a2[None]], [a3[None]], [1])
    with pytest.raises(ValueError, match="same number of images"):
        metrics.mupots_3dpck(pred2d, pred3d[:1], gt2d, gt3d, [1, 2])


# ---------------------------------------------------------------------------------------
# MPII multi-person AP
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mpii_person():
    rng = np.random.default_rng(7)
    return rng.uniform(100, 300, size=(14, 2))


def _mpii_ap(preds, scores, gt, **kw):
    head = np.full(len(gt), 20.0)  # 0.5 PCKh = 10 px
    vis = kw.pop("gt_visible", np.ones(gt.shape[:2], bool))
    kw = {k: [v] for k, v in kw.items()}  # one image
    return metrics.mpii_multi_person_ap([preds], [scores], [gt], [vis], [head], **kw)


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
    out = metrics.mpii_multi_person_ap(
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
    out = metrics.mpii_multi_person_ap(
        [*preds, np.zeros((0, 14, 2))],
        [scores, np.array([0.1]), np.zeros(0)],
        [gt, np.zeros((0, 14, 2)), gt + 50.0],
        [np.ones((1, 14), bool), np.zeros((0, 14), bool), np.ones((1, 14), bool)],
        [np.array([20.0]), np.zeros(0), np.array([20.0])],
    )
    expected = np.full(14, 0.5)
    expected[0] = 0.25
    np.testing.assert_allclose(out["per_joint"], expected)


# ---------------------------------------------------------------------------------------
# COCO OKS AP, checked against pycocotools
# ---------------------------------------------------------------------------------------


def test_oks_hand_case_and_coco_sigmas():
    from pycocotools.cocoeval import Params

    np.testing.assert_array_equal(metrics.COCO_SIGMAS, Params("keypoints").kpt_oks_sigmas)
    gt = np.zeros((1, 2, 2))
    pred = np.array([[[3.0, 4.0], [0.0, 0.0]]])
    sigmas = np.array([0.1, 0.1])
    value = metrics.oks(pred, gt, np.ones((1, 2), bool), np.array([100.0]), sigmas=sigmas)
    expected = (np.exp(-25.0 / (2 * 100.0 * 0.2**2)) + 1.0) / 2
    np.testing.assert_allclose(value, [[expected]], rtol=1e-12)
    one_joint = metrics.oks(pred, gt, np.array([[True, False]]), np.array([100.0]), sigmas=sigmas)
    np.testing.assert_allclose(one_joint, [[np.exp(-25.0 / 8.0)]], rtol=1e-12)


def _coco_case(seed, *, noise, miss, false_pos, crowd=False, unlabelled=False):
    rng = np.random.default_rng(seed)
    case = {k: [] for k in ("pred", "score", "gt", "vis", "area", "box", "crowd")}
    for _ in range(4):
        num_g = int(rng.integers(1, 4))
        size = rng.uniform(20, 200, size=(num_g, 1, 2))
        gt = rng.uniform(0, 400, size=(num_g, 1, 2)) + rng.uniform(0, 1, (num_g, 17, 2)) * size
        vis = rng.uniform(size=(num_g, 17)) < 0.8
        is_crowd = np.zeros(num_g, bool)
        if unlabelled:
            vis[0] = False
        if crowd and num_g > 1:
            is_crowd[-1], vis[-1] = True, False
        lo, hi = gt.min(axis=1), gt.max(axis=1)
        box = np.concatenate([lo - 5.0, hi + 5.0], axis=-1)
        area = np.prod(hi - lo, axis=-1) * rng.uniform(0.5, 0.9, num_g)
        keep = rng.uniform(size=num_g) >= miss
        pred = gt[keep] + rng.normal(size=(int(keep.sum()), 17, 2)) * noise * size[keep]
        extra = int(rng.integers(0, 3)) if false_pos else 0
        fp = rng.uniform(0, 500, size=(extra, 1, 2)) + rng.uniform(0, 80, size=(extra, 17, 2))
        near = gt[:1] + rng.normal(scale=8.0, size=(extra, 17, 2))  # sloppy duplicates
        pred = np.concatenate([pred, fp, near])
        for k, v in zip(
            case,
            (pred, rng.uniform(size=len(pred)), gt, vis, area, box, is_crowd),
            strict=True,
        ):
            case[k].append(v)
    return case


def _pycocotools_stats(case):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, (gt, vis, area, box, crowd) in enumerate(
        zip(case["gt"], case["vis"], case["area"], case["box"], case["crowd"], strict=True)
    ):
        images.append({"id": i + 1})
        for g in range(len(gt)):
            kp = np.concatenate([gt[g], 2.0 * vis[g][:, None]], axis=-1)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "keypoints": kp.ravel().tolist(),
                    "num_keypoints": int(vis[g].sum()),
                    "area": float(area[g]),
                    "bbox": [*box[g, :2], *(box[g, 2:] - box[g, :2])],
                    "iscrowd": int(crowd[g]),
                }
            )
        for pose, score in zip(case["pred"][i], case["score"][i], strict=True):
            kp = np.concatenate([pose, np.ones((17, 1))], axis=-1)
            dets.append(
                {"image_id": i + 1, "category_id": 1, "keypoints": kp.ravel().tolist(),
                 "score": float(score)}
            )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": [], "skeleton": []}],
        }
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.where(ev.stats == -1, np.nan, ev.stats)


_COCO_CASES = {
    "perfect": dict(noise=0.0, miss=0.0, false_pos=False),
    "noisy": dict(noise=0.05, miss=0.0, false_pos=False),
    "missing": dict(noise=0.03, miss=0.4, false_pos=False),
    "false_positives": dict(noise=0.04, miss=0.2, false_pos=True),
    "crowd_and_unlabelled": dict(noise=0.04, miss=0.1, false_pos=True, crowd=True, unlabelled=True),
}


@pytest.mark.parametrize("name", sorted(_COCO_CASES))
def test_oks_ap_agrees_with_pycocotools(name):
    seed = sorted(_COCO_CASES).index(name)
    case = _coco_case(seed, **_COCO_CASES[name])
    ours = metrics.oks_ap(
        case["pred"],
        case["score"],
        case["gt"],
        case["vis"],
        gt_areas=case["area"],
        gt_boxes=case["box"],
        gt_crowd=case["crowd"],
    )
    keys = ("AP", "AP50", "AP75", "AP_medium", "AP_large", "AR", "AR50", "AR75")
    keys += ("AR_medium", "AR_large")
    np.testing.assert_allclose([ours[k] for k in keys], _pycocotools_stats(case), atol=1e-6)
    if name == "perfect":
        assert ours["AP"] == pytest.approx(1.0)
    else:
        assert ours["AP"] < 1.0


def test_oks_ap_padding_and_errors():
    case = _coco_case(11, noise=0.03, miss=0.0, false_pos=True)
    kwargs = dict(gt_areas=case["area"], gt_boxes=case["box"])
    ref = metrics.oks_ap(case["pred"], case["score"], case["gt"], case["vis"], **kwargs)
    # Padded predictions far away with top scores change nothing when marked invalid.
    pad_pred = [np.concatenate([p, np.full((2, 17, 2), 1e4)]) for p in case["pred"]]
    pad_score = [np.concatenate([s, [2.0, 3.0]]) for s in case["score"]]
    valid = [np.arange(len(s)) < len(s) - 2 for s in pad_score]
    padded = metrics.oks_ap(
        pad_pred, pad_score, case["gt"], case["vis"], pred_valid=valid, **kwargs
    )
    assert padded == ref
    with pytest.raises(ValueError, match="gt_areas or gt_boxes"):
        metrics.oks_ap(case["pred"], case["score"], case["gt"], case["vis"])
    with pytest.raises(ValueError, match="same number of images"):
        metrics.oks_ap(case["pred"], case["score"][:2], case["gt"], case["vis"], **kwargs)
