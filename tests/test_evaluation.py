import json
import pickle

import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import geometry, skeleton
from lcrnet_jax.evaluation import base, generic, inference
from lcrnet_jax.metrics import coco as coco_metrics
from lcrnet_jax.postprocess import candidates, ppi
from tests.test_anchors import _STANDING


def _person(x, y, scale=100.0):
    pose3d = _STANDING - _STANDING[[4, 5, 10, 11]].mean(0)
    return pose3d[:, :2] * scale + np.array([x, y]), pose3d


def _scene(num):
    people = [_person(60 + 120 * i, 120) for i in range(num)]
    return (
        np.stack([p[0] for p in people]).astype(np.float32),
        np.stack([p[1] for p in people]).astype(np.float32),
    )


def _result(poses2d, poses3d, scores):
    return {"poses2d": poses2d, "poses3d": poses3d, "scores": np.asarray(scores, np.float32),
            "valid": np.ones(len(scores), bool)}  # fmt: skip


def _gt(poses2d, poses3d):
    n = len(poses2d)
    return {"poses2d": poses2d, "poses3d": poses3d, "visible": np.ones((n, 13), bool),
            "known": np.ones((n, 13), bool), "valid": np.ones(n, bool)}  # fmt: skip


def test_oks_sigmas_follow_coco_by_joint_type():
    sigmas = generic.oks_sigmas("lcr13")
    coco = dict(zip(skeleton.COCO17.joints, coco_metrics.COCO_SIGMAS, strict=True))
    for name, sigma in zip(skeleton.LCR13.joints, sigmas, strict=True):
        if name in coco:
            np.testing.assert_allclose(sigma, coco[name])
    assert len(generic.oks_sigmas("lcr17")) == 17


def test_perfect_predictions_score_perfectly():
    p2, p3 = _scene(2)
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2, p3, [0.9, 0.8]), _gt(p2, p3))
    out = acc.summary()
    assert out["recall"] == 1.0 and out["AP"] == 1.0 and out["pckh"] == 1.0
    assert out["mpjpe_mm"] == 0.0 and out["pa_mpjpe_mm"] < 1e-3
    assert out["pck3d"] == 1.0 and out["pck3d_all"] == 1.0 and out["num_images"] == 1


def test_images_without_predictions_or_without_people_are_counted():
    p2, p3 = _scene(2)
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2[:0], p3[:0], []), _gt(p2[:0], p3[:0]))  # nothing at all
    acc.add(_result(p2[:0], p3[:0], []), _gt(p2, p3))  # two people missed
    acc.add(_result(p2, p3, [0.9, 0.8]), _gt(p2[:0], p3[:0]))  # two false positives
    out = acc.summary()
    assert (out["num_images"], out["num_gt"], out["num_pred"]) == (3, 2, 2)
    assert out["recall"] == 0.0 and out["AP"] == 0.0


def test_a_missed_person_and_a_wrong_pose():
    p2, p3 = _scene(2)
    acc = generic.Accumulator("lcr13")
    wrong3d = p3[:1] + np.array([0.0, 0.0, 0.2], np.float32)  # 200 mm off in depth
    acc.add(_result(p2[:1], wrong3d, [0.9]), _gt(p2, p3))
    out = acc.summary()
    assert out["recall"] == 0.5 and out["num_gt"] == 2 and out["num_pred"] == 1
    np.testing.assert_allclose(out["mpjpe_mm"], 200.0, rtol=1e-5)
    assert out["pa_mpjpe_mm"] < 1e-3  # a translation is aligned away
    assert out["pck3d"] == 0.0 and out["pck3d_all"] == 0.0
    # A far-away detection matches nobody.
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2[:1] + 500.0, p3[:1], [0.9]), _gt(p2, p3))
    assert acc.summary()["recall"] == 0.0


def test_pckh_leaves_out_people_without_a_head_size():
    # 2D-only ground truth holds zeros at unknown joints: a head at (0, 0) made the head
    # size of a person far from the origin huge (every joint passed); now such a person
    # has none and PCKh leaves it out.
    p2, p3 = _scene(2)
    off = p2 + np.array([0.0, 15.0], np.float32)  # every joint 15 px off
    gt = _gt(p2, p3)
    head = skeleton.LCR13.joints.index("head")
    gt["known"][1, head] = gt["visible"][1, head] = False
    gt["poses2d"] = np.where(gt["known"][..., None], p2, 0.0).astype(np.float32)
    heads = generic.head_sizes(gt["poses2d"], gt["known"], "lcr13")
    assert heads[0] == pytest.approx(20.0) and np.isnan(heads[1])
    acc = generic.Accumulator("lcr13")
    acc.add(_result(off, p3, [0.9, 0.8]), gt)
    assert acc.summary()["recall"] == 1.0 and acc.summary()["pckh"] == 0.0  # was 0.5
    acc = generic.Accumulator("lcr13")
    acc.add(_result(off[1:], p3[1:], [0.9]), {k: v[1:] for k, v in gt.items()})
    assert np.isnan(acc.summary()["pckh"])  # nobody with a head size


