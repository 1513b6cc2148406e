"""Tests of lcrnet_jax.postprocess.ppi and .nms_baseline (against the reference)."""

import dataclasses

import jax
import numpy as np
import pytest

from benchmarks.ppi_bench import (
    check_against_reference,
    random_scene,
    reference_nms,
    reference_ppi,
)
from lcrnet_jax.postprocess import nms_baseline, ppi

J = 13


IMAGE = (100, 200)  # height, width


SLOTS = 16  # every hand scene is padded to 16 candidates: one compile per config


HAND = ppi.PPIConfig(
    iou_threshold=0.25, t3d=0.125, min_mode_score=0.25, person_threshold=0.5, max_people=4
)


def _candidate(box, score, *, x3d=0.0, upper=False):
    """A candidate whose 2D joints span exactly `box` and whose 3D pose is shifted by x3d.

    Joint 4 (right hip) sits at (x1, y1), joint 12 (head) at (x2, y2), the others at the
    box centre, so the all-joint and torso+head boxes are both `box`. The 3D pose is zero
    but for X = x3d on every joint, so the D3D of two candidates is |x3d_a - x3d_b|.
    """
    x1, y1, x2, y2 = box
    pose2d = np.tile([(x1 + x2) / 2, (y1 + y2) / 2], (J, 1))
    pose2d[4] = (x1, y1)
    pose2d[12] = (x2, y2)
    pose3d = np.zeros((J, 3))
    pose3d[:, 0] = x3d
    return {
        "poses2d": pose2d,
        "poses3d": pose3d,
        "scores": score,
        "upper_body": upper,
        "rois": np.asarray(box, float),
    }


def _scene(*candidates):
    """Stacks candidates and pads them to SLOTS with invalid rows (as `ppi_inputs()`)."""
    out = {k: np.stack([c[k] for c in candidates]) for k in candidates[0]}
    pad = SLOTS - len(candidates)
    out = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in out.items()}
    out = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in out.items()}
    out["valid"] = np.arange(SLOTS) < len(candidates)
    return out


def _ppi(scene, config=HAND, **kwargs):
    return ppi.ppi(**scene, image_size=IMAGE, config=config, **kwargs)


def _people(result):
    valid = np.asarray(result.valid)
    return np.asarray(result.scores)[valid], np.asarray(result.poses2d)[valid]


def test_two_separate_people_give_two_weighted_means():
    left = [_candidate((10, 10, 49, 89), s) for s in (0.5, 0.25)]
    left[1]["poses2d"] = left[1]["poses2d"] + 4.0
    right = [_candidate((120, 10, 159, 89), s) for s in (0.75, 0.125)]
    result = _ppi(_scene(*left, *right))
    scores, poses = _people(result)
    np.testing.assert_allclose(scores, [0.875, 0.75])
    np.testing.assert_allclose(poses[0], right[0]["poses2d"])
    np.testing.assert_allclose(poses[1], left[0]["poses2d"] + 4.0 / 3.0, rtol=1e-6)
    assert result.poses2d.shape == (4, J, 2) and result.poses3d.shape == (4, J, 3)
    np.testing.assert_array_equal(result.poses2d[2:], 0.0)


def test_populated_mode_wins_over_the_best_candidate():
    box = (10, 10, 49, 89)
    lone = _candidate(box, 0.875, x3d=1.0)
    crowd = [_candidate(box, 0.5, x3d=x) for x in (0.0, 0.0625, -0.0625)]
    scene = _scene(lone, *crowd)
    scores, _ = _people(_ppi(scene))
    np.testing.assert_allclose(scores, [1.5])
    np.testing.assert_allclose(_ppi(scene).poses3d[0, :, 0], 0.0, atol=1e-7)
    # The NMS baseline keeps the single best candidate instead.
    nms = nms_baseline.nms_poses(**scene, image_size=IMAGE, config=HAND)
    np.testing.assert_allclose(nms.scores, [0.875, 0, 0, 0])
    np.testing.assert_allclose(nms.poses3d[0], lone["poses3d"])


