"""PPI (LCR-Net++ Sec. 3.6) speed: jitted `lcrnet_jax.postprocess.ppi.ppi` against a numpy loop.

python benchmarks/ppi_bench.py [--quick] [--authors_ppi=FOLDER]

`--authors_ppi` names a local folder holding the authors' released lcr_net_ppi.py (GPL,
never copied into this repository nor downloaded by this script): its `LCRNet_PPI` is
then timed too, on the same scenes and in the same process, and checked equal.

This module is also the single home of the random scene generator and of the numpy
reference PPI / NMS (a straightforward loop over groups and modes, written from the
algorithm of the authors' `LCRNet_PPI` as `lcrnet_jax.postprocess.ppi` describes it); the
tests import both. Every timed configuration first checks that the jitted PPI returns the
reference's people (same count, scores and poses to float32 rounding), then prints compile
time, warm time (median over several runs after `block_until_ready`) and the speed ratio.
The timed PPI has `max_people` above every scene's people count, so that it forms every group as
the baselines do rather than stopping once no later group can enter its top people.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import pathlib
import time

import jax
import numpy as np

from lcrnet_jax import geometry
from lcrnet_jax.postprocess import ppi as ppi_lib

# A standing LCR-13 pose in metres, camera axes (X right, Y down), torso-centred.
STANDING_POSE = np.array(
    [
        [-0.10, 1.15, 0.0],  # right ankle
        [0.10, 1.15, 0.0],  # left ankle
        [-0.10, 0.70, 0.0],  # right knee
        [0.10, 0.70, 0.0],  # left knee
        [-0.12, 0.25, 0.0],  # right hip
        [0.12, 0.25, 0.0],  # left hip
        [-0.30, 0.25, 0.05],  # right wrist
        [0.30, 0.25, 0.05],  # left wrist
        [-0.25, 0.00, 0.0],  # right elbow
        [0.25, 0.00, 0.0],  # left elbow
        [-0.18, -0.25, 0.0],  # right shoulder
        [0.18, -0.25, 0.0],  # left shoulder
        [0.00, -0.50, 0.0],  # head
    ],
    np.float32,
)


def random_scene(
    rng: np.random.Generator,
    *,
    num_candidates: int,
    num_people: int,
    image_size: tuple[int, int] = (480, 640),
    clutter: float = 0.1,
    max_modes: int = 3,
    score_quantum: float | None = None,
) -> dict[str, np.ndarray]:
    """Pose candidates as a detector outputs them: many noisy proposals per person.

    Each person stands somewhere in the image (partly outside is allowed) and has 1 to
    `max_modes` 3D modes (the base pose with perturbed limbs, turned about the vertical);
    each of its candidates picks a mode (the first one most often), adds 3 cm 3D noise
    and 4% of the person's height 2D noise; 30% are upper-body candidates whose lower
    limbs are three times noisier. A fraction `clutter` of the candidates comes in small
    bunches of random poses anywhere in the image with low scores. Scores look like
    softmax probabilities of one class among 21. Candidates are shuffled.

    Args:
      rng: numpy generator.
      num_candidates: M.
      num_people: people in the scene (>= 0; with 0 every candidate is clutter).
      image_size: (height, width) pixels.
      clutter: fraction of candidates that are clutter.
      max_modes: most 3D modes per person.
      score_quantum: round scores up to a multiple of this (a power of 2 such as 1/256
        makes every sum of scores exact in float32, so ties are exact ties).

    Returns:
      dict with poses2d (M, 13, 2) pixels, poses3d (M, 13, 3) metres, scores (M,),
      upper_body (M,) bool, rois (M, 4) pixels, all float32 / bool numpy arrays.
    """
    height, width = image_size
    num_clutter = num_candidates if num_people == 0 else int(round(clutter * num_candidates))
    num_person_cands = num_candidates - num_clutter
    poses2d, poses3d, scores, upper = [], [], [], []

    if num_person_cands:
        share = rng.dirichlet(np.full(num_people, 2.0))
        counts = np.diff(np.round(np.cumsum(np.r_[0.0, share]) * num_person_cands).astype(int))
        for count in counts:
            num_modes = rng.integers(1, max_modes + 1)
            modes = STANDING_POSE + rng.normal(0.0, 0.2, (num_modes, 13, 3)).astype(np.float32)
            modes = _turn(rng, modes)
            pixels_per_metre = rng.uniform(60.0, 220.0)
            centre = rng.uniform([-0.05 * width, 0.1 * height], [1.05 * width, 0.9 * height])
            mode_probs = np.r_[3.0, np.ones(num_modes - 1)] / (num_modes + 2.0)
            mode = rng.choice(num_modes, size=count, p=mode_probs)
            is_upper = rng.random(count) < 0.3
            noise_scale = np.where(np.arange(13) < 4, 3.0, 1.0)[None, :, None]
            noise_scale = np.where(is_upper[:, None, None], noise_scale, 1.0)
            p3 = modes[mode] + rng.normal(0.0, 0.03, (count, 13, 3)) * noise_scale
            sigma2d = 0.04 * 1.7 * pixels_per_metre
            p2 = centre + pixels_per_metre * modes[mode][..., :2]
            p2 = p2 + rng.normal(0.0, sigma2d, (count, 13, 2)) * noise_scale
            logits = rng.normal(0.0, 1.0, (count, 21))
            logits[:, 0] += 1.0
            logits[:, 1] += rng.normal(np.where(mode == 0, 1.0, 0.3), 1.5)
            poses3d.append(p3)
            poses2d.append(p2)
            scores.append(np.exp(logits[:, 1]) / np.exp(logits).sum(1))
            upper.append(is_upper)

    if num_clutter:
        bunch = rng.integers(1, 7, num_clutter)
        owner = np.repeat(np.arange(num_clutter), bunch)[:num_clutter]
        num_bunches = owner.max() + 1
        centre = rng.uniform([0.0, 0.0], [width, height], (num_bunches, 2))[owner]
        pixels_per_metre = rng.uniform(30.0, 200.0, num_bunches)[owner]
        p3 = _turn(rng, STANDING_POSE + rng.normal(0.0, 0.2, (num_clutter, 13, 3)))
        p2 = centre[:, None] + pixels_per_metre[:, None, None] * p3[..., :2]
        poses3d.append(p3)
        poses2d.append(p2 + rng.normal(0.0, 5.0, p2.shape))
        scores.append(np.exp(rng.uniform(np.log(0.005), np.log(0.06), num_clutter)))
        upper.append(rng.random(num_clutter) < 0.5)

    order = rng.permutation(num_candidates)
    poses2d = np.concatenate(poses2d).astype(np.float32)[order]
    poses3d = np.concatenate(poses3d).astype(np.float32)[order]
    scores = np.concatenate(scores).astype(np.float32)[order]
    if score_quantum is not None:
        scores = (np.ceil(scores / score_quantum) * score_quantum).astype(np.float32)
    lo, hi = poses2d.min(axis=1), poses2d.max(axis=1)
    jitter = rng.normal(0.0, 0.05, (num_candidates, 4)) * np.tile(hi - lo, 2)
    rois = (np.concatenate([lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)], 1) + jitter).astype(
        np.float32
    )
    return {
        "poses2d": poses2d,
        "poses3d": poses3d,
        "scores": scores,
        "upper_body": np.concatenate(upper)[order],
        "rois": rois,
    }


@functools.cache
def _turns() -> np.ndarray:
    """(360, 3, 3) rotations about the vertical axis, one per degree of azimuth."""
    azimuth = np.deg2rad(np.arange(-180.0, 180.0))
    return np.asarray(geometry.rotation_matrix(azimuth, np.zeros_like(azimuth)))


def _turn(rng: np.random.Generator, poses3d: np.ndarray) -> np.ndarray:
    """Turns each (J, 3) pose about the vertical axis by a random whole degree.

    numpy rather than `geometry.rotate`: jax would compile anew for every pose count.
    """
    rotations = _turns()[rng.integers(0, 360, poses3d.shape[0])]
    return np.einsum("njc,ndc->njd", poses3d, rotations).astype(np.float32)


# The joints of the pose boxes, as the authors' code lists them.
_BOX_JOINTS = {
    "all": list(range(13)),
    "torso_head": [4, 5, 10, 11, 12],
    "shoulder_head": [10, 11, 12],
}


def reference_boxes(poses2d, rois, *, image_size, config):
    """Boxes of the greedy grouping as the original code builds them.

    Pose boxes: min/max of the joints, each coordinate clipped to [0, W - 1] or
    [0, H - 1]; with `group_by="roi"` the RoIs as they are.
    """
    if config.group_by == "roi":
        return np.asarray(rois, np.float32)
    height, width = image_size
    joints = np.asarray(poses2d, np.float32)[:, _BOX_JOINTS[config.box_joints]]
    limit = np.array([width - 1, height - 1], np.float32)
    lo = np.minimum(np.maximum(0, joints.min(axis=1)), limit)
    hi = np.minimum(np.maximum(0, joints.max(axis=1)), limit)
    return np.concatenate([lo, hi], axis=1)


def reference_iou(boxes, box):
    """IoU of (N, 4) boxes with one box, inclusive-pixel (+1) convention, float32."""
    x1, y1, x2, y2 = boxes.T
    width = np.maximum(0, np.minimum(x2 + 1, box[2] + 1) - np.maximum(x1, box[0]))
    height = np.maximum(0, np.minimum(y2 + 1, box[3] + 1) - np.maximum(y1, box[1]))
    inter = width * height
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    return inter / (area + (box[2] - box[0] + 1) * (box[3] - box[1] + 1) - inter)


def reference_groups(scores, boxes, valid, iou_threshold):
    """Greedy grouping: the best remaining candidate with every remaining one overlapping it.

    Returns the groups as arrays of candidate indices, in the order they are formed.
    """
    remaining = np.flatnonzero(valid)
    groups = []
    while remaining.size:
        leader = remaining[np.argmax(scores[remaining])]
        overlaps = reference_iou(boxes[remaining], boxes[leader]) > iou_threshold
        groups.append(remaining[overlaps])
        remaining = remaining[~overlaps]
    return groups


def reference_ppi(
    poses2d, poses3d, scores, *, image_size, upper_body=None, valid=None, rois=None, config=None
):
    """PPI as a plain numpy loop over groups and modes (the reference of the tests).

    Same arguments as `lcrnet_jax.postprocess.ppi.ppi` (numpy arrays). Returns every person found,
    not only the first `config.max_people`: scores (N,), poses2d (N, J, 2), poses3d
    (N, J, 3), by descending score with ties in group order.
    """
    config = config or ppi_lib.PPIConfig()
    num, joints = poses2d.shape[:2]
    upper_body = np.zeros(num, bool) if upper_body is None else np.asarray(upper_body)
    valid = np.ones(num, bool) if valid is None else np.asarray(valid)
    boxes = reference_boxes(poses2d, rois, image_size=image_size, config=config)
    lower = (np.arange(joints) < 4)[:, None]  # knees and ankles
    people = []
    for members in reference_groups(scores, boxes, valid, config.iou_threshold):
        unused = members
        modes = []
        while unused.size:
            leader = unused[np.argmax(scores[unused])]
            if scores[leader] < config.min_mode_score and modes:
                break
            diff = poses3d[members] - poses3d[leader]
            d3d = np.mean(np.sqrt(np.sum(diff**2, axis=2)), axis=1)
            mode = members[d3d < config.t3d]
            weight = scores[mode][:, None, None]
            upper = upper_body[mode][:, None, None]
            weight_lower = np.where(upper, config.lower_limb_weight * weight, weight)
            pose = []
            for p in (poses2d[mode], poses3d[mode]):
                # weights summing to 0: the plain mean, then the upper-body weights
                mean = np.mean(p, axis=0)
                if np.sum(weight) != 0:
                    mean = np.sum(weight * p, axis=0) / np.sum(weight)
                lower_mean = mean
                if np.sum(weight_lower) != 0:
                    lower_mean = np.sum(weight_lower * p, axis=0) / np.sum(weight_lower)
                pose.append(np.where(lower, lower_mean, mean))
            modes.append((np.sum(scores[mode]), *pose))
            unused = unused[~np.isin(unused, mode)]
        best = max(modes, key=lambda m: m[0])  # the first of equal modes
        if best[0] > config.person_threshold:
            people.append(best)
    people.sort(key=lambda m: m[0], reverse=True)  # stable: ties stay in group order
    return (
        np.array([p[0] for p in people], np.float32),
        np.array([p[1] for p in people], np.float32).reshape(-1, joints, 2),
        np.array([p[2] for p in people], np.float32).reshape(-1, joints, 3),
    )


def reference_nms(poses2d, scores, *, image_size, valid=None, rois=None, config=None):
    """NMS baseline as a numpy loop: each group's leader if its score passes the threshold.

    Returns the kept candidates' indices (N,) by descending score.
    """
    config = config or ppi_lib.PPIConfig()
    valid = np.ones(len(scores), bool) if valid is None else np.asarray(valid)
    boxes = reference_boxes(poses2d, rois, image_size=image_size, config=config)
    groups = reference_groups(scores, boxes, valid, config.iou_threshold)
    leaders = np.array([g[np.argmax(scores[g])] for g in groups], np.int64)
    return leaders[scores[leaders] > config.person_threshold]


def check_against_reference(result, reference, *, max_people):
    """Raises AssertionError unless a `PPIResult` equals the reference's first people.

    Same number of people, scores to 1e-5 relative, 2D poses to 1e-3 px + 1e-5 relative,
    3D poses to 1e-5 m (float32 sums in another order).
    """
    ref_scores, ref_poses2d, ref_poses3d = reference
    count = min(len(ref_scores), max_people)
    np.testing.assert_array_equal(np.asarray(result.valid), np.arange(max_people) < count)
    np.testing.assert_allclose(result.scores[:count], ref_scores[:count], rtol=1e-5)
    np.testing.assert_allclose(result.poses2d[:count], ref_poses2d[:count], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(result.poses3d[:count], ref_poses3d[:count], rtol=1e-5, atol=1e-5)


def _median_time(fn, runs):
    """Median wall time of `runs` calls of fn, seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def load_authors_ppi(folder: str):
    """The authors' `LCRNet_PPI` from FOLDER/lcr_net_ppi.py."""
    path = pathlib.Path(folder) / "lcr_net_ppi.py"
    if not path.is_file():
        raise FileNotFoundError(f"--authors_ppi: no lcr_net_ppi.py in {folder}")
    spec = importlib.util.spec_from_file_location("lcr_net_ppi", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LCRNet_PPI


def _authors_runner(authors, scene, image_size, config):
    """A call of the authors' LCRNet_PPI on `scene`, returning (scores, poses2d, poses3d)."""
    poses2d, poses3d = scene["poses2d"], scene["poses3d"]
    num, joints = poses2d.shape[:2]
    res = {  # the authors' layout: x of every joint, then y (then z); class > K: upper body
        "regpose2d": poses2d.transpose(0, 2, 1).reshape(num, 2 * joints),
        "regpose3d": poses3d.transpose(0, 2, 1).reshape(num, 3 * joints),
        "regscore": scene["scores"][:, None],
        "regclass": np.where(scene["upper_body"], 2.0, 1.0)[:, None],
    }
    iou_func = {"all": "bbox", "torso_head": "bbox_torsohead"}[config.box_joints]
    kwargs = dict(
        th_pose3D=config.t3d,
        th_iou=config.iou_threshold,
        iou_func=iou_func,
        min_mode_score=config.min_mode_score,
        th_persondetect=config.person_threshold,
        J=joints,
    )

    def run():
        people = authors(res, 1, tuple(image_size), **kwargs)
        scores = np.array([p["cumscore"] for p in people], np.float32).reshape(-1)
        p2 = [np.asarray(p["pose2d"]).reshape(2, joints).T for p in people]
        p3 = [np.asarray(p["pose3d"]).reshape(3, joints).T for p in people]
        return (
            scores,
            np.array(p2, np.float32).reshape(-1, joints, 2),
            np.array(p3, np.float32).reshape(-1, joints, 3),
        )

    return run


def _time_baseline(run, result, config):
    """(seconds per call, people found) of a baseline PPI, after checking that the jitted
    result holds every one of its people (not only the first `config.max_people`)."""
    start = time.perf_counter()
    reference = run()
    seconds = time.perf_counter() - start
    found = len(reference[0])
    assert found < config.max_people, f"{found} people: raise max_people to time all of them"
    check_against_reference(result, reference, max_people=config.max_people)
    return (_median_time(run, 3) if seconds < 1.0 else seconds), found  # else one run is enough


def _bench_row(num, people, image_size, config, compiled, authors):
    """Times one scene; returns (compiled PPI, table cells). Compiles if `compiled` is None."""
    scene = random_scene(
        np.random.default_rng(num + people),
        num_candidates=num,
        num_people=people,
        image_size=image_size,
    )
    inputs = (scene["poses2d"], scene["poses3d"], scene["scores"])
    kwargs = {"image_size": image_size, "upper_body": scene["upper_body"]}
    compile_time = float("nan")
    if compiled is None:
        start = time.perf_counter()
        compiled = ppi_lib.ppi.lower(*inputs, **kwargs, config=config).compile()
        compile_time = time.perf_counter() - start

    # On the device once, as a model's outputs would be: numpy ones are copied every call.
    on_device = jax.device_put(inputs)
    upper_body = jax.device_put(scene["upper_body"])

    def run_jax():
        return jax.block_until_ready(
            compiled(*on_device, image_size=image_size, upper_body=upper_body)
        )

    result = run_jax()
    numpy_time, reference_people = _time_baseline(
        lambda: reference_ppi(*inputs, **kwargs, config=config), result, config
    )
    authors_time = float("nan")
    if authors is not None:
        authors_time, _ = _time_baseline(
            _authors_runner(authors, scene, image_size, config), result, config
        )
    jax_time = _median_time(run_jax, 7)
    boxes = reference_boxes(scene["poses2d"], None, image_size=image_size, config=config)
    groups = reference_groups(scene["scores"], boxes, np.ones(num, bool), config.iou_threshold)
    cells = (
        f"{num:>6} {people:>6} {len(groups):>6} {int(np.sum(result.valid)):>5} "
        f"{reference_people:>5} "
        f"{compile_time:>9.1f} {1e3 * jax_time:>8.2f} "
        f"{1e3 * numpy_time:>9.1f} {numpy_time / jax_time:>8.1f}x "
        f"{1e3 * authors_time:>10.1f} {authors_time / jax_time:>8.1f}x"
    )
    return compiled, cells.replace("nan", "   ")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 5k candidates only")
    parser.add_argument(
        "--authors_ppi", help="folder with the authors' lcr_net_ppi.py, timed side by side"
    )
    args = parser.parse_args()
    authors = load_authors_ppi(args.authors_ppi) if args.authors_ppi else None
    sizes = (1000, 5000) if args.quick else (5000, 10000, 20000, 40000)
    image_size = (480, 640)
    # Above every scene's people count: ours then processes every group, as the baselines.
    config = ppi_lib.PPIConfig(max_people=256)
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}; image {image_size}; "
        f"PPIConfig(max_people={config.max_people}), other fields default"
    )
    print(
        f"{'cands':>6} {'people':>6} {'groups':>6} {'found':>5} {'ref':>5} {'compile s':>9} "
        f"{'jax ms':>8} {'numpy ms':>9} {'vs numpy':>9} {'authors ms':>10} {'vs authors':>9}"
    )
    for num in sizes:
        compiled = None
        for people in (1, 5, 20):
            compiled, cells = _bench_row(num, people, image_size, config, compiled, authors)
            print(cells, flush=True)
    print(
        "found: people ours returns; ref: people reference_ppi finds (all of them, below "
        "max_people). jax ms: median wall time of 7 warm runs of the compiled ppi; numpy ms: "
        "reference_ppi; authors ms: the authors' LCRNet_PPI (--authors_ppi); vs: their time / "
        "jax ms. Every row was checked equal to each baseline (people, scores, poses)."
    )


if __name__ == "__main__":
    main()