def test_a_person_whose_known_joints_span_no_area_is_left_out():
    # One known joint: its box has no area, no prediction could ever match it by IoU.
    p2, p3 = _scene(2)
    gt = _gt(p2, p3)
    gt["known"][1] = gt["visible"][1] = np.arange(13) == 12
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2, p3, [0.9, 0.8]), gt)
    out = acc.summary()
    assert (out["num_gt"], out["recall"]) == (1, 1.0)  # was 2 and 0.5


def test_greedy_match_gives_each_person_one_prediction():
    """Predictions in score order each take the unmatched person they overlap most: the
    second one on a taken person falls back to its next person if IoU >= 0.5, else to
    nobody."""
    scores, valid, gt_valid = np.array([0.9, 0.8]), np.ones(2, bool), np.ones(2, bool)
    overlap = np.array([[0.9, 0.0], [0.8, 0.6]])
    np.testing.assert_array_equal(generic.greedy_match(scores, valid, overlap, gt_valid), [0, 1])
    overlap[1, 1] = 0.4
    np.testing.assert_array_equal(generic.greedy_match(scores, valid, overlap, gt_valid), [0, -1])


def test_pseudo_3d_ground_truth_is_not_scored_as_3d():
    """A person whose 3D is pseudo ground truth (`pseudo_3d`, with `has_3d`) counts for
    recall and 2D, not for MPJPE or 3DPCK: its pose is a MoCap neighbour, not a
    measurement."""
    p2, p3 = _scene(2)
    batch = {
        "index": np.array([0]), "poses2d": p2[None], "poses3d": p3[None],
        "visible": np.ones((1, 2, 13), bool), "has_3d": np.ones((1, 2), bool),
        "pseudo_3d": np.array([[False, True]]), "person_valid": np.ones((1, 2), bool),
    }  # fmt: skip
    off = p3 + np.array([[[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.2]]], np.float32)  # pseudo: 200 mm
    found = ppi.PPIResult(
        poses2d=p2[None], poses3d=off[None], scores=np.array([[0.9, 0.8]], np.float32),
        valid=np.ones((1, 2), bool),
    )  # fmt: skip
    evaluator = generic.GenericEvaluator(joint_set="lcr13")
    evaluator.process(batch, {"ppi": found})
    out = evaluator.evaluate()["ppi"]
    assert out["recall"] == 1.0 and out["pckh"] == 1.0
    assert out["mpjpe_mm"] == 0.0 and out["pck3d"] == 1.0 and out["pck3d_all"] == 1.0


def test_people_beyond_the_slots_are_warned_about(monkeypatch):
    p2, p3 = _scene(2)
    batch = {
        "index": np.array([0, 1]), "poses2d": np.stack([p2, p2]), "poses3d": np.stack([p3, p3]),
        "visible": np.ones((2, 2, 13), bool), "has_3d": np.ones((2, 2), bool),
        # Both images fill the 2 slots; only the second had more people.
        "person_valid": np.ones((2, 2), bool), "people_beyond_slots": np.array([0, 3], np.int32),
        "image": np.zeros((2, 8, 8, 3), np.uint8), "image_size": np.full((2, 2), 8, np.int32),
        "scale": np.ones(2, np.float32), "offset": np.zeros((2, 2), np.float32),
    }  # fmt: skip
    found = ppi.PPIResult(
        poses2d=batch["poses2d"], poses3d=batch["poses3d"],
        scores=np.full((2, 2), 0.9, np.float32), valid=np.ones((2, 2), bool),
    )  # fmt: skip
    warned = []
    monkeypatch.setattr(inference.logging, "warning", lambda *args: warned.append(args))
    inference.evaluate(lambda *_: {"ppi": found}, {}, [batch], [], batch_size=2)
    assert len(warned) == 1 and warned[0][0] % warned[0][1:] == (
        "3 people of 1 image(s) did not fit in the 2 people slots and are not evaluated "
        "(raise config.eval.max_people)"
    )
    warned.clear()
    batch["people_beyond_slots"][:] = 0
    inference.evaluate(lambda *_: {"ppi": found}, {}, [batch], [], batch_size=2)
    assert not warned


