"""Tests of lcrnet_jax.evaluation: the evaluators' choice by config and the loop feeding
them (`benchmarks`, `inference`, `base`)."""

import numpy as np
import pytest

from lcrnet_jax import evaluation, skeleton
from lcrnet_jax.data import pipeline
from lcrnet_jax.evaluation import base, benchmarks
from lcrnet_jax.postprocess import ppi


def feed(evaluator, index, people, fallback=None, *, num_joints=13):
    """Processes one image (batch of one, network pixels = original pixels).

    people: {method: (poses2d (P, J, 2), poses3d (P, J, 3), scores (P,))}; a protocol
    method not given finds nobody. fallback: (poses2d, poses3d, score) of the best
    candidate, or None for an image without candidates.
    """
    empty = (np.zeros((0, num_joints, 2)), np.zeros((0, num_joints, 3)), np.zeros(0))
    results = {}
    for method in {*base.PROTOCOL_METHODS, *people}:
        p2, p3, s = (np.asarray(x, np.float64) for x in people.get(method, empty))
        results[method] = ppi.PPIResult(
            poses2d=p2[None], poses3d=p3[None], scores=s[None], valid=np.ones((1, len(s)), bool)
        )
    if fallback is None:
        fallback, found = (np.zeros((num_joints, 2)), np.zeros((num_joints, 3)), 0.0), False
    else:
        found = True
    f2, f3, fs = (np.asarray(x, np.float64)[None, None] for x in fallback)
    results[base.FALLBACK] = ppi.PPIResult(
        poses2d=f2, poses3d=f3, scores=fs, valid=np.array([[found]])
    )
    batch = {"index": np.array([index]), "offset": np.zeros((1, 2)), "scale": np.ones(1)}
    evaluator.process(batch, results)


def test_evaluators_are_chosen_by_config(mpii_validation):
    def names(spec, dataset):
        made = benchmarks.make_evaluators(spec, dataset=dataset, source=None, joint_set="lcr13")
        return [e.name for e in made]

    assert names("auto", "synthetic_people/tiny") == ["generic"]
    assert names("auto", "mpii_human_pose/tiny") == ["generic", "mpii_human_pose"]
    assert names("auto", "human36m/p2") == ["generic", "human36m/p2"]
    assert names("auto", "coco_keypoints") == ["generic", "coco_keypoints"]
    assert names("auto", "mupots3d") == ["generic", "mupots3d"]
    assert names("generic, lsp", "synthetic_people/tiny") == ["generic", "lsp"]
    assert names("human36m/p3", "human36m/p1") == ["human36m/p3"]
    assert names("human36m", "synthetic_people/tiny") == ["human36m/p1"]
    assert names("auto", "human36m/wild") == ["generic", "human36m/p1"]  # tests as P1
    assert names("human36m", "human36m/P2") == ["human36m/p2"]
    # Checked before any training: evaluator_names refuses what make_evaluators would.
    for spec, dataset in (("auto", "human36m/tiny"), ("human36m/p4", "human36m/p1")):
        with pytest.raises(ValueError, match="unknown Human3.6M protocol"):
            benchmarks.evaluator_names(spec, dataset=dataset)
    with pytest.raises(ValueError, match="unknown Human3.6M protocol 'tiny'"):
        names("auto", "human36m/tiny")
    with pytest.raises(ValueError, match="unknown evaluator 'pck'"):
        names("generic,pck", "mpii_human_pose")
    with pytest.raises(ValueError, match="names no evaluator"):
        names(" , ", "mpii_human_pose")
    with pytest.raises(ValueError, match="joint_set must be"):
        benchmarks.make_evaluators(
            "mpii", dataset="mpii_human_pose", source=mpii_validation, joint_set="coco17"
        )


