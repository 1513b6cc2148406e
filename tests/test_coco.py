import contextlib
import io

import numpy as np
import pytest

from lcrnet_jax.metrics import coco as coco_metrics


def test_oks_hand_case_and_coco_sigmas():
    from pycocotools.cocoeval import Params

    np.testing.assert_array_equal(coco_metrics.COCO_SIGMAS, Params("keypoints").kpt_oks_sigmas)
    gt = np.zeros((1, 2, 2))
    pred = np.array([[[3.0, 4.0], [0.0, 0.0]]])
    sigmas = np.array([0.1, 0.1])
    value = coco_metrics.oks(pred, gt, np.ones((1, 2), bool), np.array([100.0]), sigmas=sigmas)
    expected = (np.exp(-25.0 / (2 * 100.0 * 0.2**2)) + 1.0) / 2
    np.testing.assert_allclose(value, [[expected]], rtol=1e-12)
    one_joint = coco_metrics.oks(
        pred, gt, np.array([[True, False]]), np.array([100.0]), sigmas=sigmas
    )
    np.testing.assert_allclose(one_joint, [[np.exp(-25.0 / 8.0)]], rtol=1e-12)


def _coco_case(seed, *, noise, miss, false_pos, crowd=False, unlabelled=False, empty=False):
    """Four images of random people and predictions; `empty`: images 1 and 3 hold nobody
    and two or more false detections."""
    rng = np.random.default_rng(seed)
    case = {k: [] for k in ("pred", "score", "gt", "vis", "area", "box", "crowd")}
    for image in range(4):
        num_g = 0 if empty and image % 2 else int(rng.integers(1, 4))
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
        extra = extra if num_g else extra + 2
        fp = rng.uniform(0, 500, size=(extra, 1, 2)) + rng.uniform(0, 80, size=(extra, 17, 2))
        near = gt[:1] + rng.normal(
            scale=8.0, size=(extra if num_g else 0, 17, 2)
        )  # sloppy duplicates
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
    "images_without_people": dict(noise=0.04, miss=0.1, false_pos=True, empty=True),
}


