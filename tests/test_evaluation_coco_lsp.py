"""Tests of lcrnet_jax.evaluation.coco and .lsp: the COCO and LSP evaluators on hand-made
records."""

import numpy as np
import pytest

from lcrnet_jax import skeleton
from lcrnet_jax.evaluation import coco, lsp
from tests.test_anchors import _STANDING
from tests.test_benchmarks import feed


def _standing(center):
    return _STANDING[:, :2] * 100.0 + np.asarray(center)  # (13, 2) LCR-13, ~160 px tall


def _native(lcr13, joint_set):
    """LCR-13 poses -> (P, J, 2) joints of `joint_set` by name (others zero)."""
    js = skeleton.get_joint_set(joint_set)
    out = np.zeros((len(lcr13), js.num_joints, 2))
    for k, name in enumerate(js.joints):
        if name in skeleton.LCR13.joints:
            out[:, k] = lcr13[:, skeleton.LCR13.index(name)]
    return out


def test_coco_oks_ap_on_the_shared_joints():
    assert len(coco.SHARED_JOINTS) == 12 and "nose" not in coco.SHARED_JOINTS
    truth = np.stack([_standing((200, 300)), _standing((500, 300))])
    labelled = np.zeros((3, 17), bool)
    labelled[:2] = [n in coco.SHARED_JOINTS for n in skeleton.COCO17.joints]
    record = {
        "people": {
            "joints2d": np.concatenate([_native(truth, "coco17"), np.zeros((1, 17, 2))]),
            "annotated": labelled, "area": np.array([8000.0, 8000.0, 9e4]),
            "box": np.array([[170, 220, 230, 390], [470, 220, 530, 390], [0, 0, 300, 300]], float),
            "is_crowd": np.array([False, False, True]),
        }
    }  # fmt: skip
    evaluator = coco.COCOEvaluator([record], joint_set="lcr13")
    feed(evaluator, 0, {"ppi": (truth, np.zeros((2, 13, 3)), [0.9, 0.8])})
    out = evaluator.evaluate()
    assert out["ppi"]["AP"] == pytest.approx(1.0) and out["ppi"]["num_people"] == 2
    assert out["nms"]["AP"] == 0.0 and out["nms"]["AR"] == 0.0  # nms found nobody


def test_lsp_pck_of_the_top_scoring_person():
    truth = _standing((100, 150))[None]
    lsp14 = _native(truth, "lsp14")
    lcr14 = skeleton.complete(truth, "lcr13", "lcr14")
    lsp14[:, skeleton.LSP14.index("head_top")] = lcr14[:, 13]
    # LCR's head centre is the midpoint of LSP's neck and head top.
    lsp14[:, skeleton.LSP14.index("neck")] = 2 * truth[:, 12] - lcr14[:, 13]
    record = {"people": {"joints2d": lsp14, "annotated": np.ones((1, 14), bool)}}
    evaluator = lsp.LSPEvaluator([record, record], joint_set="lcr13")
    # Torso (left shoulder to right hip) ~ 57 px: PCK@0.2 tolerates ~11 px.
    wrong = truth + np.array([30.0, 0.0])
    feed(evaluator, 0, {"ppi": (np.concatenate([wrong, truth]), np.zeros((2, 13, 3)), [0.4, 0.9])})
    feed(evaluator, 1, {"ppi": (np.concatenate([wrong, truth]), np.zeros((2, 13, 3)), [0.9, 0.4])})
    out = evaluator.evaluate()
    assert out["ppi"]["pck"] == pytest.approx(0.5) and out["ppi"]["num_people"] == 2
    assert out["nms"]["pck"] == 0.0 and out["nms"]["missed"] == 2