def test_upper_body_candidates_weigh_lower_limbs_by_a_tenth():
    full = _candidate((10, 10, 49, 89), 0.5)
    upper = _candidate((10, 10, 49, 89), 0.5, upper=True)
    full["poses2d"][[0, 1, 2, 3, 5], 1] = 80.0
    upper["poses2d"][[0, 1, 2, 3, 5], 1] = 60.0
    full["poses3d"][:, 1] = 0.0
    upper["poses3d"][:, 1] = 0.0625
    result = _ppi(_scene(full, upper))
    lower = (0.5 * 80.0 + 0.05 * 60.0) / 0.55
    np.testing.assert_allclose(result.poses2d[0, [0, 1, 2, 3], 1], lower, rtol=1e-6)
    np.testing.assert_allclose(result.poses2d[0, 5, 1], 70.0)  # the hips count as upper body
    np.testing.assert_allclose(result.poses3d[0, 0, 1], 0.05 * 0.0625 / 0.55, rtol=1e-6)
    np.testing.assert_allclose(result.poses3d[0, 12, 1], 0.03125)
    np.testing.assert_allclose(result.scores[0], 1.0)
    result = _ppi(_scene(full, upper), dataclasses.replace(HAND, lower_limb_weight=1.0))
    np.testing.assert_allclose(result.poses2d[0, [0, 1, 2, 3], 1], 70.0, rtol=1e-6)


def test_a_zero_lower_limb_weight_leaves_upper_body_modes_finite_legs():
    """lower_limb_weight 0: a mode of upper-body candidates only averages its lower limbs
    with the plain weights (the limit of a vanishing weight; it was 0 / 0 = NaN), a mode
    with a full-body candidate takes them from its full-body candidates alone."""
    config = dataclasses.replace(HAND, lower_limb_weight=0.0)
    a = _candidate((10, 10, 49, 89), 0.5, upper=True)
    b = _candidate((10, 10, 49, 89), 0.25, upper=True)
    b["poses2d"][[0, 1, 2, 3], 1] += 6.0
    b["poses3d"][[0, 1, 2, 3], 1] = 0.0625
    result = _ppi(_scene(a, b), config)
    np.testing.assert_allclose(result.poses2d[0, :4, 1], a["poses2d"][:4, 1] + 2.0, rtol=1e-6)
    np.testing.assert_allclose(result.poses3d[0, :4, 1], 0.0625 / 3, rtol=1e-6)
    full = _candidate((10, 10, 49, 89), 0.25)
    full["poses2d"][[0, 1, 2, 3], 1] += 6.0
    result = _ppi(_scene(a, full), config)
    np.testing.assert_allclose(result.poses2d[0, :4, 1], full["poses2d"][:4, 1])


def test_lower_limb_weight_is_checked():
    with pytest.raises(ValueError, match="lower_limb_weight must be in"):
        ppi.PPIConfig(lower_limb_weight=1.5)


@pytest.mark.parametrize(
    ("shift", "expected"),
    [(6, [0.75, 0.625]), (5, [1.375])],  # IoU exactly 0.25 (40 / 160) vs 1/3
)
def test_iou_threshold_is_strict(shift, expected):
    scene = _scene(_candidate((0, 0, 9, 9), 0.75), _candidate((shift, 0, shift + 9, 9), 0.625))
    np.testing.assert_allclose(_people(_ppi(scene))[0], expected)


@pytest.mark.parametrize(("x3d", "expected"), [(0.125, 0.75), (0.0625, 1.25)])
def test_t3d_is_strict(x3d, expected):
    scene = _scene(_candidate((0, 0, 9, 9), 0.75), _candidate((0, 0, 9, 9), 0.5, x3d=x3d))
    np.testing.assert_allclose(_people(_ppi(scene))[0], [expected])


