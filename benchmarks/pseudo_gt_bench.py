"""Pseudo ground truth (LCR-Net++ Sec. 3.7): search speed and quality on synthetic poses.

python benchmarks/pseudo_gt_bench.py

1. Nearest-neighbour search, queries/s, with the exact jnp search (one jit-compiled pass
   over the corpus for all masks) and with scikit-learn (NearestNeighbors per distinct
   mask), on 100k- and 1M-entry corpora of random LCR-13 poses.
2. Quality: corpus poses (and held-out poses) seen from new random views with some joints
   hidden; PA-MPJPE of the recovered 3D pose and error of the completed 2D joints.

Poses: a rough articulated LCR-13 body (fixed bone lengths, random torso lean and twist,
random hip/knee/shoulder/elbow angles); the procedural generator of
lcrnet_jax/data/poses.py should replace it once it is on main.
"""

from __future__ import annotations

import pathlib
import resource
import time

import jax
import numpy as np

from lcrnet_jax import geometry, skeleton
from lcrnet_jax import pseudo_gt as pg
from lcrnet_jax.metrics import pose3d

_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

PIXELS_PER_METRE = 250.0


def _rot(rng, n, elevation, roll, azimuth=(0.0, 0.0)):
    """(n, 3, 3) rotations with angles drawn uniformly in the given (low, high) ranges."""
    draw = lambda r: rng.uniform(*r, size=n)  # noqa: E731
    return np.asarray(geometry.rotation_matrix(draw(azimuth), draw(elevation), draw(roll)))


def articulated_poses(num: int, seed: int) -> np.ndarray:
    """(num, 13, 3) LCR-13 poses in metres, upright (Y down), facing the camera (Z away)."""
    rng = np.random.default_rng(seed)
    down = np.array([0.0, 1.0, 0.0])
    pose = np.zeros((num, 13, 3))
    pose[:, 4], pose[:, 5] = [-0.1, 0.0, 0.0], [0.1, 0.0, 0.0]  # hips
    torso = _rot(rng, num, (-0.6, 0.3), (-0.2, 0.2), azimuth=(-0.5, 0.5))  # lean, twist
    upper = np.array([[-0.18, -0.5, 0.0], [0.18, -0.5, 0.0], [0.0, -0.72, 0.0]])
    pose[:, [10, 11, 12]] = np.einsum("nij,kj->nki", torso, upper)
    limbs = (  # (root, mid, end, lengths, first-segment ranges, bend range)
        (4, 2, 0, (0.43, 0.42), (-1.6, 0.5), (0.0, 0.3), (-2.2, 0.0), 1.0),
        (5, 3, 1, (0.43, 0.42), (-1.6, 0.5), (0.0, 0.3), (-2.2, 0.0), -1.0),
        (10, 8, 6, (0.28, 0.26), (-2.5, 1.0), (0.0, 1.6), (0.0, 2.4), 1.0),
        (11, 9, 7, (0.28, 0.26), (-2.5, 1.0), (0.0, 1.6), (0.0, 2.4), -1.0),
    )
    for root, mid, end, (l1, l2), flex, abduct, bend, side in limbs:
        r1 = _rot(rng, num, flex, tuple(sorted(side * a for a in abduct)))
        if root >= 10:
            r1 = torso @ r1
        r2 = r1 @ _rot(rng, num, bend, (0.0, 0.0))
        pose[:, mid] = pose[:, root] + l1 * r1 @ down
        pose[:, end] = pose[:, mid] + l2 * r2 @ down
    return pose.astype(np.float32)


def _mask_patterns(num: int, seed: int) -> np.ndarray:
    """(num, 13) typical annotation masks: full body, truncated legs, occluded limbs."""
    rng = np.random.default_rng(seed)
    patterns = np.ones((num, 13), bool)
    for k in range(1, num):
        hidden = rng.choice(13, size=rng.integers(1, 5), replace=False)
        patterns[k, hidden] = False
    return patterns


def _queries(num: int, seed: int, num_masks: int):
    rng = np.random.default_rng(seed)
    poses = articulated_poses(num, seed)
    rotations = np.asarray(geometry.random_rotations(jax.random.key(seed), num))
    view = np.asarray(geometry.orthographic_project(poses, rotations))
    query = view * PIXELS_PER_METRE + rng.uniform(100, 500, size=(num, 1, 2))
    return query, _mask_patterns(num_masks, seed)[rng.integers(0, num_masks, num)]