def test_3d_metrics_count_only_the_people_with_real_3d():
    """Three people found: one with 3D 200 mm off, one with 3D right, one 2D-only (zero
    poses3d, as MPII's); a fourth, with 3D, missed."""
    p2, p3 = _scene(4)
    gt = _gt(p2, p3) | {"real_3d": np.array([True, True, False, True])}
    gt["poses3d"] = np.where(gt["real_3d"][:, None, None], p3, 0.0)
    pred3d = p3[:3] + np.array([[[0.0, 0.0, 0.2]], [[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]])
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2[:3], pred3d.astype(np.float32), [0.9, 0.8, 0.7]), gt)
    out = acc.summary()
    assert out["recall"] == 0.75 and out["pckh"] == 1.0
    np.testing.assert_allclose(out["mpjpe_mm"], 100.0, rtol=1e-5)  # (200 + 0) / 2
    assert out["pck3d"] == 0.5 and out["pck3d_all"] == pytest.approx(1 / 3)
    only_2d = generic.Accumulator("lcr13")
    only_2d.add(_result(p2, p3, [0.9] * 4), gt | {"real_3d": np.zeros(4, bool)})
    assert np.isnan(only_2d.summary()["mpjpe_mm"]) and np.isnan(only_2d.summary()["pck3d_all"])


def test_table_has_a_column_per_method():
    p2, p3 = _scene(1)
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2, p3, [0.9]), _gt(p2, p3))
    table = generic.format_table({"ppi": acc.summary(), "nms": acc.summary()})
    assert table.splitlines()[0] == "| metric | ppi | nms |"
    assert "| MPJPE mm | 0.0 | 0.0 |" in table
    # The predictions' count, not the people found (matched: recall): it said "found".
    assert "| people predicted | 1 | 1 |" in table and "found" not in table


def test_camera_space_root_error_and_absolute_pck():
    from lcrnet_jax import geometry

    p2, p3 = _scene(3)
    center = np.array([[-1.0, 0.2, 4.0], [0.0, 0.1, 6.0], [1.5, 0.0, 9.0]], np.float32)
    intrinsics = np.array([500.0, 500.0, 320.0, 240.0], np.float32)
    p2 = np.asarray(geometry.project(p3 + center[:, None], intrinsics))
    gt = _gt(p2, p3) | {
        "center3d": center,
        "camera_space": np.array([True, True, False]),
        "intrinsics": intrinsics,
    }
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2, p3, [0.9, 0.8, 0.7]), gt)
    out = acc.summary()
    assert out["root_error_mm"] < 1.0 and out["pck3d_abs"] == 1.0
    # 3D 10% too large: placed 10% farther (root error 10% of the depth), joints off.
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2, 1.1 * p3, [0.9, 0.8, 0.7]), gt)
    out = acc.summary()
    np.testing.assert_allclose(
        out["root_error_mm"],
        1000 * np.mean([0.1 * np.linalg.norm(c) for c in center[:2]]),
        rtol=1e-3,
    )
    assert out["pck3d_abs"] == 0.0
    # Without camera-space ground truth (the default): NaN, also in the table.
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2, p3, [0.9, 0.8, 0.7]), _gt(p2, p3))
    assert np.isnan(acc.summary()["root_error_mm"])
    assert "| 3DPCK abs (camera) | nan |" in generic.format_table({"ppi": acc.summary()})


def test_generic_evaluator_scores_every_method_per_batch():
    p2, p3 = _scene(2)
    batch = {
        "index": np.array([0, 1]), "poses2d": np.stack([p2, p2]), "poses3d": np.stack([p3, p3]),
        "visible": np.ones((2, 2, 13), bool), "has_3d": np.ones((2, 2), bool),
        "person_valid": np.array([[True, True], [True, False]]),
    }  # fmt: skip
    found = ppi.PPIResult(
        poses2d=batch["poses2d"], poses3d=batch["poses3d"],
        scores=np.full((2, 2), 0.9, np.float32), valid=np.array([[True, True], [False, False]]),
    )  # fmt: skip
    evaluator = generic.GenericEvaluator(joint_set="lcr13")
    evaluator.process(batch, {"ppi": found, "nms": found, base.FALLBACK: found})
    out = evaluator.evaluate()
    assert list(out) == ["ppi", "nms"]  # the fallback is not a method of the table
    assert (out["ppi"]["num_images"], out["ppi"]["num_gt"]) == (2, 3)
    assert out["ppi"]["recall"] == pytest.approx(2 / 3) and out["ppi"]["mpjpe_mm"] == 0.0
    evaluator.reset()
    assert evaluator.evaluate() == {}