@pytest.mark.parametrize(("leader", "expected"), [(0.25, 0.85), (0.2421875, 0.75)])
def test_modes_stop_below_min_mode_score_only(leader, expected):
    box = (0, 0, 9, 9)
    second = [_candidate(box, s, x3d=1.0) for s in (leader, 0.2, 0.2, 0.2)]
    scene = _scene(_candidate(box, 0.75), *second)
    np.testing.assert_allclose(_people(_ppi(scene))[0], [expected], rtol=1e-6)


def test_person_threshold_is_strict_and_max_people_keeps_the_best():
    boxes = [(i * 30, 0, i * 30 + 9, 9) for i in range(6)]
    scores = [0.5, 0.625, 0.75, 0.875, 0.9375, 0.96875]
    result = _ppi(_scene(*[_candidate(b, s) for b, s in zip(boxes, scores, strict=True)]))
    np.testing.assert_allclose(result.scores, scores[::-1][:4])
    np.testing.assert_array_equal(result.valid, True)
    lone = _ppi(_scene(_candidate(boxes[0], 0.5), _candidate(boxes[1], 0.625)))
    np.testing.assert_allclose(lone.scores, [0.625, 0, 0, 0])  # 0.5 is not > 0.5
    np.testing.assert_array_equal(lone.valid, [True, False, False, False])


def test_negative_scores_keep_their_order_and_never_lower_the_bound():
    """Scores need not be probabilities (log-probabilities, say): the loops order
    negative scores by value, -0.0 ties with 0.0, and the early stop bounds the
    remaining candidates by their positive scores only."""
    # A -0.5 candidate elsewhere does not hide the 0.75 person (0.75 - 0.5 <= 0.5).
    scene = _scene(_candidate((100, 0, 109, 9), -0.5), _candidate((0, 0, 9, 9), 0.75))
    np.testing.assert_allclose(_people(_ppi(scene))[0], [0.75])
    # Boxes a - b - c in a chain (IoU 1/3 with the next, a and c apart): b, the best at
    # -0.25, leads and groups all three.
    config = dataclasses.replace(HAND, person_threshold=-10.0)
    chain = [(0, 0, 9, 9), (5, 0, 14, 9), (10, 0, 19, 9)]
    scene = _scene(*[_candidate(b, s) for b, s in zip(chain, [-0.5, -0.25, -0.375], strict=True)])
    np.testing.assert_allclose(_people(_ppi(scene, config))[0], [-1.125])
    # -0.0 ties with 0.0: the lowest index, a, leads and groups b; c is a person of its own.
    scene = _scene(*[_candidate(b, s) for b, s in zip(chain, [-0.0, 0.0, -0.125], strict=True)])
    np.testing.assert_allclose(_people(_ppi(scene, config))[0], [0.0, -0.125])


def test_a_mode_whose_scores_sum_to_zero_takes_its_plain_mean():
    """Weights summing to 0 (a person_threshold < 0 keeps such a mode) give the limit of
    equal vanishing weights, the plain mean, on every joint (it was 0 / 0 = NaN)."""
    config = dataclasses.replace(HAND, person_threshold=-10.0)
    a = _candidate((0, 0, 9, 9), -0.0, upper=True)
    b = _candidate((5, 0, 14, 9), 0.0, x3d=0.0625)
    result = _ppi(_scene(a, b), config)
    scores, poses2d = _people(result)
    np.testing.assert_array_equal(scores, [0.0])
    np.testing.assert_allclose(poses2d[0], (a["poses2d"] + b["poses2d"]) / 2)
    np.testing.assert_allclose(result.poses3d[0, :, 0], 0.03125)


def test_pose_boxes_are_clipped_to_the_image_but_rois_are_not():
    a = _candidate((-100, 10, 9, 19), 0.75)
    b = _candidate((-5, 10, 9, 19), 0.625)
    scene = _scene(a, b)
    # Unclipped IoU: 150 / 1100; clipped to x >= 0 the boxes are equal.
    np.testing.assert_allclose(_people(_ppi(scene))[0], [1.375])
    roi_config = dataclasses.replace(HAND, group_by="roi")
    np.testing.assert_allclose(_people(_ppi(scene, roi_config))[0], [0.75, 0.625])
    # Clipped to the image bottom-right corner too (W - 1, H - 1).
    c = _candidate((190, 90, 400, 300), 0.75)
    d = _candidate((190, 90, 199, 99), 0.625)
    np.testing.assert_allclose(_people(_ppi(_scene(c, d)))[0], [1.375])


