import numpy as np
import pytest

from lcrnet_jax import evaluation
from lcrnet_jax.data import pipeline
from lcrnet_jax.evaluation import benchmarks
from lcrnet_jax.postprocess import ppi


def test_only_the_benchmarks_have_protocols(mpii_validation):
    assert benchmarks.for_dataset("synthetic_people/tiny", None, joint_set="lcr13") is None
    assert benchmarks.for_dataset("coco_keypoints", None, joint_set="lcr13") is None
    with pytest.raises(ValueError, match="unknown Human3.6M protocol 'tiny'"):
        benchmarks.for_dataset("human36m/tiny", None, joint_set="lcr13")
    with pytest.raises(ValueError, match="joint_set must be"):
        benchmarks.for_dataset("mpii_human_pose", mpii_validation, joint_set="coco17")


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

    protocol = benchmarks.for_dataset("mpii_human_pose", mpii_validation, joint_set="lcr13")
    evaluation.evaluate(
        detect, {}, loader, joint_set="lcr13", batch_size=2, progress=remember, protocol=protocol
    )
    summary = protocol.summary()
    assert set(summary) == set(evaluation.PROTOCOL_METHODS)
    assert summary["ppi"]["num_people"] > 0 and summary["ppi"]["pckh"] > 0.9