@pytest.mark.parametrize("shift", [(0.0, 0.0), (13.5, -7.25)])
def test_evaluate_gives_the_evaluators_original_pixels(mpii_validation, monkeypatch, shift):
    """End to end: pipeline batches (resized images, a padded last batch) -> detections in
    network pixels -> the MPII protocol sees the annotations' own pixels again (its 12
    limb joints exact; the upper neck and head top are made), the generic evaluator every
    method. With `shift`, the batches' network pixels and offsets are moved by it (as a
    canvas padded on the left and cropped at the top would place the image), which the
    evaluators must undo."""
    loader = pipeline.make_loader(
        mpii_validation, batch_size=2, image_size=(64, 48), joint_set="lcr13", max_people=4,
        train=False,
    )  # fmt: skip
    current = {}

    def detect(variables, images, image_size):
        del variables, image_size
        batch = {k: _pad(v, len(images)) for k, v in current["batch"].items()}
        result = ppi.PPIResult(
            poses2d=batch["poses2d"], poses3d=batch["poses3d"],
            scores=batch["person_valid"].astype(np.float32), valid=batch["person_valid"],
        )  # fmt: skip
        return {method: result for method in (*evaluation.METHODS, evaluation.FALLBACK)}

    def remember(batches):
        for batch in batches:
            # network = original * scale + offset: moving both keeps the geometry.
            batch = dict(batch, offset=batch["offset"] + np.float32(shift))
            batch["poses2d"] = batch["poses2d"] + np.float32(shift)
            current["batch"] = batch
            yield batch

    evaluators = evaluation.make_evaluators(
        "auto", dataset="mpii_human_pose/tiny", source=mpii_validation, joint_set="lcr13"
    )
    seen = []  # (annotations, predictions) given to the MPII protocol's metrics
    mpii_evaluator = next(e for e in evaluators if e.name == "mpii_human_pose")
    metrics = mpii_evaluator.metrics
    monkeypatch.setattr(
        mpii_evaluator, "metrics", lambda a, p: seen.append((a, p)) or metrics(a, p)
    )
    outputs, coco = evaluation.evaluate(
        detect, {}, loader, evaluators, batch_size=4, progress=remember
    )
    assert set(outputs["generic"]) == set(evaluation.METHODS)
    assert outputs["generic"]["ppi"]["num_images"] == len(mpii_validation)
    mpii = outputs["mpii_human_pose"]
    assert set(mpii) == set(evaluation.PROTOCOL_METHODS)
    assert mpii["ppi"]["num_single"] > 0 and mpii["ppi"]["pckh"] >= 12 / 14 - 1e-9
    assert mpii["ppi"]["single_missed"] == 0
    # The predictions it scores are the annotations' own pixels on the 12 limb joints.
    limbs = skeleton.LCR13.joints[:12]
    lcr_idx = list(skeleton.LCR13.indices(limbs))
    mpii_idx = list(skeleton.get_joint_set("mpii14").indices(limbs))
    assert len(seen) == len(evaluation.PROTOCOL_METHODS)
    compared = 0
    for annotations, predictions in seen:
        assert len(annotations) == len(predictions) == len(mpii_validation)
        for a, p in zip(annotations, predictions, strict=True):
            people = np.flatnonzero(a["known"].any(-1))[:4]  # the pipeline keeps them in order
            assert len(p["poses2d"]) == len(people)
            for pose, g in zip(p["poses2d"], people, strict=True):
                known = a["known"][g, mpii_idx]
                np.testing.assert_allclose(
                    pose[lcr_idx][known], a["joints"][g, mpii_idx][known], atol=1e-3, rtol=0
                )
                compared += int(known.sum())
    assert compared >= 12 * len(mpii_validation) * len(seen)
    assert coco and {c["image_id"] for c in coco} <= set(range(len(mpii_validation)))
    table = evaluation.format_benchmark_table(mpii, "mpii_human_pose")
    assert table.splitlines()[0] == "| mpii_human_pose | ppi | nms |"


def _pad(x, size):
    x = np.asarray(x)
    return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)])