def test_overflowing_roi_boxes_still_terminate():
    scene = _scene(_candidate((0, 0, 9, 9), 0.75), _candidate((0, 0, 9, 9), 0.625))
    scene["rois"][:2] = (0.0, 0.0, 1e30, 1e30)  # areas overflow: IoU is NaN, never > threshold
    roi_config = dataclasses.replace(HAND, group_by="roi")
    np.testing.assert_allclose(_people(_ppi(scene, roi_config))[0], [0.75, 0.625])


def test_ties_go_to_the_lowest_index_and_keep_group_order():
    first = _candidate((0, 0, 9, 9), 0.75)
    second = _candidate((100, 0, 109, 9), 0.75)
    scores, poses = _people(_ppi(_scene(first, second)))
    np.testing.assert_allclose(scores, [0.75, 0.75])
    np.testing.assert_allclose(poses[0], first["poses2d"])
    # Inside a group: two equal modes, the first one (lowest index leader) is kept.
    twin = _candidate((0, 0, 9, 9), 0.75, x3d=1.0)
    twin["poses2d"] = twin["poses2d"] + 1.0
    result = _ppi(_scene(first, twin))
    np.testing.assert_allclose(result.poses3d[0], first["poses3d"])
    result = _ppi(_scene(twin, first))
    np.testing.assert_allclose(result.poses3d[0], twin["poses3d"])


def test_invalid_and_non_finite_candidates_are_ignored():
    good = _candidate((0, 0, 9, 9), 0.75)
    bad = _candidate((0, 0, 9, 9), 0.9)
    bad["poses3d"][3, 2] = np.nan
    scene = _scene(good, bad, _candidate((0, 0, 9, 9), 0.95))
    scene["valid"][2] = False
    result = _ppi(scene)
    np.testing.assert_allclose(_people(result)[0], [0.75])
    assert np.isfinite(result.poses2d).all() and np.isfinite(result.poses3d).all()
    nms = nms_baseline.nms_poses(**scene, image_size=IMAGE, config=HAND)
    np.testing.assert_allclose(nms.scores, [0.75, 0, 0, 0])


def test_jit_and_eager_agree():
    scene = _scene(
        _candidate((0, 0, 49, 49), 0.75),
        _candidate((5, 5, 54, 54), 0.5, x3d=0.0625, upper=True),
        _candidate((2, 0, 51, 49), 0.625, x3d=1.0),
        _candidate((120, 0, 169, 49), 0.6),
    )
    jitted = _ppi(scene)
    eager = ppi.ppi.__wrapped__(**scene, image_size=IMAGE, config=HAND)
    for field in ("poses2d", "poses3d", "scores", "valid"):
        np.testing.assert_allclose(getattr(eager, field), getattr(jitted, field), rtol=1e-6)