def test_lsp_torso_is_left_shoulder_to_right_hip_and_the_top_person_counts():
    """Hips apart: the torso (left shoulder to right hip) is ~69 px, 13.9 px at PCK@0.2,
    the left shoulder to left hip only ~51 px (10.1 px). The top-scoring prediction, 12 px
    off on every joint, has every joint right; the other one is 30 px off."""
    truth = _standing((100, 150))[None]
    truth[0, skeleton.LCR13.index("right_hip")] = (70.0, 150.0)
    lsp14 = _native(truth, "lsp14")
    lcr14 = skeleton.complete(truth, "lcr13", "lcr14")
    lsp14[:, skeleton.LSP14.index("head_top")] = lcr14[:, 13]
    lsp14[:, skeleton.LSP14.index("neck")] = 2 * truth[:, 12] - lcr14[:, 13]
    record = {"people": {"joints2d": lsp14, "annotated": np.ones((1, 14), bool)}}
    evaluator = lsp.LSPEvaluator([record], joint_set="lcr13")
    near, far = truth + np.array([0.0, 12.0]), truth + np.array([30.0, 0.0])
    feed(evaluator, 0, {"ppi": (np.concatenate([far, near]), np.zeros((2, 13, 3)), [0.4, 0.9])})
    assert evaluator.evaluate()["ppi"]["pck"] == pytest.approx(1.0)


def test_lsp_scores_its_neck_and_head_top_not_lcrs_head_centre():
    """LSP's neck and head top moved apart along the head, their midpoint (LCR's head
    centre, exact in the prediction) unchanged: both are missed."""
    truth = _standing((100, 150))[None]
    lsp14 = _native(truth, "lsp14")
    lcr14 = skeleton.complete(truth, "lcr13", "lcr14")
    neck, top = skeleton.LSP14.indices(("neck", "head_top"))
    up = lcr14[:, 13] - truth[:, 12]
    lsp14[:, top] = lcr14[:, 13] + 2 * up  # 20 px from the made head top and neck,
    lsp14[:, neck] = truth[:, 12] - 3 * up  # beyond PCK@0.2's ~11 px
    record = {"people": {"joints2d": lsp14, "annotated": np.ones((1, 14), bool)}}
    evaluator = lsp.LSPEvaluator([record], joint_set="lcr13")
    feed(evaluator, 0, {"ppi": (truth, np.zeros((1, 13, 3)), [0.9])})
    assert evaluator.evaluate()["ppi"]["pck"] == pytest.approx(12 / 14)


def test_coco_ap_uses_the_shared_joints_sigmas_and_ignores_crowds():
    """A prediction 10 px off on every joint: its OKS uses COCO's sigmas of the shoulders
    to ankles (not of the face). Two higher-scoring predictions on a crowd region (no
    keypoints, as COCO's) are ignored; a person without keypoints is not counted."""
    truth = _standing((200, 300))[None]
    labelled = np.zeros((3, 17), bool)
    labelled[0] = [n in coco.SHARED_JOINTS for n in skeleton.COCO17.joints]
    boxes = np.array([[170, 220, 230, 390], [600, 100, 800, 400], [1500, 1500, 1550, 1600]])
    record = {
        "people": {
            "joints2d": np.concatenate([_native(truth, "coco17"), np.zeros((2, 17, 2))]),
            "annotated": labelled, "area": np.array([8000.0, 6e4, 5000.0]),
            "box": boxes.astype(float),
            "is_crowd": np.array([False, True, False]),
        }
    }  # fmt: skip
    pred = truth + np.array([6.0, 8.0])  # 10 px off
    on_crowd = np.stack([_standing((650, 250)), _standing((750, 250))])
    evaluator = coco.COCOEvaluator([record], joint_set="lcr13")
    poses = np.concatenate([pred, on_crowd])
    feed(evaluator, 0, {"ppi": (poses, np.zeros((3, 13, 3)), [0.8, 0.95, 0.9])})
    out = evaluator.evaluate()["ppi"]
    # pycocotools' sigmas (x 10 in its code): shoulders .79, elbows .72, wrists .62,
    # hips 1.07, knees .87, ankles .89, left and right.
    sigmas = np.repeat([0.079, 0.072, 0.062, 0.107, 0.087, 0.089], 2)
    oks = np.mean(np.exp(-(10.0**2) / (2 * 8000.0 * (2 * sigmas) ** 2)))
    assert 0.5 < oks < 0.95  # some thresholds pass, some do not
    expected = np.mean(oks >= np.linspace(0.5, 0.95, 10))  # the crowd's two are ignored
    assert out["AP"] == pytest.approx(expected) and out["AR"] == pytest.approx(expected)
    assert out["num_people"] == 1