def test_the_batched_camera_placement_equals_the_per_image_one():
    from lcrnet_jax import geometry

    p2, p3 = _scene(2)
    center = np.array([[-1.0, 0.2, 4.0], [0.5, 0.1, 6.0]], np.float32)
    intrinsics = np.array([[500.0, 500.0, 320.0, 240.0], [400.0, 400.0, 300.0, 200.0]])
    pixels = [np.asarray(geometry.project(p3 + center[:, None], k)) for k in intrinsics]
    batch = {
        "index": np.array([0, 1]), "poses2d": np.stack(pixels), "poses3d": np.stack([p3, p3]),
        "visible": np.ones((2, 2, 13), bool), "has_3d": np.ones((2, 2), bool),
        "pseudo_3d": np.zeros((2, 2), bool), "person_valid": np.ones((2, 2), bool),
        "center3d": np.stack([center, center]), "intrinsics": intrinsics.astype(np.float32),
    }  # fmt: skip
    noisy = 1.05 * batch["poses3d"]  # placed off the truth: a non-zero root error
    found = ppi.PPIResult(
        poses2d=batch["poses2d"], poses3d=noisy, scores=np.full((2, 2), 0.9, np.float32),
        valid=np.ones((2, 2), bool),
    )  # fmt: skip
    evaluator = generic.GenericEvaluator(joint_set="lcr13")
    evaluator.process(batch, {"ppi": found})
    per_image = generic.Accumulator("lcr13")
    for b in range(2):
        per_image.add(
            _result(batch["poses2d"][b], noisy[b], [0.9, 0.9]),
            _gt(batch["poses2d"][b], p3) | {
                "center3d": center, "camera_space": np.ones(2, bool),
                "intrinsics": batch["intrinsics"][b],
            },
        )  # fmt: skip
    expected = per_image.summary()
    got = evaluator.evaluate()["ppi"]
    assert expected["root_error_mm"] > 10
    for key in ("root_error_mm", "pck3d_abs", "mpjpe_mm", "pckh", "AP"):
        assert got[key] == pytest.approx(expected[key], rel=1e-6), key


def test_coco_results_of_a_batch_with_an_empty_image():
    from lcrnet_jax.evaluation import inference

    p2, p3 = _scene(2)
    found = ppi.PPIResult(
        poses2d=np.stack([p2, p2]), poses3d=np.stack([p3, p3]),
        scores=np.array([[0.9, 0.8], [0.0, 0.0]], np.float32),
        valid=np.array([[True, True], [False, False]]),
    )  # fmt: skip
    batch = {"index": np.array([7, 8]), "offset": np.zeros((2, 2)), "scale": np.full(2, 2.0)}
    results = inference._coco_results(found, batch)
    assert [r["image_id"] for r in results] == [7, 7]
    np.testing.assert_allclose(
        np.reshape(results[1]["keypoints"], (13, 3))[:, :2], p2[1] / 2, atol=0.005
    )


def test_the_batched_matching_equals_the_per_image_one():
    # Shifted, rescaled and shuffled predictions with misses, false positives, padded
    # ground truth and invalid rows: the batch's boxes, areas and overlaps computed at once
    # give the same summaries as `Accumulator.add` computing them per image.
    rng = np.random.default_rng(0)
    p2, p3 = _scene(4)
    num_images, people = 5, 4
    gt2d = np.stack([p2 + rng.normal(0, 5, p2.shape) for _ in range(num_images)])
    batch = {
        "index": np.arange(num_images), "poses2d": gt2d.astype(np.float32),
        "poses3d": np.stack([p3] * num_images), "has_3d": rng.random((num_images, people)) < 0.5,
        "visible": rng.random((num_images, people, 13)) < 0.8,
        "person_valid": rng.random((num_images, people)) < 0.8,
    }  # fmt: skip
    shift = rng.normal(0, 12, (2, num_images, people, 1, 2))
    found = {
        m: ppi.PPIResult(
            poses2d=(gt2d[:, rng.permutation(people)] + shift[i]).astype(np.float32),
            poses3d=(1.1 * batch["poses3d"]).astype(np.float32),
            scores=rng.random((num_images, people)).astype(np.float32),
            valid=rng.random((num_images, people)) < 0.8,
        )
        for i, m in enumerate(("ppi", "nms"))
    }
    evaluator = generic.GenericEvaluator(joint_set="lcr13")
    evaluator.process(batch, found)
    got = evaluator.evaluate()
    for method, res in found.items():
        per_image = generic.Accumulator("lcr13")
        for b in range(num_images):
            per_image.add(
                {k: np.asarray(getattr(res, k)[b]) for k in generic._RESULT_FIELDS},
                {
                    "poses2d": batch["poses2d"][b], "poses3d": batch["poses3d"][b],
                    "visible": batch["visible"][b], "valid": batch["person_valid"][b],
                    "known": batch["visible"][b] | batch["has_3d"][b][:, None],
                    "real_3d": batch["has_3d"][b],
                },
            )  # fmt: skip
        expected = per_image.summary()
        assert 0 < expected["recall"] < 1 and expected["AP"] > 0
        np.testing.assert_equal(got[method], expected)