def _timed_search(query, visible, corpus, method):
    start = time.perf_counter()
    result = pg.nearest_poses(query, visible, corpus, method=method)
    return result, time.perf_counter() - start


def speed_table() -> None:
    rows = []
    cases = ((100_000, 10, 1024), (1_000_000, 32, 256))
    num_masks = 8
    for size, views, num_queries in cases:
        corpus = pg.project_corpus(
            articulated_poses(size // views, seed=1), jax.random.key(0), num_views=views
        )
        query, visible = _queries(num_queries, seed=2, num_masks=num_masks)
        times = {}
        for method in pg.METHODS:
            _, first = _timed_search(query, visible, corpus, method)  # compiles
            result, times[method] = _timed_search(query, visible, corpus, method)
            rows.append((method, size, num_queries, first, times[method], result.index))
        same = np.mean(rows[-1][-1] == rows[-2][-1])
        ratio = times["sklearn"] / times["jnp"]
        rows[-2:] = [r[:-1] + (ratio if r[0] == "jnp" else 1.0, same) for r in rows[-2:]]
    print(
        f"NN search, random LCR-13 poses, {num_masks} distinct annotation masks, "
        "exact search, float32"
    )
    print("| method | corpus | queries | 1st call s | time s | queries/s | speed-up | agree |")
    print("|---|---|---|---|---|---|---|---|")
    for method, size, q, first, t, ratio, same in rows:
        print(
            f"| {method} | {size:,} | {q} | {first:.2f} | {t:.2f} | {q / t:,.0f} | "
            f"{ratio:.2f}x | {same:.1%} |"
        )
    print("(speed-up: scikit-learn time / jnp time, same run; agree: same entry found)")


def quality_table() -> None:
    poses = articulated_poses(10_000, seed=1)
    corpus = pg.project_corpus(poses, jax.random.key(0), num_views=10)
    rng = np.random.default_rng(4)
    per_level, levels = 100, (0, 2, 4, 6, 8)
    print(
        f"\nQuality: corpus {corpus.size:,} entries (10,000 poses x 10 views); "
        f"{per_level} queries per row; new random views (same range); "
        f"{PIXELS_PER_METRE:.0f} px per metre"
    )
    print(
        "| query poses | hidden joints | PA-MPJPE mm | MPJPE mm (no alignment) | "
        "hidden 2D px | match D2D |"
    )
    print("|---|---|---|---|---|---|")
    for name, source in (("in corpus", poses), ("held out", articulated_poses(2000, seed=9))):
        picked = source[rng.choice(len(source), per_level * len(levels), replace=False)]
        picked = np.asarray(geometry.center_on_torso(picked, skeleton.LCR13))
        rotations = np.asarray(geometry.random_rotations(jax.random.key(5), len(picked)))
        truth3d = np.asarray(geometry.rotate(picked, rotations))
        truth2d = truth3d[..., :2] * PIXELS_PER_METRE + 300.0
        hidden = np.repeat(np.asarray(levels), per_level)
        visible = np.ones(truth2d.shape[:2], bool)
        for q, h in enumerate(hidden):
            visible[q, rng.choice(13, size=h, replace=False)] = False
        result = pg.pseudo_ground_truth(truth2d, visible, corpus)
        pa = pose3d.pa_mpjpe(result.poses3d, truth3d) * 1000
        raw = pose3d.mpjpe(result.poses3d, truth3d) * 1000
        err2d = np.linalg.norm(result.poses2d - truth2d, axis=-1)
        for h in levels:
            sel = hidden == h
            hid = err2d[sel][~visible[sel]]
            hidden_px = f"{hid.mean():.1f}" if hid.size else "-"
            print(
                f"| {name} | {h} | {pa[sel].mean():.1f} | {raw[sel].mean():.1f} | "
                f"{hidden_px} | {result.distance[sel].mean():.3f} |"
            )


def main() -> None:
    print(f"devices: {jax.devices()}")
    speed_table()
    quality_table()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak resident memory: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