def _lsp14(truth):
    """(P, 14, 2) LSP joints reproduced exactly by LCR-13 `truth` (neck and head top as
    `skeleton.complete` makes them)."""
    lsp14 = _native(truth, "lsp14")
    lcr14 = skeleton.complete(truth, "lcr13", "lcr14")
    lsp14[:, skeleton.LSP14.index("head_top")] = lcr14[:, 13]
    lsp14[:, skeleton.LSP14.index("neck")] = 2 * truth[:, 12] - lcr14[:, 13]
    return lsp14


def test_lsp_counts_the_first_person_with_a_torso_and_its_annotated_joints():
    """Image 0: the first person counts (not the second), its unannotated right wrist,
    far off, is not scored. Image 1: a person without an annotated left shoulder and
    image 2: one whose left shoulder lies on its right hip (no torso size) are not
    counted, nor missed."""
    truth = np.stack([_standing((100, 150)), _standing((400, 150))])
    first = _lsp14(truth)
    wrist = skeleton.LSP14.index("right_wrist")
    first[0, wrist] += 100.0
    annotated = np.ones((2, 14), bool)
    annotated[0, wrist] = False
    no_shoulder = np.ones((1, 14), bool)
    no_shoulder[0, skeleton.LSP14.index("left_shoulder")] = False
    flat = _lsp14(truth[:1])
    shoulder, hip = skeleton.LSP14.indices(("left_shoulder", "right_hip"))
    flat[0, shoulder] = flat[0, hip]
    records = [
        {"people": {"joints2d": first, "annotated": annotated}},
        {"people": {"joints2d": _lsp14(truth[:1]), "annotated": no_shoulder}},
        {"people": {"joints2d": flat, "annotated": np.ones((1, 14), bool)}},
    ]
    evaluator = lsp.LSPEvaluator(records, joint_set="lcr13")
    feed(evaluator, 0, {"ppi": (truth[:1], np.zeros((1, 13, 3)), [0.9])})
    feed(evaluator, 1, {})
    feed(evaluator, 2, {})
    out = evaluator.evaluate()["ppi"]
    assert (out["pck"], out["num_people"], out["missed"]) == (1.0, 1, 0)


def test_coco_crowd_people_with_keypoints_are_not_counted():
    """pycocotools ignores every crowd annotation, keypoints or not: a crowd region with
    labelled keypoints is not among the people that count."""
    truth = np.stack([_standing((200, 300)), _standing((500, 300))])
    labelled = np.zeros((2, 17), bool)
    labelled[:] = [n in coco.SHARED_JOINTS for n in skeleton.COCO17.joints]
    record = {
        "people": {
            "joints2d": _native(truth, "coco17"), "annotated": labelled,
            "area": np.array([8000.0, 8000.0]),
            "box": np.array([[170, 220, 230, 390], [470, 220, 530, 390]], float),
            "is_crowd": np.array([False, True]),
        }
    }  # fmt: skip
    evaluator = coco.COCOEvaluator([record], joint_set="lcr13")
    feed(evaluator, 0, {"ppi": (truth[:1], np.zeros((1, 13, 3)), [0.9])})
    out = evaluator.evaluate()["ppi"]
    assert out["AP"] == pytest.approx(1.0) and out["num_people"] == 1