def test_the_anchor_baseline_mirrors_the_anchors_of_rois_seen_mirrored():
    """With `flip_test` a mirrored RoI's class k is anchor k in the mirrored image: the
    anchor baseline places that anchor mirrored within the box."""
    rng = np.random.default_rng(0)
    anchors = anchors_lib.AnchorPoses(
        pose2d=jnp.asarray(rng.uniform(0, 1, (2, 13, 2)), jnp.float32),
        pose3d=jnp.asarray(rng.normal(0, 0.3, (2, 13, 3)), jnp.float32),
        std=jnp.ones((5, 13), jnp.float32),
    )
    roi_index, class_index = np.array([0, 0, 1, 1]), np.array([1, 2, 1, 2])
    cands = candidates.Candidates(
        poses2d=None, poses3d=None, scores=None, upper_body=None, rois=None, valid=None,
        roi_index=jnp.asarray(roi_index), class_index=jnp.asarray(class_index),
    )  # fmt: skip
    pose2d, pose3d = inference._anchor_poses_seen(anchors, cands, jnp.asarray([False, True]))
    a2d, a3d = np.asarray(anchors.pose2d), np.asarray(anchors.pose3d)
    np.testing.assert_allclose(pose2d[:2], a2d)
    np.testing.assert_allclose(pose3d[:2], a3d)
    np.testing.assert_allclose(pose2d[2:], skeleton.flip_poses(a2d, "lcr13", image_width=1.0))
    np.testing.assert_allclose(pose3d[2:], skeleton.flip_poses(a3d, "lcr13"))


def test_the_fallback_is_the_best_valid_candidate():
    """The fallback (`_best_candidate`) is the highest-scoring valid candidate: an invalid
    one (padding, below the score floor) with a higher score never hides it."""
    poses2d = jnp.arange(3 * 13 * 2, dtype=jnp.float32).reshape(3, 13, 2)
    cands = candidates.Candidates(
        poses2d=poses2d, poses3d=jnp.zeros((3, 13, 3)), scores=jnp.array([0.3, 0.9, 0.5]),
        upper_body=None, rois=None, valid=jnp.array([True, False, True]), roi_index=None,
        class_index=None,
    )  # fmt: skip
    best = inference._best_candidate(cands)
    assert best.valid.tolist() == [True] and float(best.scores[0]) == pytest.approx(0.5)
    np.testing.assert_array_equal(best.poses2d[0], poses2d[2])
    none = inference._best_candidate(cands.replace(valid=jnp.zeros(3, bool)))
    assert none.valid.tolist() == [False]


def _image_batch(index, canvas):
    """A one-image evaluation batch of the record `index` on a (H, W) canvas."""
    p2, p3 = _scene(1)
    return {
        "index": np.array([index]), "image": np.full((1, *canvas, 3), index, np.uint8),
        "image_size": np.array([canvas], np.int32), "scale": np.ones(1, np.float32),
        "offset": np.zeros((1, 2), np.float32), "poses2d": p2[None] + index,
        "poses3d": p3[None], "visible": np.ones((1, 1, 13), bool),
        "has_3d": np.ones((1, 1), bool), "person_valid": np.ones((1, 1), bool),
        "people_beyond_slots": np.zeros(1, np.int32),
    }  # fmt: skip


def test_by_canvas_batches_the_images_of_each_size_bucket():
    canvases = [(8, 8), (8, 12), (8, 8), (8, 8), (8, 12), (8, 8), (12, 8), (8, 8)]
    batches = [_image_batch(i, c) for i, c in enumerate(canvases)]
    out = list(inference.by_canvas(batches, 3))
    # A bucket's batch leaves once full; the partial ones at the end, buckets in order.
    assert [b["index"].tolist() for b in out] == [[0, 2, 3], [5, 7], [1, 4], [6]]
    for b in out:
        assert len({tuple(c) for c in b["image_size"]}) == 1
        np.testing.assert_array_equal(b["image"][:, 0, 0, 0], b["index"])  # rows kept together
        np.testing.assert_array_equal(b["poses2d"], np.stack([batches[i]["poses2d"][0]
                                                              for i in b["index"]]))  # fmt: skip
    # Batches that are already full pass as they are; a larger one is cut.
    two = inference._concatenate(batches[2:4])
    assert [b["index"].tolist() for b in inference.by_canvas([two, two], 2)] == [[2, 3]] * 2
    assert [b["index"].tolist() for b in inference.by_canvas([two], 1)] == [[2], [3]]