def test_bad_inputs_raise():
    scene = _scene(_candidate((0, 0, 9, 9), 0.75))
    with pytest.raises(ValueError, match="poses3d must have shape"):
        _ppi({**scene, "poses3d": scene["poses3d"][:, :12]})
    with pytest.raises(ValueError, match="J >= 13"):
        _ppi({**scene, "poses2d": scene["poses2d"][:, :12]})
    with pytest.raises(ValueError, match="scores must have shape"):
        _ppi({**scene, "scores": scene["scores"][:3]})
    with pytest.raises(ValueError, match="image_size"):
        ppi.ppi(**scene, image_size=(1, 2, 3), config=HAND)
    for integrate in (ppi.ppi, nms_baseline.nms_poses):
        for size in ((np.nan, 50.0), (0, 50)):  # NaN found nobody, silently
            with pytest.raises(ValueError, match=r"^image_size must be >= 1 pixel, got \["):
                integrate(**scene, image_size=size, config=HAND)
        # A dict reached jit's "Non-hashable static arguments" first.
        with pytest.raises(ValueError, match="^config must be a PPIConfig, got dict$"):
            integrate(**scene, image_size=IMAGE, config={"t3d": 0.1})
    with pytest.raises(ValueError, match="rois"):
        _ppi({**scene, "rois": None}, dataclasses.replace(HAND, group_by="roi"))
    for bad in (
        {"iou_threshold": 1.0},
        {"t3d": 0.0},
        {"box_joints": "hands"},
        {"group_by": "box"},
        {"max_people": 0},
        {"person_threshold": float("nan")},
        {"min_buffer": 0},
        {"iou_threshold": "0.2"},  # a TypeError comparing float and str
        {"t3d": None},
        {"max_people": True},  # a bool is a mistake, not 1 person
        {"candidate_threshold": 1.5},
        {"min_candidates": -1},
        {"rescore_sigma": -25.0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ppi.PPIConfig(**bad)
    # A numpy integer is an int ("max_people must be an int >= 1, got np.int64(5)").
    counts = ppi.PPIConfig(
        max_people=np.int64(5), min_buffer=np.int32(64), min_candidates=np.int64(0)
    )
    assert (counts.max_people, counts.min_buffer, counts.min_candidates) == (5, 64, 0)
    assert type(counts.max_people) is int and counts == ppi.PPIConfig(
        max_people=5, min_buffer=64, min_candidates=0
    )
    assert ppi.PPIConfig(t3d=np.float32(0.1), iou_threshold=0).t3d == np.float32(0.1)


def test_named_parameter_sets():
    assert ppi.IN_THE_WILD_R50.t3d == 0.04 and ppi.IN_THE_WILD_R50.iou_threshold == 0.14
    assert ppi.IN_THE_WILD_R50.box_joints == "torso_head"
    assert ppi.DEMO == ppi.PPIConfig(
        iou_threshold=0.1,
        t3d=0.3,
        box_joints="shoulder_head",
        min_mode_score=0.1,
        person_threshold=0.2,
    )
    assert ppi.box_joint_indices("torso_head") == (4, 5, 10, 11, 12)
    assert ppi.box_joint_indices("shoulder_head") == (10, 11, 12)
    assert hash(ppi.DEMO) == hash(dataclasses.replace(ppi.DEMO))


# Random scenes against the numpy reference: batches of scenes padded to one size and
# vmapped, so that each configuration compiles once.
RANDOM_SLOTS = 256


RANDOM_CONFIGS = {  # only the first compacts (buffers of 256 and 64 candidates)
    "defaults": ppi.PPIConfig(max_people=4, min_buffer=64),
    "wild": dataclasses.replace(ppi.IN_THE_WILD_R50, t3d=0.15, max_people=4),
    "roi": ppi.PPIConfig(
        iou_threshold=0.3,
        box_joints="shoulder_head",
        group_by="roi",
        max_people=4,
        lower_limb_weight=0.5,
    ),
}


def _random_batch(seed, count):
    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(count):
        num = int(rng.integers(1, RANDOM_SLOTS + 1))
        scene = random_scene(
            rng,
            num_candidates=num,
            num_people=int(rng.integers(0, 6)),
            image_size=(120, 160),
            clutter=float(rng.uniform(0.0, 0.4)),
            score_quantum=1 / 64 if i % 3 == 0 else None,
        )
        pad = RANDOM_SLOTS - num
        scene = {
            k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)])
            for k, v in scene.items()
        }
        scene["valid"] = np.arange(RANDOM_SLOTS) < num
        scenes.append(scene)
    return {k: np.stack([s[k] for s in scenes]) for k in scenes[0]}


@pytest.fixture(scope="module")
def random_batch():
    return _random_batch(0, 64)


def _unbatch(batch, i):
    return {k: v[i] for k, v in batch.items()}