@pytest.mark.parametrize("name", sorted(_COCO_CASES))
def test_oks_ap_agrees_with_pycocotools(name):
    seed = sorted(_COCO_CASES).index(name)
    case = _coco_case(seed, **_COCO_CASES[name])
    ours = coco_metrics.oks_ap(
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
    only_all = coco_metrics.oks_ap(
        case["pred"], case["score"], case["gt"], case["vis"], gt_areas=case["area"],
        gt_boxes=case["box"], gt_crowd=case["crowd"], area_ranges=("all",),
    )  # fmt: skip
    assert only_all == {k: ours[k] for k in ("AP", "AP50", "AP75", "AR", "AR50", "AR75")}
    if name == "perfect":
        assert ours["AP"] == pytest.approx(1.0)
    else:
        assert ours["AP"] < 1.0


def test_oks_ap_padding_and_errors():
    case = _coco_case(11, noise=0.03, miss=0.0, false_pos=True)
    kwargs = dict(gt_areas=case["area"], gt_boxes=case["box"])
    ref = coco_metrics.oks_ap(case["pred"], case["score"], case["gt"], case["vis"], **kwargs)
    # Padded predictions far away with top scores change nothing when marked invalid.
    pad_pred = [np.concatenate([p, np.full((2, 17, 2), 1e4)]) for p in case["pred"]]
    pad_score = [np.concatenate([s, [2.0, 3.0]]) for s in case["score"]]
    valid = [np.arange(len(s)) < len(s) - 2 for s in pad_score]
    padded = coco_metrics.oks_ap(
        pad_pred, pad_score, case["gt"], case["vis"], pred_valid=valid, **kwargs
    )
    assert padded == ref
    with pytest.raises(ValueError, match="area_ranges must be among"):
        coco_metrics.oks_ap(case["pred"], case["score"], case["gt"], case["vis"],
                            area_ranges=("small",), **kwargs)  # fmt: skip
    with pytest.raises(ValueError, match="gt_areas or gt_boxes"):
        coco_metrics.oks_ap(case["pred"], case["score"], case["gt"], case["vis"])
    with pytest.raises(ValueError, match="same number of images"):
        coco_metrics.oks_ap(case["pred"], case["score"][:2], case["gt"], case["vis"], **kwargs)
    # A negative max_dets sliced off the best predictions; mismatched lengths raised
    # IndexError or a reshape error naming no argument; a negative area gave OKS > 1.
    with pytest.raises(ValueError, match="max_dets must be an int >= 0, got -1"):
        coco_metrics.oks_ap(case["pred"], case["score"], case["gt"], case["vis"], max_dets=-1,
                            **kwargs)  # fmt: skip
    scores = [np.append(s, 0.5) for s in case["score"]]
    with pytest.raises(ValueError, match=r"^pred_scores\[0\] has shape \(\d+,\), expected"):
        coco_metrics.oks_ap(case["pred"], scores, case["gt"], case["vis"], **kwargs)
    areas = [np.append(a, 1.0) for a in case["area"]]
    with pytest.raises(ValueError, match=r"^gt_areas\[0\] has shape"):
        coco_metrics.oks_ap(case["pred"], case["score"], case["gt"], case["vis"], gt_areas=areas)
    boxes = [b[:, :3] for b in case["box"]]
    with pytest.raises(ValueError, match=r"^gt_boxes\[0\] has shape"):
        coco_metrics.oks_ap(case["pred"], case["score"], case["gt"], case["vis"], gt_boxes=boxes)
    gt, vis = case["gt"][0], case["vis"][0]
    with pytest.raises(ValueError, match="gt_area must be >= 0 square pixels"):
        coco_metrics.oks(gt, gt, vis, -np.ones(len(gt)))


def test_an_oks_equal_to_the_threshold_matches():
    """pycocotools matches a detection whose OKS equals the threshold (it skips only
    OKS < t): one joint exact and one infinitely far give OKS 0.5 exactly, a match at
    0.50 and at no other threshold."""
    gt, pred = np.zeros((1, 2, 2)), np.array([[[0.0, 0.0], [1e4, 0.0]]])
    sigmas, vis, area = np.array([0.1, 0.1]), np.ones((1, 2), bool), np.array([100.0])
    assert coco_metrics.oks(pred, gt, vis, area, sigmas=sigmas)[0, 0] == 0.5
    out = coco_metrics.oks_ap(
        [pred], [np.array([0.9])], [gt], [vis], gt_areas=[area], sigmas=sigmas, area_ranges=("all",)
    )
    assert out["AP50"] == pytest.approx(1.0) and out["AR50"] == 1.0
    assert out["AP"] == pytest.approx(0.1) and out["AP75"] == 0.0


def test_oks_ap_keeps_the_20_best_detections_per_image():
    """pycocotools' keypoint `maxDets` is 20: a right detection ranked 21st in its image
    is never seen (recall 0); ranked 20th it is found."""
    gt, vis, area = np.zeros((1, 2, 2)), np.ones((1, 2), bool), np.array([100.0])
    far = np.full((20, 2, 2), 1e4)
    for extra, recall in ((20, 0.0), (19, 1.0)):
        pred = np.concatenate([far[:extra], gt])
        scores = np.linspace(0.9, 0.5, extra + 1)
        out = coco_metrics.oks_ap(
            [pred],
            [scores],
            [gt],
            [vis],
            gt_areas=[area],
            sigmas=np.array([0.1, 0.1]),
            area_ranges=("all",),
        )
        assert out["AR"] == recall


def test_oks_ap_area_ranges_include_their_bounds():
    """pycocotools ignores a person outside [lo, hi] (area < lo or > hi): areas of exactly
    32^2 and 96^2 are medium, and 96^2 is large too."""
    gt, vis = np.zeros((1, 2, 2)), np.ones((1, 2), bool)
    for area, medium, large in ((32.0**2, 1.0, np.nan), (96.0**2, 1.0, 1.0)):
        out = coco_metrics.oks_ap(
            [gt.copy()],
            [np.array([0.9])],
            [gt],
            [vis],
            gt_areas=[np.array([area])],
            sigmas=np.array([0.1, 0.1]),
        )
        np.testing.assert_allclose([out["AP_medium"], out["AP_large"]], [medium, large])


def test_oks_ap_a_detections_area_is_the_box_of_its_joints():
    """pycocotools gives a keypoint detection the area (x1 - x0) * (y1 - y0) of its
    joints: an unmatched one spanning 31 x 33 px (1023 < 32^2) is outside "medium" and
    ignored there, so it costs the right, lower-scored detection nothing."""
    gt, vis = np.array([[[0.0, 0.0], [40.0, 40.0]]]), np.ones((1, 2), bool)
    stray = np.array([[[1000.0, 1000.0], [1031.0, 1033.0]]])
    out = coco_metrics.oks_ap(
        [np.concatenate([stray, gt])],
        [np.array([0.9, 0.5])],
        [gt],
        [vis],
        gt_areas=[np.array([2500.0])],
        sigmas=np.array([0.1, 0.1]),
    )
    assert out["AP_medium"] == pytest.approx(1.0)
    assert out["AP"] == pytest.approx(0.5)  # in "all" the stray one is a false positive