def test_evaluate_calls_the_detector_on_full_batches_of_one_bucket():
    canvases = [(8, 8), (8, 12), (8, 8), (8, 12), (8, 8)]
    calls = []

    def detect(_, images, image_size):
        calls.append((images.shape, images[:, 0, 0, 0].tolist()))
        p2 = np.stack([_scene(1)[0] + i for i in images[:, 0, 0, 0]])
        found = ppi.PPIResult(poses2d=p2, poses3d=np.zeros((*p2.shape[:-1], 3), np.float32),
                              scores=np.ones((len(p2), 1), np.float32),
                              valid=np.ones((len(p2), 1), bool))  # fmt: skip
        return {"ppi": found}

    evaluator = generic.GenericEvaluator(joint_set="lcr13")
    batches = [_image_batch(i, c) for i, c in enumerate(canvases)]
    out, coco = inference.evaluate(detect, {}, batches, [evaluator], batch_size=2)
    # The last batch of each bucket padded with its last image.
    assert calls == [((2, 8, 8, 3), [0, 2]), ((2, 8, 12, 3), [1, 3]), ((2, 8, 8, 3), [4, 4])]
    assert out["generic"]["ppi"]["num_images"] == 5 and out["generic"]["ppi"]["recall"] == 1.0
    assert [r["image_id"] for r in coco] == [0, 1, 2, 3, 4]  # by image, not by bucket


def test_people_gathered_over_hosts_are_scored_in_image_order():
    """With `over_hosts` (here one host: the gather is the identity), the evaluators see
    the split's images by index in batches of `batch_size`, whatever the buckets' order
    of detection, with the images left out; the metrics are those scored as detected."""

    def detect(_, images, image_size):
        p2 = np.stack([_scene(1)[0] + i for i in images[:, 0, 0, 0]])
        return {"ppi": ppi.PPIResult(
            poses2d=p2, poses3d=np.zeros((*p2.shape[:-1], 3), np.float32),
            scores=images[:, :1, 0, 0].astype(np.float32), valid=np.ones((len(p2), 1), bool),
        )}  # fmt: skip

    canvases = [(8, 8), (8, 12), (8, 8), (8, 12), (8, 8)]
    results = {}
    for over_hosts in (False, True):
        recorder, scored = _Recorder(), generic.GenericEvaluator(joint_set="lcr13")
        batches = [_image_batch(i, c) for i, c in enumerate(canvases)]
        results[over_hosts] = inference.evaluate(
            detect, {}, batches, [recorder, scored], batch_size=2, over_hosts=over_hosts
        )
        seen = [index.tolist() for index, _ in recorder.calls]
        assert seen == ([[0, 1], [2, 3], [4]] if over_hosts else [[0, 2], [1, 3], [4]])
        for index, people in recorder.calls:
            np.testing.assert_array_equal(people["ppi"].scores[:, 0], index)
    assert json.dumps(results[True], sort_keys=True) == json.dumps(results[False], sort_keys=True)


def test_the_people_gathered_over_hosts_travel_compressed(monkeypatch):
    """A host's share is mostly padding slots (here 64 ground-truth and 32 people slots,
    2 and 3 of them real): it travels in under a tenth of its pickled bytes and comes
    back equal."""
    rng = np.random.default_rng(0)
    batch = {"index": np.arange(8), "poses2d": np.zeros((8, 64, 13, 2), np.float32),
             "poses3d": np.zeros((8, 64, 13, 3), np.float32),
             "person_valid": np.arange(64) < np.full((8, 1), 2)}  # fmt: skip
    batch["poses2d"][:, :2] = rng.normal(size=(8, 2, 13, 2))
    found = ppi.PPIResult(
        poses2d=np.zeros((8, 32, 13, 2), np.float32), poses3d=np.zeros((8, 32, 13, 3)),
        scores=np.zeros((8, 32), np.float32), valid=np.arange(32) < np.full((8, 1), 3),
    )  # fmt: skip
    found.poses2d[:, :3] = rng.normal(size=(8, 3, 13, 2))
    shares = [(batch, {"ppi": found, "nms": found})]
    sent = []

    def gather(x):
        sent.append(np.asarray(x).nbytes)
        return np.asarray(x)[None]

    monkeypatch.setattr(inference.multihost_utils, "process_allgather", gather)
    (back,) = inference._from_every_host(shares)
    assert sent[1] < len(pickle.dumps(shares)) / 10
    np.testing.assert_array_equal(back[0]["poses2d"], batch["poses2d"])
    np.testing.assert_array_equal(back[1]["nms"].poses2d, found.poses2d)


class _Recorder(base.Evaluator):
    """An evaluator that keeps what it is given."""

    name = "recorder"

    def __init__(self):
        self.calls = ["stale"]  # what a previous split left

    def reset(self):
        self.calls = []

    def process(self, batch, people):
        self.calls.append((np.asarray(batch["index"]), people))

    def evaluate(self):
        return {"ppi": {"images": sum(len(index) for index, _ in self.calls)}}


