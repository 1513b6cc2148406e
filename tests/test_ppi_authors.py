"""lcrnet_jax's candidates and PPI against the authors' code (LCR-Net++ Sec. 3.6).

The authors' `LCRNet_PPI` (original release) and `LCRNet_PPI_improved` (later release,
grouping by RoI) are GPL and stay outside this repository: their outputs on the scenes of
`tests/reference_cases.py` are stored in tests/data/ppi_authors.npz by
`tests/data/make_reference_fixtures.py --authors_ppi=FOLDER`.
"""

import functools
import pathlib

import jax
import numpy as np
import pytest

from benchmarks.ppi_bench import check_against_reference
from lcrnet_jax.postprocess import candidates, ppi
from tests import reference_cases


def _authors_config(kwargs, **ours) -> ppi.PPIConfig:
    """Our settings for the keyword arguments of the authors' LCRNet_PPI."""
    return ppi.PPIConfig(
        **ours,
        iou_threshold=kwargs["th_iou"],
        t3d=kwargs["th_pose3D"],
        box_joints={"bbox": "all", "bbox_torsohead": "torso_head"}[kwargs["iou_func"]],
        min_mode_score=kwargs["min_mode_score"],
        person_threshold=kwargs["th_persondetect"],
    )


def test_defaults_and_presets_are_the_authors_settings():
    """`PPIConfig()` holds the defaults of the authors' LCRNet_PPI and their candidate rule
    (0.1 / (C - 1), at least 500 pairs), "inthewild" the in-the-wild model's settings."""
    default = ppi.PPIConfig()
    assert default == _authors_config(reference_cases.PPI_CONFIGS["default"])
    assert ppi.PRESETS["default"] == default
    assert ppi.PRESETS["inthewild"] == _authors_config(reference_cases.PPI_CONFIGS["inthewild"])
    assert (default.candidate_threshold, default.min_candidates) == (0.1, 500)
    assert (default.lower_limb_weight, default.rescore_sigma) == (0.1, 0.0)


@pytest.fixture(scope="module")
def authors_ppi():
    return np.load(pathlib.Path(__file__).parent / "data" / "ppi_authors.npz")


@pytest.fixture(scope="module")
def authors_inputs(authors_ppi):
    """{scene: network outputs} of `PPI_SCENES`, checked against the stored fingerprints."""
    inputs = {}
    for name in reference_cases.PPI_SCENES:
        inputs[name] = reference_cases.ppi_scene(name)
        reference_cases.check_fresh(
            reference_cases.ppi_scene_fingerprint(inputs[name]),
            authors_ppi[f"{name}_fingerprint"],
            "ppi_authors.npz",
        )
    return inputs


@pytest.fixture(scope="module")
def authors_scenes(authors_inputs):
    """{scene: (image_size, Candidates)}, our candidates of every `PPI_SCENES` scene.

    The authors' candidate rule (0.1 / (C - 1) with the 500-pair floor) and upper-body
    test (class index > K) are our defaults.
    """
    scenes = {}
    for name, inputs in authors_inputs.items():
        cands = candidates.candidates_from_outputs(
            inputs["boxes"],
            inputs["probs"],
            inputs["poses2d"],
            inputs["poses3d"],
            upper_body_classes=inputs["upper_body_classes"],
            min_candidates=500,
        )
        scenes[name] = (inputs["image_size"], cands)
    return scenes


def test_candidates_match_the_authors_rule(authors_ppi, authors_scenes):
    for name, (_, cands) in authors_scenes.items():
        np.testing.assert_array_equal(cands.valid, authors_ppi[f"{name}_kept"], err_msg=name)


@pytest.mark.parametrize("config_name", sorted(reference_cases.PPI_CONFIGS))
def test_ppi_matches_the_authors_code(authors_ppi, authors_scenes, config_name):
    """Every LCR-13 scene in one vmapped call (one compile per setting); LCR-14 once."""
    config = _authors_config(reference_cases.PPI_CONFIGS[config_name], min_buffer=600)
    names = [n for n, (_, c) in authors_scenes.items() if c.poses2d.shape[1] == 13]
    if config_name == "default":
        names.append("lcr14")
    batches = [names[:-1], names[-1:]] if config_name == "default" else [names]
    for batch in batches:
        stacked = jax.tree.map(lambda *a: np.stack(a), *(authors_scenes[n] for n in batch))
        image_size, cands = stacked
        results = jax.vmap(functools.partial(ppi.ppi, config=config))(
            **cands.ppi_inputs(), image_size=image_size
        )
        for i, name in enumerate(batch):
            expected = tuple(
                authors_ppi[f"{name}_{config_name}_{k}"] for k in ("scores", "poses2d", "poses3d")
            )
            assert len(expected[0]) < config.max_people
            result = jax.tree.map(lambda a, i=i: a[i], results)
            check_against_reference(result, expected, max_people=config.max_people)


@pytest.mark.parametrize("config_name", ["default", "inthewild"])
def test_roi_grouping_matches_the_authors_improved_code(authors_ppi, authors_inputs, config_name):
    """`group_by="roi"` against the authors' LCRNet_PPI_improved, from network outputs.

    Their later release keeps the pairs >= 0.1 / (C - 1) without the 500-pair floor
    (`min_candidates=0`) and tests upper-body classes with an off-by-one (0-based class
    index > K, so the first upper-body class counts as full-body): the comparison takes
    both, to check everything else.
    """
    config = _authors_config(
        reference_cases.PPI_CONFIGS[config_name], group_by="roi", min_buffer=600
    )
    names = [n for n, s in authors_inputs.items() if s["poses2d"].shape[2] == 13]
    scenes = [authors_inputs[n] for n in names]
    classes = scenes[0]["probs"].shape[1]
    cands = jax.vmap(
        functools.partial(
            candidates.candidates_from_outputs,
            upper_body_classes=np.arange(classes) > reference_cases.PPI_ANCHORS + 1,
            min_candidates=0,
        )
    )(*(np.stack([s[k] for s in scenes]) for k in ("boxes", "probs", "poses2d", "poses3d")))
    results = jax.vmap(functools.partial(ppi.ppi, config=config))(
        **cands.ppi_inputs(), image_size=np.stack([s["image_size"] for s in scenes])
    )
    for i, name in enumerate(names):
        key = f"{name}_{config_name}_roi"
        expected = tuple(authors_ppi[f"{key}_{k}"] for k in ("scores", "poses2d", "poses3d"))
        assert len(expected[0]) < config.max_people
        result = jax.tree.map(lambda a, i=i: a[i], results)
        check_against_reference(result, expected, max_people=config.max_people)