@pytest.mark.parametrize("name", sorted(RANDOM_CONFIGS))
def test_random_scenes_match_the_reference(random_batch, name):
    config = RANDOM_CONFIGS[name]
    run = jax.vmap(lambda s: ppi.ppi(**s, image_size=(120, 160), config=config))
    results = run(random_batch)
    counts = []
    for i in range(len(random_batch["scores"])):
        scene = _unbatch(random_batch, i)
        reference = reference_ppi(**scene, image_size=(120, 160), config=config)
        result = jax.tree.map(lambda x, i=i: x[i], results)
        check_against_reference(result, reference, max_people=config.max_people)
        counts.append(len(reference[0]))
    assert max(counts) >= config.max_people > min(counts)


def test_random_scenes_nms_match_the_reference(random_batch):
    config = RANDOM_CONFIGS["wild"]
    results = jax.vmap(lambda s: nms_baseline.nms_poses(**s, image_size=(120, 160), config=config))(
        random_batch
    )
    for i in range(len(random_batch["scores"])):
        scene = _unbatch(random_batch, i)
        kept = reference_nms(
            scene["poses2d"], scene["scores"], image_size=(120, 160), valid=scene["valid"],
            rois=scene["rois"], config=config,
        )[: config.max_people]  # fmt: skip
        count = len(kept)
        np.testing.assert_array_equal(results.valid[i], np.arange(config.max_people) < count)
        np.testing.assert_array_equal(results.scores[i, :count], scene["scores"][kept])
        np.testing.assert_array_equal(results.poses3d[i, :count], scene["poses3d"][kept])


def test_buffer_sizes_do_not_change_a_large_scene(monkeypatch):
    # The mode search's copies into smaller buffers too, which only scenes of 8,192
    # candidates and more take otherwise.
    monkeypatch.setattr(ppi, "_MODE_COMPACT_FROM", 0)
    scene = random_scene(np.random.default_rng(5), num_candidates=600, num_people=6)
    config = ppi.PPIConfig(max_people=16, min_buffer=150)
    assert ppi._buffer_sizes(600, 150) == (600, 150)
    result = ppi.ppi(**scene, image_size=(480, 640), config=config)
    reference = reference_ppi(**scene, image_size=(480, 640), config=config)
    check_against_reference(result, reference, max_people=config.max_people)


def test_a_mode_search_in_a_smaller_buffer_starts_from_the_best_candidate(monkeypatch):
    """A group copied into a smaller buffer (as scenes of 8,192 candidates and more do)
    finds its first mode from its best candidate, b, not from its first one, a: modes
    {a, b} (1.0) then {a, c} (0.75); from a, one mode {a, b, c} (1.5) would win."""
    monkeypatch.setattr(ppi, "_MODE_COMPACT_FROM", 0)
    config = dataclasses.replace(HAND, min_buffer=2)  # buffers of 16, 8, 4, 2 candidates
    box = (0, 0, 9, 9)
    group = [_candidate(box, s, x3d=x) for s, x in [(0.25, 0.1), (0.75, 0.0), (0.5, 0.2)]]
    # Three more candidates elsewhere keep the grouping in the 16-slot buffer, where the
    # group of 3 is searched in a copy of 4 slots.
    others = [_candidate((100 + 30 * i, 0, 109 + 30 * i, 9), 0.125) for i in range(3)]
    np.testing.assert_allclose(_people(_ppi(_scene(*group, *others), config))[0], [1.0])


def test_d3d_is_the_mean_per_joint_distance():
    rng = np.random.default_rng(7)
    poses3d = rng.normal(size=(50, 17, 3)).astype(np.float32)
    d3d = ppi._d3d(poses3d.transpose(2, 1, 0), poses3d[3].T)
    expected = np.mean(np.linalg.norm(poses3d - poses3d[3], axis=2), axis=1)
    np.testing.assert_allclose(d3d, expected, rtol=1e-6, atol=1e-7)
    assert d3d[3] == 0.0