def test_evaluate_pads_the_last_batch_with_its_last_image_and_scores_every_image_once():
    """A short last batch reaches `detect` padded to `batch_size` with copies of its last
    real image (an exported model refuses an empty one); the evaluators get every batch,
    the last one too, with the padding cut off; the COCO results name each record."""
    p2, p3 = _scene(1)

    def batch(indices):
        n = len(indices)
        return {
            "index": np.array(indices), "image_size": np.tile([[8, 6]], (n, 1)).astype(np.int32),
            "image": np.stack([np.full((8, 8, 3), i + 1, np.uint8) for i in indices]),
            "people_beyond_slots": np.zeros(n, np.int32), "person_valid": np.ones((n, 1), bool),
            "scale": np.full(n, 2.0, np.float32), "offset": np.zeros((n, 2), np.float32),
        }  # fmt: skip

    seen = []

    def detect(variables, images, image_size):
        seen.append(np.asarray(images))
        n = len(images)
        return {
            "ppi": ppi.PPIResult(
                poses2d=np.broadcast_to(p2, (n, 1, 13, 2)),
                poses3d=np.broadcast_to(p3, (n, 1, 13, 3)),
                scores=images[:, :1, 0, 0].astype(np.float32) / 10,
                valid=np.ones((n, 1), bool),
            )  # fmt: skip
        }

    recorder = _Recorder()
    scores, coco = inference.evaluate(
        detect, {}, [batch([5, 6]), batch([7])], [recorder], batch_size=2
    )
    assert scores == {"recorder": {"ppi": {"images": 3}}}
    assert [len(images) for images in seen] == [2, 2]
    np.testing.assert_array_equal(seen[1][1], seen[1][0])  # the last real image again
    assert [index.tolist() for index, _ in recorder.calls] == [[5, 6], [7]]
    for index, people in recorder.calls:
        assert people["ppi"].scores.shape == (len(index), 1)
        np.testing.assert_allclose(people["ppi"].scores[:, 0], (index + 1) / 10)
    assert [result["image_id"] for result in coco] == [5, 6, 7]
    assert [result["score"] for result in coco] == pytest.approx([0.6, 0.7, 0.8])
    keypoints = np.reshape(coco[2]["keypoints"], (13, 3))
    np.testing.assert_allclose(keypoints[:, :2], p2[0] / 2, atol=0.005)
    assert (keypoints[:, 2] == 2).all()  # COCO's visibility flag: labelled and visible


def test_greedy_match_takes_an_iou_of_exactly_one_half_and_never_padding():
    """IoU >= 0.5 matches (as detection benchmarks count); a padded ground-truth row is
    never taken, even where it overlaps most."""
    one, valid = np.array([0.9]), np.ones(1, bool)
    np.testing.assert_array_equal(generic.greedy_match(one, valid, np.array([[0.5]]), valid), [0])
    overlap, gt_valid = np.array([[0.9, 0.6]]), np.array([False, True])
    np.testing.assert_array_equal(generic.greedy_match(one, valid, overlap, gt_valid), [-1, 0])


def test_a_head_on_the_shoulders_midpoint_has_a_head_size_of_one_pixel():
    """The head size is at least 1 px: PCKh never divides by zero."""
    p2, _ = _scene(1)
    right, left, head = skeleton.LCR13.indices(("right_shoulder", "left_shoulder", "head"))
    p2[0, head] = (p2[0, right] + p2[0, left]) / 2
    np.testing.assert_array_equal(generic.head_sizes(p2, np.ones((1, 13), bool), "lcr13"), [1.0])


def test_the_head_centre_takes_the_ears_oks_sigma():
    sigmas = generic.oks_sigmas("lcr13")
    ear = coco_metrics.COCO_SIGMAS[skeleton.COCO17.index("left_ear")]
    np.testing.assert_allclose(sigmas[skeleton.LCR13.index("head")], ear)


def test_a_person_whose_known_joints_lie_on_a_line_is_left_out():
    """Known joints on a horizontal line: a box with width but no height, which no joint
    box can overlap by IoU; the person is left out, as one with a single joint."""
    p2, p3 = _scene(2)
    gt = _gt(p2, p3)
    gt["known"][1] = gt["visible"][1] = np.isin(np.arange(13), [4, 5])  # the hips
    gt["poses2d"][1, 5, 1] = gt["poses2d"][1, 4, 1]
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2, p3, [0.9, 0.8]), gt)
    assert (acc.summary()["num_gt"], acc.summary()["recall"]) == (1, 1.0)


def test_3d_people_all_missed_have_a_3dpck_all_of_0():
    """Nobody found among people with 3D: "pck3d_all" is 0 (every joint wrong), while the
    matched-only metrics have nothing to average (NaN)."""
    p2, p3 = _scene(2)
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2[:0], p3[:0], []), _gt(p2, p3))
    out = acc.summary()
    assert out["pck3d_all"] == 0.0 and np.isnan(out["pck3d"]) and np.isnan(out["mpjpe_mm"])


def test_pckh_of_the_generic_table_scores_visible_joints_only():
    """A matched person's invisible joint (known but occluded) is not scored by PCKh, even
    far off."""
    p2, p3 = _scene(1)
    gt = _gt(p2, p3)
    wrist, hip = skeleton.LCR13.indices(("right_wrist", "right_hip"))
    gt["visible"][0, wrist] = False
    pred = p2.copy()
    pred[0, wrist] = p2[0, hip]  # inside the person's box: the match does not change
    acc = generic.Accumulator("lcr13")
    acc.add(_result(pred, p3, [0.9]), gt)
    assert acc.summary()["recall"] == 1.0 and acc.summary()["pckh"] == 1.0


def test_camera_space_people_need_the_datasets_intrinsics():
    """Without intrinsics (zeros) nobody is placed in camera space: no root error and no
    absolute 3DPCK, rather than a placement through a zero focal length."""
    p2, p3 = _scene(2)
    gt = _gt(p2, p3) | {
        "center3d": np.array([[0.0, 0.0, 4.0], [1.0, 0.0, 5.0]], np.float32),
        "camera_space": np.ones(2, bool),
        "intrinsics": np.zeros(4, np.float32),
    }
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2, p3, [0.9, 0.8]), gt)
    out = acc.summary()
    assert np.isnan(out["root_error_mm"]) and np.isnan(out["pck3d_abs"])


def test_the_root_error_averages_the_people_placed_only():
    """A matched person whose translation was not found (NaN) has no root error; the mean
    is over the people placed (its joints still count wrong in the absolute 3DPCK)."""
    p2, p3 = _scene(2)
    center = np.array([[0.0, 0.0, 4.0], [1.0, 0.0, 5.0]], np.float32)
    gt = _gt(p2, p3) | {
        "center3d": center,
        "camera_space": np.ones(2, bool),
        "intrinsics": np.array([500.0, 500.0, 320.0, 240.0], np.float32),
    }
    translation = np.array([[0.0, 0.0, 4.1], [np.nan, np.nan, np.nan]], np.float32)
    acc = generic.Accumulator("lcr13")
    acc.add(_result(p2, p3, [0.9, 0.8]) | {"translation": translation}, gt)
    out = acc.summary()
    assert out["root_error_mm"] == pytest.approx(100.0, rel=1e-4)
    assert out["pck3d_abs"] == pytest.approx(0.5)


def test_pseudo_3d_people_are_not_placed_in_camera_space():
    """The camera-space errors count the people with real 3D only: a pseudo-3D person's
    `center3d` (here 2 m off) is not compared with its placement."""
    p2, p3 = _scene(2)
    intrinsics = np.array([500.0, 500.0, 320.0, 240.0], np.float32)
    center = np.array([[-0.5, 0.0, 4.0], [0.5, 0.0, 4.0]], np.float32)
    p2 = np.asarray(geometry.project(p3 + center[:, None], intrinsics), np.float32)
    batch = {
        "index": np.array([0]), "poses2d": p2[None], "poses3d": p3[None],
        "visible": np.ones((1, 2, 13), bool), "has_3d": np.ones((1, 2), bool),
        "pseudo_3d": np.array([[False, True]]), "person_valid": np.ones((1, 2), bool),
        "center3d": (center + [[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])[None],
        "intrinsics": intrinsics[None],
    }  # fmt: skip
    found = ppi.PPIResult(
        poses2d=p2[None],
        poses3d=p3[None],
        scores=np.array([[0.9, 0.8]], np.float32),
        valid=np.ones((1, 2), bool),
    )
    evaluator = generic.GenericEvaluator(joint_set="lcr13")
    evaluator.process(batch, {"ppi": found})
    out = evaluator.evaluate()["ppi"]
    assert out["root_error_mm"] < 1.0 and out["pck3d_abs"] == 1.0


def test_the_oks_area_is_the_box_of_the_visible_joints():
    """COCO's area covers what is seen: the OKS scale is the box of the visible joints,
    not of the known ones (occluded legs of a synthetic person)."""
    p2, p3 = _scene(1)
    gt = _gt(p2, p3)
    gt["visible"][0, :4] = False  # ankles and knees occluded, still known
    pred = p2 + np.array([4.0, 3.0], np.float32)
    acc = generic.Accumulator("lcr13")
    acc.add(_result(pred, p3, [0.9]), gt)
    sigmas, vis = generic.oks_sigmas("lcr13"), gt["visible"]

    def ap(boxes_of):
        areas = generic.gt_areas(p2, boxes_of)
        return coco_metrics.oks_ap(
            [pred],
            [np.array([0.9])],
            [p2],
            [vis],
            gt_areas=[areas],
            sigmas=sigmas,
            area_ranges=("all",),
        )["AP"]

    assert ap(gt["known"]) != ap(vis)
    assert acc.summary()["AP"] == ap(vis)
